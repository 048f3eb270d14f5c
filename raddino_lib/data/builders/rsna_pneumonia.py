"""RSNA Pneumonia Detection Challenge: stage_2_train_labels.csv + stage_2_detailed_class_info.csv → rows.

One row per box (``x, y, width, height``; empty for negatives) with
``Target`` 1 when the image shows lung opacity suspicious for pneumonia.
Labels: Pneumonia = Target; No Finding = 1 for class "Normal", else 0; other
findings unknown. Age / sex / view from the DICOM headers (empty in a
metadata-only build). With ``options.masks_dir`` the boxes become
``mask_Pneumonia`` PNGs (filled rectangles). No official split of the
labelled images: by patient hash (one image per patient). Both csv files may
be gzipped.
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
    find_file,
    read_table,
    records_to_frame,
    require_columns,
    require_file,
    resolve_images,
    table_rows,
    view_mapping,
)
from raddino_lib.data.builders.dicom import apply_dicom_headers

MASK = "mask_Pneumonia"


def build(root: Path, card: dict[str, Any], options: BuildOptions) -> pd.DataFrame:
    """Manifest rows for stage_2_train_images/<patientId>.dcm; box masks into ``options.masks_dir`` when given."""
    labels_path = require_file(root, "stage_2_train_labels.csv")
    labels = read_table(labels_path)
    require_columns(labels, ("patientId", "x", "y", "width", "height", "Target"), labels_path)
    classes = _classes(root)
    boxes: dict[str, list[tuple[float, float, float, float]]] = {}
    target: dict[str, float] = {}
    for i, row in enumerate(table_rows(labels)):
        pid = row["patientId"]
        if row["Target"].strip() not in ("0", "1"):
            raise BuildError(f"{labels_path} row {i + 1}, column 'Target': '{row['Target']}' is not 0 or 1")
        target[pid] = max(target.get(pid, 0.0), float(row["Target"]))
        if row["Target"].strip() == "1" and row["x"].strip():
            boxes.setdefault(pid, []).append(tuple(float(row[k]) for k in ("x", "y", "width", "height")))
    records = []
    for pid in sorted(target):
        labels_row = {"Pneumonia": target[pid]}
        if pid in classes:
            labels_row["No Finding"] = 1.0 if classes[pid] == "Normal" else 0.0
        records.append(Record(image_id=pid, path=f"stage_2_train_images/{pid}.dcm", patient_id=pid,
                              labels=labels_row, original_labels=classes.get(pid, f"Target={int(target[pid])}")))
    records = resolve_images(records, root, card["name"], options, by_name=True)
    apply_dicom_headers(records, root, options, view_mapping(card), MASK,
                        lambda image_id, shape: boxes_to_mask(boxes[image_id], shape) if image_id in boxes else None)
    return records_to_frame(records, card["name"], card["site"], options)


def boxes_to_mask(boxes: list[tuple[float, float, float, float]], shape: tuple[int, int]) -> np.ndarray:
    """(x, y, width, height) boxes in pixels → boolean (H, W) mask, union of the rectangles."""
    mask = np.zeros(shape, dtype=bool)
    for x, y, w, h in boxes:
        x0, y0 = max(0, int(round(x))), max(0, int(round(y)))
        mask[y0:int(round(y + h)), x0:int(round(x + w))] = True
    return mask


def _classes(root: Path) -> dict[str, str]:
    path = find_file(root, "stage_2_detailed_class_info.csv")
    if path is None:
        return {}
    df = read_table(path)
    require_columns(df, ("patientId", "class"), path)
    return dict(zip(df["patientId"], df["class"], strict=True))
