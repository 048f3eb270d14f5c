"""Segmentation probes on frozen patch tokens: a linear head and a UPerNet head.

*linear*: a 1×1 convolution maps each last-layer patch token to one logit per
structure; the (h, w) logit grid is upsampled bilinearly to the mask size.
Only the head learns, so the Dice says how much of the anatomy and of the
localized findings a single token already encodes - DINOv2's "linear"
segmentation protocol. *upernet*: a small UPerNet/FPN decoder
(``models.upernet``) on four layers of the frozen encoder - the head RAD-DINO
uses for lungs, lung zones and ribs. Both train with BCE + soft Dice on the
train split and are scored by Dice on the test split.

Dice of an image is undefined when both the prediction and the truth are
empty (a finding absent and correctly not predicted); such images are left
out of that structure's mean rather than counted as perfect.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from raddino_lib.probe.bootstrap import Estimate, patient_bootstrap

HEADS: tuple[str, ...] = ("linear", "upernet")
DEFAULT_LR: dict[str, float] = {"linear": 5e-2, "upernet": 3e-3}  # a linear map on standardised tokens takes a
# large step safely; a decoder with BatchNorm needs Adam's usual range


@dataclass
class SegConfig:
    epochs: int = 5  # passes over the train split; the linear head converges in ~10 on the cpu profile
    lr: float = 0.0  # Adam learning rate; 0 = the head's default (DEFAULT_LR)
    head: str = "linear"  # "linear" (1x1 conv on the last layer) or "upernet" (decoder on 4 layers)
    channels: int = 32  # UPerNet decoder width (the paper's head uses 512; 32 fits two CPU cores)
    loss_size: int = 0  # side at which the training loss is computed, on masks area-averaged to it (soft targets);
    # 0 = 4 x the token grid (or the mask side if smaller). Dice is always scored at the full mask size.
    batch_size: int = 16  # images per step
    dice_weight: float = 1.0  # loss = BCE + dice_weight * soft Dice
    threshold: float = 0.5  # probability above which a pixel is predicted inside
    seed: int = 0
    device: str = "cpu"
    cpu_threads: int = 1  # torch CPU threads for the head: a linear head gains little, busy cores stall; 0 = as is

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr < 0 or self.channels < 1:
            raise ValueError(f"SegConfig: epochs, batch_size and channels must be positive, lr >= 0, got {self}")
        if self.head not in HEADS:
            raise ValueError(f"SegConfig: head {self.head!r} is not one of {HEADS}")
        self.lr = self.lr or DEFAULT_LR[self.head]


class LinearSegHead(nn.Module):
    """(B, h, w, D) tokens → (B, S, H, W) logits: standardise, 1×1 conv, bilinear upsampling."""

    def __init__(self, dim: int, n_structures: int, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean.reshape(1, dim, 1, 1))  # train-split token statistics (fixed)
        self.register_buffer("std", std.reshape(1, dim, 1, 1))
        self.conv = nn.Conv2d(dim, n_structures, kernel_size=1)

    def forward(self, grid: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = grid.permute(0, 3, 1, 2).float()  # (B, D, h, w)
        logits = self.conv((x - self.mean) / self.std)  # (B, S, h, w)
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)  # (B, S, H, W)


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - soft Dice, averaged over images and structures. logits, target: (B, S, H, W)."""
    p = torch.sigmoid(logits)
    inter = (p * target).sum((2, 3))
    return (1 - (2 * inter + eps) / (p.sum((2, 3)) + target.sum((2, 3)) + eps)).mean()


def dice_per_image(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Hard Dice per image and structure; nan where both are empty. pred, target: (N, S, H, W) bool."""
    pred, target = pred.astype(bool), target.astype(bool)
    inter = (pred & target).sum((2, 3))
    total = pred.sum((2, 3)) + target.sum((2, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, 2.0 * inter / total, np.nan)  # (N, S)


@contextlib.contextmanager
def torch_threads(n: int):
    """Temporarily run torch CPU ops on ``n`` threads (0 = leave as is)."""
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def token_stats(tokens: np.ndarray, chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of (N, ..., h, w, D) tokens over images and positions → (..., D) each."""
    n_pos = int(np.prod(tokens.shape[-3:-1]))
    total = sq = 0.0
    for i in range(0, len(tokens), chunk):
        x = torch.as_tensor(tokens[i:i + chunk], dtype=torch.float64)  # (n, ..., h, w, D)
        total = total + x.sum(dim=(0, -3, -2))
        sq = sq + (x * x).sum(dim=(0, -3, -2))
    count = len(tokens) * n_pos
    mean = total / count
    std = (sq / count - mean * mean).clamp_min(0).sqrt()
    return mean.float(), std.float().clamp_min(1e-6)


def soft_targets(masks: np.ndarray, side: int, chunk: int = 256) -> torch.Tensor:
    """(N, S, H, W) 0/1 masks → (N, S, side, side) float16 fractions of each target pixel inside the mask."""
    parts = [F.adaptive_avg_pool2d(torch.as_tensor(masks[i:i + chunk]).float(), side).half()
             for i in range(0, len(masks), chunk)]
    return torch.cat(parts)


def build_head(cfg: SegConfig, tokens: np.ndarray, n_structures: int) -> nn.Module:
    """The head of ``cfg.head`` for (N, h, w, D) (linear) or (N, L, h, w, D) (upernet) tokens."""
    mean, std = token_stats(tokens)
    if cfg.head == "linear":
        if tokens.ndim != 4:
            raise ValueError(f"the linear head takes (N, h, w, D) tokens, got {tokens.shape}")
        return LinearSegHead(tokens.shape[-1], n_structures, mean, std)
    from raddino_lib.models.upernet import UPerNetHead

    if tokens.ndim != 5:
        raise ValueError(f"the UPerNet head takes (N, L, h, w, D) tokens of L layers, got {tokens.shape}")
    return UPerNetHead(tokens.shape[-1], n_structures, mean, std, n_layers=tokens.shape[1], channels=cfg.channels)


def train_head(grid: np.ndarray, masks: np.ndarray, cfg: SegConfig) -> nn.Module:
    """Fit ``cfg.head`` on (N, [L,] h, w, D) tokens and (N, S, H, W) 0/1 masks."""
    with torch_threads(cfg.cpu_threads):
        return _train_head(grid, masks, cfg)


def _train_head(tokens: np.ndarray, masks: np.ndarray, cfg: SegConfig) -> nn.Module:
    torch.manual_seed(cfg.seed)
    side = min(masks.shape[-1], cfg.loss_size or 4 * tokens.shape[-2])
    target = soft_targets(masks, side)  # (N, S, side, side) float16 area fractions
    head = build_head(cfg, tokens, target.shape[1])
    last = head.conv if cfg.head == "linear" else head.classifier
    with torch.no_grad():  # start at each structure's pixel prevalence: small lesions need not unlearn p = 0.5
        prior = target.float().mean(dim=(0, 2, 3)).clamp(1e-4, 1 - 1e-4)  # (S,)
        last.bias.copy_(torch.log(prior / (1 - prior)))
    head = head.to(cfg.device).train()
    opt = torch.optim.Adam(head.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    size = tuple(target.shape[-2:])
    for _ in range(cfg.epochs):
        for idx in torch.randperm(len(tokens), generator=gen).split(cfg.batch_size):
            order = idx.sort().values.numpy()
            x = torch.as_tensor(tokens[order], dtype=torch.float32).to(cfg.device)
            head_step(head, opt, x, target[order].float().to(cfg.device), size, cfg.dice_weight)
    return head.eval()


def head_step(head: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, target: torch.Tensor,
              size: tuple[int, int], dice_weight: float = 1.0) -> float:
    """One optimizer step of a segmentation head: BCE + dice_weight × soft Dice against (B, S, h, w) targets."""
    logits = head(x, size)
    loss = F.binary_cross_entropy_with_logits(logits, target) + dice_weight * soft_dice_loss(logits, target)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach())


@torch.no_grad()
def predict(head: nn.Module, grid: np.ndarray, size: tuple[int, int], batch_size: int = 64,
            device: str = "cpu") -> np.ndarray:
    """(N, [L,] h, w, D) tokens → (N, S, H, W) float32 probabilities."""
    out = [torch.sigmoid(head(torch.as_tensor(grid[i:i + batch_size], dtype=torch.float32).to(device), size)).cpu()
           for i in range(0, len(grid), batch_size)]
    return torch.cat(out).numpy()


@dataclass
class SegResult:
    """Test-split Dice of one encoder's head."""

    table: pd.DataFrame  # one row per structure: structure, dice, dice_ci_low, dice_ci_high, n_images
    dice_mean: Estimate  # mean over structures (bootstrapped jointly)
    dice: np.ndarray  # (N_test, S) per-image Dice (nan = both empty)
    test_index: np.ndarray  # (N_test,) row positions of the test images
    predictions: np.ndarray  # (n_keep, S, H, W) probabilities of the first test images (for overlays)


def mean_over_structures(d: np.ndarray) -> float:
    means = [np.nanmean(c) for c in d.T if np.isfinite(c).any()]
    if not means:
        raise ValueError("no structure has a defined Dice in this sample")
    return float(np.mean(means))


def _nanmean(d: np.ndarray) -> float:
    if not np.isfinite(d).any():
        raise ValueError("Dice undefined on every image of this sample")
    return float(np.nanmean(d))


def segmentation_probe(grid: np.ndarray, masks: np.ndarray, splits: Sequence[str], patient_ids: Sequence,
                       structures: Sequence[str], cfg: SegConfig | None = None, n_boot: int = 1000, seed: int = 0,
                       keep_predictions: int = 8) -> SegResult:
    """Train on the train split, score Dice on the test split with patient bootstrap intervals.

    Args:
        grid: (N, h, w, D) frozen patch tokens for the linear head, (N, L, h, w, D) tokens of L layers for
            the UPerNet head (``cfg.head``); masks: (N, S, H, W) 0/1 targets, S = len(structures).
        splits, patient_ids: (N,).
    """
    cfg = cfg or SegConfig()
    splits, pids = np.asarray(splits), np.asarray(patient_ids)
    if masks.shape[:2] != (len(grid), len(structures)) or not (len(splits) == len(pids) == len(grid)):
        raise ValueError(f"grid {grid.shape}, masks {masks.shape}, {len(splits)} splits, {len(pids)} patients and "
                         f"{len(structures)} structures do not line up (need (N,[L,]h,w,D), (N,S,H,W), N, N)")
    train, test = np.flatnonzero(splits == "train"), np.flatnonzero(splits == "test")
    if len(train) == 0 or len(test) == 0:
        raise ValueError("segmentation probe needs 'train' and 'test' rows in the manifest's split column")
    head = train_head(grid[train], masks[train], cfg)
    size = tuple(masks.shape[-2:])
    with torch_threads(cfg.cpu_threads):
        probs = predict(head, grid[test], size, device=cfg.device)  # (N_test, S, H, W)
    dice = dice_per_image(probs > cfg.threshold, masks[test] > 0.5)
    rows = []
    for s, name in enumerate(structures):
        defined = np.isfinite(dice[:, s]).any()
        est = (patient_bootstrap(_nanmean, [dice[:, s]], pids[test], n_boot, seed=seed) if defined
               else Estimate(float("nan"), float("nan"), float("nan"), 0))
        rows.append({"structure": name, "dice": est.value, "dice_ci_low": est.ci_low, "dice_ci_high": est.ci_high,
                     "n_images": int(np.isfinite(dice[:, s]).sum())})
    mean = patient_bootstrap(mean_over_structures, [dice], pids[test], n_boot, seed=seed)
    return SegResult(pd.DataFrame(rows), mean, dice, test, probs[:keep_predictions])
