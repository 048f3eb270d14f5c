"""Figures of notebook 08: scaling curves and the ablation arms between their floor and ceiling.

Both take plain data: ``records`` (arm name -> the record ``experiments.ablations.run_arm`` writes: group,
n_images, steps, metrics) and ``references`` (random / pixels / supervised -> metric -> cell). Floors are drawn
as grey bands (their 95% interval), the supervised ceiling as a black line, so a curve that never leaves the
random-init band says "no measurable effect at this scale" at a glance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from raddino_lib.viz.floors import ROLE_COLORS, cell_values

GROUP_COLORS = {"base": "navy", "data size": "tab:blue", "equal epochs": "tab:cyan", "steps": "tab:orange",
                "diversity": "tab:green", "resolution": "tab:purple", "recipe": "tab:red",
                "initialisation": "tab:brown"}


def _references(ax: Axes, references: Mapping[str, Mapping], metric: str, horizontal: bool = True) -> None:
    """Floors as bands over their interval, the ceiling as a line (with a label for the legend)."""
    for name, ref in references.items():
        v, lo, hi = cell_values(ref.get(metric))
        if not np.isfinite(v):
            continue
        color = ROLE_COLORS.get(name, "grey")
        span, line = (ax.axhspan, ax.axhline) if horizontal else (ax.axvspan, ax.axvline)
        if name != "supervised" and np.isfinite(lo) and np.isfinite(hi):
            span(lo, hi, color=color, alpha=0.18, lw=0)
        line(v, color=color, ls="-" if name == "supervised" else "--", lw=1, label=name)


def _curve(ax: Axes, points: Sequence[tuple[float, Mapping | None]], label: str, color: str, marker: str) -> None:
    points = sorted((x, cell_values(c)) for x, c in points if np.isfinite(cell_values(c)[0]))
    if not points:
        return
    x = np.array([p[0] for p in points], dtype=float)
    v, lo, hi = (np.array([p[1][k] for p in points]) for k in range(3))
    ax.errorbar(x, v, yerr=[v - lo, hi - v], color=color, marker=marker, capsize=3, lw=1.4, ms=5, label=label)


def _label_points(ax: Axes, xs: Sequence[float]) -> None:
    """Ticks at the measured x values only, written as plain numbers (a log axis labels 3×10² otherwise)."""
    xs = sorted({float(x) for x in xs if float(x) > 0})
    if xs:
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
        ax.xaxis.set_minor_formatter(NullFormatter())


def plot_scaling_curves(records: Mapping[str, Mapping], references: Mapping[str, Mapping],
                        metrics: Mapping[str, str]) -> Figure:
    """Top row: each metric against the number of pretraining images (log axis), at equal steps and at equal
    epochs; bottom row: against the number of steps. ``metrics``: metric key -> title."""
    base = records.get("base")
    by_group = lambda *groups: [r for r in records.values() if r["group"] in groups]  # noqa: E731
    fig, axes = plt.subplots(2, len(metrics), figsize=(4.2 * len(metrics), 7), squeeze=False)
    for j, (key, title) in enumerate(metrics.items()):
        top, bottom = axes[0, j], axes[1, j]
        _curve(top, [(r["n_images"], r["metrics"].get(key)) for r in by_group("base", "data size")],
               "equal steps", "tab:blue", "o")
        epochs = by_group("equal epochs") + ([base] if base else [])
        if len(epochs) > 1:
            _curve(top, [(r["n_images"], r["metrics"].get(key)) for r in epochs], "equal epochs", "tab:cyan", "s")
        _curve(bottom, [(r["steps"], r["metrics"].get(key)) for r in by_group("steps")
                        + ([base] if base else [])], "steps (all images)", "tab:orange", "o")
        sized = by_group("base", "data size", "equal epochs")
        for ax, xlabel, xs in ((top, "pretraining images", [r["n_images"] for r in sized]),
                               (bottom, "optimizer steps", [r["steps"] for r in by_group("base", "steps")])):
            _references(ax, references, key)
            ax.set_xscale("log")
            _label_points(ax, xs)
            ax.set_xlabel(xlabel)
            ax.set_title(title, fontsize=9)
            ax.grid(alpha=0.3, which="both")
        if j == 0:
            top.legend(fontsize=7)
            bottom.legend(fontsize=7)
    fig.suptitle("Scaling: test metrics (95% patient-bootstrap intervals); grey bands = floors, black = ceiling",
                 fontsize=10)
    fig.tight_layout()
    return fig


def plot_arm_intervals(records: Mapping[str, Mapping], references: Mapping[str, Mapping],
                       metrics: Mapping[str, str]) -> Figure:
    """Every arm (coloured by group) with its interval, one panel per metric, floors and ceiling behind."""
    names = list(records)[::-1]  # base on top
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics) + 1.5, 0.36 * len(names) + 1.6),
                             sharey=True, squeeze=False)
    for ax, (key, title) in zip(axes[0], metrics.items(), strict=True):
        _references(ax, references, key, horizontal=False)
        for y, name in enumerate(names):
            v, lo, hi = cell_values(records[name]["metrics"].get(key))
            if np.isfinite(v):
                xerr = [[v - lo], [hi - v]] if np.isfinite(lo) and np.isfinite(hi) else None
                ax.errorbar(v, y, xerr=xerr, fmt="o", capsize=3, ms=5,
                            color=GROUP_COLORS.get(records[name]["group"], "grey"))
        base = records.get("base", {}).get("metrics", {}).get(key)
        if base and base.get("value") is not None:
            ax.axvline(base["value"], color="black", lw=0.6, alpha=0.5)
        ax.set_title(title, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(labelsize=8)
    axes[0, 0].set_yticks(range(len(names)), names)
    axes[0, 0].set_ylim(-0.6, len(names) - 0.4)
    axes[0, 0].legend(fontsize=7, loc="lower left")
    fig.suptitle("Ablation arms against the base (thin line); grey bands = floors, black = supervised ceiling",
                 fontsize=10)
    fig.tight_layout()
    return fig
