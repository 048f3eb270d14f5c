"""What every dataset builder shares: value normalisation, label mapping, file lookup, rows → manifest.

A builder reads a dataset's official metadata from a local root and returns
``Record``s; ``records_to_frame`` turns them into manifest rows (paths still
relative to the dataset root) with patient-level splits.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from raddino_lib.data.manifest import assign_splits
from raddino_lib.data.schema import AGE_RANGE, FINDINGS, LABEL_COLUMNS, SPLITS, label_column

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".dcm", ".dicom")
DEFAULT_FRACTIONS: tuple[float, float, float] = (0.7, 0.1, 0.2)  # train / val / test when no official split


class BuildError(ValueError):
    """The dataset's metadata cannot be turned into a manifest; the message names the file, row and field."""


@dataclass
class Record:
    """One image as a builder sees it, before splits are assigned."""

    image_id: str
    path: str  # relative to the dataset root (posix separators)
    patient_id: str
    study_id: str = ""
    age: float = math.nan
    sex: str = ""
    view: str = ""
    labels: dict[str, float] = field(default_factory=dict)  # finding → 1 / 0 / -1 (absent key = unknown)
    original_labels: str = ""
    split: str = ""  # official split if any ("train"/"val"/"test"), "" = assign by patient, "trainval" = not test
    masks: dict[str, str] = field(default_factory=dict)  # mask column → path relative to the dataset root
    report: str = ""  # free-text report (FINDINGS + IMPRESSION) where the dataset releases one


# ----------------------------------------------------------------------------- values


def normalize_age(value: object) -> float:
    """'058Y' / '6M' / '30D' / 58 / '58.0' / '85 or more' → years (float), NaN if unknown or out of range."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return math.nan
    text = str(value).strip().upper()
    match = re.match(r"^(\d+(?:\.\d+)?)\s*([YMWD]?)", text)
    if not match:
        return math.nan
    number, unit = float(match.group(1)), match.group(2) or "Y"
    years = number / {"Y": 1.0, "M": 12.0, "W": 52.1775, "D": 365.25}[unit]
    return round(years, 2) if AGE_RANGE[0] <= years <= AGE_RANGE[1] else math.nan


def age_from_dates(birth: object, study: object) -> float:
    """Age in years from a birth year ('1939', 1939.0) or date and a study date ('20140812', 2014-08-12)."""
    born, seen = _as_date(birth, year_only_ok=True), _as_date(study)
    if born is None or seen is None:
        return math.nan
    return normalize_age(max(0.0, (seen - born).days / 365.25))


def _as_date(value: object, year_only_ok: bool = False) -> date | None:
    text = str(value).strip().replace("-", "")
    if re.fullmatch(r"\d{8}", text):
        try:
            return date(int(text[:4]), int(text[4:6]), int(text[6:]))
        except ValueError:
            return None
    if year_only_ok and re.fullmatch(r"\d{4}(\.0+)?", text):
        return date(int(text[:4]), 7, 1)  # mid-year: the error is at most half a year
    return None


def normalize_sex(value: object) -> str:
    """M / Male / F / Female (any case) → 'M' / 'F'; anything else (O, Unknown, empty) → ''."""
    text = str(value).strip().upper() if value is not None else ""
    return {"M": "M", "MALE": "M", "F": "F", "FEMALE": "F"}.get(text, "")


def normalize_view(value: object) -> str:
    """PA / AP (incl. 'AP_horizontal', 'AP supine', 'AP AXIAL') / lateral (L, LL, RL, LATERAL) → VIEWS, else ''."""
    text = str(value).strip().upper().replace("_", " ") if value is not None else ""
    if text in ("L", "LL", "RL", "LAT", "LATERAL", "LATERAL LEFT", "LATERAL RIGHT", "LLD", "RLD"):
        return "LATERAL"
    head = text.split(" ")[0]
    return head if head in ("PA", "AP") else ""


def label_value(value: object, blank: float = math.nan) -> float:
    """'1' / '1.0' / 0 / '-1' → float; empty / NaN → ``blank``; anything else → BuildError (via caller)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == "":
        return blank
    x = float(value)
    if x not in (1.0, 0.0, -1.0):
        raise ValueError(f"label value '{value}' is not 1, 0, -1 or empty")
    return x


# ----------------------------------------------------------------------------- labels


def map_labels(source: Mapping[str, float], mapping: Mapping[str, str | None]) -> dict[str, float]:
    """Source label → value into common findings; several sources for one finding combine as max (1 > -1 > 0)."""
    out: dict[str, float] = {}
    for name, value in source.items():
        target = mapping.get(name)
        if target is None or math.isnan(value):
            continue
        out[target] = _combine(out.get(target), value)
    return out


def _combine(old: float | None, new: float) -> float:
    if old is None:
        return new
    rank = {1.0: 2, -1.0: 1, 0.0: 0}
    return old if rank[old] >= rank[new] else new


def mapping_targets(mapping: Mapping[str, str | None]) -> set[str]:
    """Common findings a dataset's mapping can set (the rest stay unknown in its manifest)."""
    targets = {t for t in mapping.values() if t}
    unknown = targets - set(FINDINGS)
    if unknown:
        raise BuildError(f"label mapping targets {sorted(unknown)} are not in FINDINGS {list(FINDINGS)}")
    return targets


def original_label_string(source: Mapping[str, float]) -> str:
    """{'Pleural Effusion': 1, 'Edema': -1} → 'Pleural Effusion=1;Edema=-1' (non-empty values, source order)."""
    return ";".join(f"{k}={int(v)}" for k, v in source.items() if not math.isnan(v))


# ----------------------------------------------------------------------------- files


def require_file(root: Path, *names: str) -> Path:
    """The first of ``names`` (also ``name + '.gz'``) under root, or BuildError saying what is expected."""
    for name in names:
        for candidate in (root / name, root / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    raise BuildError(f"none of {list(names)} found under {root} (check --root and the dataset card's "
                     "'metadata_files')")


def read_table(path: Path, **kwargs) -> pd.DataFrame:
    """Official CSV as text (no NaN guessing); header whitespace stripped."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, **kwargs)
    df.columns = [c.strip() for c in df.columns]
    return df


def require_columns(df: pd.DataFrame, columns: Iterable[str], source: Path) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise BuildError(f"{source}: missing column(s) {missing} (found {list(df.columns)}); is this the "
                         "official file of the dataset card?")


def index_files(root: Path, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> dict[str, str]:
    """File name → path relative to root (posix) for every image under root; one walk, sorted, first wins."""
    found: dict[str, str] = {}
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            if name.lower().endswith(suffixes):
                rel = Path(folder, name).relative_to(root).as_posix()
                found.setdefault(name, rel)
    return found


# ----------------------------------------------------------------------------- records → manifest rows


def records_to_frame(records: list[Record], dataset: str, site: str, seed: int = 0,
                     fractions: tuple[float, float, float] = DEFAULT_FRACTIONS) -> pd.DataFrame:
    """Manifest rows (paths relative to the dataset root), sorted by image_id, with patient-level splits.

    Official splits are kept. Rows marked "trainval" (official non-test part)
    and rows without a split are split by patient hash: "trainval" patients
    into train / val in the ratio of ``fractions``, unmarked patients into all
    three. A patient is never in two splits (official splits win; a conflict
    is an error).
    """
    if not records:
        raise BuildError(f"{dataset}: no images found; check --root and the dataset card's 'root_layout'")
    split_of = _patient_splits(records, seed, fractions)
    rows = []
    for r in sorted(records, key=lambda r: r.image_id):
        row = {"image_id": r.image_id, "path": r.path, "patient_id": r.patient_id, "study_id": r.study_id,
               "split": split_of[r.patient_id], "age": r.age, "sex": r.sex, "view": r.view, "site": site}
        row.update({c: np.nan for c in LABEL_COLUMNS})
        row.update({label_column(f): v for f, v in r.labels.items()})
        row.update({"original_labels": r.original_labels, "dataset": dataset})
        row.update(r.masks)
        if r.report:
            row["report"] = r.report
        rows.append(row)
    df = pd.DataFrame(rows)
    if "report" in df.columns:
        df["report"] = df["report"].fillna("")
    for col in (c for c in df.columns if c.startswith("mask_")):
        df[col] = df[col].fillna("")
    return df


def _patient_splits(records: list[Record], seed: int, fractions: tuple[float, float, float]) -> dict[str, str]:
    official: dict[str, str] = {}
    for r in records:
        if r.split in SPLITS:
            previous = official.setdefault(r.patient_id, r.split)
            if previous != r.split:
                raise BuildError(f"patient '{r.patient_id}' is in official splits '{previous}' and '{r.split}' "
                                 f"(image '{r.image_id}'); the official split files disagree")
    trainval = sorted({r.patient_id for r in records if r.split == "trainval"} - set(official))
    free = sorted({r.patient_id for r in records if not r.split} - set(official) - set(trainval))
    out = dict(official)
    train, val, _ = fractions
    out.update(assign_splits(trainval, fractions=(train / (train + val), val / (train + val), 0.0), seed=seed))
    out.update(assign_splits(free, fractions=fractions, seed=seed))
    return out


def resolve_images(records: list[Record], root: Path, dataset: str, drop_missing: bool, by_name: bool = False
                   ) -> list[Record]:
    """Check each record's image under root; missing ones raise (default) or are dropped.

    ``by_name``: the metadata gives only file names (NIH, PadChest, SIIM); find
    them anywhere under root with one walk and store their relative paths.
    """
    found = index_files(root) if by_name else {}
    kept, missing = [], []
    for r in records:
        rel = found.get(Path(r.path).name) if by_name else (r.path if (root / r.path).is_file() else None)
        if rel is None:
            missing.append(r.path)
            continue
        r.path = rel
        kept.append(r)
    if missing and not drop_missing:
        raise BuildError(f"{dataset}: {len(missing)} image(s) listed in the metadata are not under {root}, e.g. "
                         f"{missing[:3]}; check --root against the card's 'root_layout', or pass --drop-missing "
                         "to build from the images present")
    return kept


def source_labels(row: Mapping[str, str], names: Iterable[str], where: str) -> dict[str, float]:
    """CheXpert-style label columns of one row → {name: 1 / 0 / -1 / NaN (blank)}."""
    out = {}
    for name in names:
        try:
            out[name] = label_value(row.get(name, ""))
        except ValueError as err:
            raise BuildError(f"{where}, column '{name}': {err}") from err
    return out


def fill_blank(source: Mapping[str, float], blank: float) -> dict[str, float]:
    """Blank (NaN) source labels → ``blank``; original_labels is written from the unfilled values."""
    return {k: (blank if math.isnan(v) else v) for k, v in source.items()}


def blank_value(card: Mapping[str, object]) -> float:
    """The card's ``blank_policy``: 'zero' (not mentioned = absent, CheXpert convention) or 'unknown'."""
    policy = (card.get("options") or {}).get("blank_policy", "zero")
    if policy not in ("zero", "unknown"):
        raise BuildError(f"card '{card.get('name')}': options.blank_policy '{policy}' is not 'zero' or 'unknown'")
    return 0.0 if policy == "zero" else math.nan


def chexpert_labels(row: Mapping[str, str], mapping: Mapping[str, str | None], blank: float, where: str
                    ) -> tuple[dict[str, float], str]:
    """One row's CheXpert-style label columns → (labels in common findings, original_labels string).

    Reads the columns named by ``mapping`` (1 / 0 / -1 / blank), fills blanks
    with ``blank`` (see ``blank_value``) before mapping them into FINDINGS,
    and writes ``original_labels`` from the unfilled values. ``where`` names
    the file and row in error messages.
    """
    source = source_labels(row, mapping, where)
    return map_labels(fill_blank(source, blank), mapping), original_label_string(source)


def dicom_header(path: Path) -> dict[str, str | float]:
    """Age / sex / view / patient id from a DICOM header (pixels not read); {} if the file is not DICOM."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with warnings.catch_warnings():  # e.g. RSNA's PatientAge "51" is not a valid AS value; parsed below
            warnings.simplefilter("ignore", UserWarning)
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            return _header_values(ds)
    except (InvalidDicomError, OSError, EOFError):
        return {}


def apply_dicom_headers(records: list[Record], root: Path, masks_dir: Path | None, mask_column: str,
                        mask_of: Callable[[str, tuple[int, int]], np.ndarray | None],
                        patient_id_from_header: bool = False) -> None:
    """Fill each record's age / sex / view from its DICOM header (in place); with ``masks_dir`` also write masks.

    ``mask_of(image_id, (rows, columns))`` draws a record's boolean mask at the
    header's image size (1024 where the header has none), or returns None when
    the image has no region (no file, the mask column stays empty). Masks go to
    ``masks_dir/<image_id>.png`` under ``mask_column``. ``patient_id_from_header``:
    the header's PatientID (else the image id) becomes the record's patient id.
    """
    for r in records:
        header = dicom_header(root / r.path)
        r.age, r.sex, r.view = header.get("age", math.nan), header.get("sex", ""), header.get("view", "")
        if patient_id_from_header:
            r.patient_id = str(header.get("patient_id") or r.image_id)
        if masks_dir is not None:
            mask = mask_of(r.image_id, (header.get("rows") or 1024, header.get("columns") or 1024))
            if mask is not None:
                r.masks[mask_column] = write_mask(mask, Path(masks_dir) / f"{r.image_id}.png")


def _header_values(ds) -> dict[str, str | float]:
    return {"age": normalize_age(ds.get("PatientAge", "")), "sex": normalize_sex(ds.get("PatientSex", "")),
            "view": normalize_view(ds.get("ViewPosition", "")), "patient_id": str(ds.get("PatientID", "")).strip(),
            "rows": int(ds.get("Rows", 0) or 0), "columns": int(ds.get("Columns", 0) or 0)}


def write_mask(mask: np.ndarray, path: Path) -> str:
    """Save a boolean (H, W) mask as an 8-bit PNG of 0 / 255; returns the absolute path."""
    from PIL import Image

    from raddino_lib.atomic import atomic_path

    with atomic_path(path) as tmp:
        Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(tmp, format="PNG")
    return str(Path(path).resolve())
