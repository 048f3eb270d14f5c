"""Read radiographs and masks from disk as float tensors.

Every image, whatever its format, comes back the same way: a float32 tensor of
shape (1, H, W) with values in [0, 1], where 1 is bright (bone, devices) and 0
is dark (air). Supported formats:

- PNG / JPEG, 8-bit (scaled by 1/255) and 16-bit (scaled by 1/65535); colour
  images are converted to grey.
- DICOM (``.dcm`` / ``.dicom`` or any file with the ``DICM`` preamble): the
  modality LUT (RescaleSlope / RescaleIntercept) is applied, then the VOI LUT
  or the WindowCenter / WindowWidth window (its output range maps to [0, 1]);
  without a VOI transform the values are min–max scaled; ``MONOCHROME1`` images (white = air) are inverted so that every
  image shares the ``MONOCHROME2`` convention.

Masks are 8-bit PNGs holding 0 / 255; ``load_mask`` returns (H, W) in {0, 1}.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

DICOM_SUFFIXES: tuple[str, ...] = (".dcm", ".dicom", ".dic")


class ImageReadError(ValueError):
    """An image or mask file is missing, unreadable or has no pixels; the message names the file."""


def load_image(path: str | os.PathLike) -> torch.Tensor:
    """Read one radiograph → float32 tensor (1, H, W) in [0, 1] (MONOCHROME2: air dark)."""
    path = _existing(path, "image")
    pixels = _read_dicom(path) if _is_dicom(path) else _read_raster(path)
    return torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))[None]  # (1, H, W)


def load_mask(path: str | os.PathLike) -> torch.Tensor:
    """Read a binary mask (PNG 0/255; any non-zero pixel counts as inside) → float32 (H, W) in {0, 1}."""
    path = _existing(path, "mask")
    array = _pil_array(path)
    if array.ndim == 3:
        array = array[..., 0]
    return torch.from_numpy((array > 0).astype(np.float32))  # (H, W)


def _existing(path: str | os.PathLike, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        hint = "it is a folder, not a file" if path.is_dir() else "check the manifest path and the dataset root"
        raise ImageReadError(f"{what} file '{path}' not found ({hint})")
    return path


def _is_dicom(path: Path) -> bool:
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    with open(path, "rb") as f:
        head = f.read(132)
    return len(head) == 132 and head[128:132] == b"DICM"


def _pil_array(path: Path) -> np.ndarray:
    """Decode a raster file fully (truncated files fail here, not later)."""
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L"):
                return np.asarray(img, dtype=np.uint16)
            if img.mode in ("I", "F"):
                return np.asarray(img)
            if img.mode not in ("L", "RGB", "RGBA", "LA"):
                img = img.convert("L")
            return np.asarray(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(
            f"cannot decode image file '{path}' ({type(err).__name__}: {err}); the file is truncated or not "
            "a PNG/JPEG/DICOM image — re-download or re-export it"
        ) from err


def _read_raster(path: Path) -> np.ndarray:
    """PNG / JPEG → (H, W) float32 in [0, 1], scaled by the bit depth (not per image)."""
    array = _pil_array(path)
    if array.ndim == 3:  # colour or grey+alpha: drop alpha, average colour channels
        channels = array[..., :3] if array.shape[-1] >= 3 else array[..., :1]
        array = channels.astype(np.float32).mean(axis=-1)
        return array / 255.0
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    # mode "I" (32-bit int container, e.g. 16-bit data from older writers) or "F" (float, e.g. TIFF)
    if array.dtype.kind == "f":
        array = array.astype(np.float32)
        return array if array.min() >= 0.0 and array.max() <= 1.0 else _min_max(array)
    if array.min() >= 0 and array.max() <= 65535:
        return array.astype(np.float32) / 65535.0  # 16-bit data; never guessed as 8-bit from its values
    return _min_max(array.astype(np.float32))


def _read_dicom(path: Path) -> np.ndarray:
    """DICOM → (H, W) float32 in [0, 1]: modality LUT, VOI LUT / window, min–max, MONOCHROME1 inverted."""
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut

    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, OSError, EOFError, ValueError) as err:
        raise ImageReadError(f"cannot read DICOM file '{path}' ({err}); the file is truncated or not DICOM") from err
    if "PixelData" not in ds:
        raise ImageReadError(
            f"DICOM file '{path}' has no pixel data (a structured report or presentation state?); "
            "remove it from the manifest or point the manifest at the image instance"
        )
    try:
        pixels = ds.pixel_array
    except Exception as err:  # noqa: BLE001 — pydicom raises many types for bad / compressed pixel data
        raise ImageReadError(
            f"cannot decode the pixel data of DICOM file '{path}' ({type(err).__name__}: {err}); if it is "
            "compressed (JPEG 2000 / JPEG-LS) convert it to PNG first, otherwise the file is damaged"
        ) from err
    if ds.get("SamplesPerPixel", 1) == 3:  # colour secondary capture: average the channels, no grey LUTs
        colour = pixels[0] if pixels.ndim == 4 else pixels  # (H, W, 3)
        return _min_max(colour.astype(np.float64).mean(axis=-1))
    if pixels.ndim == 3:
        pixels = pixels[0]  # multi-frame: first frame
    if pixels.ndim != 2:
        raise ImageReadError(f"DICOM file '{path}' holds an image of shape {pixels.shape}; expected one grey frame")
    values = apply_modality_lut(pixels, ds)
    if "VOILUTSequence" in ds or "WindowCenter" in ds:
        values, lo, hi = _apply_voi(values, ds)
        values = np.clip((values - lo) / (hi - lo), 0.0, 1.0) if hi > lo else _min_max(values)
    else:
        values = _min_max(values.astype(np.float64))
    if str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip() == "MONOCHROME1":
        values = 1.0 - values
    return values.astype(np.float32)


def _apply_voi(values: np.ndarray, ds) -> tuple[np.ndarray, float, float]:
    """VOI LUT (preferred, as pydicom does) or window → (values, lo, hi): the transform's output range."""
    from pydicom.pixels import apply_voi_lut

    if "VOILUTSequence" in ds:  # a lookup table indexes integers; its output range is its entries' range
        n, first, _ = (int(v) for v in ds.VOILUTSequence[0].LUTDescriptor)
        table = apply_voi_lut(np.arange(first, first + (n or 65536), dtype=np.int64), ds, index=0)
        out = apply_voi_lut(np.rint(values).astype(np.int64), ds, index=0)
        return out.astype(np.float64), float(table.min()), float(table.max())
    # window: what the transform gives far below / far above the window
    lo, hi = sorted(apply_voi_lut(np.array([-1e12, 1e12]), ds, index=0).astype(np.float64))
    return apply_voi_lut(values.astype(np.float64), ds, index=0).astype(np.float64), lo, hi


def _min_max(values: np.ndarray) -> np.ndarray:
    """Scale to [0, 1]; a constant image becomes all zeros."""
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros_like(values, dtype=np.float32)
    return ((values - lo) / (hi - lo)).astype(np.float32)
