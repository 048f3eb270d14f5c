"""Figures of a phantom dataset: a labelled anatomy figure, the anatomy masks (organs, ribs, lung zones,
devices), galleries (by finding with mask contours, by sex and age), patient-factor effects on one chest,
an image beside its report, prevalence against ChestX-ray14 and patient-factor distributions.

Dataset figures take a manifest path (images and masks resolve relative to its folder); the anatomy and
patient-factor figures render phantoms themselves. Every function returns a matplotlib Figure.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from PIL import Image

from raddino_lib.data.phantoms.atlas import anatomy_atlas
from raddino_lib.data.phantoms.knobs import PhantomKnobs
from raddino_lib.data.phantoms.patients import Case, Lesion
from raddino_lib.data.phantoms.render import DEVICE_MASK, render_phantom
from raddino_lib.data.phantoms.stats import prevalence_table
from raddino_lib.data.schema import CXR14_FINDINGS, FINDINGS, LUNG_ZONES, label_column, mask_column, reported_column

ANATOMY_COLORS = {"right_lung": "tab:cyan", "left_lung": "tab:blue", "heart": "tab:orange"}
ZONE_COLORS = ("#1f77b4", "#2ca02c", "#d62728")  # upper, middle, lower


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


def anatomy_figure(size: int = 320, seed: int = 3) -> Figure:
    """Two normal PA phantoms (a man, a woman) with their landmarks labelled."""
    cases = (Case(62.0, "M", 26.0, "PA", "site_a"), Case(38.0, "F", 29.0, "PA", "site_a"))
    fig, axes = plt.subplots(1, 2, figsize=(13, 6.8))
    for ax, case in zip(axes, cases, strict=True):
        image, _, points = anatomy_atlas(case, size, seed)
        ax.imshow(image, cmap="gray", vmin=0, vmax=255)
        for right in (False, True):  # labels in a column on each side, pushed apart so that none overlap
            side = sorted((p for p in points.items() if (p[1][1] > size / 2) == right), key=lambda p: p[1][0])
            previous = -np.inf
            for name, (row, col) in side:
                previous = max(row, previous + 0.05 * size)
                ax.annotate(name, xy=(col, row), xytext=(size * (1.04 if right else -0.04), previous),
                            ha="left" if right else "right", va="center", fontsize=8,
                            arrowprops={"arrowstyle": "-", "color": "tab:red", "lw": 0.8})
                ax.plot(col, row, ".", color="tab:red", ms=4)
        ax.set_title(f"{'man' if case.sex == 'M' else 'woman'}, {case.age:g} y, PA", fontsize=9)
        ax.set_xlim(0, size)
        ax.set_axis_off()
    fig.tight_layout()
    return fig


def mask_figure(manifest: str | Path, n: int = 4) -> Figure:
    """Rows: images; columns: the image, lungs and heart, ribs, lung zones, findings and devices."""
    df, root = _load(manifest)
    with_devices = df[df.get(mask_column(DEVICE_MASK), pd.Series("", index=df.index)) != ""]
    rows = pd.concat([with_devices.head(1), df.drop(with_devices.head(1).index).head(n - 1)])
    fig, axes = plt.subplots(len(rows), 5, figsize=(11, 2.3 * len(rows)), squeeze=False)
    titles = ("image", "lungs, heart", "ribs", "lung zones", "findings, devices")
    for r, (_, row) in enumerate(rows.iterrows()):
        image = _image(root, row["path"])
        for c, ax in enumerate(axes[r]):
            ax.imshow(image, cmap="gray", vmin=0, vmax=255)
            ax.set_axis_off()
            if r == 0:
                ax.set_title(titles[c], fontsize=9)
        for s, color in ANATOMY_COLORS.items():
            _fill(axes[r][1], root, row[mask_column(s)], color)
        _fill(axes[r][2], root, row[mask_column("ribs")], "tab:green")
        for zone in LUNG_ZONES:
            _fill(axes[r][3], root, row[mask_column(zone)], ZONE_COLORS[("upper", "middle", "lower").index(
                zone.split("_")[1])])
        for col in (c for c in df.columns if c.startswith("mask_") and c[5:] in FINDINGS):
            _fill(axes[r][4], root, row[col], "gold" if col[5:] == DEVICE_MASK else "red")
    fig.tight_layout()
    return fig


def _fill(ax: plt.Axes, root: Path, rel: str, color: str, alpha: float = 0.45) -> None:
    if rel:
        mask = _image(root, rel) > 127
        ax.imshow(np.ma.masked_where(~mask, mask), cmap=matplotlib.colors.ListedColormap([color]), alpha=alpha,
                  vmin=0, vmax=1, interpolation="nearest")


def factor_effects(size: int = 224, seed: int = 5) -> Figure:
    """One chest (same random draws) under different patient factors: age (top row), sex, BMI and view."""
    knobs = PhantomKnobs()
    rows = [[Case(age, "M", 26.0, "PA", "site_a") for age in (22.0, 45.0, 65.0, 88.0)],
            [Case(45.0, "M", 21.0, "PA", "site_a"), Case(45.0, "F", 21.0, "PA", "site_a"),
             Case(45.0, "F", 36.0, "PA", "site_a"), Case(45.0, "F", 36.0, "AP", "site_a")]]
    fig, axes = plt.subplots(2, 4, figsize=(12, 6.4))
    for r, cases in enumerate(rows):
        for ax, case in zip(axes[r], cases, strict=True):
            image, _ = render_phantom(case, size, np.random.default_rng(seed), knobs)
            ax.imshow(image, cmap="gray", vmin=0, vmax=255)
            ax.set_title(f"{case.sex}, {case.age:g} y, BMI {case.bmi:g}, {case.view}", fontsize=9)
            ax.set_axis_off()
    fig.tight_layout()
    return fig


def lesion_sizes(sizes: tuple[int, ...] = (64, 128, 224), seed: int = 2) -> Figure:
    """The same lesions at several image sizes: they keep their size in millimetres of the film."""
    case = Case(55.0, "M", 26.0, "PA", "site_a", {"Mass": Lesion("left", 2), "Nodule": Lesion("right", 2)})
    fig, axes = plt.subplots(1, len(sizes), figsize=(3.2 * len(sizes), 3.4))
    for ax, size in zip(axes, sizes, strict=True):
        image, masks = render_phantom(case, size, np.random.default_rng(seed), PhantomKnobs())
        ax.imshow(image, cmap="gray", vmin=0, vmax=255)
        for name in ("Mass", "Nodule"):
            ax.contour(masks[name], levels=[0.5], colors=["red"], linewidths=0.8)
        ax.set_title(f"{size} px", fontsize=9)
        ax.set_axis_off()
    fig.tight_layout()
    return fig
