"""Summaries of a CT phantom manifest: prevalence against the configured statistics and CT-RATE, findings per
volume, patient factors, acquisition and report noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from raddino_lib.data.phantoms_ct.knobs import CT_RATE_NO_FINDING, CT_RATE_PREVALENCE, CTPhantomKnobs
from raddino_lib.data.schema import CT_FINDINGS, SPLITS, label_column, reported_column


def configured_targets(manifest_path: str | Path) -> dict[str, float]:
    """The per-finding prevalence the generator aimed at, from the dataset's card.yaml."""
    params = yaml.safe_load((Path(manifest_path).parent / "card.yaml").read_text())["params"]
    return CTPhantomKnobs(**params["knobs"]).targets(params["balanced"])


def prevalence_table(df: pd.DataFrame, targets: dict[str, float]) -> pd.DataFrame:
    """Per finding: prevalence (%) in ``df``, configured, and in CT-RATE, with a binomial 95% interval."""
    rows = []
    n = len(df)
    for f in CT_FINDINGS:
        k = int((_labels(df, f) == 1).sum())
        p = k / max(n, 1)
        half = 1.96 * np.sqrt(p * (1 - p) / max(n, 1))
        rows.append({"finding": f, "phantoms_%": 100 * p, "ci_low_%": 100 * max(p - half, 0.0),
                     "ci_high_%": 100 * min(p + half, 1.0), "configured_%": 100 * targets[f],
                     "ct_rate_%": 100 * CT_RATE_PREVALENCE[f]})
    return pd.DataFrame(rows).set_index("finding").round(1)


def findings_per_volume(df: pd.DataFrame) -> dict[str, float]:
    k = sum((_labels(df, f) == 1).astype(int) for f in CT_FINDINGS)
    return {"no_finding_%": round(100 * float((k == 0).mean()), 1), "ct_rate_no_finding_%": 100 * CT_RATE_NO_FINDING,
            "mean_findings": round(float(k.mean()), 2)}


def report_noise(df: pd.DataFrame) -> pd.DataFrame:
    """Per finding among volumes that have it: % stated, hedged (-1) and unreported (0) by the report."""
    rows = []
    for f in CT_FINDINGS:
        present = _labels(df, f) == 1
        said = pd.to_numeric(df.loc[present, reported_column(f)], errors="coerce")
        k = max(int(present.sum()), 1)
        rows.append({"finding": f, "n_present": int(present.sum()), "stated_%": 100 * (said == 1).sum() / k,
                     "hedged_%": 100 * (said == -1).sum() / k, "unreported_%": 100 * (said == 0).sum() / k})
    return pd.DataFrame(rows).set_index("finding").round(1)


def describe(df: pd.DataFrame) -> dict:
    age = pd.to_numeric(df["age"], errors="coerce")
    shapes = np.array([[int(v) for v in str(s).split(",")] for s in df["shape"]])
    return {
        "n_volumes": int(len(df)), "n_patients": int(df["patient_id"].nunique()),
        "splits": {s: int((df["split"] == s).sum()) for s in SPLITS},
        "sex_%": _shares(df["sex"]), "site_%": _shares(df["site"]), "kernel_%": _shares(df["kernel"]),
        "age": {"mean": round(float(age.mean()), 1), "sd": round(float(age.std()), 1)},
        "slices": {"min": int(shapes[:, 0].min()), "mean": round(float(shapes[:, 0].mean()), 1),
                   "max": int(shapes[:, 0].max())},
        **findings_per_volume(df),
    }


def format_summary(summary: dict) -> str:
    lines = [f"{summary['n_volumes']} volumes, {summary['n_patients']} patients; "
             + ", ".join(f"{k} {v}" for k, v in summary["splits"].items())]
    for key in ("sex_%", "site_%", "kernel_%"):
        lines.append(f"{key[:-2]}: " + ", ".join(f"{k} {v:.1f}%" for k, v in summary[key].items()))
    lines.append(f"age: mean {summary['age']['mean']} sd {summary['age']['sd']}; slices per volume "
                 f"{summary['slices']['min']}-{summary['slices']['max']} (mean {summary['slices']['mean']})")
    lines.append(f"no finding: {summary['no_finding_%']}% (CT-RATE {summary['ct_rate_no_finding_%']:.1f}%); "
                 f"findings per volume: {summary['mean_findings']}")
    return "\n".join(lines)


def _labels(df: pd.DataFrame, finding: str) -> pd.Series:
    return pd.to_numeric(df[label_column(finding)], errors="coerce")


def _shares(column: pd.Series) -> dict[str, float]:
    counts = column.astype(str).value_counts(normalize=True).sort_index() * 100.0
    return {k: round(float(v), 1) for k, v in counts.items()}
