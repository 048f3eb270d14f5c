"""RAD-DINO's claims as rows: what is claimed, how this package measures it, and what a run says.

Each :class:`Claim` names the notebook and the ``table`` metric (results.json) that test it, and the two rows it
compares (``a`` against ``b``: the image-only SSL encoder against the language-supervised one). A row of the
claims table shows, with their 95% intervals, the encoders (ssl, language, random), the raw-pixel floor and the
supervised ceiling, then a **verdict read from the intervals** of ``a`` and ``b``:

| verdict                          | rule (higher is better; reversed for errors such as MAE)       |
|----------------------------------|-----------------------------------------------------------------|
| holds                            | a's interval lies entirely above b's                            |
| contradicted                     | a's interval lies entirely below b's                            |
| not shown (intervals overlap)    | the intervals overlap: this test set cannot order a and b       |
| not run                          | the notebook has not written results.json in this run           |
| not measured                     | the notebook ran, but a or b has no value with an interval      |

Non-overlapping percentile intervals are a conservative test (two estimates can differ significantly while their
intervals touch); "not shown" therefore means "not resolved by this run", never "equal".

A verdict is only worth reading when the measure can tell encoders apart. :func:`reading_notes` adds what the
floor and the ceiling say: a ceiling that does not clear the floor means the measure is saturated (or the
ceiling undertrained), and an encoder inside the floor's interval has learned nothing the measure sees.

A results.json may name ``aliases`` (role -> row): notebook 08 maps "largest" and "smallest" to its data-size
arms and "ssl" to its base arm.

Notebooks are found by their number (``"07"`` matches any ``07_*`` folder), so a notebook added later (report
generation 07, scaling 08) fills its row as soon as its results.json exists and carries the metric and rows
named in its :class:`Claim`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raddino_lib.results import RESULTS_NAME, read_results

HOLDS = "holds"
CONTRADICTED = "contradicted"
OVERLAP = "not shown (intervals overlap)"
NOT_RUN = "not run"
NOT_MEASURED = "not measured"

# Columns of the claims table besides the compared rows: role -> table rows that may fill it, first found wins.
COLUMNS: dict[str, tuple[str, ...]] = {
    "ssl": ("ssl",),
    "language": ("language",),
    "random": ("random",),
    "floor": ("pixels",),
    "ceiling": ("supervised",),
}


@dataclass(frozen=True)
class Claim:
    """One measurable statement of the paper and where a run measures it."""

    key: str  # short id, e.g. "classification"
    claim: str  # the statement, in the paper's terms (PAPERS.md)
    measure: str  # what is measured, in words
    notebook: str  # notebook number ("03") or full name; the results folder must start with it
    metrics: tuple[str, ...]  # table metric names; the first one the notebook reports is used
    a: str = "ssl"  # row that should be at least as good
    b: str = "language"  # row it is compared with
    higher_is_better: bool = True  # False for errors (MAE)
    columns: tuple[tuple[str, tuple[str, ...]], ...] = tuple(COLUMNS.items())  # role -> candidate rows


CLAIMS: tuple[Claim, ...] = (
    Claim("classification", "Image-only SSL matches or beats language supervision on classification",
          "findings macro AUROC, linear probe on CLS", "03", ("cls_macro_auroc",)),
    Claim("classification_clsmean", "Image-only SSL matches or beats language supervision on classification",
          "findings macro AUROC, linear probe on [CLS, mean patch] (DINOv2's linear evaluation)", "03",
          ("clsmean_macro_auroc",)),
    Claim("segmentation_upernet", "Image-only SSL matches or beats language supervision on segmentation",
          "Dice over all structures, UPerNet head on 4 frozen layers", "04", ("dice_mean_upernet",)),
    Claim("segmentation_linear", "Image-only SSL matches or beats language supervision on segmentation",
          "Dice over all structures, linear head on the last layer", "04", ("dice_mean",)),
    Claim("report_generation", "Image-only SSL matches or beats language supervision on report generation",
          "clinical macro F1 of generated reports", "07", ("clinical_f1_macro", "clinical_macro_f1", "rouge_l"),
          columns=tuple({**COLUMNS, "floor": ("pixels", "most_frequent", "floor"),
                         "ceiling": ("supervised", "oracle", "ceiling")}.items())),
    Claim("metadata_age", "Image-only features carry more patient metadata than language-supervised ones",
          "age R², ridge on [CLS, mean patch]", "06", ("age_r2",)),
    Claim("metadata_sex", "Image-only features carry more patient metadata than language-supervised ones",
          "sex AUROC, logistic on [CLS, mean patch]", "06", ("sex_auroc",)),
    Claim("scaling", "Performance grows with the quantity of pretraining images",
          "findings macro AUROC, largest against smallest pretraining set", "08", ("cls_macro_auroc",),
          a="largest", b="smallest"),
)


# ===== intervals and verdicts =====

def interval(cell: Mapping[str, Any] | None) -> tuple[float, float, float] | None:
    """(value, low, high) of a results.metric cell, or None when any of the three is missing or nan."""
    if not cell:
        return None
    values = (cell.get("value"), cell.get("ci_low"), cell.get("ci_high"))
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values):
        return None
    return float(values[0]), float(values[1]), float(values[2])


def verdict(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None, higher_is_better: bool = True) -> str:
    """HOLDS, CONTRADICTED or OVERLAP from the 95% intervals of ``a`` and ``b``; NOT_MEASURED without both."""
    ia, ib = interval(a), interval(b)
    if ia is None or ib is None:
        return NOT_MEASURED
    a_above, a_below = ia[1] > ib[2], ia[2] < ib[1]
    if not higher_is_better:
        a_above, a_below = a_below, a_above
    return HOLDS if a_above else CONTRADICTED if a_below else OVERLAP


def separated(upper: Mapping[str, Any] | None, lower: Mapping[str, Any] | None, higher_is_better: bool = True
              ) -> bool | None:
    """True when ``upper`` is resolved better than ``lower`` (disjoint intervals), None without intervals."""
    v = verdict(upper, lower, higher_is_better)
    return None if v == NOT_MEASURED else v == HOLDS


def reading_notes(cells: Mapping[str, Mapping[str, Any] | None], claim: Claim) -> list[str]:
    """What the floor and ceiling say about whether this measure can tell encoders apart."""
    notes = []
    floor = _best(cells, ("floor", "random"), claim.higher_is_better)
    floor_name = {"floor": "raw-pixel", "random": "random-init"}.get(floor or "", "")
    ceiling = cells.get("ceiling")
    if floor is not None and interval(ceiling) is not None:
        if not separated(ceiling, cells[floor], claim.higher_is_better):
            notes.append(f"the ceiling does not clear the {floor_name} floor: the measure cannot rank encoders")
        for row in (claim.a, claim.b):
            if row in cells and separated(cells[row], ceiling, claim.higher_is_better):
                notes.append(f"{row} lies above the ceiling (the ceiling is undertrained for this measure)")
    if floor is not None:
        at_floor = [r for r in (claim.a, claim.b) if r in cells and interval(cells[r]) is not None
                    and not separated(cells[r], cells[floor], claim.higher_is_better)]
        if at_floor:
            notes.append(f"{' and '.join(at_floor)} not above the {floor_name} floor")
    return notes


def _best(cells: Mapping[str, Mapping[str, Any] | None], roles: Sequence[str], higher_is_better: bool) -> str | None:
    """The role among ``roles`` with the best value (the floor an encoder must clear), None if none has one."""
    present = [(interval(cells.get(r))[0], r) for r in roles if interval(cells.get(r)) is not None]
    if not present:
        return None
    return (max(present) if higher_is_better else min(present))[1]


# ===== reading a run =====

def find_results(out: str | Path, notebook: str) -> dict[str, Any] | None:
    """results.json of the first folder of ``out`` whose name starts with ``notebook`` (None when none has one)."""
    out = Path(out)
    folders = sorted(p for p in out.glob(f"{notebook}*") if p.is_dir()) if out.is_dir() else []
    for folder in folders:
        if (folder / RESULTS_NAME).is_file():
            return read_results(folder)
    return None


@dataclass
class ClaimRow:
    claim: Claim
    metric: str  # the metric used ("" when the notebook did not run or reports none of the claim's metrics)
    cells: dict[str, dict[str, Any] | None]  # role (ssl, language, random, floor, ceiling, a, b) -> cell
    verdict: str
    notes: list[str]


def evaluate_claim(claim: Claim, results: Mapping[str, Any] | None) -> ClaimRow:
    """The claim's row, read from the results.json of its notebook (None = the notebook did not run)."""
    if results is None:
        return ClaimRow(claim, "", {}, NOT_RUN, [])
    table = results.get("table", {})
    alias = results.get("aliases", {})  # role -> row, e.g. "largest" -> "base" (notebook 08)
    table = {**{role: table[row] for role, row in alias.items() if row in table}, **table}
    metric = next((m for m in claim.metrics if any(m in row for row in table.values())), "")
    if not metric:
        return ClaimRow(claim, "", {}, NOT_MEASURED, [f"none of {list(claim.metrics)} in the results"])
    cells: dict[str, dict[str, Any] | None] = {}
    for role, candidates in claim.columns:
        row = next((r for r in candidates if r in table), None)
        cells[role] = table[row].get(metric) if row else None
    cells[claim.a], cells[claim.b] = (table.get(claim.a, {}).get(metric), table.get(claim.b, {}).get(metric))
    row_verdict = verdict(cells[claim.a], cells[claim.b], claim.higher_is_better)
    return ClaimRow(claim, metric, cells, row_verdict, reading_notes(cells, claim))


def evaluate_claims(out: str | Path, claims: Sequence[Claim] = CLAIMS) -> list[ClaimRow]:
    """Every claim's row for the run folder ``out``."""
    return [evaluate_claim(c, find_results(out, c.notebook)) for c in claims]


def claims_markdown(rows: Sequence[ClaimRow], fmt) -> str:
    """The claims table in markdown; ``fmt`` formats one cell (e.g. ``summary.format_metric``)."""
    roles = [r for r, _ in CLAIMS[0].columns]
    header = ["claim", "measure", *roles, "verdict", "reading"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        c = row.claim
        values = [fmt(row.cells.get(r)) if row.cells else "–" for r in roles]
        compared = f" ({c.a} vs {c.b})" if (c.a, c.b) != ("ssl", "language") else ""
        lines.append("| " + " | ".join([c.claim, c.measure + compared, *values, f"**{row.verdict}**",
                                        "; ".join(row.notes) or "–"]) + " |")
    return "\n".join(lines)


def claims_json(rows: Sequence[ClaimRow]) -> list[dict[str, Any]]:
    """The rows as plain data for summary.json."""
    return [{"key": r.claim.key, "claim": r.claim.claim, "measure": r.claim.measure, "notebook": r.claim.notebook,
             "metric": r.metric, "cells": r.cells, "verdict": r.verdict, "notes": r.notes} for r in rows]
