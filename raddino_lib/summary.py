"""The run summary: RAD-DINO's claims first, then every notebook's ``table`` between floor and ceiling.

``summary.json`` keeps everything (claims, tables per notebook, wall times, profile); ``summary.md`` opens with
the claims table (``raddino_lib.claims``: claim, measure, ssl / language / random / floor / ceiling with 95%
intervals, a verdict read from the intervals), then a headline table (rows from the raw-pixel floor to the
supervised ceiling × task), then each notebook's full table (metrics × rows) and the wall times.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from raddino_lib import atomic
from raddino_lib.claims import claims_json, claims_markdown, evaluate_claims
from raddino_lib.config import NOTEBOOKS
from raddino_lib.probe.encoders import table_order
from raddino_lib.results import RESULTS_NAME, read_results

# (notebook, metric, column title): the tasks of the paper's comparison.
HEADLINE: tuple[tuple[str, str, str], ...] = (
    ("03_classification_probe", "cls_macro_auroc", "findings AUROC (linear, CLS)"),
    ("03_classification_probe", "clsmean_macro_auroc", "findings AUROC (linear, CLS + mean patch)"),
    ("03_classification_probe", "knn_macro_auroc", "findings AUROC (kNN)"),
    ("04_segmentation_probe", "dice_mean", "Dice, all structures (linear)"),
    ("04_segmentation_probe", "dice_mean_upernet", "Dice, all structures (UPerNet)"),
    ("04_segmentation_probe", "dice_findings_mean_upernet", "lesion Dice (UPerNet)"),
    ("05_attention_maps", "attn_mass_large_excess", "attention excess, large findings"),
    ("05_attention_maps", "attn_mass_small_excess", "attention excess, small findings"),
    ("06_metadata_correlation", "age_r2", "age R²"),
    ("06_metadata_correlation", "sex_auroc", "sex AUROC"),
    ("07_report_generation", "clinical_f1_macro", "report clinical macro F1"),
    ("07_report_generation", "rouge_l", "report ROUGE-L"),
)


def format_metric(cell: dict[str, Any] | float | None) -> str:
    """``0.812 [0.781, 0.840]`` from a results.metric cell; "–" when absent."""
    if cell is None:
        return "–"
    if not isinstance(cell, dict):
        cell = {"value": cell}
    value = cell.get("value")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    text = f"{value:.3f}"
    lo, hi = cell.get("ci_low"), cell.get("ci_high")
    if lo is not None and hi is not None:
        text += f" [{lo:.3f}, {hi:.3f}]"
    return text


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def collect_tables(out: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """notebook -> encoder -> metric -> cell, for every notebook that wrote results."""
    tables = {}
    for _, name in NOTEBOOKS:
        if (out / name / RESULTS_NAME).is_file():
            tables[name] = read_results(out / name).get("table", {})
    return tables


def headline_rows(tables: dict[str, dict[str, dict[str, Any]]]) -> tuple[list[str], list[list[str]]]:
    columns = [(nb, m, title) for nb, m, title in HEADLINE if any(m in enc for enc in tables.get(nb, {}).values())]
    encoders: list[str] = []
    for nb, _, _ in columns:
        encoders += [e for e in tables[nb] if e not in encoders]
    encoders = table_order(encoders)
    rows = [[enc] + [format_metric(tables[nb].get(enc, {}).get(m)) for nb, m, _ in columns] for enc in encoders]
    return ["encoder"] + [title for _, _, title in columns], rows


WIDE_TABLE = 8  # a table with more rows (encoders, arms) than this is shown with one row per encoder


def notebook_table(table: dict[str, dict[str, Any]]) -> str:
    """One notebook's table as metric rows × encoder columns (floor first, ceiling last); transposed (one row
    per encoder) when it has many encoders and fewer metrics, as notebook 08's arms."""
    encoders = table_order(table)
    metrics = list(dict.fromkeys(m for enc in encoders for m in table[enc]))
    if len(encoders) > WIDE_TABLE and len(metrics) < len(encoders):
        body = [[enc] + [format_metric(table[enc].get(m)) for m in metrics] for enc in encoders]
        return markdown_table(["row"] + metrics, body)
    body = [[m] + [format_metric(table[enc].get(m)) for enc in encoders] for m in metrics]
    return markdown_table(["metric"] + encoders, body)


def collect_figures(out: Path) -> dict[str, list[str]]:
    """notebook -> figure paths relative to ``out`` that its results.json lists under "figures"."""
    figures = {}
    for _, name in NOTEBOOKS:
        if (out / name / RESULTS_NAME).is_file():
            listed = read_results(out / name).get("figures", [])
            figures[name] = [f"{name}/{f}" for f in listed if (out / name / f).is_file()]
    return figures


def render_markdown(profile: str, tables: dict, timings: dict[str, float], claims: str = "",
                    figures: dict[str, list[str]] | None = None) -> str:
    header, rows = headline_rows(tables)
    parts = [f"# raddino run summary — profile `{profile}`", "",
             "Values are on the test split, with 95% patient-level bootstrap intervals in brackets. Every "
             "measurement has a floor (`pixels`: the same probe on raw pixels; `random`: the architecture "
             "untrained) and a ceiling (`supervised`: the architecture trained on the labels the probes score).", ""]
    if claims:
        parts += ["## RAD-DINO's claims", "",
                  "Verdict from the 95% intervals of ssl against language: *holds* = ssl's interval lies "
                  "entirely above, *contradicted* = entirely below, *not shown* = they overlap.", "", claims, ""]
    parts += ["## The comparison", "", markdown_table(header, rows) if rows else "(no probe results)", ""]
    for name, table in tables.items():
        if table:
            parts += [f"## {name}", "", notebook_table(table), ""]
            parts += [f"![{Path(f).stem}]({f})\n" for f in (figures or {}).get(name, [])]
    total = sum(t for t in timings.values() if not math.isnan(t))
    time_rows = [[name, "–" if math.isnan(t) else f"{t:.0f}"] for name, t in timings.items()]
    parts += ["## Wall time", "", markdown_table(["notebook", "seconds"], time_rows + [["total", f"{total:.0f}"]]), ""]
    return "\n".join(parts)


def write_summary(out: Path, profile: str, timings: dict[str, float]) -> dict[str, Any]:
    tables = collect_tables(out)
    claims = evaluate_claims(out)
    summary = {"profile": profile, "claims": claims_json(claims), "tables": tables, "wall_time_s": timings,
               "total_wall_time_s": sum(t for t in timings.values() if not math.isnan(t))}
    atomic.write_json(out / "summary.json", summary)
    atomic.write_text(out / "summary.md", render_markdown(profile, tables, timings,
                                                          claims_markdown(claims, format_metric),
                                                          collect_figures(out)))
    return summary
