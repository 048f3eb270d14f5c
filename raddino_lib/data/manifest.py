"""The manifest: one CSV row per image, the only thing downstream code reads.

Columns (see ``schema.py`` and ``data_manifests/README.md``): ``REQUIRED_COLUMNS``,
one ``label_<F>`` per finding F in ``FINDINGS`` (1 present, 0 absent, -1
uncertain, empty unknown), optional ``bmi``, ``report``, ``original_labels``,
``dataset``, ``reported_<F>`` and ``mask_<s>`` (s in ``ANATOMY`` or a finding).

``read_manifest`` returns a validated DataFrame: text columns as ``str``
(empty = unknown), ``age``, ``bmi``, ``label_*`` and ``reported_*`` as float
(NaN = unknown), plus ``abs_path`` and ``abs_mask_<s>`` (absolute paths or "").
Errors name the file, the row (1 = first data row under the header), the
column and what to do.
"""

from __future__ import annotations

import bisect
import csv
import hashlib
import io
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from raddino_lib.atomic import write_text
from raddino_lib.data.schema import (
    AGE_RANGE,
    ALL_FINDINGS,
    ANATOMY,
    FINDINGS,
    LABEL_COLUMNS,
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    SEXES,
    SPLITS,
    VIEWS,
    VOLUME_MASKS,
    label_column,
    mask_column,
    reported_column,
)

NUMERIC_COLUMNS: tuple[str, ...] = ("age", "bmi")
LABEL_VALUES: frozenset[float] = frozenset({1.0, 0.0, -1.0})
DEFAULT_FRACTIONS: tuple[float, float, float] = (0.7, 0.1, 0.2)  # train / val / test
UNCERTAIN_POLICIES: dict[str, float] = {"zero": 0.0, "ones": 1.0, "ignore": math.nan}  # U-Zeros, U-Ones, ignore
MAX_LISTED_PROBLEMS = 30  # the error message lists this many problems, then counts the rest


class ManifestError(ValueError):
    """A manifest is malformed; the message lists every problem by file, row and column."""


# ----------------------------------------------------------------------------- reading


def read_manifest(path: str | os.PathLike, root: str | os.PathLike | None = None, check_files: bool = True
                  ) -> pd.DataFrame:
    """Read and validate a manifest; resolve image and mask paths.

    Relative paths are resolved against ``root`` when given, else against the
    manifest's folder. With ``check_files`` every image and mask must exist.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest '{path}' not found (build one with `raddino manifest build` or "
                            "`raddino phantoms`)")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ManifestError(f"manifest '{path}' is not a readable CSV file ({err})") from err
    validate_manifest(df, source=str(path))
    df = _typed(df)
    base = Path(os.path.abspath(root if root is not None else path.parent))
    for col in ["path", *_mask_columns(df)]:
        df["abs_" + col] = [_absolute(base, p) for p in df[col].tolist()]
    if check_files:
        _check_files(df, str(path), base, given_root=root is not None)
    return df


def _absolute(base: Path, value: str) -> str:
    if not value:
        return ""
    full = value if os.path.isabs(value) else f"{base}{os.sep}{value}"
    return os.path.normpath(full) if "/." in "/" + value or "//" in value else full  # "./", "../" segments


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    """Numbers as float (NaN = empty); add absent label columns as unknown."""
    df = df.copy()
    for col in df.columns:
        if col in NUMERIC_COLUMNS or col.startswith(("label_", "reported_")):
            df[col] = _numbers(df[col])
    for col in LABEL_COLUMNS:
        if col not in df.columns:
            df[col] = np.nan
    return df


def _mask_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if c.startswith("mask_")]


def _check_files(df: pd.DataFrame, source: str, base: Path, given_root: bool) -> None:
    where = "--root" if given_root else "the manifest's folder"
    problems = []
    for col in ["path", *_mask_columns(df)]:
        for i, (rel, full) in enumerate(zip(df[col], df["abs_" + col], strict=True)):
            if full and not os.path.isfile(full):
                problems.append(f"{source} row {i + 1}, column '{col}': file '{rel}' not found under {base} "
                                f"({where}; check the dataset card's root)")
    _raise_if(problems, source)


# ----------------------------------------------------------------------------- validation


def validate_manifest(df: pd.DataFrame, source: str = "manifest.csv") -> None:
    """Raise ``ManifestError`` listing every problem (row, column, value); return None if valid."""
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ManifestError(f"{source}: missing required column(s) {missing} (a manifest needs "
                            f"{list(REQUIRED_COLUMNS)}; see data_manifests/README.md)")
    text = {c: _text_column(df[c]) for c in df.columns}
    problems = _column_problems(df, source)
    for check in (_id_problems, _vocab_problems, _value_problems, _leak_problems):
        problems += [f"{source} row {i + 1}, column '{col}': {message}" for i, col, message in check(text)]
    _raise_if(problems, source)


Problems = list[tuple[int, str, str]]  # (row position, column, message)


def _column_problems(df: pd.DataFrame, source: str) -> list[str]:
    problems = []
    for col in df.columns:
        for prefix, known in (("label_", ALL_FINDINGS), ("reported_", ALL_FINDINGS),
                              ("mask_", ANATOMY + ALL_FINDINGS + VOLUME_MASKS)):
            if col.startswith(prefix) and col[len(prefix):] not in known:
                problems.append(f"{source}: column '{col}' names unknown '{col[len(prefix):]}' "
                                f"(known: {', '.join(known)}); keep unmappable labels in 'original_labels'")
    return problems


def _rows(mask: pd.Series) -> list[int]:
    return np.flatnonzero(mask.to_numpy()).tolist()


def _id_problems(text: dict[str, pd.Series]) -> Problems:
    ids = text["image_id"]
    first = pd.Series(np.arange(len(ids)), index=ids.index).groupby(ids.to_numpy()).transform("first")
    out = [(i, "image_id", f"duplicate '{ids.iat[i]}' (first at row {first.iat[i] + 1}); image ids must be unique")
           for i in _rows(ids.duplicated(keep="first") & (ids != ""))]
    for col in ("image_id", "path", "patient_id", "split"):
        out += [(i, col, "empty (required)") for i in _rows(text[col] == "")]
    return out


def _vocab_problems(text: dict[str, pd.Series]) -> Problems:
    out = []
    for col, vocab in (("split", SPLITS), ("sex", SEXES), ("view", VIEWS)):
        values = text[col]
        out += [(i, col, f"'{values.iat[i]}' is not one of {list(vocab)}")
                for i in _rows((values != "") & ~values.isin(vocab))]
    return out


def _value_problems(text: dict[str, pd.Series]) -> Problems:
    out = []
    for col in (c for c in text if c in NUMERIC_COLUMNS):
        lo, hi = AGE_RANGE if col == "age" else (0.0, math.inf)
        values = pd.Series(_numbers(text[col]))
        bad = (text[col] != "") & ~values.between(lo, hi)
        out += [(i, col, f"'{text[col].iat[i]}' is not a number in [{lo}, {hi}] (leave it empty if unknown)")
                for i in _rows(bad)]
    for col in (c for c in text if c.startswith(("label_", "reported_"))):
        bad = (text[col] != "") & ~pd.Series(_numbers(text[col])).isin(LABEL_VALUES)
        out += [(i, col, f"'{text[col].iat[i]}' is not one of 1, 0, -1 or empty") for i in _rows(bad)]
    return out


def _leak_problems(text: dict[str, pd.Series]) -> Problems:
    pid, split = text["patient_id"], text["split"]
    known = (pid != "") & (split != "")
    positions = pd.Series(np.arange(len(pid)), index=pid.index)[known]
    first_row = positions.groupby(pid[known].to_numpy()).transform("first")
    first_split = split[known].groupby(pid[known].to_numpy()).transform("first")
    bad = split[known] != first_split
    return [(i, "split", f"patient '{pid.iat[i]}' is in '{split.iat[i]}' here and in '{first_split.iat[k]}' at row "
                         f"{first_row.iat[k] + 1}; splits must be patient-level (use hash_splits)")
            for k, i in zip(np.flatnonzero(bad.to_numpy()).tolist(), positions[bad].tolist(), strict=True)]


def _raise_if(problems: list[str], source: str) -> None:
    if not problems:
        return
    listed = problems[:MAX_LISTED_PROBLEMS]
    more = len(problems) - len(listed)
    tail = f"\n  ... and {more} more" if more else ""
    raise ManifestError(f"{source}: {len(problems)} problem(s):\n  " + "\n  ".join(listed) + tail)


def _text_column(values: pd.Series) -> pd.Series:
    """Cells → canonical text (positional index): '' for NaN / None, 58.0 → '58', strings stripped."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        numbers = values.to_numpy(dtype=float, na_value=np.nan)
        unique, inverse = np.unique(numbers, return_inverse=True)  # few distinct values: format each once
        return pd.Series(np.array([_text(v) for v in unique.tolist()] or [""], dtype=object)[inverse.ravel()])
    cells = values.to_numpy(dtype=object)
    if pd.api.types.infer_dtype(cells, skipna=False) == "string":  # all str (ids, paths): strip only
        return pd.Series([v.strip() for v in cells.tolist()], dtype=object)
    codes, unique = pd.factorize(cells, use_na_sentinel=False)
    return pd.Series(np.array([_text(v) for v in unique] or [""], dtype=object)[codes])


def _numbers(values: pd.Series) -> np.ndarray:
    """Text cells → float array (NaN for empty or not a number); each distinct value parsed once."""
    codes, unique = pd.factorize(values.to_numpy(dtype=object), use_na_sentinel=False)
    return np.array([_float(_text(v)) for v in unique] or [math.nan], dtype=float)[codes]


def _float(text: str) -> float:
    try:
        return float(text) if text else math.nan
    except ValueError:
        return math.nan


def _text(value: object) -> str:
    """Cell → canonical text ('' for NaN / None; 58.0 → '58')."""
    if value is None or value is pd.NA or value is pd.NaT:
        return ""
    if isinstance(value, bool | np.bool_):
        return str(int(value))
    if isinstance(value, float | np.floating):
        if math.isnan(value):
            return ""
        if float(value).is_integer():
            return str(int(value))
        return format(float(value), ".10g")
    return str(value).strip()


# ----------------------------------------------------------------------------- writing


def write_manifest(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Validate and write atomically; same rows → same bytes (fixed column order, canonical numbers)."""
    df = df.drop(columns=[c for c in df.columns if c.startswith("abs_")])
    validate_manifest(df, source=str(path))
    columns = _column_order(df.columns)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(zip(*(_text_column(df[c]).tolist() for c in columns), strict=True))
    return write_text(path, buffer.getvalue())


def _column_order(columns: Iterable[str]) -> list[str]:
    present = list(columns)
    fixed = [*REQUIRED_COLUMNS, *LABEL_COLUMNS, *OPTIONAL_COLUMNS]
    fixed += [label_column(f) for f in ALL_FINDINGS if label_column(f) not in LABEL_COLUMNS]
    fixed += [reported_column(f) for f in ALL_FINDINGS]
    fixed += [mask_column(s) for s in ANATOMY + ALL_FINDINGS + VOLUME_MASKS]
    head = [c for c in fixed if c in present]
    return head + sorted(set(present) - set(head))


def manifest_digest(path: str | os.PathLike) -> str:
    """Short sha256 (16 hex digits) of the manifest file's bytes; keys feature caches."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


# ----------------------------------------------------------------------------- splits and labels


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """(train, val, test) as floats, or ValueError: three non-negative numbers summing to 1."""
    values = tuple(float(f) for f in fractions)
    if len(values) != len(SPLITS) or any(not f >= 0 for f in values) or abs(sum(values) - 1.0) > 1e-6:
        raise ValueError(f"fractions {tuple(fractions)} must be {len(SPLITS)} non-negative numbers "
                         f"({', '.join(SPLITS)}) summing to 1")
    return values  # type: ignore[return-value]


def assign_splits(patient_ids: Iterable[str], fractions: Sequence[float] = DEFAULT_FRACTIONS, seed: int = 0
                  ) -> dict[str, str]:
    """Patient → split with exact sizes; deterministic in (seed, set of patients), order-free.

    Patients are ranked by sha256(f"{seed}:{patient_id}") and cut at the
    cumulative fractions, so the sizes match the fractions exactly (rounded)
    and every image of a patient lands in the same split. A patient's split
    depends on the other patients present: use it where the set of patients
    is fixed (the phantoms: one per image index); real datasets use
    ``hash_splits``.
    """
    fractions = check_fractions(fractions)
    patients = sorted({str(p) for p in patient_ids}, key=lambda p: hashlib.sha256(f"{seed}:{p}".encode()).digest())
    n = len(patients)
    bounds = np.round(np.cumsum(fractions) * n).astype(int)
    bounds[-1] = n
    out, start = {}, 0
    for split, stop in zip(SPLITS, bounds, strict=True):
        out.update({p: split for p in patients[start:stop]})
        start = max(start, stop)
    return out


def hash_splits(patient_ids: Iterable[str], fractions: Sequence[float] = DEFAULT_FRACTIONS, seed: int = 0
                ) -> dict[str, str]:
    """Patient → split from the patient's own hash; membership-stable, sizes match the fractions on average.

    u = the first 8 bytes of sha256(f"{seed}:{patient_id}") as a number in
    [0, 1); the split is the first whose cumulative fraction exceeds u. A
    patient's split depends only on its id, the seed and the fractions, so a
    manifest built from a partial download agrees with the full one on every
    patient they share. Split sizes are binomial around the fractions (one
    standard deviation of the train share at 0.7: 1.4 percentage points with
    1,000 patients, 0.14 with 100,000).
    """
    bounds = np.cumsum(check_fractions(fractions)).tolist()
    bounds[-1] = 2.0  # every u < 1 lands in a split despite rounding
    out = {}
    for p in {str(p) for p in patient_ids}:
        u = int.from_bytes(hashlib.sha256(f"{seed}:{p}".encode()).digest()[:8], "big") / 2.0 ** 64
        out[p] = SPLITS[bisect.bisect_right(bounds, u)]
    return out


def label_matrix(df: pd.DataFrame, findings: Sequence[str] = FINDINGS, uncertain: str = "zero") -> np.ndarray:
    """(N, F) float labels: 1 / 0, NaN unknown; -1 mapped by ``uncertain``: 'zero' → 0, 'ones' → 1, 'ignore' → NaN."""
    if uncertain not in UNCERTAIN_POLICIES:
        raise ValueError(f"uncertain='{uncertain}' is not one of {sorted(UNCERTAIN_POLICIES)}")
    unknown = [f for f in findings if f not in ALL_FINDINGS]
    if unknown:
        raise ValueError(f"unknown finding(s) {unknown}; known: {list(ALL_FINDINGS)}")
    out = np.full((len(df), len(findings)), np.nan)
    for j, finding in enumerate(findings):
        col = label_column(finding)
        if col in df.columns:
            out[:, j] = pd.to_numeric(df[col].replace("", np.nan), errors="coerce").to_numpy(dtype=float)
    out[out == -1] = UNCERTAIN_POLICIES[uncertain]
    return out
