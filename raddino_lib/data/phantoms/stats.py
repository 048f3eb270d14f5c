"""Summaries of a phantom manifest: prevalence against ChestX-ray14, patient factors, report noise."""

from __future__ import annotations

import numpy as np
import pandas as pd

from raddino_lib.data.phantoms.knobs import CXR14_LABELS_PER_IMAGE, CXR14_NO_FINDING, CXR14_PREVALENCE
from raddino_lib.data.schema import CXR14_FINDINGS, FINDINGS, SPLITS, label_column, reported_column


def prevalence_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per finding: prevalence (%) in ``df`` and in ChestX-ray14 (NaN where CXR14 has no such label)."""
    cxr14 = {**CXR14_PREVALENCE, "No Finding": CXR14_NO_FINDING}
    rows = [{"finding": f, "phantoms_%": 100.0 * float((_labels(df, f) == 1).mean()),
             "chestxray14_%": 100.0 * cxr14[f] if f in cxr14 else np.nan} for f in FINDINGS]
    return pd.DataFrame(rows).set_index("finding").round(2)


def labels_per_image(df: pd.DataFrame) -> pd.DataFrame:
    """Share (%) of images with 1, 2, 3, 4+ labels (No Finding counts as a label), against ChestX-ray14."""
    n = sum((_labels(df, f) == 1).astype(int) for f in (*CXR14_FINDINGS, "No Finding"))
    counts = np.minimum(n, 4)
    rows = [{"labels": f"{k}{'+' if k == 4 else ''}", "phantoms_%": 100.0 * float((counts == k).mean()),
             "chestxray14_%": 100.0 * CXR14_LABELS_PER_IMAGE[k]} for k in (1, 2, 3, 4)]
    return pd.DataFrame(rows).set_index("labels").round(2)


def report_noise(df: pd.DataFrame) -> pd.DataFrame:
    """Per CXR14 finding among images that have it: % stated, hedged (-1) and unreported (0) by the report."""
    rows = []
    for f in CXR14_FINDINGS:
        present = _labels(df, f) == 1
        said = pd.to_numeric(df.loc[present, reported_column(f)], errors="coerce")
        k = max(int(present.sum()), 1)
        rows.append({"finding": f, "n_present": int(present.sum()), "stated_%": 100.0 * (said == 1).sum() / k,
                     "hedged_%": 100.0 * (said == -1).sum() / k, "unreported_%": 100.0 * (said == 0).sum() / k})
    return pd.DataFrame(rows).set_index("finding").round(1)


def describe(df: pd.DataFrame) -> dict:
    """Counts per split, prevalence (%), sex / view / site shares and the age distribution."""
    age = pd.to_numeric(df["age"], errors="coerce")
    return {
        "n_images": int(len(df)),
        "n_patients": int(df["patient_id"].nunique()),
        "splits": {s: int((df["split"] == s).sum()) for s in SPLITS},
        "prevalence_%": prevalence_table(df)["phantoms_%"].to_dict(),
        "sex_%": _shares(df["sex"]),
        "view_%": _shares(df["view"]),
        "site_%": _shares(df["site"]),
        "age": {"mean": round(float(age.mean()), 1), "sd": round(float(age.std()), 1),
                "median": round(float(age.median()), 1), "min": float(age.min()), "max": float(age.max())},
    }


def format_summary(summary: dict) -> str:
    """Multi-line text of :func:`describe` for the command line."""
    lines = [f"{summary['n_images']} images, {summary['n_patients']} patients; "
             + ", ".join(f"{k} {v}" for k, v in summary["splits"].items())]
    for key in ("sex_%", "view_%", "site_%"):
        lines.append(f"{key[:-2]}: " + ", ".join(f"{k} {v:.1f}%" for k, v in summary[key].items()))
    a = summary["age"]
    lines.append(f"age: mean {a['mean']} sd {a['sd']} median {a['median']} range {a['min']}-{a['max']}")
    lines.append("prevalence: " + ", ".join(f"{k} {v:.1f}%" for k, v in summary["prevalence_%"].items()))
    return "\n".join(lines)


def _labels(df: pd.DataFrame, finding: str) -> pd.Series:
    return pd.to_numeric(df[label_column(finding)], errors="coerce")


def _shares(column: pd.Series) -> dict[str, float]:
    counts = column.astype(str).value_counts(normalize=True).sort_index() * 100.0
    return {k: round(float(v), 1) for k, v in counts.items()}
