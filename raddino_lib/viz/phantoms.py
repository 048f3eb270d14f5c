"""Figures of a phantom dataset: galleries (by finding with mask contours, by sex and age), an image
beside its report, prevalence against ChestX-ray14 and patient-factor distributions.

Every function takes a manifest path (images and masks resolve relative to its folder) and returns
a matplotlib Figure.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from PIL import Image

from raddino_lib.data.phantoms.stats import prevalence_table
from raddino_lib.data.schema import CXR14_FINDINGS, FINDINGS, label_column, mask_column, reported_column

ANATOMY_COLORS = {"right_lung": "tab:cyan", "left_lung": "tab:blue", "heart": "tab:orange"}


def _load(manifest: str | Path) -> tuple[pd.DataFrame, Path]:
    manifest = Path(manifest)
    return pd.read_csv(manifest, dtype=str, keep_default_na=False), manifest.parent


def _image(root: Path, rel: str) -> np.ndarray:
    return np.asarray(Image.open(root / rel))


def _contour(ax: plt.Axes, root: Path, rel: str, color: str) -> None:
    if rel:
        ax.contour(_image(root, rel) > 127, levels=[0.5], colors=[color], linewidths=1.0)


def _has(df: pd.DataFrame, finding: str) -> pd.Series:
    return pd.to_numeric(df[label_column(finding)], errors="coerce") == 1


def gallery_by_finding(manifest: str | Path, findings: tuple[str, ...] = FINDINGS, per_finding: int = 3,
                       anatomy: bool = False) -> Figure:
    """One row per finding: ``per_finding`` images that have it, the finding's mask outlined in red
    (and the lungs and heart when ``anatomy``)."""
    df, root = _load(manifest)
    findings = tuple(f for f in findings if _has(df, f).any())
    fig, axes = plt.subplots(len(findings), per_finding, figsize=(2.0 * per_finding, 2.0 * len(findings)),
                             squeeze=False)
    for r, finding in enumerate(findings):
        rows = df[_has(df, finding)].head(per_finding)
        for c, ax in enumerate(axes[r]):
            ax.set_axis_off()
            if c >= len(rows):
                continue
            row = rows.iloc[c]
            ax.imshow(_image(root, row["path"]), cmap="gray", vmin=0, vmax=255)
            if anatomy:
                for s, color in ANATOMY_COLORS.items():
                    _contour(ax, root, row.get(mask_column(s), ""), color)
            _contour(ax, root, row.get(mask_column(finding), ""), "red")
        axes[r][0].set_title(finding, fontsize=8, loc="left")
    fig.tight_layout()
    return fig


def gallery_by_factor(manifest: str | Path, age_bins: tuple[float, ...] = (18, 35, 50, 65, 80, 96)) -> Figure:
    """Rows: sex; columns: age bins; normal (No Finding) PA films when available."""
    df, root = _load(manifest)
    age = pd.to_numeric(df["age"])
    normal = _has(df, "No Finding") & (df["view"] == "PA")
    fig, axes = plt.subplots(2, len(age_bins) - 1, figsize=(2.0 * (len(age_bins) - 1), 4.4), squeeze=False)
    for r, sex in enumerate(("M", "F")):
        for c in range(len(age_bins) - 1):
            ax = axes[r][c]
            ax.set_axis_off()
            pick = (df["sex"] == sex) & (age >= age_bins[c]) & (age < age_bins[c + 1])
            rows = df[pick & normal] if (pick & normal).any() else df[pick]
            if len(rows):
                ax.imshow(_image(root, rows.iloc[0]["path"]), cmap="gray", vmin=0, vmax=255)
            ax.set_title(f"{sex}, {age_bins[c]:g}-{age_bins[c + 1] - 1:g} y", fontsize=8)
    fig.tight_layout()
    return fig


def image_with_report(manifest: str | Path, image_id: str | None = None) -> Figure:
    """An image (masks outlined) beside its report and its true vs reported labels."""
    df, root = _load(manifest)
    if image_id is None:
        n_labels = sum(_has(df, f).astype(int) for f in CXR14_FINDINGS)
        image_id = df.loc[n_labels.idxmax(), "image_id"]
    row = df[df["image_id"] == image_id].iloc[0]
    fig, (ax_img, ax_txt) = plt.subplots(1, 2, figsize=(10, 4.5), gridspec_kw={"width_ratios": [1, 1.4]})
    ax_img.imshow(_image(root, row["path"]), cmap="gray", vmin=0, vmax=255)
    for col in (c for c in df.columns if c.startswith("mask_") and c[5:] in CXR14_FINDINGS):
        _contour(ax_img, root, row[col], "red")
    ax_img.set_title(image_id, fontsize=9)
    ax_img.set_axis_off()
    truth = [f for f in FINDINGS if row[label_column(f)] == "1"]
    said = {f: row[reported_column(f)] for f in FINDINGS if row[reported_column(f)] in ("1", "-1")}
    text = "\n".join(textwrap.wrap(row["report"], 60))
    text += "\n\ntrue labels: " + ", ".join(truth) + "\nreport states: "
    text += ", ".join(f"{f}{' (hedged)' if v == '-1' else ''}" for f, v in said.items())
    ax_txt.text(0.0, 1.0, text, va="top", ha="left", fontsize=9, family="monospace", wrap=True)
    ax_txt.set_axis_off()
    fig.tight_layout()
    return fig


def prevalence_chart(manifest: str | Path) -> Figure:
    """Horizontal bars: prevalence (%) per finding in the phantoms and in ChestX-ray14."""
    df, _ = _load(manifest)
    table = prevalence_table(df)
    fig, ax = plt.subplots(figsize=(7, 5))
    y = np.arange(len(table))
    ax.barh(y - 0.2, table["phantoms_%"], height=0.4, label="phantoms")
    ax.barh(y + 0.2, table["chestxray14_%"].fillna(0.0), height=0.4, label="ChestX-ray14")
    ax.set_yticks(y, table.index)
    ax.invert_yaxis()
    ax.set_xlabel("prevalence (%)")
    ax.legend()
    fig.tight_layout()
    return fig


def patient_factors(manifest: str | Path) -> Figure:
    """Age by sex, BMI, view and site distributions."""
    df, _ = _load(manifest)
    fig, axes = plt.subplots(1, 4, figsize=(14, 3))
    for sex in ("M", "F"):
        axes[0].hist(pd.to_numeric(df.loc[df["sex"] == sex, "age"]), bins=20, range=(18, 95), alpha=0.6, label=sex)
    axes[0].set(xlabel="age (years)", ylabel="images")
    axes[0].legend()
    axes[1].hist(pd.to_numeric(df["bmi"]), bins=20)
    axes[1].set(xlabel="BMI")
    for ax, col in ((axes[2], "view"), (axes[3], "site")):
        counts = df[col].value_counts().sort_index()
        ax.bar(counts.index, counts.values)
        ax.set(xlabel=col)
    fig.tight_layout()
    return fig
