"""The supervised ceiling: the encoders' own architecture, trained on the labels the probes score.

A probe result is readable only between a floor (what needs no learning: random init, raw pixels) and a
ceiling (what this architecture can reach on this data when it is *told* the answer). The ceiling here is one
backbone trained once, multi-task, on the train split:

    image (B, 3, S, S) → backbone → [CLS, mean patch] (B, 2D) → BatchNorm → linear heads: findings (multi-label
                                                                 BCE), age and BMI (standardized MSE), sex, view,
                                                                 site (CE)
                                  → patch grid (B, h, w, D) → 1×1 conv → every mask structure (BCE + soft Dice)

It is then frozen and probed exactly like the SSL and language encoders (same features, same probes), so every
probe notebook reads it as its "supervised" row. One multi-task network instead of one network per target keeps
the cost to one training run (the compute budget of the cpu profile); it is a slightly lower ceiling than
per-target training would be, which the probe notebooks state.

Every target is discovered from the manifest's columns (``train.supervised_data``), so new mask columns are
learned without code changes.

The train split is held in memory at the probes' resolution (images and area-averaged masks, float16): fine for
phantoms and for tens of thousands of images at 224 px; for a large real dataset pass a ceiling trained elsewhere
(the probe notebooks' ``supervised_encoder``) or set ``supervised_steps`` to 0.

Cached and resumable: the run folder is ``cache_dir/supervised_<key>/`` with ``key`` a digest of the manifest's
bytes, the architecture source and the config; a finished run (``supervised_encoder.safetensors`` present) is
reused, an interrupted one resumes from its last checkpoint (``checkpoints/step_*``, see ``train.checkpoint``).
"""

from __future__ import annotations

import csv
import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from raddino_lib import atomic
from raddino_lib.data.manifest import manifest_digest, read_manifest
from raddino_lib.device import resolve_device
from raddino_lib.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from raddino_lib.train.schedules import cosine_schedule
from raddino_lib.train.supervised_data import Targets, discover_targets, load_split, normalize, shift_batch

ENCODER_NAME = "supervised_encoder.safetensors"
FORMAT_VERSION = 1  # bump when training changes in a way the config does not capture: old runs are retrained


@dataclass
class SupervisedConfig:
    manifest: str = ""  # manifest.csv with splits, labels, patient fields and mask columns; required
    cache_dir: str = "runs/supervised"  # runs land in cache_dir/supervised_<key>/ and are reused when complete
    like: str = ""  # backbone file whose architecture and input normalisation to copy (the SSL encoder)
    arch: str = "vit_tiny"  # used when ``like`` is empty (models/backbone.py ARCHS)
    patch_size: int = 8  # used when ``like`` is empty
    depth: int = 4  # used when ``like`` is empty; 0 = the arch's default depth
    image_size: int = 64  # training crop side = the probes' eval size
    batch_size: int = 32  # images per step (more, smaller steps learn more per CPU-second than fewer large ones)
    max_steps: int = 300  # optimizer steps; the cpu profile's budget allows a few hundred
    lr: float = 1e-3  # peak AdamW learning rate after warmup; lower it if the loss spikes
    min_lr: float = 1e-5  # end of the cosine decay
    warmup_steps: int = -1  # linear warmup; -1 = 10% of max_steps
    weight_decay: float = 0.05  # AdamW on weight matrices only
    grad_clip: float = 1.0  # max global gradient norm; 0 disables
    layer_scale_init: float = 0.1  # LayerScale's starting value (an init, not an architecture change): DINOv2's
    # 1e-5 keeps every block near the identity for thousands of steps, far more than the ceiling's budget
    findings_weight: float = 1.0  # weight of the multi-label findings loss
    metadata_weight: float = 1.0  # weight of the mean patient-field loss (age, BMI, sex, view, site)
    segmentation_weight: float = 1.0  # weight of the dense mask loss (BCE + soft Dice)
    head_norm: str = "batchnorm"  # "batchnorm": the linear heads read [CLS, mean patch] standardised over the
    # batch (the ViT's pooled features at init differ little between images beside their common part; without it
    # the findings loss sits at the base rate for hundreds of steps: experiments.ceiling_plateau); "" = none
    mask_size: int = 0  # side of the soft (area-averaged) mask targets; 0 = 4 x the patch grid
    max_shift: int = 4  # random translation in pixels, applied to image and masks alike; 0 = none
    checkpoint_every: int = 100  # steps between resumable checkpoints; 0 = only at the end
    seed: int = 0  # torch seed: same seed + same manifest -> same run on CPU
    device: str = "cpu"  # cpu | cuda | auto
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes saved in config.json

    def __post_init__(self) -> None:
        bad = {k: getattr(self, k) for k, ok in {
            "manifest": bool(self.manifest), "batch_size": self.batch_size >= 2, "max_steps": self.max_steps >= 1,
            "lr": self.lr > 0, "image_size": self.image_size > 0, "max_shift": self.max_shift >= 0,
            "warmup_steps": self.warmup_steps <= self.max_steps, "mask_size": self.mask_size >= 0,
            "head_norm": self.head_norm in ("", "batchnorm")}.items() if not ok}
        if bad:
            raise ValueError(f"SupervisedConfig: invalid {bad} (manifest is required; batch_size >= 2; "
                             "max_steps >= 1; lr > 0; max_shift, mask_size >= 0; warmup_steps <= max_steps; "
                             "head_norm '' or 'batchnorm')")

    @property
    def warmup(self) -> int:
        return self.max_steps // 10 if self.warmup_steps < 0 else self.warmup_steps


# ===== model =====

class MultiTaskModel(nn.Module):
    """A backbone with linear heads on [CLS, mean patch] (standardised over the batch with ``head_norm``) and a
    1x1 conv on the patch grid (only for the targets the manifest has). Only the backbone is kept."""

    def __init__(self, backbone: nn.Module, targets: Targets, head_norm: str = "") -> None:
        super().__init__()
        d = backbone.embed_dim
        self.backbone = backbone
        self.norm = nn.BatchNorm1d(2 * d) if head_norm == "batchnorm" else nn.Identity()
        self.findings = nn.Linear(2 * d, len(targets.findings)) if targets.findings else None
        self.regression = nn.Linear(2 * d, len(targets.regression)) if targets.regression else None
        self.classifiers = nn.ModuleDict({k: nn.Linear(2 * d, len(v)) for k, v in targets.classes.items()})
        self.segmentation = nn.Conv2d(d, len(targets.structures), kernel_size=1) if targets.structures else None

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """images (B, 3, S, S) → findings (B, F), regression (B, R), <field> (B, K), masks (B, S_m, h, w) logits."""
        from raddino_lib.models.backbone import pool_tokens

        cls, mean_patch, grid = pool_tokens(self.backbone, self.backbone.forward_features(images))  # grid (B, h, w, D)
        pooled = self.norm(torch.cat([cls, mean_patch], dim=1))  # (B, 2D)
        out = {k: head(pooled) for k, head in self.classifiers.items()}
        if self.findings is not None:
            out["findings"] = self.findings(pooled)
        if self.regression is not None:
            out["regression"] = self.regression(pooled)
        if self.segmentation is not None:
            out["masks"] = self.segmentation(grid.permute(0, 3, 1, 2))  # (B, S_m, h, w)
        return out


def soft_dice(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - soft Dice averaged over images and structures; logits, target (B, S, H, W)."""
    p = torch.sigmoid(logits)
    inter = (p * target).sum((2, 3))
    return (1 - (2 * inter + eps) / (p.sum((2, 3)) + target.sum((2, 3)) + eps)).mean()


def task_losses(out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], targets: Targets
                ) -> dict[str, torch.Tensor]:
    """Per-task losses of one batch (unknown labels and values are left out)."""
    losses: dict[str, torch.Tensor] = {}
    if targets.findings:
        y = batch["labels"]
        known = torch.isfinite(y)
        losses["findings"] = F.binary_cross_entropy_with_logits(out["findings"][known], y[known])
    meta = []
    if targets.regression:
        v = batch["values"]
        known = torch.isfinite(v)
        meta.append(F.mse_loss(out["regression"][known], v[known]))
    for j, name in enumerate(targets.classes):
        codes = batch["codes"][:, j]
        if (codes >= 0).any():
            meta.append(F.cross_entropy(out[name], codes, ignore_index=-1))
    if meta:
        losses["metadata"] = torch.stack(meta).mean()
    if targets.structures:
        m = batch["masks"]
        logits = F.interpolate(out["masks"], size=m.shape[-2:], mode="bilinear", align_corners=False)
        losses["segmentation"] = F.binary_cross_entropy_with_logits(logits, m) + soft_dice(logits, m)
    return losses


# ===== training =====

def run_key(cfg: SupervisedConfig) -> str:
    """16 hex digits of the manifest's bytes, the architecture source's bytes and every training setting."""
    from raddino_lib.models.weights import file_digest

    settings = {k: v for k, v in asdict(cfg).items() if k not in ("cache_dir", "device", "checkpoint_every", "extra")}
    settings.update(manifest=manifest_digest(cfg.manifest), like=file_digest(cfg.like) if cfg.like else "",
                    format=FORMAT_VERSION)
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def run_dir_of(cfg: SupervisedConfig) -> Path:
    return Path(cfg.cache_dir).resolve() / f"supervised_{run_key(cfg)}"


def build_backbone(cfg: SupervisedConfig) -> nn.Module:
    """A fresh backbone with the architecture (and input normalisation) of ``cfg.like``, else of the arch fields."""
    from raddino_lib.models.backbone import backbone_from_spec, create_backbone
    from raddino_lib.models.weights import read_backbone_spec

    if cfg.like:
        spec = read_backbone_spec(cfg.like)
        if spec.get("layer_scale_init") is not None:  # keep a model without LayerScale without it
            spec["layer_scale_init"] = cfg.layer_scale_init
        spec.update(img_size=cfg.image_size, drop_path_rate=0.0)
        return backbone_from_spec(spec)
    return create_backbone(cfg.arch, patch_size=cfg.patch_size, img_size=cfg.image_size, depth=cfg.depth,
                           layer_scale_init=cfg.layer_scale_init)


def train_supervised(cfg: SupervisedConfig, progress: bool = True) -> Path:
    """Train (or reuse, or resume) the supervised ceiling; return the path of its backbone file."""
    run_dir = run_dir_of(cfg)
    encoder_path = run_dir / ENCODER_NAME
    if encoder_path.is_file():
        return encoder_path
    from tqdm.auto import tqdm

    from raddino_lib.models.weights import save_backbone

    # ===== data: every target of the manifest, the train split in memory =====
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic.write_json(run_dir / "config.json", asdict(cfg))
    df = read_manifest(cfg.manifest)
    targets = discover_targets(df)
    if not (targets.findings or targets.regression or targets.classes or targets.structures):
        raise ValueError(f"{cfg.manifest}: nothing for the supervised ceiling to learn (no label column with both "
                         "classes in train, no age/bmi/sex/view/site values, no mask column with masks)")
    backbone = build_backbone(cfg)
    mask_size = cfg.mask_size or 4 * (cfg.image_size // backbone.spec.patch_size)
    data = load_split(df, targets, "train", cfg.image_size, mask_size)
    if cfg.head_norm == "batchnorm" and len(data["images"]) < 2:
        raise ValueError(f"{cfg.manifest}: the supervised ceiling needs at least 2 train images for its BatchNorm "
                         f"heads, the train split has {len(data['images'])}; add train rows or set head_norm=''")

    # ===== model, optimizer, schedule; resume from the last checkpoint =====
    model = MultiTaskModel(backbone, targets, cfg.head_norm).to(device)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "pos_embed" not in n and "token" not in n]
    other = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "pos_embed" not in n and "token" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": other, "weight_decay": 0.0}], lr=cfg.lr)
    lrs = cosine_schedule(cfg.lr, cfg.min_lr, cfg.max_steps, cfg.warmup)
    g = torch.Generator().manual_seed(cfg.seed)
    start, history = 0, []
    ckpt = latest_checkpoint(run_dir / "checkpoints")
    if ckpt is not None:
        state = load_checkpoint(ckpt, model, optimizer)
        start, history = ckpt.step, state.get("history", [])
        g.set_state(torch.tensor(state["generator"], dtype=torch.uint8))

    # ===== training loop =====
    model.train()
    n = len(data["images"])
    began = time.perf_counter()
    for step in tqdm(range(start, cfg.max_steps), desc="supervised ceiling", disable=not progress,
                     initial=start, total=cfg.max_steps):
        idx = torch.randint(0, n, (min(cfg.batch_size, n),), generator=g)
        batch = {k: v[idx] for k, v in data.items()}
        images, batch["masks"] = shift_batch(batch["images"].float(), batch["masks"].float(), cfg.max_shift, g)
        batch["images"] = normalize(images, backbone.spec.image_mean, backbone.spec.image_std)  # (B, 3, S, S)
        batch = {k: v.to(device) for k, v in batch.items()}
        for group in optimizer.param_groups:
            group["lr"] = float(lrs[step])
        losses = task_losses(model(batch["images"]), batch, targets)
        weights = {"findings": cfg.findings_weight, "metadata": cfg.metadata_weight,
                   "segmentation": cfg.segmentation_weight}
        loss = sum(weights[k] * v for k, v in losses.items())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"supervised ceiling: loss is {loss.item()} at step {step}; lower lr "
                                     f"(now {lrs[step]:g})")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        history.append({"step": step, "loss": loss.item(), **{k: v.item() for k, v in losses.items()},
                        "lr": float(lrs[step]), "seconds": time.perf_counter() - began})
        if cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.max_steps:
            save_checkpoint(run_dir / "checkpoints", step + 1, model, optimizer, asdict(cfg), keep=1,
                            extra={"history": history, "generator": g.get_state().tolist()})

    # ===== outputs: the backbone (what the probes read), metrics, the targets it learned =====
    model.eval()
    _write_metrics(run_dir / "metrics.csv", history)
    atomic.write_json(run_dir / "targets.json", {"findings": targets.findings, "regression": targets.regression,
                                                 "classes": targets.classes, "structures": targets.structures,
                                                 "regression_stats": targets.stats, "n_train": n})
    return save_backbone(model.backbone.cpu(), encoder_path,
                         meta={"objective": "supervised multi-task", "config": asdict(cfg), "key": run_key(cfg)})


def _write_metrics(path: Path, rows: list[dict[str, float]]) -> None:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with atomic.atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def read_metrics(encoder_path: str | Path) -> pd.DataFrame:
    """The training curve written next to a supervised encoder file."""
    return pd.read_csv(Path(encoder_path).parent / "metrics.csv")


def findings_base_rate(manifest: str | Path) -> float:
    """The findings loss of a ceiling that ignores the image (each finding's train prevalence for every image):
    a findings curve that stays at this level has learned nothing about findings."""
    from raddino_lib.train.supervised_data import base_rate_bce

    df = read_manifest(manifest)
    return base_rate_bce(discover_targets(df).labels[(df["split"] == "train").to_numpy()])
