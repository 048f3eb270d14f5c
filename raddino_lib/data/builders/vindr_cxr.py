"""VinDr-CXR: image_labels_train.csv (3 radiologists per image) / image_labels_test.csv (consensus) → rows.

Training images carry one row per radiologist (``rad_id``); the card's
``options.vote`` combines them: "majority" (positive when more than half of
the readers say so, the default) or "any" (positive when any reader does).
Images are DICOM (train/<image_id>.dicom, test/<image_id>.dicom); age, sex
and view come from their headers (empty in a metadata-only build; the view
through the card's ``view_mapping``). Both csv files may be gzipped. The
release is de-identified without
patient ids, so each image is its own patient (a known leakage risk, stated
in the card). Official test → test; train → train / val.
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
    map_labels,
    read_table,
    records_to_frame,
    require_columns,
    resolve_images,
    view_mapping,
)
from raddino_lib.data.builders.dicom import apply_dicom_headers

VOTES = ("majority", "any")


def build(root: Path, card: dict[str, Any], options: BuildOptions) -> pd.DataFrame:
    """Manifest rows for the train and test label files under ``root``."""
    vote = card["options"].get("vote", "majority")
    if vote not in VOTES:
        raise BuildError(f"card '{card['name']}': options.vote '{vote}' is not one of {VOTES}")
    mapping = card["label_mapping"]
    records = []
    for name, folder, split in (("image_labels_train.csv", "train", "trainval"),
                                ("image_labels_test.csv", "test", "test")):
        path = find_file(root, name)
        if path is None:
            continue
        df = read_table(path)
        require_columns(df, ("image_id", *(k for k, v in mapping.items() if v)), path)
        names = [k for k in mapping if k in df.columns]  # unmapped classes: read when present
        for image_id, source in _voted(df, names, vote, path).items():
            records.append(Record(image_id=image_id, path=_image_path(root, folder, image_id), patient_id=image_id,
                                  labels=map_labels(source, mapping), split=split,
                                  original_labels=";".join(k for k, v in source.items() if v == 1)))
    if not records:
        raise BuildError(f"no image_labels_train.csv / image_labels_test.csv (or .gz) under {root} (check --root)")
    records = resolve_images(records, root, card["name"], options)
    apply_dicom_headers(records, root, options, view_mapping(card))
    return records_to_frame(records, card["name"], card["site"], options)


def _voted(df: pd.DataFrame, names: list[str], vote: str, path: Path) -> dict[str, dict[str, float]]:
    """image_id → {label: 1.0 / 0.0} combining the readers' rows."""
    try:
        values = df[names].replace("", "0").astype(float)
    except ValueError as err:
        raise BuildError(f"{path}: label columns must hold 0 / 1 ({err})") from err
    values["image_id"] = df["image_id"]
    grouped = values.groupby("image_id", sort=True)[names].mean()  # fraction of readers saying 1
    hits = grouped > 0.5 if vote == "majority" else grouped > 0
    return {image_id: dict(zip(names, np.where(row, 1.0, 0.0).tolist(), strict=True))
            for image_id, row in zip(hits.index, hits.to_numpy(), strict=True)}


def _image_path(root: Path, folder: str, image_id: str) -> str:
    for suffix in (".dicom", ".dcm", ".png", ".jpg"):
        if (root / folder / f"{image_id}{suffix}").is_file():
            return f"{folder}/{image_id}{suffix}"
    return f"{folder}/{image_id}.dicom"
