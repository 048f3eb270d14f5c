"""A folder of DICOM slices (one CT series) → a (D, H, W) HU array in canonical order, and its spacing.

Slices are sorted by their position along the slice normal (ImagePositionPatient projected on the cross
product of the two ImageOrientationPatient directions), never by file name or InstanceNumber. Each slice's
stored values go through its own RescaleSlope / RescaleIntercept. The series is refused, with the files
named, when it mixes series (SeriesInstanceUID), repeats a position (duplicate slices), skips positions
(missing slices), changes orientation or matrix size between slices, lacks PixelSpacing, or is sheared
(positions not along the normal: gantry tilt).
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

from raddino_lib.data.volume_io import VolumeReadError, to_canonical

POSITION_TOLERANCE = 0.01  # fraction of the slice spacing within which two positions count as equal
SPACING_TOLERANCE = 0.05  # relative deviation from the median slice spacing that counts as irregular


def read_dicom_series(folder: str | os.PathLike) -> tuple[np.ndarray, tuple[float, float, float]]:
    """(D, H, W) float32 HU (canonical order, see ``volume_io``) and spacing (z, y, x) mm of one series."""
    folder = Path(folder)
    slices = _read_slices(folder)
    _check_one_series(slices, folder)
    row_dir, col_dir = _orientation(slices, folder)
    normal = np.cross(row_dir, col_dir)
    positions = np.array([_floats(ds, "ImagePositionPatient", 3, path) for path, ds in slices])
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    slices = [slices[i] for i in order]
    positions, along = positions[order], along[order]
    dz = _slice_spacing(slices, along, folder)
    _check_not_sheared(positions, normal, dz, folder)
    rows, cols = _pixel_spacing(slices, folder)
    stack = np.stack([_hu(ds, path) for path, ds in slices])  # (S, rows, cols): slices along +normal
    # voxel (k, r, c) → LPS position p0 + k dz n + r rows col_dir + c cols row_dir; array order (k, r, c)
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2] = normal * dz, col_dir * rows, row_dir * cols
    lps[:3, 3] = positions[0]
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # DICOM patient axes are LPS; NIfTI's are RAS
    return to_canonical(stack, ras, str(folder))


def _read_slices(folder: Path) -> list[tuple[Path, object]]:
    import pydicom
    from pydicom.errors import InvalidDicomError

    if not folder.is_dir():
        raise VolumeReadError(f"DICOM series '{folder}' is not a folder")
    out = []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                ds = pydicom.dcmread(path)
        except (InvalidDicomError, OSError, EOFError):
            continue  # not DICOM (a README, a thumbnail): skipped
        if "PixelData" in ds:
            out.append((path, ds))
    if not out:
        raise VolumeReadError(f"DICOM series '{folder}': no DICOM files with pixel data in the folder")
    if len(out) < 2:
        raise VolumeReadError(f"DICOM series '{folder}': only one slice ({out[0][0].name}); a CT volume needs at least "
                              "two (multi-frame files are not supported: convert them to NIfTI)")
    return out


def _check_one_series(slices: list[tuple[Path, object]], folder: Path) -> None:
    uids = Counter(str(ds.get("SeriesInstanceUID", "")) for _, ds in slices)
    if len(uids) > 1:
        listed = ", ".join(f"'{u}' ({n} files)" for u, n in uids.most_common())
        raise VolumeReadError(f"DICOM series '{folder}': the folder mixes {len(uids)} series ({listed}); move each "
                              "SeriesInstanceUID into its own folder and load one")
    sizes = Counter((int(ds.Rows), int(ds.Columns)) for _, ds in slices)
    if len(sizes) > 1:
        raise VolumeReadError(f"DICOM series '{folder}': slices differ in matrix size {dict(sizes)}; not one volume")


def _floats(ds, tag: str, n: int, path: Path) -> np.ndarray:
    value = ds.get(tag)
    try:
        out = np.array([float(v) for v in value], dtype=float)
    except (TypeError, ValueError):
        out = np.array([])
    if out.shape != (n,) or not np.all(np.isfinite(out)):
        raise VolumeReadError(f"DICOM file '{path}': {tag} is missing or malformed ({value!r}); the slice cannot be "
                              "placed in the volume")
    return out


def _orientation(slices: list[tuple[Path, object]], folder: Path) -> tuple[np.ndarray, np.ndarray]:
    first_path, first = slices[0]
    iop = _floats(first, "ImageOrientationPatient", 6, first_path)
    for path, ds in slices[1:]:
        if not np.allclose(_floats(ds, "ImageOrientationPatient", 6, path), iop, atol=1e-4):
            raise VolumeReadError(f"DICOM series '{folder}': ImageOrientationPatient of '{path.name}' differs from "
                                  f"'{first_path.name}'; the slices are not one volume")
    row_dir, col_dir = iop[:3], iop[3:]
    if abs(np.linalg.norm(row_dir) - 1) > 1e-3 or abs(np.linalg.norm(col_dir) - 1) > 1e-3 \
            or abs(float(row_dir @ col_dir)) > 1e-3:
        raise VolumeReadError(f"DICOM series '{folder}': ImageOrientationPatient {iop.tolist()} is not two orthogonal "
                              "unit vectors (a corrupt or non-orthogonal orientation); fix the header")
    return row_dir, col_dir


def _slice_spacing(slices: list[tuple[Path, object]], along: np.ndarray, folder: Path) -> float:
    gaps = np.diff(along)
    typical = float(np.median(gaps)) if gaps.size else 0.0
    scale = typical if typical > 0 else float(np.max(np.abs(gaps)) or 1.0)
    dup = np.flatnonzero(gaps <= POSITION_TOLERANCE * scale)
    if dup.size:
        a, b = slices[dup[0]][0].name, slices[dup[0] + 1][0].name
        raise VolumeReadError(f"DICOM series '{folder}': {dup.size} duplicate slice position(s), e.g. '{a}' and "
                              f"'{b}' both at {along[dup[0]]:.2f} mm along the slice normal; remove the duplicates "
                              "(a second reconstruction or a re-sent file) and load again")
    if typical <= 0:
        raise VolumeReadError(f"DICOM series '{folder}': slice spacing is zero; ImagePositionPatient does not vary")
    steps = gaps / typical
    missing = np.flatnonzero(np.round(steps) >= 2)
    if missing.size:
        k = missing[0]
        a, b = slices[k][0].name, slices[k + 1][0].name
        raise VolumeReadError(f"DICOM series '{folder}': {int(np.sum(np.round(steps[missing]) - 1))} missing slice(s), "
                              f"e.g. a gap of {gaps[k]:.2f} mm between '{a}' and '{b}' where the spacing is "
                              f"{typical:.2f} mm; copy the complete series again")
    if np.max(np.abs(steps - 1.0)) > SPACING_TOLERANCE:
        raise VolumeReadError(f"DICOM series '{folder}': irregular slice spacing ({gaps.min():.2f} to {gaps.max():.2f}"
                              " mm); resample it to regular slices first")
    return typical


def _check_not_sheared(positions: np.ndarray, normal: np.ndarray, dz: float, folder: Path) -> None:
    offsets = positions - positions[0]
    lateral = offsets - np.outer(offsets @ normal, normal)
    if np.max(np.linalg.norm(lateral, axis=1)) > 0.05 * dz:
        raise VolumeReadError(f"DICOM series '{folder}': slice positions drift across the slice plane (gantry tilt, "
                              "a sheared volume); resample it with tilt correction (e.g. dcm2niix) first")


def _pixel_spacing(slices: list[tuple[Path, object]], folder: Path) -> tuple[float, float]:
    path, ds = slices[0]
    if "PixelSpacing" not in ds:
        raise VolumeReadError(f"DICOM file '{path}': PixelSpacing is missing; without it the voxel size is unknown "
                              "(re-export the series with its spacing)")
    rows, cols = (float(v) for v in ds.PixelSpacing)  # (between rows, between columns)
    if rows <= 0 or cols <= 0:
        raise VolumeReadError(f"DICOM file '{path}': PixelSpacing {rows}, {cols} is not positive; fix the header")
    for other_path, other in slices[1:]:
        if [float(v) for v in other.get("PixelSpacing", [])] != [rows, cols]:
            raise VolumeReadError(f"DICOM series '{folder}': PixelSpacing of '{other_path.name}' differs from "
                                  f"'{path.name}'; the slices are not one volume")
    return rows, cols


def _hu(ds, path: Path) -> np.ndarray:
    try:
        pixels = ds.pixel_array.astype(np.float32)
    except Exception as err:  # pydicom raises many types for bad or compressed pixel data
        raise VolumeReadError(f"DICOM file '{path}': cannot decode the pixel data ({type(err).__name__}: {err}); "
                              "the file is truncated or uses a compression without a decoder installed") from err
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    return pixels * np.float32(slope) + np.float32(intercept)
