"""MIMIC-CXR-JPG 2.0.0: chexpert, metadata and split csv files (+ optional MIMIC-IV patients.csv) → manifest rows.

Labels come per study (mimic-cxr-2.0.0-chexpert.csv, CheXpert labeler) and
apply to every image of the study; -1 kept, blank → the card's blank policy.
View from ``ViewPosition`` through the card's ``view_mapping`` (oblique,
lordotic and decubitus codes → empty). Official split (train / validate / test) kept,
validate → val. Age = anchor_age + (study year - anchor_year) when
patients.csv (MIMIC-IV ``hosp/patients.csv``) is given; sex from its gender.
With the free-text reports (mimic-cxr-reports.zip) unpacked under root, each
row's ``report`` holds its study's FINDINGS + IMPRESSION. Every csv may be gzipped.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from raddino_lib.data.builders.common import (
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
    require_file,
    resolve_images,
    table_rows,
    view_mapping,
)

SPLIT_NAMES = {"train": "train", "validate": "val", "val": "val", "test": "test"}


def build(root: Path, card: dict[str, Any], options: BuildOptions) -> pd.DataFrame:
    """Manifest rows for the images in the metadata file (paths files/pXX/pSUBJECT/sSTUDY/DICOM_ID.jpg)."""
    mapping, blank, views = card["label_mapping"], blank_value(card), view_mapping(card)
    meta_path = require_file(root, "mimic-cxr-2.0.0-metadata.csv")
    labels_path = require_file(root, "mimic-cxr-2.0.0-chexpert.csv")
    split_path = require_file(root, "mimic-cxr-2.0.0-split.csv")
    meta, labels, splits = read_table(meta_path), read_table(labels_path), read_table(split_path)
    require_columns(meta, ("dicom_id", "subject_id", "study_id", "ViewPosition", "StudyDate"), meta_path)
    require_columns(labels, ("subject_id", "study_id", *mapping), labels_path)
    require_columns(splits, ("dicom_id", "split"), split_path)
    study_labels = {row["study_id"]: chexpert_labels(row, mapping, blank, f"{labels_path} row {i + 1}")
                    for i, row in enumerate(table_rows(labels))}
    split_of = {d: SPLIT_NAMES.get(s.strip().lower(), "") for d, s in zip(splits["dicom_id"], splits["split"],
                                                                          strict=True)}
    patients = _patients(root)
    records, reports = [], {}
    for row in table_rows(meta):
        subject, study = row["subject_id"], row["study_id"]
        findings, original = study_labels.get(study, ({}, ""))
        sex, anchor_age, anchor_year = patients.get(subject, ("", math.nan, math.nan))
        if study not in reports:
            reports[study] = read_report(root, subject, study)
        records.append(Record(
            report=reports[study],
            image_id=row["dicom_id"], path=f"files/p{subject[:2]}/p{subject}/s{study}/{row['dicom_id']}.jpg",
            patient_id=subject, study_id=study, age=mimic_age(anchor_age, anchor_year, row["StudyDate"]), sex=sex,
            view=map_view(row["ViewPosition"], views), labels=dict(findings), original_labels=original,
            split=split_of.get(row["dicom_id"], "")))
    records = resolve_images(records, root, card["name"], options)
    return records_to_frame(records, card["name"], card["site"], options)


def mimic_age(anchor_age: float, anchor_year: float, study_date: str) -> float:
    """anchor_age + (study year - anchor_year): MIMIC-IV shifts a patient's dates together, so the difference holds.

    An anchor_age of 91 (MIMIC-IV's code for "over 89") gives a lower bound, kept as is.
    """
    year = study_date.strip()[:4]
    if not year.isdigit() or math.isnan(anchor_age) or math.isnan(anchor_year):
        return math.nan
    return normalize_age(anchor_age + int(year) - anchor_year)


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
    path = find_file(root, "patients.csv", "hosp/patients.csv")
    if path is None:
        return {}
    df = read_table(path)
    require_columns(df, ("subject_id", "gender", "anchor_age", "anchor_year"), path)
    return {r["subject_id"]: (normalize_sex(r["gender"]), _num(r["anchor_age"]), _num(r["anchor_year"]))
            for r in table_rows(df)}


def _num(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan
