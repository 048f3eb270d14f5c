"""What every dataset builder shares: options, value normalisation, label mapping, file lookup, rows → manifest.

A builder reads a dataset's official metadata from a local root and returns
``Record``s; ``records_to_frame`` turns them into manifest rows (paths still
relative to the dataset root) with patient-level splits.
"""

from __future__ import annotations

import functools
import gzip
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pandas as pd

from raddino_lib.data.manifest import DEFAULT_FRACTIONS, check_fractions, hash_splits
from raddino_lib.data.schema import AGE_RANGE, FINDINGS, SPLITS, label_column

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".dcm", ".dicom")


class BuildError(ValueError):
    """The dataset's metadata cannot be turned into a manifest; the message names the file, row and field."""


@dataclass(frozen=True)
class BuildOptions:
    """How a builder turns a dataset's metadata into manifest rows (the same for every dataset)."""

    seed: int = 0  # seed of the patient split hash; another seed gives another (equally valid) split
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS  # train / val / test of patients without an
    # official split (the official non-test pool is cut train / val in the ratio of the first two)
    drop_missing: bool = False  # skip images listed in the metadata but absent under the root (default: error)
    check_files: bool = True  # False: metadata only; paths are written from the card's layout, image files are
    # neither looked for nor read (DICOM headers too), and `raddino manifest validate` checks them later
    masks_dir: Path | None = None  # write lesion masks here (RSNA boxes, SIIM run-length codes); needs the files

    def __post_init__(self) -> None:
        object.__setattr__(self, "fractions", check_fractions(self.fractions))
        if self.masks_dir is not None and not self.check_files:
            raise BuildError("masks are drawn at each image's size, read from its file: --masks needs the images "
                             "(drop --no-files)")


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
    return _age_of_text(str(value).strip().upper())


@functools.lru_cache(maxsize=65536)  # a dataset has few distinct age strings; each is parsed once
def _age_of_text(text: str) -> float:
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


def view_mapping(card: Mapping[str, object]) -> dict[str, str]:
    """The card's ``view_mapping`` (source code → PA / AP / LATERAL, null → empty) with upper-case keys."""
    mapping = card.get("view_mapping") or {}
    return {str(k).strip().upper(): (v or "") for k, v in mapping.items()}  # type: ignore[union-attr]


def map_view(value: object, mapping: Mapping[str, str]) -> str:
    """A source view code through the card's mapping (see ``view_mapping``); codes not listed → ''."""
    return mapping.get(str(value).strip().upper() if value is not None else "", "")


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


def find_file(root: Path, *names: str) -> Path | None:
    """The first of ``names`` under root, plain or gzipped (``name + '.gz'``); None if none is there."""
    for name in names:
        for candidate in (root / name, root / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def require_file(root: Path, *names: str) -> Path:
    """Like ``find_file``, or BuildError saying what is expected."""
    found = find_file(root, *names)
    if found is None:
        raise BuildError(f"none of {list(names)} (or .gz) found under {root} (check --root and the dataset card's "
                         "'metadata_files')")
    return found


def read_lines(path: Path) -> list[str]:
    """Non-empty stripped lines of a text file, plain or gzipped (by the '.gz' suffix)."""
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return [line.strip() for line in data.decode("utf-8-sig").splitlines() if line.strip()]


def read_table(path: Path, **kwargs) -> pd.DataFrame:
    """Official CSV (plain or .gz) as text (no NaN guessing); header whitespace stripped."""
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, EOFError) as err:
        raise BuildError(f"{path}: not a readable CSV file ({err}); is it the official file, completely "
                         "downloaded?") from err
    df.columns = [c.strip() for c in df.columns]
    return df


def table_rows(df: pd.DataFrame) -> list[dict[str, str]]:
    """Rows of a text table as dicts (like ``df.to_dict("records")``, several times faster on 100k rows)."""
    columns = list(df.columns)
    return [dict(zip(columns, values, strict=True)) for values in zip(*(df[c].tolist() for c in columns),
                                                                     strict=True)]


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


def records_to_frame(records: list[Record], dataset: str, site: str, options: BuildOptions,
                     findings: tuple[str, ...] = FINDINGS) -> pd.DataFrame:
    """Manifest rows (paths relative to the dataset root), sorted by image_id, with patient-level splits.

    One ``label_<finding>`` column per entry of ``findings`` (the chest X-ray
    findings by default; CT builders pass ``CT_FINDINGS``).

    Official splits are kept. Rows marked "trainval" (official non-test part)
    and rows without a split get a split from a seeded hash of the patient id
    (``hash_splits``): "trainval" patients train / val in the ratio of
    ``options.fractions``, unmarked patients all three. A patient's split
    depends only on its id, the seed, the fractions and its official pool,
    never on which other images are present. A patient is never in two
    splits (official splits win; a conflict is an error).
    """
    if not records:
        raise BuildError(f"{dataset}: no images found; check --root and the dataset card's 'root_layout'")
    split_of = _patient_splits(records, options)
    records = sorted(records, key=lambda r: r.image_id)
    columns: dict[str, list] = {
        "image_id": [r.image_id for r in records], "path": [r.path for r in records],
        "patient_id": [r.patient_id for r in records], "study_id": [r.study_id for r in records],
        "split": [split_of[r.patient_id] for r in records], "age": [r.age for r in records],
        "sex": [r.sex for r in records], "view": [r.view for r in records], "site": [site] * len(records)}
    for finding in findings:
        columns[label_column(finding)] = [r.labels.get(finding, math.nan) for r in records]
    columns["original_labels"] = [r.original_labels for r in records]
    columns["dataset"] = [dataset] * len(records)
    for mask in sorted({m for r in records for m in r.masks}):
        columns[mask] = [r.masks.get(mask, "") for r in records]
    if any(r.report for r in records):
        columns["report"] = [r.report for r in records]
    return pd.DataFrame(columns)


def _patient_splits(records: list[Record], options: BuildOptions) -> dict[str, str]:
    official: dict[str, str] = {}
    for r in records:
        if r.split in SPLITS:
            previous = official.setdefault(r.patient_id, r.split)
            if previous != r.split:
                raise BuildError(f"patient '{r.patient_id}' is in official splits '{previous}' and '{r.split}' "
                                 f"(image '{r.image_id}'); the official split files disagree")
    trainval = {r.patient_id for r in records if r.split == "trainval"} - set(official)
    free = {r.patient_id for r in records if not r.split} - set(official) - trainval
    train, val, _ = options.fractions
    pool = (train / (train + val), val / (train + val), 0.0) if train + val > 0 else (1.0, 0.0, 0.0)
    out = dict(official)
    out.update(hash_splits(trainval, fractions=pool, seed=options.seed))
    out.update(hash_splits(free, fractions=options.fractions, seed=options.seed))
    return out


def resolve_images(records: list[Record], root: Path, dataset: str, options: BuildOptions, by_name: bool = False
                   ) -> list[Record]:
    """Check each record's image under root; missing ones raise (default) or are dropped.

    ``by_name``: the metadata gives only file names (NIH, PadChest, RSNA,
    SIIM); find them anywhere under root with one walk and store their
    relative paths. With ``options.check_files`` False nothing is looked up:
    the records keep the paths the builder wrote from the card's layout.
    """
    if not options.check_files:
        return records
    found = index_files(root) if by_name else {}
    kept, missing = [], []
    for r in records:
        rel = found.get(Path(r.path).name) if by_name else (r.path if (root / r.path).is_file() else None)
        if rel is None:
            missing.append(r.path)
            continue
        r.path = rel
        kept.append(r)
    if missing and not options.drop_missing:
        raise BuildError(f"{dataset}: {len(missing)} image(s) listed in the metadata are not under {root}, e.g. "
                         f"{missing[:3]}; check --root against the card's 'root_layout', pass --drop-missing "
                         "to build from the images present, or --no-files to build from the metadata alone")
    if not kept:
        raise BuildError(f"{dataset}: none of the {len(records)} images listed in the metadata is under {root}; "
                         "check --root against the card's 'root_layout'")
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
