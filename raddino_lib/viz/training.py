"""Figures of a pretraining run: loss curves and schedules from metrics.csv, and a batch of crops + masks."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from raddino_lib.train.metrics_log import read_metrics

LOSS_TERMS = (("total_loss", "total"), ("dino_loss", "DINO [CLS]"), ("ibot_loss", "iBOT masked patches"),
              ("koleo_loss", "KoLeo"))
SCHEDULES = (("lr", "learning rate"), ("wd", "weight decay"), ("momentum", "teacher EMA momentum"),
             ("teacher_temp", "teacher temperature"))


def _smooth(y: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(y) < window:
        return y
    kernel = np.ones(window) / window
    return np.convolve(np.pad(y, (window - 1, 0), mode="edge"), kernel, mode="valid")  # causal moving mean


def plot_loss_curves(metrics_csv: str | Path, smooth: int = 0) -> Figure:
    """One panel per loss term (raw and moving mean) and one per schedule, against the step.

    smooth: moving-mean window; 0 picks ~1/20 of the run.
    """
    rows = read_metrics(metrics_csv)
    if not rows:
        raise ValueError(f"{metrics_csv} has no rows: the run has not logged a step yet")
    step = np.array([r["step"] for r in rows])
    window = smooth or max(1, len(rows) // 20)
    fig, axes = plt.subplots(2, 4, figsize=(16, 6.5), constrained_layout=True)
    for ax, (key, title) in zip(axes[0], LOSS_TERMS, strict=True):
        y = np.array([r[key] for r in rows])
        ax.plot(step, y, color="0.75", lw=0.8, label="per step")
        ax.plot(step, _smooth(y, window), color="C0", lw=1.8, label=f"mean of {window}")
        ax.set(title=title, xlabel="step")
    axes[0, 0].legend(fontsize=8)
    for ax, (key, title) in zip(axes[1], SCHEDULES, strict=True):
        ax.plot(step, [r[key] for r in rows], color="C1")
        ax.set(title=title, xlabel="step")
    fig.suptitle(f"pretraining: {Path(metrics_csv).parent.name} ({len(rows)} steps)")
    return fig


def _to_gray(crop: torch.Tensor) -> np.ndarray:
    """(3, S, S) normalized crop → (S, S) in [0, 1] for display (per-crop min-max)."""
    x = crop.float().mean(0)
    return ((x - x.min()) / (x.max() - x.min() + 1e-8)).cpu().numpy()


def plot_crops_and_masks(batch: dict[str, torch.Tensor], patch_size: int, n_images: int = 4) -> Figure:
    """Rows = images; columns = the 2 global crops (iBOT-masked patches in red) then the local crops.

    batch: a collated multi-crop batch (``global_crops`` (2B, 3, G, G) view-major, ``local_crops``
    (nL*B, 3, L, L), ``masks`` (2B, N) bool).
    """
    g, masks = batch["global_crops"], batch["masks"]
    B = g.shape[0] // 2
    local = batch.get("local_crops")
    n_local = 0 if local is None or local.numel() == 0 else local.shape[0] // B
    n_images = min(n_images, B)
    grid = g.shape[-1] // patch_size
    cols = 2 + n_local
    fig, axes = plt.subplots(n_images, cols, figsize=(1.8 * cols, 1.9 * n_images), squeeze=False,
                             constrained_layout=True)
    for i in range(n_images):
        for v in range(2):
            ax = axes[i, v]
            ax.imshow(_to_gray(g[v * B + i]), cmap="gray", vmin=0, vmax=1)
            m = masks[v * B + i].view(grid, grid).float().cpu().numpy()
            m = np.kron(m, np.ones((patch_size, patch_size)))  # (G, G): patch mask at pixel resolution
            ax.imshow(np.ma.masked_where(m == 0, m), cmap=ListedColormap(["red"]), alpha=0.4, vmin=0, vmax=1)
            ax.set_title(f"global {v + 1}: {int(masks[v * B + i].sum())} masked" if i == 0 else
                         f"{int(masks[v * B + i].sum())} masked", fontsize=8)
        for j in range(n_local):
            axes[i, 2 + j].imshow(_to_gray(local[j * B + i]), cmap="gray", vmin=0, vmax=1)
            if i == 0:
                axes[i, 2 + j].set_title(f"local {j + 1}", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("multi-crop views (red: patches the student sees as [MASK]; the teacher sees them all)")
    return fig


def plot_collapse_diagnostics(metrics_csv: str | Path, n_prototypes: int, embed_dim: int | None = None,
                              smooth: int = 0) -> Figure:
    """The collapse diagnostics of ``raddino_lib.train.collapse`` against the step, each beside its reference.

    Panels: teacher and student entropy (uniform = log K), prototypes in use (K = all equally), teacher logit
    std across prototypes and spread across images (against the teacher temperature), and the std of the
    normalised teacher [CLS] over the batch (1/√D for directions spread uniformly).
    """
    rows = read_metrics(metrics_csv)
    if not rows or "teacher_entropy" not in rows[0]:
        raise ValueError(f"{metrics_csv} has no collapse diagnostics (written by pretrain since they were added)")
    step = np.array([r["step"] for r in rows])
    window = smooth or max(1, len(rows) // 20)

    def curve(ax, key, label, color):
        y = np.array([r[key] for r in rows])
        ax.plot(step, y, color=color, lw=0.6, alpha=0.35)
        ax.plot(step, _smooth(y, window), color=color, lw=1.8, label=label)

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6), constrained_layout=True)
    log_k = float(np.log(n_prototypes))
    curve(axes[0], "teacher_entropy", "teacher targets", "C0")
    curve(axes[0], "student_entropy", "student", "C1")
    axes[0].axhline(log_k, color="k", ls="--", lw=1, label=f"uniform: log K = {log_k:.2f}")
    axes[0].set(title="entropy of a prediction (nats)", xlabel="step", ylim=(0, log_k * 1.05))
    curve(axes[1], "prototypes_used", "exp(entropy of mean target)", "C2")
    axes[1].axhline(n_prototypes, color="k", ls="--", lw=1, label=f"K = {n_prototypes}")
    axes[1].set(title="prototypes in use", xlabel="step", yscale="log")
    curve(axes[2], "teacher_logit_std", "across prototypes", "C3")
    curve(axes[2], "teacher_logit_spread", "across images", "C4")
    axes[2].plot(step, [r["teacher_temp"] for r in rows], color="k", ls="--", lw=1, label="teacher temperature")
    axes[2].set(title="teacher logits: std", xlabel="step", yscale="log")
    curve(axes[3], "cls_std", "teacher [CLS]", "C5")
    if embed_dim:
        axes[3].axhline(1 / np.sqrt(embed_dim), color="k", ls="--", lw=1, label=f"1/√D (D = {embed_dim})")
    axes[3].set(title="normalised [CLS]: std over the batch", xlabel="step", ylim=(0, None))
    for ax in axes:
        ax.legend(fontsize=7)
    fig.suptitle("collapse diagnostics: uniform collapse = entropy at log K and logit spread far below the "
                 "temperature; one-hot = a handful of prototypes")
    return fig


def _val_curve(record: dict) -> tuple[list[int], list[float]]:
    """(steps, val scores) of a sweep arm, starting at its random init (step 0)."""
    return [0] + [s for s, _ in record["val"]], [record["val_init"]] + [v for _, v in record["val"]]


def plot_recipe_sweep(records: list[dict], title: str = "") -> Figure:
    """A recipe sweep (``experiments.recipe_sweep``): what the loss says against what a probe says.

    Left: each arm's final DINO loss over log K against its best validation kNN score, with the random init's
    score as a dashed line; an arm low on the x axis has learned to predict its teacher, an arm high on the
    y axis has features that separate the labels. Right: the validation score against the step.
    """
    if not records:
        raise ValueError("plot_recipe_sweep: no arms to plot")
    kind = records[0]["val_kind"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.6), constrained_layout=True)
    for i, r in enumerate(records):
        color = plt.cm.tab20(i % 20)  # up to 20 arms in distinct colours
        left.scatter(r["dino_over_log_k"], r["val_best"], color=color, s=40, zorder=3)
        left.annotate(r["arm"], (r["dino_over_log_k"], r["val_best"]), fontsize=7, xytext=(4, 3),
                      textcoords="offset points")
        right.plot(*_val_curve(r), marker="o", ms=3, color=color, label=r["arm"])
    init = float(np.mean([r["val_init"] for r in records]))
    left.axhline(init, color="k", ls="--", lw=1, label=f"random init ({init:.2f})")
    left.axvline(1.0, color="grey", ls=":", lw=1, label="uniform targets (log K)")
    left.set(xlabel="DINO loss / log K (last 10 steps)", ylabel=f"best val kNN {kind}",
             title="the loss against the probe")
    left.legend(fontsize=7)
    right.set(xlabel="step", ylabel=f"val kNN {kind}", title="validation score during pretraining")
    right.legend(fontsize=6, ncol=2)
    if title:
        fig.suptitle(title)
    return fig


def plot_test_by_steps(records: list[dict], title: str = "") -> Figure:
    """Arms of one recipe run for different lengths, with test probes (``recipe_sweep.run_arm(test=True)``).

    Left: each probe's test findings macro AUROC of the best teacher against the steps, with its 95% interval as
    error bars, and the random init's interval as a band: the steps at which the bars leave the band are the
    shortest run whose features are measurably better than random init. Right: the val kNN score during each run.
    """
    records = sorted((r for r in records if "test" in r), key=lambda r: r["steps"])
    if not records:
        raise ValueError("plot_test_by_steps: no arm with test probes")
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.6), constrained_layout=True)
    steps = np.array([r["steps"] for r in records])
    for (probe, label), color in zip((("cls", "[CLS]"), ("clsmean", "[CLS, mean patch]")), ("C0", "C1"),
                                     strict=True):
        ssl = np.array([r["test"]["ssl"][probe] for r in records])  # (arms, 3): value, low, high
        rnd = np.array(records[0]["test"]["random"][probe])
        left.errorbar(steps, ssl[:, 0], yerr=[ssl[:, 0] - ssl[:, 1], ssl[:, 2] - ssl[:, 0]], color=color, marker="o",
                      capsize=4, label=f"SSL, {label}")
        left.axhspan(rnd[1], rnd[2], color=color, alpha=0.12, label=f"random init, {label} ({rnd[0]:.3f})")
    left.set(xlabel="pretraining steps", ylabel="test findings macro AUROC (linear probe)",
             title="test probes of the best teacher, 95% intervals", xticks=steps)
    left.legend(fontsize=7, loc="upper left")
    for i, r in enumerate(records):
        right.plot(*_val_curve(r), marker="o", ms=3, color=plt.cm.viridis(i / max(len(records) - 1, 1)),
                   label=f"{r['arm']} ({r['steps']} steps)")
    right.set(xlabel="step", ylabel=f"val kNN {records[0]['val_kind']}", title="validation score during pretraining")
    right.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return fig
