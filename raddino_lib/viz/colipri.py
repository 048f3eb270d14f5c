"""Figures of notebook 10: COLIPRI's training curves, its ablation with intervals, and zero-shot score maps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

KIND_STYLE = {"arm": ("tab:blue", "o"), "floor": ("tab:grey", "s"), "ceiling": ("tab:green", "D"),
              "chance": ("black", "|")}


def plot_training_curves(metrics: Mapping[str, pd.DataFrame], window: int = 10) -> Figure:
    """One panel per objective: each arm's loss (running mean over ``window`` steps) against the step."""
    objectives = ("contrastive_loss", "generation_loss", "mim_loss")
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    for ax, col in zip(axes, objectives, strict=True):
        for name, df in metrics.items():
            if col in df and df[col].abs().sum() > 0:
                ax.plot(df["step"], df[col].rolling(window, min_periods=1).mean(), label=name, lw=1.3)
        ax.set_title(col.replace("_", " "))
        ax.set_xlabel("step")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_results(frame: pd.DataFrame, metrics: Sequence[str]) -> Figure:
    """One panel per metric: every arm and reference with its 95% interval; chance as a dashed line."""
    rows = list(dict.fromkeys(frame["row"]))
    rows = [r for r in rows if r != "chance"][::-1]
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics) + 2, 0.38 * len(rows) + 1.6),
                             sharey=True, squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        sub = frame[frame["metric"] == metric]
        for y, row in enumerate(rows):
            hit = sub[sub["row"] == row]
            if hit.empty:
                continue
            r = hit.iloc[0]
            color, marker = KIND_STYLE[r["kind"]]
            err = None
            if r["ci_low"] is not None and pd.notna(r["ci_low"]):
                err = [[r["value"] - r["ci_low"]], [r["ci_high"] - r["value"]]]
            ax.errorbar([r["value"]], [y], xerr=err, color=color, marker=marker, capsize=3, ms=5)
        chance = sub[sub["kind"] == "chance"]
        if not chance.empty:
            ax.axvline(float(chance["value"].iloc[0]), color="black", ls="--", lw=1, label="chance")
        ax.set_title(metric, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(range(len(rows)), rows, fontsize=8)
    fig.tight_layout()
    return fig


def score_map(token_scores: np.ndarray, negative: np.ndarray, positive: np.ndarray, grid: Sequence[int],
              size: Sequence[int]) -> np.ndarray:
    """(D, H, W) zero-shot score of one finding per voxel: each token's cos(positive) − cos(negative), on its
    token grid, trilinearly upsampled to the volume."""
    s = token_scores @ positive - token_scores @ negative  # (N,)
    t = torch.from_numpy(np.asarray(s, dtype=np.float32)).view(1, 1, *grid)
    return F.interpolate(t, size=tuple(size), mode="trilinear", align_corners=False)[0, 0].numpy()


def plot_score_maps(volumes: np.ndarray, maps: Sequence[np.ndarray], titles: Sequence[str]) -> Figure:
    """Per volume: the middle axial and coronal slices, then the same slices with the score map over them."""
    fig, axes = plt.subplots(len(volumes), 4, figsize=(10, 2.6 * len(volumes)), squeeze=False)
    for row, (vol, m, title) in enumerate(zip(volumes, maps, titles, strict=True)):
        d, h = vol.shape[0] // 2, vol.shape[1] // 2
        lim = float(np.abs(m).max()) or 1.0
        for k, (img, sm) in enumerate(((vol[d], m[d]), (vol[:, h][::-1], m[:, h][::-1]))):
            axes[row, 2 * k].imshow(img, cmap="gray")
            axes[row, 2 * k + 1].imshow(img, cmap="gray")
            im = axes[row, 2 * k + 1].imshow(sm, cmap="coolwarm", alpha=0.55, vmin=-lim, vmax=lim)
        axes[row, 0].set_ylabel(title, fontsize=8)
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
        fig.colorbar(im, ax=axes[row, 3], fraction=0.046)
    for k, name in enumerate(("axial", "axial + score", "coronal", "coronal + score")):
        axes[0, k].set_title(name, fontsize=9)
    fig.tight_layout()
    return fig
