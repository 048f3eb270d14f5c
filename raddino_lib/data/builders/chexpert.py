"""CheXpert: train.csv / valid.csv → manifest rows.

``Path`` starts with the release folder ("CheXpert-v1.0-small/train/patient00001/
study1/view1_frontal.jpg"); the builder accepts a root that is that folder or
its parent. Labels: 1 / 0 / -1 kept as written (-1 = uncertain, see
``label_matrix``); blank = not mentioned → the card's blank policy. Official
valid.csv (radiologist-labelled) → test; train.csv → train / val by patient.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from raddino_lib.data.builders.common import (
    BuildError,
    Record,
    blank_value,
    chexpert_labels,
    normalize_age,
    normalize_sex,
    normalize_view,
    read_table,
    records_to_frame,
    require_columns,
    resolve_images,
)

COLUMNS = ("Path", "Sex", "Age", "Frontal/Lateral", "AP/PA")


def build(root: Path, card: dict[str, Any], seed: int = 0, drop_missing: bool = False, **_: Any) -> pd.DataFrame:
    """Manifest rows for train.csv and valid.csv under ``root`` (paths relative to root)."""
    mapping, blank = card["label_mapping"], blank_value(card)
    records = []
    for name, split in (("train.csv", "trainval"), ("valid.csv", "test")):
        path = root / name
        if not path.is_file():
            continue
        df = read_table(path)
        require_columns(df, COLUMNS + tuple(mapping), path)
        for i, row in enumerate(df.to_dict("records")):
            labels, original = chexpert_labels(row, mapping, blank, f"{path} row {i + 1}")
            rel = _relative(root, row["Path"])
            parts = Path(rel).parts
            patient = next((p for p in parts if p.startswith("patient")), parts[0])
            study = next((p for p in parts if p.startswith("study")), "")
            view = "LATERAL" if row["Frontal/Lateral"].strip().lower() == "lateral" else normalize_view(row["AP/PA"])
            records.append(Record(
                image_id=_release_relative(row["Path"]), path=rel, patient_id=patient, study_id=f"{patient}/{study}",
                age=normalize_age(row["Age"]) if row["Age"].strip() not in ("0", "") else float("nan"),
                sex=normalize_sex(row["Sex"]), view=view, split=split,
                labels=labels, original_labels=original))
    if not records:
        raise BuildError(f"neither train.csv nor valid.csv found under {root} (check --root: the folder holding "
                         "the release's csv files)")
    records = resolve_images(records, root, card["name"], drop_missing)
    return records_to_frame(records, card["name"], card["site"], seed=seed)


def _release_relative(path: str) -> str:
    """Image id independent of the chosen root: the path inside the release ('train/patient00001/...')."""
    parts = Path(path.strip()).parts
    return Path(*parts[1:]).as_posix() if len(parts) > 1 and parts[0].lower().startswith("chexpert") else path


def _relative(root: Path, path: str) -> str:
    """Release-relative 'CheXpert-v1.0-small/train/...' → relative to root (drop the release folder if root is it)."""
    parts = Path(path.strip()).parts
    if len(parts) > 1 and parts[0].lower().startswith("chexpert") and not (root / parts[0]).is_dir():
        return Path(*parts[1:]).as_posix()
    return Path(*parts).as_posix()
