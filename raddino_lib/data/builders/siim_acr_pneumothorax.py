"""SIIM-ACR Pneumothorax Segmentation: train-rle.csv (ImageId, EncodedPixels) → manifest rows.

``EncodedPixels`` is "-1" for images without pneumothorax, else the
challenge's run-length code; several rows per image mean several regions.
Label: Pneumothorax 1 / 0; other findings unknown. Images (DICOM, under
dicom-images-train/<study>/<series>/<ImageId>.dcm) are found by name; age,
sex, view and patient id come from their headers, so this dataset cannot be
built from the metadata alone (the patient id, which the split needs, is
only in the headers). With ``options.masks_dir`` the runs become
``mask_Pneumothorax`` PNGs. No official split: by patient hash. train-rle.csv
may be gzipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from raddino_lib.data.builders.common import (
    BuildError,
    BuildOptions,
    Record,
    read_table,
    records_to_frame,
    require_columns,
    require_file,
    resolve_images,
    table_rows,
    view_mapping,
)
from raddino_lib.data.builders.dicom import apply_dicom_headers

MASK = "mask_Pneumothorax"


def build(root: Path, card: dict[str, Any], options: BuildOptions) -> pd.DataFrame:
    """Manifest rows for the images of train-rle.csv; RLE masks into ``options.masks_dir`` when given."""
    if not options.check_files:
        raise BuildError(f"{card['name']}: patient ids, age, sex and view are only in the DICOM headers, so a "
                         "metadata-only build would split by image instead of by patient; build with the images "
                         "(drop --no-files)")
    path = require_file(root, "train-rle.csv")
    df = read_table(path)
    require_columns(df, ("ImageId", "EncodedPixels"), path)
    runs: dict[str, list[str]] = {}
    for i, row in enumerate(table_rows(df)):
        code = row["EncodedPixels"].strip()
        if code != "-1" and not all(t.isdigit() for t in code.split()):
            raise BuildError(f"{path} row {i + 1}, column 'EncodedPixels': not '-1' or a run-length code")
        runs.setdefault(row["ImageId"].strip(), [])
        if code != "-1":
            runs[row["ImageId"].strip()].append(code)
    records = [Record(image_id=image_id, path=f"{image_id}.dcm", patient_id=image_id,
                      labels={"Pneumothorax": 1.0 if codes else 0.0},
                      original_labels=f"Pneumothorax={int(bool(codes))}") for image_id, codes in sorted(runs.items())]
    records = resolve_images(records, root, card["name"], options, by_name=True)

    def mask_of(image_id: str, shape: tuple[int, int]) -> np.ndarray | None:
        codes = runs[image_id]
        return np.logical_or.reduce([rle_decode(code, shape) for code in codes]) if codes else None

    apply_dicom_headers(records, root, options, view_mapping(card), MASK, mask_of, patient_id_from_header=True)
    return records_to_frame(records, card["name"], card["site"], options)


def rle_decode(code: str, shape: tuple[int, int]) -> np.ndarray:
    """SIIM run-length code → boolean (H, W) mask.

    Pairs (gap, length): each run starts ``gap`` pixels after the end of the
    previous one, counting in column-major order (the challenge's
    ``rle2mask(...).T``).
    """
    h, w = shape
    values = [int(t) for t in code.split()]
    flat = np.zeros(h * w, dtype=bool)
    position = 0
    for gap, length in zip(values[0::2], values[1::2], strict=True):
        position += gap
        flat[position:position + length] = True
        position += length
    return flat.reshape(w, h).T  # column-major → (H, W)


def rle_encode(mask: np.ndarray) -> str:
    """Inverse of ``rle_decode`` (for tests and for writing challenge-format files)."""
    flat = np.asarray(mask, dtype=bool).T.reshape(-1)
    padded = np.concatenate([[False], flat, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    starts, ends = edges[0::2], edges[1::2]
    out, previous_end = [], 0
    for start, end in zip(starts, ends, strict=True):
        out += [start - previous_end, end - start]
        previous_end = end
    return " ".join(str(int(v)) for v in out) if out else "-1"
