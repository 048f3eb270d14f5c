"""Read and write CT volumes: NIfTI files and DICOM series → one (D, H, W) float tensor in Hounsfield units.

Every volume, whatever its file, comes back in the same voxel order, the one a radiologist reads:

- D: axial slices from inferior to superior (feet → head),
- H: rows from anterior to posterior (an axial slice shows the patient's front at the top),
- W: columns from the patient's right to the patient's left (the patient's right on the image left),

with its spacing in mm as ``(z, y, x)`` = (D, H, W). On disk, NIfTI files are written in RAS+ (the voxel
axes run towards Right, Anterior, Superior; ``nibabel.aff2axcodes`` gives ``('R', 'A', 'S')``), gzip-compressed
byte-for-byte reproducibly. Reading accepts any axis-aligned orientation and reorders it; it refuses what it
cannot interpret safely, naming the file and the fix: zero or missing spacing, sheared or oblique voxel axes,
a header whose two orientation fields (qform and sform) disagree about left and right, a truncated file, and
values that are not Hounsfield units (``check_hu``). DICOM series are read by ``dicom_series.py``.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from raddino_lib import atomic

CANONICAL_AXES: tuple[str, str, str] = ("S", "P", "L")  # (D, H, W): towards superior, posterior, patient's left
RAS_AXES: tuple[str, str, str] = ("R", "A", "S")  # NIfTI storage order
HU_AIR, HU_MAX = -1024.0, 3071.0  # the 12-bit CT range; values below HU_AIR (padding outside the scan) read as air
HU_PLAUSIBLE = (-4096.0, 32767.0)  # beyond these, the values are not Hounsfield units at all
OBLIQUE_TOLERANCE = 1e-3  # |cosine| off-axis allowed before a volume counts as oblique
NIFTI_SUFFIXES: tuple[str, ...] = (".nii", ".nii.gz")
GZIP_LEVEL = 1  # noise does not compress; level 1 is 2-3x faster than 6 for the same size within a few %


class VolumeReadError(ValueError):
    """A volume file or series cannot be read as CT; the message names the file and what to do."""


@dataclass(frozen=True)
class Volume:
    """A CT volume in canonical order: ``hu`` (D, H, W) float32 tensor, ``spacing`` (z, y, x) mm."""

    hu: object  # torch.Tensor (D, H, W) float32, Hounsfield units
    spacing: tuple[float, float, float]  # mm along (D, H, W)
    source: str  # the file or folder it came from


# ----------------------------------------------------------------------------- reading


def load_volume(path: str | os.PathLike, check: bool = True) -> Volume:
    """A NIfTI file (``.nii`` / ``.nii.gz``) or a folder of DICOM files (one series) → :class:`Volume` in HU."""
    import torch

    path = Path(path)
    if path.is_dir():
        from raddino_lib.data.dicom_series import read_dicom_series

        array, spacing = read_dicom_series(path)
    elif path.is_file() and path.name.lower().endswith(NIFTI_SUFFIXES):
        array, spacing = read_nifti(path)
    elif path.is_file():
        raise VolumeReadError(f"volume '{path}': not a NIfTI file (.nii / .nii.gz); for DICOM pass the folder that "
                              "holds one series")
    else:
        raise VolumeReadError(f"volume '{path}' not found (check the manifest path and the dataset root)")
    if check:
        array = check_hu(array, str(path))
    return Volume(torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)), spacing, str(path))


def read_nifti(path: str | os.PathLike, labels: bool = False) -> tuple[np.ndarray, tuple[float, float, float]]:
    """(D, H, W) array (float32 HU after the header's scl_slope / scl_inter, or the stored integers when
    ``labels``) and spacing (z, y, x) mm, reoriented to the canonical order."""
    import nibabel as nib

    path = Path(path)
    try:
        img = nib.load(str(path))
    except Exception as err:  # nibabel raises many types for bad headers
        raise VolumeReadError(f"volume '{path}': cannot read the NIfTI header ({type(err).__name__}: {err}); the "
                              "file is truncated or not NIfTI (re-export or re-download it)") from err
    affine = _checked_affine(img, path)
    try:
        data = np.asanyarray(img.dataobj) if labels else img.get_fdata(dtype=np.float32)
    except (EOFError, OSError, zlib.error, ValueError) as err:
        raise VolumeReadError(f"volume '{path}': the voxel data is truncated or corrupt ({type(err).__name__}: "
                              f"{err}); re-export or re-download the file") from err
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise VolumeReadError(f"volume '{path}': expected a 3-D image, got shape {data.shape} (split 4-D series "
                              "into one file per volume)")
    return to_canonical(data, affine, str(path))


def _checked_affine(img, path: Path) -> np.ndarray:
    """The voxel → RAS affine after the checks that make left and right unambiguous."""
    header = img.header
    zooms = np.asarray(_raw_pixdim(path), dtype=float)  # nibabel silently replaces a zero pixdim by 1
    if zooms.size < 3 or not np.all(np.isfinite(zooms)) or np.any(zooms <= 0):
        raise VolumeReadError(f"volume '{path}': voxel spacing {tuple(zooms.tolist())} is missing or zero (pixdim); "
                              "set the spacing in the header (e.g. from the scan's DICOM PixelSpacing and slice "
                              "spacing) and save the file again")
    sform, s_code = header.get_sform(coded=True)
    qform, q_code = header.get_qform(coded=True)
    if not s_code and not q_code:
        raise VolumeReadError(f"volume '{path}': the header carries no orientation (qform_code and sform_code are 0), "
                              "so left and right are unknown; set the orientation (e.g. nibabel: "
                              "img.set_sform(affine, code=1)) and save the file again")
    if s_code and q_code and _axis_codes(sform) != _axis_codes(qform):
        raise VolumeReadError(f"volume '{path}': the header's sform says {_axis_codes(sform)} but its qform says "
                              f"{_axis_codes(qform)} (flipped); left and right are ambiguous. Fix the header so both "
                              "agree (e.g. nibabel: img.set_qform(img.get_sform())) and save the file again")
    affine = img.affine
    check_affine(affine, str(path))
    return affine


def _raw_pixdim(path: Path) -> tuple[float, ...]:
    """pixdim[1:4] as stored in the file (before nibabel's header fixes)."""
    import nibabel as nib
    from nibabel.openers import ImageOpener

    try:
        with ImageOpener(str(path)) as f:
            header = nib.Nifti1Header.from_fileobj(f, check=False)
    except Exception as err:
        raise VolumeReadError(f"volume '{path}': cannot read the NIfTI header ({type(err).__name__}: {err}); the "
                              "file is truncated or not NIfTI (re-export or re-download it)") from err
    return tuple(float(v) for v in header["pixdim"][1:4])


def _axis_codes(affine: np.ndarray) -> tuple[str, ...]:
    import nibabel as nib

    return tuple(nib.aff2axcodes(affine))


def check_affine(affine: np.ndarray, source: str) -> None:
    """Voxel axes must be non-degenerate, orthogonal and aligned with the patient's axes (no shear, no tilt)."""
    rot = np.asarray(affine, dtype=float)[:3, :3]
    norms = np.linalg.norm(rot, axis=0)
    if np.any(norms <= 0) or not np.all(np.isfinite(rot)):
        raise VolumeReadError(f"volume '{source}': the orientation matrix has a zero or invalid axis; set the "
                              "voxel spacing and orientation in the header")
    unit = rot / norms
    gram = unit.T @ unit
    if np.max(np.abs(gram - np.eye(3))) > OBLIQUE_TOLERANCE:
        raise VolumeReadError(f"volume '{source}': the voxel axes are not orthogonal (sheared, e.g. a gantry tilt); "
                              "resample it onto an orthogonal grid first (e.g. with dcm2niix's tilt correction)")
    off_axis = np.sort(np.abs(unit), axis=0)[:2]  # the two smaller components of each axis
    if np.max(off_axis) > OBLIQUE_TOLERANCE:
        raise VolumeReadError(f"volume '{source}': oblique acquisition (voxel axes rotated by up to "
                              f"{np.degrees(np.arcsin(min(1.0, float(np.max(off_axis))))):.1f} degrees from the "
                              "patient's axes); resample it to an axis-aligned grid first")


def to_canonical(data: np.ndarray, affine: np.ndarray, source: str) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Array in the voxel order of ``affine`` (voxel → RAS mm) → (D, H, W) canonical array and spacing (z, y, x)."""
    from nibabel.orientations import apply_orientation, axcodes2ornt, io_orientation, ornt_transform

    check_affine(affine, source)
    start = io_orientation(affine)
    transform = ornt_transform(start, axcodes2ornt(CANONICAL_AXES))
    out = apply_orientation(data, transform)
    zooms = np.linalg.norm(np.asarray(affine, dtype=float)[:3, :3], axis=0)
    spacing = tuple(float(zooms[int(start_axis)]) for start_axis in np.argsort(transform[:, 0]))
    return np.ascontiguousarray(out), spacing  # type: ignore[return-value]


def check_hu(array: np.ndarray, source: str) -> np.ndarray:
    """Return ``array`` as float32 HU with padding below -1024 set to -1024; raise if it is not CT in HU."""
    array = np.asarray(array, dtype=np.float32)
    if array.size == 0:
        raise VolumeReadError(f"volume '{source}': no voxels")
    if not np.all(np.isfinite(array)):
        raise VolumeReadError(f"volume '{source}': holds NaN or infinite values; re-export it")
    lo, hi = float(array.min()), float(array.max())
    if lo < HU_PLAUSIBLE[0] or hi > HU_PLAUSIBLE[1]:
        raise VolumeReadError(f"volume '{source}': values span [{lo:.0f}, {hi:.0f}], outside any CT scanner's range "
                              f"{HU_PLAUSIBLE}; this is not a CT in Hounsfield units")
    if lo > -500.0:
        raise VolumeReadError(f"volume '{source}': the lowest value is {lo:.0f}, but a chest CT in Hounsfield units "
                              "holds air (about -1000). The values look like stored pixel values without the "
                              "rescale: apply RescaleSlope / RescaleIntercept (from the DICOM header or the "
                              "dataset's metadata) or the NIfTI scl_slope / scl_inter")
    np.maximum(array, np.float32(HU_AIR), out=array)
    return array


# ----------------------------------------------------------------------------- orientation helpers and writing


def canonical_to_ras(array: np.ndarray) -> np.ndarray:
    """(D, H, W) canonical → (X, Y, Z) RAS+ voxel order (the order of NIfTI storage and of TorchIO's 'RAS')."""
    return np.ascontiguousarray(np.transpose(array, (2, 1, 0))[::-1, ::-1, :])


def ras_affine(spacing: tuple[float, float, float], shape: tuple[int, int, int]) -> np.ndarray:
    """Voxel → RAS mm affine of a RAS-ordered array of canonical ``shape`` (D, H, W), centred on the volume."""
    sz, sy, sx = spacing
    d, h, w = shape
    affine = np.diag([sx, sy, sz, 1.0])
    affine[:3, 3] = [-(w - 1) * sx / 2.0, -(h - 1) * sy / 2.0, -(d - 1) * sz / 2.0]
    return affine


def nifti_bytes(array: np.ndarray, spacing: tuple[float, float, float], dtype: type = np.int16) -> bytes:
    """(D, H, W) canonical array → ``.nii.gz`` file bytes in RAS+ (same array → same bytes)."""
    import nibabel as nib

    data = canonical_to_ras(np.asarray(array)).astype(dtype, copy=False)
    img = nib.Nifti1Image(data, ras_affine(spacing, tuple(array.shape)))
    img.header.set_xyzt_units("mm")
    img.set_qform(img.affine, code=1)  # scanner anatomical
    img.set_sform(img.affine, code=1)
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # gzip container, mtime 0, no file name
    return compressor.compress(img.to_bytes()) + compressor.flush()


def write_nifti(path: str | os.PathLike, array: np.ndarray, spacing: tuple[float, float, float],
                dtype: type = np.int16) -> Path:
    """Write ``array`` (D, H, W) as ``.nii.gz`` atomically (a reader never sees half a file)."""
    if not str(path).endswith(".nii.gz"):
        raise ValueError(f"write_nifti writes .nii.gz files, got '{path}'")
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"write_nifti: spacing {spacing} must be three positive numbers (z, y, x) in mm")
    return atomic.write_bytes(path, nifti_bytes(array, spacing, dtype))
