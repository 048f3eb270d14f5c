"""What DICOM-only datasets (RSNA, SIIM-ACR, VinDr-CXR) read from their image headers, and their masks.

Their metadata files carry labels only; age, sex, view (and for SIIM the
patient id) are in each image's DICOM header. In a metadata-only build
(``BuildOptions.check_files`` False) no header is read and those fields stay
empty.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from raddino_lib.data.builders.common import BuildOptions, Record, map_view, normalize_age, normalize_sex


def dicom_header(path: Path) -> dict[str, str | float]:
    """Age / sex / raw view code / patient id / size from a DICOM header (pixels not read); {} if not DICOM."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with warnings.catch_warnings():  # e.g. RSNA's PatientAge "51" is not a valid AS value; parsed below
            warnings.simplefilter("ignore", UserWarning)
            ds = pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, EOFError):
        return {}
    return {"age": normalize_age(ds.get("PatientAge", "")), "sex": normalize_sex(ds.get("PatientSex", "")),
            "view_code": str(ds.get("ViewPosition", "")).strip(), "patient_id": str(ds.get("PatientID", "")).strip(),
            "rows": int(ds.get("Rows", 0) or 0), "columns": int(ds.get("Columns", 0) or 0)}


MaskOf = Callable[[str, tuple[int, int]], "np.ndarray | None"]  # (image_id, (rows, columns)) -> (H, W) bool or None


def apply_dicom_headers(records: list[Record], root: Path, options: BuildOptions, views: Mapping[str, str],
                        mask_column: str = "", mask_of: MaskOf | None = None,
                        patient_id_from_header: bool = False) -> None:
    """Fill each record's age / sex / view from its DICOM header (in place); with ``options.masks_dir`` write masks.

    ``views``: the card's view mapping (``common.view_mapping``) applied to the
    header's ViewPosition. ``mask_of(image_id, (rows, columns))`` draws a
    record's boolean mask at the header's image size (1024 where the header
    has none), or returns None when the image has no region (no file, the
    mask column stays empty). Masks go to ``masks_dir/<image_id>.png`` under
    ``mask_column``. ``patient_id_from_header``: the header's PatientID (else
    the image id) becomes the record's patient id. Metadata-only builds read
    nothing (the fields stay as the builder set them).
    """
    if not options.check_files:
        return
    for r in records:
        header = dicom_header(root / r.path)
        r.age, r.sex = header.get("age", math.nan), header.get("sex", "")
        r.view = map_view(header.get("view_code", ""), views)
        if patient_id_from_header:
            r.patient_id = str(header.get("patient_id") or r.image_id)
        if options.masks_dir is not None and mask_of is not None:
            mask = mask_of(r.image_id, (header.get("rows") or 1024, header.get("columns") or 1024))
            if mask is not None:
                r.masks[mask_column] = write_mask(mask, Path(options.masks_dir) / f"{r.image_id}.png")


def write_mask(mask: np.ndarray, path: Path) -> str:
    """Save a boolean (H, W) mask as an 8-bit PNG of 0 / 255; returns the absolute path."""
    from PIL import Image

    from raddino_lib.atomic import atomic_path

    with atomic_path(path) as tmp:
        Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(tmp, format="PNG")
    return str(Path(path).resolve())
