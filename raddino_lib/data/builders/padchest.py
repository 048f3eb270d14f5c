"""PadChest: PADCHEST_chest_x_ray_images_labels_160K*.csv → manifest rows.

``Labels`` is a Python-list string ("['pleural effusion', 'cardiomegaly']",
"['normal']"). The report-derived labels are exhaustive, so every common
finding the card maps is 0 unless one of its PadChest terms is listed. Images
(16-bit PNG) are found by ``ImageID`` anywhere under root (the release
spreads them over numbered folders, ``ImageDir``; a metadata-only build
writes ``<ImageDir>/<ImageID>``). Age = study date - birth year; view from
``Projection`` through the card's ``view_mapping``. No official split: by
patient hash. The label csv may be gzipped.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pandas as pd

from raddino_lib.data.builders.common import (
    BuildError,
    BuildOptions,
    Record,
    age_from_dates,
    map_view,
    mapping_targets,
    normalize_sex,
    read_table,
    records_to_frame,
    require_columns,
    resolve_images,
    table_rows,
    view_mapping,
)

COLUMNS = ("ImageID", "PatientID", "StudyID", "PatientSex_DICOM", "PatientBirth", "StudyDate_DICOM", "Projection",
           "Labels")


def build(root: Path, card: dict[str, Any], options: BuildOptions) -> pd.DataFrame:
    """Manifest rows for the images of the label csv under ``root``."""
    path = _labels_file(root)
    df = read_table(path)
    require_columns(df, COLUMNS, path)
    views = view_mapping(card)
    mapping = {k.lower(): v for k, v in card["label_mapping"].items()}
    targets = mapping_targets(mapping)
    records = []
    for i, row in enumerate(table_rows(df)):
        terms = parse_labels(row["Labels"], f"{path} row {i + 1}, column 'Labels'")
        labels = {t: 0.0 for t in targets} if terms is not None else {}
        labels.update({mapping[t]: 1.0 for t in terms or () if mapping.get(t)})
        folder = row.get("ImageDir", "").strip()
        records.append(Record(
            image_id=row["ImageID"], path=f"{folder}/{row['ImageID']}" if folder else row["ImageID"],
            patient_id=row["PatientID"], study_id=row["StudyID"],
            age=age_from_dates(row["PatientBirth"], row["StudyDate_DICOM"]), sex=normalize_sex(row["PatientSex_DICOM"]),
            view=map_view(row["Projection"], views), labels=labels, original_labels=row["Labels"].strip()))
    records = resolve_images(records, root, card["name"], options, by_name=True)
    return records_to_frame(records, card["name"], card["site"], options)


def parse_labels(text: str, where: str) -> list[str] | None:
    """"['normal', ' pleural effusion']" → ['normal', 'pleural effusion']; empty / excluded → None (unlabelled)."""
    text = text.strip()
    if text in ("", "nan", "None"):
        return None
    try:
        values = ast.literal_eval(text)
    except (ValueError, SyntaxError) as err:
        raise BuildError(f"{where}: '{text[:60]}' is not a list of label strings") from err
    if not isinstance(values, list | tuple):
        raise BuildError(f"{where}: '{text[:60]}' is not a list of label strings")
    terms = [str(v).strip().lower() for v in values if str(v).strip()]
    return None if not terms or EXCLUDED & set(terms) else terms


EXCLUDED = {"exclude", "suboptimal study"}  # images the annotators set aside: no labels (all unknown)


def _labels_file(root: Path) -> Path:
    found = sorted(p for suffix in (".csv", ".csv.gz")
                   for p in root.glob(f"PADCHEST_chest_x_ray_images_labels_160K*{suffix}"))
    if not found:
        raise BuildError(f"no PADCHEST_chest_x_ray_images_labels_160K*.csv (or .csv.gz) under {root} (check --root "
                         "and the card's 'metadata_files')")
    return found[0]
