"""MIMIC-CXR-JPG 2.0.0: chexpert, metadata and split csv files (+ optional MIMIC-IV patients.csv) → manifest rows.

Labels come per study (mimic-cxr-2.0.0-chexpert.csv, CheXpert labeler) and
apply to every image of the study; -1 kept, blank → the card's blank policy.
View from ``ViewPosition``. Official split (train / validate / test) kept,
validate → val. Age = anchor_age + (study year - anchor_year) when
patients.csv (MIMIC-IV ``hosp/patients.csv``) is given; sex from its gender.
With the free-text reports (mimic-cxr-reports.zip) unpacked under root, each
row's ``report`` holds its study's FINDINGS + IMPRESSION.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from raddino_lib.data.builders.common import (
    Record,
    blank_value,
    chexpert_labels,
    normalize_age,
    normalize_sex,
    normalize_view,
    read_table,
    records_to_frame,
    require_columns,
    require_file,
    resolve_images,
)

SPLIT_NAMES = {"train": "train", "validate": "val", "val": "val", "test": "test"}


def build(root: Path, card: dict[str, Any], seed: int = 0, drop_missing: bool = False, **_: Any) -> pd.DataFrame:
    """Manifest rows for the images in the metadata file (paths files/pXX/pSUBJECT/sSTUDY/DICOM_ID.jpg)."""
    mapping, blank = card["label_mapping"], blank_value(card)
    meta_path = require_file(root, "mimic-cxr-2.0.0-metadata.csv")
    labels_path = require_file(root, "mimic-cxr-2.0.0-chexpert.csv")
    split_path = require_file(root, "mimic-cxr-2.0.0-split.csv")
    meta, labels, splits = read_table(meta_path), read_table(labels_path), read_table(split_path)
    require_columns(meta, ("dicom_id", "subject_id", "study_id", "ViewPosition", "StudyDate"), meta_path)
    require_columns(labels, ("subject_id", "study_id", *mapping), labels_path)
    require_columns(splits, ("dicom_id", "split"), split_path)
    study_labels = {row["study_id"]: chexpert_labels(row, mapping, blank, f"{labels_path} row {i + 1}")
                    for i, row in enumerate(labels.to_dict("records"))}
    split_of = {d: SPLIT_NAMES.get(s.strip().lower(), "") for d, s in zip(splits["dicom_id"], splits["split"],
                                                                          strict=True)}
    patients = _patients(root)
    records, reports = [], {}
    for row in meta.to_dict("records"):
        subject, study = row["subject_id"], row["study_id"]
        findings, original = study_labels.get(study, ({}, ""))
        sex, anchor_age, anchor_year = patients.get(subject, ("", math.nan, math.nan))
        age = normalize_age(anchor_age + int(row["StudyDate"][:4]) - anchor_year) if row["StudyDate"][:4].isdigit() \
            and not math.isnan(anchor_age) else math.nan
        if study not in reports:
            reports[study] = read_report(root, subject, study)
        records.append(Record(
            report=reports[study],
            image_id=row["dicom_id"], path=f"files/p{subject[:2]}/p{subject}/s{study}/{row['dicom_id']}.jpg",
            patient_id=subject, study_id=study, age=age, sex=sex, view=normalize_view(row["ViewPosition"]),
            labels=dict(findings), original_labels=original, split=split_of.get(row["dicom_id"], "")))
    records = resolve_images(records, root, card["name"], drop_missing)
    return records_to_frame(records, card["name"], card["site"], seed=seed)


def read_report(root: Path, subject: str, study: str) -> str:
    """FINDINGS + IMPRESSION of files/pXX/pSUBJECT/sSTUDY.txt (mimic-cxr-reports.zip, under root or root/reports).

    Text from "FINDINGS:" to the end (or from "IMPRESSION:" when there is no
    FINDINGS section), whitespace collapsed; "" when the report is absent.
    """
    rel = Path("files", f"p{subject[:2]}", f"p{subject}", f"s{study}.txt")
    for path in (root / rel, root / "reports" / rel):
        if path.is_file():
            text = path.read_text(errors="replace")
            upper = text.upper()
            start = next((upper.find(h) for h in ("FINDINGS:", "IMPRESSION:") if h in upper), 0)
            return " ".join(text[start:].split())
    return ""


def _patients(root: Path) -> dict[str, tuple[str, float, float]]:
    """subject_id → (sex, anchor_age, anchor_year) from an optional patients.csv under root."""
    for name in ("patients.csv", "patients.csv.gz", "hosp/patients.csv", "hosp/patients.csv.gz"):
        path = root / name
        if path.is_file():
            df = read_table(path)
            require_columns(df, ("subject_id", "gender", "anchor_age", "anchor_year"), path)
            return {r["subject_id"]: (normalize_sex(r["gender"]), _num(r["anchor_age"]), _num(r["anchor_year"]))
                    for r in df.to_dict("records")}
    return {}


def _num(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan
