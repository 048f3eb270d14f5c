"""BRAX (Brazilian labeled chest X-ray dataset): master_spreadsheet_update.csv → manifest rows.

CheXpert-style label columns (CheXpert labeler on Portuguese reports
translated), 1 / 0 / -1 / blank; -1 kept, blank → the card's blank policy.
Column names vary between releases, so the first present of each
alternative is used: image path ``PngPath`` / ``Path`` / ``DicomPath``, sex
``PatientSex`` / ``Gender``, age ``PatientAge`` / ``Age`` ("85 or more" →
85), study ``AccessionNumber`` / ``StudyID``, view ``ViewPosition`` /
``View`` through the card's ``view_mapping``. No official split: by patient
hash. The spreadsheet may be gzipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from raddino_lib.data.builders.common import (
    BuildError,
    BuildOptions,
    Record,
    blank_value,
    chexpert_labels,
    map_view,
    normalize_age,
    normalize_sex,
    read_table,
    records_to_frame,
    require_columns,
    require_file,
    resolve_images,
    table_rows,
    view_mapping,
)

ALTERNATIVES = {
    "path": ("PngPath", "Path", "DicomPath"),
    "sex": ("PatientSex", "Gender"),
    "age": ("PatientAge", "Age"),
    "study": ("AccessionNumber", "StudyID"),
    "view": ("ViewPosition", "View"),
}


def build(root: Path, card: dict[str, Any], options: BuildOptions) -> pd.DataFrame:
    """Manifest rows for the spreadsheet under ``root`` (image paths relative to root)."""
    path = require_file(root, "master_spreadsheet_update.csv", "master_spreadsheet.csv")
    df = read_table(path)
    mapping, blank, views = card["label_mapping"], blank_value(card), view_mapping(card)
    require_columns(df, ("PatientID", *mapping), path)
    col = {key: _first(df, names, path, required=key == "path") for key, names in ALTERNATIVES.items()}
    records = []
    for i, row in enumerate(table_rows(df)):
        labels, original = chexpert_labels(row, mapping, blank, f"{path} row {i + 1}")
        rel = row[col["path"]].strip().lstrip("/")
        records.append(Record(
            image_id=rel, path=rel, patient_id=row["PatientID"], study_id=row.get(col["study"], ""),
            age=normalize_age(row.get(col["age"], "")), sex=normalize_sex(row.get(col["sex"], "")),
            view=map_view(row.get(col["view"], ""), views), labels=labels, original_labels=original))
    records = resolve_images(records, root, card["name"], options)
    return records_to_frame(records, card["name"], card["site"], options)


def _first(df: pd.DataFrame, names: tuple[str, ...], path: Path, required: bool) -> str:
    for name in names:
        if name in df.columns:
            return name
    if required:
        raise BuildError(f"{path}: none of the columns {list(names)} found (found {list(df.columns)})")
    return ""
