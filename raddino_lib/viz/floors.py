"""Figures that put every measurement between its floor and its ceiling.

Rows are drawn in table order — raw pixels and random init (the floors, grey), the encoders (colour), the
supervised ceiling (black) — so a reader sees at once whether an encoder sits near the floor, near the ceiling
or outside the range the measure can resolve.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

ROLE_COLORS = {"pixels": "#9e9e9e", "random": "#616161", "supervised": "#000000"}
ENCODER_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink")


def row_colors(names: Sequence[str]) -> dict[str, str]:
    """Grey floors, black ceiling, a palette colour for each encoder in between."""
    palette = iter(ENCODER_COLORS * 4)
    return {n: ROLE_COLORS.get(n) or next(palette) for n in names}


def cell_values(cell: Mapping | None) -> tuple[float, float, float]:
    """(value, ci_low, ci_high) of a results.json cell, NaN where absent."""
    c = cell or {}
    return tuple(np.nan if c.get(k) is None else float(c[k]) for k in ("value", "ci_low", "ci_high"))


def _cell(table: Mapping, row: str, metric: str) -> tuple[float, float, float]:
    return cell_values((table.get(row) or {}).get(metric))


def plot_floor_to_ceiling(table: Mapping[str, Mapping[str, Mapping]], metrics: Sequence[tuple[str, str]],
                          chance: Mapping[str, float] | None = None, title: str = "") -> Figure:
    """One panel per (metric, label): each row's value with its 95% interval, floor at the bottom.

    ``chance``: metric -> a reference value drawn as a dashed line (0.5 for AUROC).
    """
    rows = list(table)[::-1]  # ceiling on top
    colors = row_colors(list(table))
    fig, axes = plt.subplots(1, len(metrics), figsize=(2.8 * len(metrics) + 1.2, 0.42 * len(rows) + 1.4),
                             sharey=True, squeeze=False)
    for ax, (metric, label) in zip(axes[0], metrics, strict=True):
        for y, row in enumerate(rows):
            v, lo, hi = _cell(table, row, metric)
            if np.isfinite(v):
                xerr = None if not (np.isfinite(lo) and np.isfinite(hi)) else [[v - lo], [hi - v]]
                ax.errorbar(v, y, xerr=xerr, fmt="o", color=colors[row], capsize=3, ms=5)
        if chance and metric in chance:
            ax.axvline(chance[metric], color="grey", ls="--", lw=0.8)
        ax.set_title(label, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(labelsize=8)
    axes[0, 0].set_yticks(range(len(rows)), rows)
    axes[0, 0].set_ylim(-0.6, len(rows) - 0.4)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_dice_heatmap(table: Mapping[str, Mapping[str, Mapping]], structures: Sequence[str],
                      heads: Sequence[tuple[str, str]]) -> Figure:
    """Test Dice per structure (rows) and row of the table (columns), one panel per head.

    heads: (metric suffix, title), e.g. ("", "linear head"), ("_upernet", "UPerNet head").
    """
    names = list(table)
    fig, axes = plt.subplots(1, len(heads), figsize=(1.0 * len(names) * len(heads) + 3.0,
                                                     0.32 * len(structures) + 1.6), squeeze=False)
    for ax, (suffix, label) in zip(axes[0], heads, strict=True):
        grid = np.array([[_cell(table, n, f"dice_{s}{suffix}")[0] for n in names] for s in structures])
        ax.imshow(np.nan_to_num(grid, nan=0.0), vmin=0, vmax=1, cmap="viridis", aspect="auto")
        for (i, j), v in np.ndenumerate(grid):
            ax.text(j, i, "–" if np.isnan(v) else f"{v:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if not np.isnan(v) and v < 0.6 else "black")
        ax.set_xticks(range(len(names)), names, rotation=30, fontsize=8)
        ax.set_yticks(range(len(structures)), structures, fontsize=8)
        ax.set_title(f"{label}: test Dice", fontsize=9)
    fig.tight_layout()
    return fig


def plot_attention_grid(grids: Mapping[str, np.ndarray], region: str, vmax: float = 2.0) -> Figure:
    """Attention mass / chance per layer (rows) and head (columns; last = mean over heads), one panel per
    encoder: 1 (white) is chance, red above, blue below (colours saturate at 2 - vmax and vmax)."""
    names = [n for n, g in grids.items() if g is not None and np.isfinite(g).any()]
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(2.7 * max(1, len(names)) + 1.0, 3.0), squeeze=False,
                             constrained_layout=True)
    im = None
    for k, (ax, name) in enumerate(zip(axes[0], names, strict=False)):
        g = grids[name]
        im = ax.imshow(g, cmap="RdBu_r", vmin=2 - vmax, vmax=vmax, aspect="auto")
        ax.set_xticks(range(g.shape[1]), [str(h) for h in range(g.shape[1] - 1)] + ["mean"], fontsize=7)
        ax.set_yticks(range(g.shape[0]), [str(layer) for layer in range(g.shape[0])], fontsize=7)
        ax.set_xlabel("head", fontsize=8)
        ax.set_ylabel("layer" if k == 0 else "", fontsize=8)
        ax.set_title(name, fontsize=9)
        for (i, j), v in np.ndenumerate(g):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6)
    if im is not None:
        fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="mass / chance")
    fig.suptitle(f"{region} findings: attention mass relative to chance (test split)", fontsize=9)
    return fig


def plot_ceiling_curves(curves, smooth: int = 0, findings_base_rate: float | None = None) -> Figure:
    """The supervised ceiling's training losses (a DataFrame of train.supervised's metrics.csv) against the step:
    the total and each task, raw (grey) and a causal moving mean; on the findings panel, a dashed line at
    ``findings_base_rate`` (``train.supervised.findings_base_rate``: the loss of ignoring the image)."""
    terms = [c for c in ("loss", "findings", "metadata", "segmentation") if c in curves.columns]
    window = smooth or max(1, len(curves) // 20)
    fig, axes = plt.subplots(1, len(terms), figsize=(3.0 * len(terms), 2.6), squeeze=False)
    for ax, term in zip(axes[0], terms, strict=True):
        y = curves[term].to_numpy(float)
        ax.plot(curves["step"], y, color="0.75", lw=0.8)
        ax.plot(curves["step"], np.convolve(np.pad(y, (window - 1, 0), mode="edge"), np.ones(window) / window,
                                            mode="valid"), color="black", lw=1.5)
        if term == "findings" and findings_base_rate is not None:
            ax.axhline(findings_base_rate, color="tab:red", ls="--", lw=1, label="prevalence only")
            ax.legend(fontsize=7)
        ax.set(title="total" if term == "loss" else term, xlabel="step")
    fig.suptitle(f"supervised ceiling: training losses ({len(curves)} steps)", fontsize=9)
    fig.tight_layout()
    return fig


def plot_ceiling_plateau(records: Sequence[Mapping], floor: float | None = None) -> Figure:
    """The ceiling-plateau experiment (``experiments.ceiling_plateau``): each arm's findings loss against the step,
    with the prevalence-only loss dashed, and each arm's test macro AUROC, with the raw-pixel ``floor`` measured
    on the same splits as a line."""
    if not records:
        raise ValueError("plot_ceiling_plateau: no arms to plot")
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4), gridspec_kw={"width_ratios": [1.4, 1]})
    colors = plt.get_cmap("tab10")
    for k, r in enumerate(records):
        steps = (np.arange(len(r["loss"])) + 1) * r["loss_every"]
        left.plot(steps, r["loss"], color=colors(k), lw=1.4, label=r["arm"])
    left.axhline(records[0]["base_rate_bce"], color="black", ls="--", lw=1, label="prevalence only")
    left.set(xlabel="step", ylabel="findings BCE (train batches)", title="findings loss",
             ylim=(0, 1.6 * records[0]["base_rate_bce"]))
    left.legend(fontsize=7, ncol=2)
    names = [r["arm"] for r in records]
    right.barh(names, [r["macro_auroc"] for r in records], color=[colors(k) for k in range(len(records))])
    if floor is not None:
        right.axvline(floor, color="black", ls=":", lw=1.2, label=f"raw-pixel floor {floor:.3f}")
    right.axvline(0.5, color="0.6", ls="--", lw=1, label="chance")
    right.set(xlim=(0.4, 1.0), xlabel="test macro AUROC of the model's own head", title="findings, trained alone")
    right.invert_yaxis()
    right.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig
