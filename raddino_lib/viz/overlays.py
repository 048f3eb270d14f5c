"""Attention maps drawn over their images: encoders side by side, heads, DINO thresholds.

Every function takes plain arrays (images (n, H, W), patch maps (n, [heads,] h, w),
masks (n, H, W)) and returns a matplotlib Figure, so the notebook, the widget
and the tests share them. Maps are upsampled with nearest neighbours (each
patch stays a visible square, as in DINO's figures).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from raddino_lib.viz.attention import threshold_attention, upsample_maps


def display_image(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """A model input (3, S, S) / (1, S, S) / (S, S) in any normalization → (S, S) in [0, 1] for imshow."""
    x = torch.as_tensor(image, dtype=torch.float32)
    x = x[0] if x.ndim == 3 else x
    lo, hi = x.min(), x.max()
    return ((x - lo) / (hi - lo) if hi > lo else torch.zeros_like(x)).numpy()


def draw_overlay(ax: Axes, image: np.ndarray, patch_map: torch.Tensor | np.ndarray, alpha: float = 0.5,
                 mask: np.ndarray | None = None, keep: float | None = None, cmap: str = "inferno") -> None:
    """Image in grey, the (h, w) map upsampled on top; optional mask contour (cyan) and DINO threshold (white)."""
    m = torch.as_tensor(patch_map, dtype=torch.float32)
    size = tuple(image.shape[-2:])
    ax.imshow(image, cmap="gray", vmin=0, vmax=1)
    ax.imshow(upsample_maps(m, size).numpy(), cmap=cmap, alpha=alpha)
    if keep is not None:
        kept = upsample_maps(threshold_attention(m, keep).float(), size).numpy()
        if 0 < kept.mean() < 1:
            ax.contour(kept, levels=[0.5], colors="white", linewidths=1.0)
    if mask is not None and np.asarray(mask).any():
        ax.contour(np.asarray(mask, dtype=float), levels=[0.5], colors="cyan", linewidths=1.0)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_encoder_grid(images: np.ndarray, maps: Mapping[str, torch.Tensor], masks: np.ndarray | None = None,
                      keep: float | None = None, alpha: float = 0.5, titles: Sequence[str] | None = None) -> Figure:
    """Rows = images, columns = the image then one overlay per encoder.

    images: (n, H, W) in [0, 1]; maps: encoder -> (n, h, w) head-averaged maps; masks: (n, H, W) lesion masks.
    """
    n, names = len(images), list(maps)
    fig, axes = plt.subplots(n, len(names) + 1, figsize=(2.2 * (len(names) + 1), 2.2 * n), squeeze=False)
    for r in range(n):
        mask = None if masks is None else masks[r]
        draw_overlay(axes[r, 0], images[r], np.zeros((1, 1)), alpha=0.0, mask=mask)
        axes[r, 0].set_ylabel(titles[r] if titles else f"image {r}", fontsize=8)
        for c, name in enumerate(names, start=1):
            draw_overlay(axes[r, c], images[r], maps[name][r], alpha=alpha, mask=mask, keep=keep)
            if r == 0:
                axes[r, c].set_title(name, fontsize=9)
    axes[0, 0].set_title("image (+ lesion)", fontsize=9)
    fig.tight_layout()
    return fig


def plot_heads(image: np.ndarray, heads: torch.Tensor, mask: np.ndarray | None = None, keep: float | None = None,
               alpha: float = 0.6, title: str = "") -> Figure:
    """One panel per head plus their mean: heads (H, h, w) for one image (H, W)."""
    panels = [*heads, heads.mean(0)]
    labels = [f"head {i}" for i in range(len(heads))] + ["mean"]
    cols = min(len(panels), 7)
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.0 * cols, 2.1 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, panel, label in zip(axes.flat, panels, labels, strict=False):
        draw_overlay(ax, image, panel, alpha=alpha, mask=mask, keep=keep)
        ax.set_title(label, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_layers(image: np.ndarray, layer_maps: Mapping[int, torch.Tensor], mask: np.ndarray | None = None,
                alpha: float = 0.6, title: str = "") -> Figure:
    """One panel per layer: layer index -> (h, w) head-averaged map of one image."""
    fig, axes = plt.subplots(1, len(layer_maps), figsize=(2.0 * len(layer_maps), 2.3), squeeze=False)
    for ax, (layer, m) in zip(axes[0], layer_maps.items(), strict=True):
        draw_overlay(ax, image, m, alpha=alpha, mask=mask)
        ax.set_title(f"layer {layer}", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_scores_vs_chance(table: Mapping[str, Mapping[str, Mapping[str, float | None]]],
                          scores: Sequence[str] = ("attn_mass_large", "attn_mass_small", "pointing_large",
                                                   "pointing_small", "attn_mass_lungs"),
                          ) -> Figure:
    """Bars with 95% CIs per encoder for each score, the chance level (``<score>_chance``) as a dashed line."""
    names = list(table)
    fig, axes = plt.subplots(1, len(scores), figsize=(3.2 * len(scores), 3.2), squeeze=False)
    for ax, score in zip(axes[0], scores, strict=True):
        cells = [table[n].get(score) or {} for n in names]
        v = np.array([np.nan if c.get("value") is None else c["value"] for c in cells], dtype=float)
        lo = np.array([c.get("ci_low") if c.get("ci_low") is not None else np.nan for c in cells], dtype=float)
        hi = np.array([c.get("ci_high") if c.get("ci_high") is not None else np.nan for c in cells], dtype=float)
        err = np.nan_to_num(np.abs(np.vstack([v - lo, hi - v])))
        ax.bar(names, np.nan_to_num(v), yerr=err, capsize=3, color="tab:blue")
        chance = [(table[n].get(f"{score}_chance") or {}).get("value") for n in names]
        chance = [np.nan if c is None else c for c in chance]
        for i, c in enumerate(chance):
            if np.isfinite(c):
                ax.hlines(c, i - 0.4, i + 0.4, colors="grey", linestyles="--", label="chance" if i == 0 else None)
        top = np.nanmax(np.concatenate([v, hi, np.array(chance, dtype=float)]), initial=0.0)
        ax.set(title=score, ylim=(0, min(1.05, 1.25 * top) if top > 0 else 1.0))  # small masks: zoom in
        ax.tick_params(axis="x", rotation=30)
    if axes[0, 0].get_legend_handles_labels()[0]:
        axes[0, 0].legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig
