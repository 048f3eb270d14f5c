"""Figures of the probing notebooks: encoders side by side, always with intervals.

Every function returns a matplotlib Figure (the notebook saves and shows it);
inputs are the plain tables the probes produce, so the plots are testable
without any model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

STRUCTURE_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink")


def _grouped_bars(ax, groups: Sequence[str], series: Mapping[str, pd.DataFrame], key: str, value: str) -> None:
    """One bar group per ``groups`` entry, one bar per series, with ``value_ci_low/high`` error bars."""
    n = max(len(series), 1)
    width = 0.8 / n
    x = np.arange(len(groups))
    for i, (name, df) in enumerate(series.items()):
        df = df.set_index(key).reindex(groups)
        v = df[value].to_numpy(dtype=float)
        lo, hi = df[f"{value}_ci_low"].to_numpy(dtype=float), df[f"{value}_ci_high"].to_numpy(dtype=float)
        err = np.vstack([v - lo, hi - v])  # (2, G) distances below / above the value
        ax.bar(x + (i - (n - 1) / 2) * width, v, width, yerr=np.nan_to_num(np.abs(err)), capsize=2, label=name)
    ax.set_xticks(x, groups, rotation=45, ha="right")
    ax.legend(frameon=False, fontsize=8)


def plot_label_metric(per_label: Mapping[str, pd.DataFrame], metric: str = "auroc", chance: float | None = 0.5,
                      title: str = "") -> Figure:
    """Per-finding ``metric`` of each encoder with 95% CIs.

    per_label: encoder -> DataFrame with columns finding, <metric>, <metric>_ci_low, <metric>_ci_high.
    """
    findings = sorted({f for df in per_label.values() for f in df["finding"]})
    fig, ax = plt.subplots(figsize=(min(14.0, max(5.0, 0.6 * len(findings) * max(len(per_label), 1) ** 0.5 + 2)), 3.8))
    _grouped_bars(ax, findings, per_label, "finding", metric)
    if chance is not None:
        ax.axhline(chance, color="grey", ls="--", lw=1)
    ax.set_ylabel(metric.upper())
    ax.set_ylim(0, 1.05)
    ax.set_title(title or f"Per-finding {metric.upper()} (95% patient-bootstrap CI)")
    fig.tight_layout()
    return fig


def plot_metric_table(table: Mapping[str, Mapping[str, Mapping[str, float | None]]], title: str = "") -> Figure:
    """The results.json table (encoder -> metric -> {value, ci_low, ci_high}) as a figure of text cells."""
    encoders = list(table)
    metrics = list(dict.fromkeys(m for row in table.values() for m in row))

    def cell(c: Mapping[str, float | None] | None) -> str:
        if not c or c.get("value") is None:
            return "-"
        if c.get("ci_low") is None or c.get("ci_high") is None:
            return f"{c['value']:.3f}"
        return f"{c['value']:.3f} [{c['ci_low']:.3f}, {c['ci_high']:.3f}]"

    text = [[cell(table[e].get(m)) for m in metrics] for e in encoders]
    fig, ax = plt.subplots(figsize=(max(4.0, 2.3 * len(metrics) + 1), 0.45 * len(encoders) + 1.0))
    ax.axis("off")
    tab = ax.table(cellText=text, rowLabels=encoders, colLabels=metrics, loc="center", cellLoc="center")
    tab.auto_set_font_size(False)
    tab.set_fontsize(8)
    tab.scale(1.0, 1.4)
    ax.set_title(title or "Macro scores, value [95% CI]", fontsize=10)
    fig.tight_layout()
    return fig


def plot_dice_bars(tables: Mapping[str, pd.DataFrame], title: str = "") -> Figure:
    """Dice per structure for each encoder; tables: encoder -> DataFrame(structure, dice, dice_ci_low, dice_ci_high)."""
    structures = list(dict.fromkeys(s for df in tables.values() for s in df["structure"]))
    fig, ax = plt.subplots(figsize=(min(14.0, max(5.0, 1.2 * len(structures) + 2)), 3.8))
    _grouped_bars(ax, structures, tables, "structure", "dice")
    ax.set_ylabel("Dice")
    ax.set_ylim(0, 1.05)
    ax.set_title(title or "Linear segmentation probe: test Dice (95% patient-bootstrap CI)")
    fig.tight_layout()
    return fig


def plot_segmentation_overlays(images: np.ndarray, truth: np.ndarray, predictions: Mapping[str, np.ndarray],
                               structures: Sequence[str], threshold: float = 0.5, max_images: int = 4,
                               show: Sequence[str] | None = None) -> Figure:
    """Rows = images, columns = encoders: the image with true (solid) and predicted (dashed) contours.

    images: (n, H, W) in any range; truth: (n, S, H, W) 0/1; predictions: encoder -> (n, S, H, W) probabilities.
    show: the structures to draw (default all; pass the anatomy when many findings would clutter the picture).
    """
    if show is not None:
        keep = [list(structures).index(s) for s in show if s in structures]
        truth, structures = truth[:, keep], [structures[i] for i in keep]
        predictions = {k: v[:, keep] for k, v in predictions.items()}
    n = min(len(images), max_images, *(len(p) for p in predictions.values()))
    cols = list(predictions)
    fig, axes = plt.subplots(n, len(cols), figsize=(2.4 * len(cols), 2.4 * n), squeeze=False)
    for r in range(n):
        for c, name in enumerate(cols):
            ax = axes[r, c]
            ax.imshow(images[r], cmap="gray")
            for s in range(len(structures)):
                color = STRUCTURE_COLORS[s % len(STRUCTURE_COLORS)]
                if truth[r, s].any():
                    ax.contour(truth[r, s], levels=[0.5], colors=[color], linewidths=1.0)
                if (predictions[name][r, s] > threshold).any():
                    ax.contour(predictions[name][r, s], levels=[threshold], colors=[color], linewidths=1.0,
                               linestyles="--")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=9)
    handles = [plt.Line2D([], [], color=STRUCTURE_COLORS[s % len(STRUCTURE_COLORS)], label=structures[s])
               for s in range(len(structures))]
    handles += [plt.Line2D([], [], color="k", label="truth"), plt.Line2D([], [], color="k", ls="--", label="predicted")]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 4), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig
