"""Figures of CT phantom datasets: findings in orthogonal slices and projections with their masks, a volume
beside its report, prevalence against the configured statistics, and the difficulty floor and ceiling."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from raddino_lib.data.phantoms_ct.knobs import LOCALIZED_FINDINGS, lesion_label
from raddino_lib.data.schema import CT_FINDINGS, label_column, reported_column
from raddino_lib.data.volume_io import load_volume, read_nifti
from raddino_lib.data.volume_manifest import read_volume_manifest

LUNG_WINDOW = (-1350.0, 150.0)  # level -600, width 1500
SOFT_WINDOW = (-160.0, 240.0)  # level 40, width 400
LUNG_FINDINGS = ("Emphysema", "Atelectasis", "Lung nodule", "Lung opacity", "Pulmonary fibrotic sequela",
                 "Mosaic attenuation pattern", "Peribronchial thickening", "Consolidation", "Bronchiectasis",
                 "Interlobular septal thickening", "Pleural effusion")


def _pick(df: pd.DataFrame, finding: str) -> pd.Series | None:
    """A volume with ``finding`` (the one with the fewest other findings, for a clean picture)."""
    rows = df[df[label_column(finding)] == 1]
    if rows.empty:
        return None
    others = sum((rows[label_column(f)] == 1).astype(int) for f in CT_FINDINGS)
    return rows.loc[others.idxmin()]


def finding_gallery(manifest: str | Path, findings: tuple[str, ...] = CT_FINDINGS) -> plt.Figure:
    """One row per finding: axial and coronal slices through the lesion (mask outlined) and a projection
    through the volume (maximum for dense findings, minimum for air-like ones) with the projected mask."""
    df = read_volume_manifest(manifest)
    fig, axes = plt.subplots(len(findings), 3, figsize=(7.5, 2.4 * len(findings)))
    for ax_row, finding in zip(np.atleast_2d(axes), findings, strict=True):
        row = _pick(df, finding)
        for ax in ax_row:
            ax.set_axis_off()
        if row is None:
            ax_row[0].set_title(f"{finding}: none in this dataset", fontsize=8)
            continue
        vol = load_volume(row["abs_path"]).hu.numpy()
        lesions, _ = read_nifti(row["abs_mask_lesions"], labels=True)
        mask = lesions == lesion_label(finding) if finding in LOCALIZED_FINDINGS else np.zeros_like(lesions, bool)
        d, h, w = (np.argwhere(mask).mean(0).round().astype(int) if mask.any()
                   else (int(vol.shape[0] * 0.6), vol.shape[1] // 2, vol.shape[2] // 2))
        lo, hi = LUNG_WINDOW if finding in LUNG_FINDINGS else SOFT_WINDOW
        sz, sy, sx = row["spacing_zyx"]
        _show(ax_row[0], vol[d], mask[d], lo, hi, 1.0, f"{finding}\naxial")
        _show(ax_row[1], vol[::-1, h], mask[::-1, h], lo, hi, sz / sx, "coronal")
        air = finding in ("Emphysema", "Mosaic attenuation pattern", "Bronchiectasis")
        k = max(1, int(round(SLAB_MM / 2 / sy)))  # a coronal slab around the lesion
        slab = vol[:, max(0, h - k): h + k + 1]
        proj = slab.min(axis=1) if air else slab.max(axis=1)
        title = f"{'MinIP' if air else 'MIP'}, {SLAB_MM:.0f} mm slab"
        _show(ax_row[2], proj[::-1], mask[:, max(0, h - k): h + k + 1].any(axis=1)[::-1],
              -1024.0 if air else lo, -600.0 if air else hi, sz / sx, title)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.99, bottom=0.01, wspace=0.05, hspace=0.25)
    return fig


SLAB_MM = 30.0


def _show(ax, image: np.ndarray, mask: np.ndarray, lo: float, hi: float, aspect: float, title: str) -> None:
    ax.imshow(image, cmap="gray", vmin=lo, vmax=hi, aspect=aspect, interpolation="nearest")
    if mask.any():
        overlay = np.zeros((*mask.shape, 4))
        overlay[mask] = (1.0, 0.1, 0.1, 0.45)
        ax.imshow(overlay, aspect=aspect, interpolation="nearest")
    ax.set_title(title, fontsize=7)


def volume_with_report(manifest: str | Path, index: int | None = None) -> plt.Figure:
    """Three orthogonal slices of one volume, its report, and its true labels beside what the report states."""
    df = read_volume_manifest(manifest)
    if index is None:
        counts = sum((df[label_column(f)] == 1).astype(int) for f in CT_FINDINGS)
        index = int(np.argmin(np.abs(counts.to_numpy() - 3)))  # a volume with about three findings
    row = df.iloc[index]
    vol = load_volume(row["abs_path"]).hu.numpy()
    sz, sy, sx = row["spacing_zyx"]
    fig = plt.figure(figsize=(12, 5.5))
    grid = fig.add_gridspec(2, 4, width_ratios=[1, 1, 1, 1.6])
    d, h, w = (int(vol.shape[0] * 0.62), vol.shape[1] // 2, vol.shape[2] // 2)
    for k, (image, aspect, title) in enumerate(((vol[d], 1.0, "axial"), (vol[::-1, h], sz / sx, "coronal"),
                                                (vol[::-1, :, w], sz / sy, "sagittal"))):
        for r, (lo, hi) in enumerate((LUNG_WINDOW, SOFT_WINDOW)):
            ax = fig.add_subplot(grid[r, k])
            ax.imshow(image, cmap="gray", vmin=lo, vmax=hi, aspect=aspect)
            ax.set_title(f"{title}, {'lung' if r == 0 else 'soft-tissue'} window", fontsize=8)
            ax.set_axis_off()
    ax = fig.add_subplot(grid[:, 3])
    ax.set_axis_off()
    truth = [f for f in CT_FINDINGS if row[label_column(f)] == 1]
    said = {f: int(row[reported_column(f)]) for f in CT_FINDINGS if row[reported_column(f)] != 0}
    legend = "\n".join(f"  {f}: truth {int(row[label_column(f)])}, report {said.get(f, 0)}"
                       for f in dict.fromkeys(truth + list(said)))
    text = textwrap.fill(row["report"], 70) + "\n\nlabels (truth) vs report (1 stated, -1 hedged, 0 not):\n" + legend
    ax.text(0, 1, f"{row['image_id']}  (site {row['site']}, kernel {row['kernel']}, spacing {row['spacing']} mm)\n\n"
            + text, va="top", ha="left", fontsize=7, family="monospace")
    fig.tight_layout()
    return fig


def prevalence_chart(table: pd.DataFrame) -> plt.Figure:
    """Bars: phantom prevalence with its 95% interval; marks: the configured target and CT-RATE."""
    fig, ax = plt.subplots(figsize=(9, 4.2))
    x = np.arange(len(table))
    ax.bar(x, table["phantoms_%"], color="#4c72b0", label="phantoms (95% CI)")
    ax.errorbar(x, table["phantoms_%"], yerr=[table["phantoms_%"] - table["ci_low_%"],
                                              table["ci_high_%"] - table["phantoms_%"]], fmt="none", ecolor="k", lw=1)
    ax.scatter(x, table["configured_%"], color="#dd8452", marker="D", zorder=3, label="configured")
    ax.scatter(x, table["ct_rate_%"], color="#55a868", marker="_", s=200, zorder=3, label="CT-RATE")
    ax.set_xticks(x, table.index, rotation=70, ha="right", fontsize=7)
    ax.set_ylabel("prevalence (%)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def difficulty_chart(result: dict) -> plt.Figure:
    """Per-finding test AUROC of the floor (random 3D ViT + linear) and the ceiling (supervised 3D CNN)."""
    findings = result["findings"]
    fig, ax = plt.subplots(figsize=(9, 4))
    x = np.arange(len(findings))
    for k, (name, color) in enumerate((("random_vit_linear", "#8c8c8c"), ("supervised_cnn3d", "#c44e52"))):
        values = [result[name]["per_finding"][f] for f in findings]
        macro = result[name]["macro_auroc"]
        ax.bar(x + (k - 0.5) * 0.4, values, width=0.4, color=color,
               label=f"{name}: macro {macro['value']:.2f} [{macro['ci_low']:.2f}, {macro['ci_high']:.2f}]")
    ax.axhline(0.5, color="k", lw=0.8, ls="--")
    ax.set_xticks(x, findings, rotation=70, ha="right", fontsize=7)
    ax.set_ylabel("test AUROC")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
