"""Figures of the language-supervised baseline (notebook 02).

* :func:`plot_loss_curve` — InfoNCE loss per step against chance, ``log(B)``;
* :func:`plot_zeroshot_auroc` — zero-shot AUROC per finding (chance 0.5);
* :func:`plot_retrieval` — recall@k image→text and text→image against chance;
* :func:`plot_similarity` — the image × report cosine matrix of a batch (a
  trained model lights up the diagonal);
* :func:`plot_labeler_agreement` — report labeler accuracy per finding.

Every function returns a matplotlib Figure; :func:`save_figure` writes it as PNG.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from raddino_lib.atomic import atomic_path


def save_figure(fig: plt.Figure, path: str | Path, dpi: int = 120) -> Path:
    """Write ``fig`` as PNG atomically; return the path."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    return Path(path)


def plot_loss_curve(metrics: pd.DataFrame, batch_size: int, smooth: int = 10) -> plt.Figure:
    """metrics: the run's metrics.csv (columns step, loss, temperature)."""
    fig, (ax, ax_t) = plt.subplots(1, 2, figsize=(10, 3.5))
    ax.plot(metrics["step"], metrics["loss"], alpha=0.35, label="loss")
    ax.plot(metrics["step"], metrics["loss"].rolling(smooth, min_periods=1).mean(), label=f"mean of {smooth}")
    ax.axhline(math.log(batch_size), color="grey", ls="--", label=f"chance: log({batch_size})")
    ax.set(xlabel="step", ylabel="symmetric InfoNCE", title="CLIP training loss")
    ax.legend()
    ax_t.plot(metrics["step"], metrics["temperature"])
    ax_t.set(xlabel="step", ylabel="temperature τ", title="learned temperature")
    fig.tight_layout()
    return fig


def plot_zeroshot_auroc(auroc: Mapping[str, float], title: str = "Zero-shot classification") -> plt.Figure:
    """auroc: finding -> AUROC (NaN = not enough positives/negatives in the split, drawn as a gap)."""
    names = list(auroc)
    values = np.array([auroc[n] for n in names], dtype=float)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.5 * len(names)), 3.8))
    colors = ["tab:green" if v > 0.5 else "tab:red" for v in np.nan_to_num(values, nan=0.5)]
    ax.bar(range(len(names)), np.nan_to_num(values, nan=0.0), color=colors)
    ax.axhline(0.5, color="grey", ls="--", label="chance")
    ax.set_xticks(range(len(names)), [n.replace("_", " ") for n in names], rotation=45, ha="right")
    macro = np.nanmean(values) if np.isfinite(values).any() else float("nan")
    ax.set(ylim=(0, 1), ylabel="AUROC", title=f"{title} (macro {macro:.3f})")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def plot_retrieval(recall: Mapping[str, Mapping[int, float]], n_items: int) -> plt.Figure:
    """recall: {"i2t": {k: r}, "t2i": {k: r}}; chance recall@k = k / n_items (distinct reports)."""
    rows = [{"direction": {"i2t": "image → report", "t2i": "report → image"}.get(d, d), "k": f"R@{k}", "recall": r}
            for d, by_k in recall.items() for k, r in by_k.items()]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    sns.barplot(pd.DataFrame(rows), x="k", y="recall", hue="direction", ax=ax)
    ks = sorted({k for by_k in recall.values() for k in by_k})
    ax.plot(range(len(ks)), [min(1.0, k / max(n_items, 1)) for k in ks], "k_", ms=30, mew=2, label="chance")
    ax.set(ylim=(0, 1), ylabel="recall", xlabel="", title=f"Retrieval among {n_items} image–report pairs")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def plot_similarity(similarity: np.ndarray, labels: Sequence[str] | None = None, n: int = 16) -> plt.Figure:
    """similarity: (M, M) image × report cosines; the first ``n`` pairs are drawn (pairs on the diagonal)."""
    sim = np.asarray(similarity)[:n, :n]
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    ticks = [str(t)[:12] for t in labels[:n]] if labels is not None else False
    sns.heatmap(sim, cmap="viridis", square=True, ax=ax, xticklabels=ticks, yticklabels=ticks,
                cbar_kws={"label": "cosine similarity"})
    ax.set(xlabel="report", ylabel="image", title="Image × report similarity (pairs on the diagonal)")
    fig.tight_layout()
    return fig


def plot_labeler_agreement(agreement: Mapping[str, object]) -> plt.Figure:
    """agreement: the dict of :func:`raddino_lib.data.reports.labeler_agreement`."""
    acc: Mapping[str, float] = agreement["accuracy"]  # type: ignore[assignment]
    positives: Mapping[str, int] = agreement.get("n_positive", {})  # type: ignore[assignment]
    names = list(acc)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.5 * len(names)), 3.8))
    ax.bar(range(len(names)), [acc[n] for n in names], color="tab:blue")
    for i, n in enumerate(names):
        ax.text(i, min(acc[n], 1.0) - 0.02, str(positives.get(n, "")), ha="center", va="top", color="white",
                fontsize=7)
    ax.set_xticks(range(len(names)), [n.replace("_", " ") for n in names], rotation=45, ha="right")
    low = max(0.0, min(acc.values()) - 0.1) if acc else 0.0
    ax.set(ylim=(low, 1.0), ylabel="accuracy vs reported labels",
           title=f"Report labeler agreement (macro {agreement['macro_accuracy']:.3f}, "
                 f"{agreement['n_reports']} reports; bar labels = reported positives)")
    fig.tight_layout()
    return fig


def agreement_table(agreement: Mapping[str, object]) -> pd.DataFrame:
    """Per-finding accuracy and reported-positive count as a DataFrame (for display)."""
    acc: Mapping[str, float] = agreement["accuracy"]  # type: ignore[assignment]
    pos: Mapping[str, int] = agreement.get("n_positive", {})  # type: ignore[assignment]
    return pd.DataFrame({"accuracy": pd.Series(acc), "reported_positive": pd.Series(pos)}).rename_axis("finding")
