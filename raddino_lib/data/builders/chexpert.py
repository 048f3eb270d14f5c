"""CheXpert: train.csv / valid.csv (plain or .gz) → manifest rows.

``Path`` starts with the release folder ("CheXpert-v1.0-small/train/patient00001/
study1/view1_frontal.jpg"); the builder accepts a root that is that folder or
its parent. Labels: 1 / 0 / -1 kept as written (-1 = uncertain, see
``label_matrix``); blank = not mentioned → the card's blank policy. Official
valid.csv (radiologist-labelled) → test; train.csv → train / val by patient.

View: LATERAL when ``Frontal/Lateral`` is Lateral; else ``AP/PA`` through the
card's ``view_mapping`` (AP, PA). A frontal row whose AP/PA says LL or RL
(train.csv has a few, e.g. train/patient07958/study5/view2_frontal.jpg) is a
frontal image of unknown projection: empty view, never LATERAL.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from raddino_lib.data.builders.common import (
    BuildError,
    BuildOptions,
    Record,
    blank_value,
    chexpert_labels,
    find_file,
    map_view,
    normalize_age,
    normalize_sex,
    read_table,
    records_to_frame,
    require_columns,
    resolve_images,
    table_rows,
    view_mapping,
)

COLUMNS = ("Path", "Sex", "Age", "Frontal/Lateral", "AP/PA")


def build(root: Path, card: dict[str, Any], options: BuildOptions) -> pd.DataFrame:
    """Manifest rows for train.csv and valid.csv under ``root`` (paths relative to root)."""
    mapping, blank, views = card["label_mapping"], blank_value(card), view_mapping(card)
    records = []
    for name, split in (("train.csv", "trainval"), ("valid.csv", "test")):
        path = find_file(root, name)
        if path is None:
            continue
        df = read_table(path)
        require_columns(df, COLUMNS + tuple(mapping), path)
        for i, row in enumerate(table_rows(df)):
            labels, original = chexpert_labels(row, mapping, blank, f"{path} row {i + 1}")
            rel = _relative(root, row["Path"])
            parts = Path(rel).parts
            patient = next((p for p in parts if p.startswith("patient")), parts[0])
            study = next((p for p in parts if p.startswith("study")), "")
            records.append(Record(
                image_id=_release_relative(row["Path"]), path=rel, patient_id=patient, study_id=f"{patient}/{study}",
                age=chexpert_age(row["Age"]), sex=normalize_sex(row["Sex"]),
                view=chexpert_view(row["Frontal/Lateral"], row["AP/PA"], views), split=split,
                labels=labels, original_labels=original))
    if not records:
        raise BuildError(f"neither train.csv nor valid.csv (or .gz) found under {root} (check --root: the folder "
                         "holding the release's csv files)")
    records = resolve_images(records, root, card["name"], options)
    return records_to_frame(records, card["name"], card["site"], options)


def chexpert_view(frontal_lateral: str, ap_pa: str, views: dict[str, str]) -> str:
    """LATERAL for a lateral image; a frontal image's AP/PA through the card's mapping (LL / RL → '')."""
    if frontal_lateral.strip().lower() == "lateral":
        return "LATERAL"
    view = map_view(ap_pa, views)
    return view if view != "LATERAL" else ""  # a frontal image is never lateral, whatever AP/PA says


def chexpert_age(value: str) -> float:
    """Age in years; 0 (the release's "unknown") → NaN."""
    age = normalize_age(value)
    return math.nan if age == 0 else age


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
