"""CT-RATE: labels, reports and metadata CSV files + NIfTI volumes → a volume manifest (one row per volume).

Volume names carry the hierarchy: ``train_123_b_2.nii.gz`` is reconstruction 2 of scan ``b`` of patient
``train_123`` (patients of the train and valid sets are numbered separately). Rows: image_id = the volume name
without ``.nii.gz``, patient_id = ``train_123``, study_id = ``train_123_b`` (one report and one label row per
volume, the same for the reconstructions of a scan). Labels: the 18 columns of the multi-abnormality labels
CSV (0/1, predicted from the reports by CT-RATE's classifier). Report: ``FINDINGS: <Findings_EN> IMPRESSION:
<Impressions_EN>``. Metadata (optional): age, sex, spacing (``ZSpacing``, ``XYSpacing``), shape
(``NumberofSlices``, ``Rows``, ``Columns``), kernel and manufacturer (→ ``site``); without it, spacing and shape
come from each volume's NIfTI header. Splits: CT-RATE's validation set is the test split (as in CT-CLIP and
COLIPRI); its training patients are split into train / val by patient hash.
"""

from __future__ import annotations

import ast
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from raddino_lib.data.builders.common import (
    BuildError,
    BuildOptions,
    Record,
    normalize_age,
    normalize_sex,
    read_table,
    records_to_frame,
    require_columns,
    resolve_images,
)
from raddino_lib.data.schema import CT_FINDINGS
from raddino_lib.data.volume_manifest import format_triplet

NAME = re.compile(r"^(train|valid)_(\d+)_([a-z]+)_(\d+)\.nii\.gz$")
# split → (volume folder, labels file prefix, reports and metadata file prefix)
SPLIT_FILES = {"train": ("train", "train", "train"), "valid": ("valid", "valid", "validation")}


def build(root: Path, card: dict[str, Any], options: BuildOptions) -> pd.DataFrame:
    base = root / "dataset" if (root / "dataset").is_dir() else root
    prefix = "dataset/" if base != root else ""
    mapping = card["label_mapping"]
    records: list[Record] = []
    extra: dict[str, dict[str, str]] = {}  # image_id → modality, spacing, shape, kernel, site
    found = False
    for split, (folder, label_prefix, text_prefix) in SPLIT_FILES.items():
        labels_path = base / "multi_abnormality_labels" / f"{label_prefix}_predicted_labels.csv"
        if not labels_path.is_file():
            continue
        found = True
        labels = read_table(labels_path)
        require_columns(labels, ("VolumeName", *mapping), labels_path)
        reports = _optional(base / "radiology_text_reports" / f"{text_prefix}_reports.csv",
                            ("VolumeName", "Findings_EN", "Impressions_EN"))
        meta = _optional(base / "metadata" / f"{text_prefix}_metadata.csv", ("VolumeName",))
        for i, row in enumerate(labels.to_dict("records")):
            where = f"{labels_path} row {i + 1}"
            name = row["VolumeName"].strip()
            match = NAME.match(name)
            if not match or match.group(1) != split:
                raise BuildError(f"{where}, column 'VolumeName': '{name}' is not a CT-RATE volume name of the "
                                 f"{split} set (expected e.g. '{split}_12_a_1.nii.gz')")
            _, pid, scan, _ = match.groups()
            patient, study = f"{split}_{pid}", f"{split}_{pid}_{scan}"
            m = meta.get(name, {})
            records.append(Record(
                image_id=name[: -len(".nii.gz")], path=f"{prefix}{folder}/{patient}/{study}/{name}",
                patient_id=patient, study_id=study, age=normalize_age(m.get("PatientAge", "")),
                sex=normalize_sex(m.get("PatientSex", "")), labels=_labels(row, mapping, where),
                split="test" if split == "valid" else "trainval", report=_report(reports.get(name, {}))))
            extra[name[: -len(".nii.gz")]] = _volume_columns(m, where)
    if not found:
        raise BuildError(f"no multi_abnormality_labels/{{train,valid}}_predicted_labels.csv under {base} (check --root "
                         "against the card's root_layout)")
    records = resolve_images(records, root, card["name"], options)
    df = records_to_frame(records, card["name"], card["site"], options, findings=CT_FINDINGS)
    for col in ("modality", "spacing", "shape", "kernel", "site"):
        df[col] = [extra[i].get(col) or _from_header(root / p, col, card["site"], options.check_files)
                   for i, p in zip(df["image_id"], df["path"], strict=True)]
    return df


def _optional(path: Path, columns: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """VolumeName → row of an optional official file ({} when the file is absent)."""
    if not path.is_file():
        return {}
    table = read_table(path)
    require_columns(table, columns, path)
    return {r["VolumeName"].strip(): r for r in table.to_dict("records")}


def _labels(row: dict[str, str], mapping: dict[str, str | None], where: str) -> dict[str, float]:
    out = {}
    for source, target in mapping.items():
        text = str(row.get(source, "")).strip()
        try:
            value = float(text) if text else math.nan
        except ValueError:
            value = -2.0
        if not (math.isnan(value) or value in (0.0, 1.0)):
            raise BuildError(f"{where}, column '{source}': '{text}' is not 0 or 1 (CT-RATE labels are binary)")
        if target is not None and not math.isnan(value):
            out[target] = value
    return out


def _report(row: dict[str, str]) -> str:
    findings, impression = (" ".join(str(row.get(k, "")).split()) for k in ("Findings_EN", "Impressions_EN"))
    findings, impression = ("" if t.lower() == "nan" else t for t in (findings, impression))
    if not (findings or impression):
        return ""
    return f"FINDINGS: {findings} IMPRESSION: {impression}".strip()


def _volume_columns(m: dict[str, str], where: str) -> dict[str, str]:
    """modality / spacing / shape / kernel / site from a metadata row ('' where unknown)."""
    out = {"modality": "CT", "kernel": str(m.get("ConvolutionKernel", "")).strip(),
           "site": re.sub(r"[^a-z0-9]+", "_", str(m.get("Manufacturer", "")).strip().lower()).strip("_")}
    try:
        xy = ast.literal_eval(str(m.get("XYSpacing", ""))) if m.get("XYSpacing") else None
        if xy is not None:
            out["spacing"] = format_triplet((float(m["ZSpacing"]), float(xy[0]), float(xy[1])))
        if m.get("NumberofSlices") and m.get("Rows") and m.get("Columns"):
            out["shape"] = format_triplet((int(float(m["NumberofSlices"])), int(m["Rows"]), int(m["Columns"])),
                                          integer=True)
    except (ValueError, SyntaxError, TypeError, KeyError, IndexError) as err:
        raise BuildError(f"{where}: metadata XYSpacing / ZSpacing / shape of this volume are malformed ({err}); "
                         "check the metadata CSV") from err
    return out


def _from_header(path: Path, column: str, site: str, read_files: bool = True) -> str:
    """Spacing or shape from the NIfTI header (canonical (D, H, W) order) when the metadata lacks them;
    empty in a metadata-only build (``read_files`` False)."""
    if column == "site":
        return site
    if column not in ("spacing", "shape") or not read_files:
        return ""
    import nibabel as nib
    from nibabel.orientations import axcodes2ornt, io_orientation, ornt_transform

    from raddino_lib.data.volume_io import CANONICAL_AXES

    try:
        img = nib.load(str(path))
    except Exception as err:
        raise BuildError(f"volume '{path}': cannot read its NIfTI header ({err}); re-download it") from err
    transform = ornt_transform(io_orientation(img.affine), axcodes2ornt(CANONICAL_AXES))
    order = np.argsort(transform[:, 0])  # input axis of each canonical axis
    if column == "spacing":
        zooms = np.linalg.norm(img.affine[:3, :3], axis=0)
        return format_triplet([float(zooms[k]) for k in order])
    return format_triplet([int(img.shape[k]) for k in order], integer=True)
