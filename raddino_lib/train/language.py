"""Language-supervised baseline: CLIP-style image–report pretraining, then zero-shot and retrieval evaluation.

The comparison RAD-DINO makes (PAPERS.md): encoders trained with report
supervision (CLIP, ConVIRT, BioViL, COLIPRI) against the image-only DINOv2
recipe. This trainer pairs each training image with its report, trains a ViT
(the same ``create_backbone`` as the SSL runs) and a text tower — a small BERT with a
WordPiece vocabulary learned on the reports (CXR-BERT's architecture), or a local
CXR-BERT folder (``text_init``) — with the symmetric InfoNCE loss, and writes the image tower with
``save_backbone`` so every probe reads it like any other encoder.

Run folder (``cfg.out_dir``): config.json, tokenizer/, metrics.csv,
clip_model.safetensors (both towers), image_encoder.safetensors, eval.json.
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from timm.layers import PatchDropout
from torch import nn

from raddino_lib import atomic
from raddino_lib.data.manifest import read_manifest
from raddino_lib.data.tokenizer import WordPieceTokenizer
from raddino_lib.device import resolve_device
from raddino_lib.losses.clip import MAX_LOGIT_SCALE
from raddino_lib.models.backbone import create_backbone
from raddino_lib.models.clip import CLIPModel, save_clip
from raddino_lib.models.text import POOLS, BertTextEncoder
from raddino_lib.models.weights import load_backbone, save_backbone
from raddino_lib.train.language_eval import CLIPEvaluation, evaluate_clip
from raddino_lib.train.schedules import cosine_schedule

METRIC_COLUMNS = ("step", "loss", "lr", "temperature", "seconds")


@dataclass
class CLIPConfig:
    manifest: str = ""  # manifest.csv with a 'report' column (phantoms: `raddino phantoms`); required
    out_dir: str = "runs/clip"  # run folder; existing files are overwritten
    arch: str = "vit_small"  # image tower: vit_tiny | vit_small | vit_base | vit_large (models/backbone.py)
    patch_size: int = 14  # 8 for tiny smoke models at 32–96 px
    depth: int = 0  # transformer blocks; 0 = the arch default (12)
    image_size: int = 224  # training and evaluation crop side
    batch_size: int = 64  # pairs per step; InfoNCE gets harder (and better) with more negatives per batch
    max_steps: int = 1000  # optimizer steps
    lr: float = 5e-4  # peak AdamW learning rate after warmup; lower it (1e-4) when the loss spikes
    min_lr: float = 1e-6  # end of the cosine decay
    warmup_steps: int = -1  # linear warmup; -1 = 10% of max_steps
    weight_decay: float = 0.2  # AdamW on weight matrices only (CLIP used 0.2)
    grad_clip: float = 1.0  # max global grad norm; 0 disables
    proj_dim: int = 128  # shared embedding width (CLIP ViT-B: 512; BioViL: 128)
    image_init: str = ""  # start the image tower from an encoder: this package's backbone or any encoder folder
    # models.encoder_folders reads (DINOv2 / RAD-DINO, timm, open_clip, Hugging Face CLIP); arch, patch_size and
    # depth are then the folder's; "" = from scratch
    text_init: str = ""  # a local BERT folder (CXR-BERT, any BertModel) with its tokenizer: the text tower starts
    # from it and text_width/depth/heads/vocab_size are read from the folder; "" = from scratch
    text_width: int = 128  # text tower width (from scratch)
    text_depth: int = 2  # text tower blocks (CXR-BERT has 12)
    text_heads: int = 4  # text attention heads
    text_pool: str = "cls"  # report embedding: "cls" token or "mean" of the tokens (cpu phantoms, val: 0.717 / 0.652)
    max_length: int = 96  # tokens per report incl. [CLS]/[SEP]; phantom reports are 10–80 words
    vocab_size: int = 5000  # WordPiece vocabulary cap (characters, continuations, then whole words by frequency)
    init_temperature: float = 0.07  # CLIP's initial tau; learned (logit scale clamped at 100)
    patch_drop: float = 0.5  # FLIP: drop this share of patch tokens while training (2x faster at 0.5); 0 = off
    crop_scale: tuple[float, float] = (0.6, 1.0)  # random-resized-crop area range; (1, 1) = no crop jitter
    hflip_prob: float = 0.0  # horizontal flips contradict "left"/"right" in the paired report; keep 0 unless
    # the reports carry no laterality
    same_report_positives: bool = True  # identical report texts in a batch are positives for each other
    cache_images: bool = True  # keep decoded, resized training images in memory (off for large real datasets)
    eval_split: str = "test"  # split for zero-shot classification and retrieval
    eval_batch_size: int = 128  # images per forward pass at evaluation
    seed: int = 0  # torch / numpy seed: same seed + same manifest -> same run on CPU
    device: str = "cpu"  # cpu | cuda | auto (cuda when available)
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes saved in config.json

    def __post_init__(self) -> None:
        self.crop_scale = tuple(float(v) for v in self.crop_scale)
        checks = {
            "manifest": bool(self.manifest), "image_size": self.image_size >= self.patch_size > 0,
            "batch_size": self.batch_size >= 2, "max_steps": self.max_steps >= 1, "lr": self.lr > 0,
            "patch_drop": 0.0 <= self.patch_drop < 1.0, "hflip_prob": 0.0 <= self.hflip_prob <= 1.0,
            "crop_scale": len(self.crop_scale) == 2 and 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1,
            "device": self.device in ("cpu", "cuda", "auto") or self.device.startswith("cuda:"),
            "warmup_steps": self.warmup_steps <= self.max_steps, "depth": self.depth >= 0,
            "eval_split": self.eval_split in ("train", "val", "test"), "init_temperature": self.init_temperature > 0,
            "text_init": not self.text_init or Path(self.text_init).is_dir(),
            "image_init": not self.image_init or Path(self.image_init).exists(), "text_pool": self.text_pool in POOLS,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = {name: getattr(self, name) for name in bad}
            raise ValueError(f"CLIPConfig: invalid {values} (manifest is required; batch_size >= 2; "
                             f"0 <= patch_drop < 1; 0 < crop_scale[0] <= crop_scale[1] <= 1; device cpu|cuda|auto; "
                             "text_init an existing BERT folder; image_init an existing encoder file or folder)")

    @property
    def warmup(self) -> int:
        return self.max_steps // 10 if self.warmup_steps < 0 else self.warmup_steps


@dataclass
class CLIPResult:
    run_dir: Path
    image_encoder_path: Path  # load with raddino_lib.models.load_backbone
    model_path: Path  # both towers: raddino_lib.models.clip.load_clip
    tokenizer_path: Path
    metrics_path: Path
    final_metrics: dict[str, Any]
    evaluation: CLIPEvaluation | None = None  # embeddings and scores of the evaluation split (for figures)


def paired_rows(df: pd.DataFrame, split: str, source: str = "manifest") -> pd.DataFrame:
    """Rows of ``split`` that have a non-empty report (the image–text pairs)."""
    if "report" not in df.columns:
        raise ValueError(f"{source} has no 'report' column: CLIP training needs a report per image "
                         f"(phantom manifests have one; add reports to the dataset card for real data)")
    reports = df["report"].fillna("").astype(str).str.strip()
    rows = df[(df["split"] == split) & (reports != "")]
    if len(rows) < 2:
        raise ValueError(f"{source}: split '{split}' has {len(rows)} rows with a report; need at least 2 pairs")
    return rows


def resize_shorter(image: torch.Tensor, size: int) -> torch.Tensor:
    """(1, H, W) -> (1, H', W') with min(H', W') == size (antialiased bilinear); unchanged when already there."""
    h, w = image.shape[-2:]
    if min(h, w) == size:
        return image
    scale = size / min(h, w)
    new = (max(size, round(h * scale)), max(size, round(w * scale)))
    return F.interpolate(image[None], size=new, mode="bilinear", align_corners=False, antialias=True)[0]


def augment(image: torch.Tensor, cfg: CLIPConfig, mean: torch.Tensor, std: torch.Tensor,
            g: torch.Generator) -> torch.Tensor:
    """Training view: random resized crop (+ optional flip) of a (1, H, W) image -> (3, S, S) normalized."""
    h, w = image.shape[-2:]
    area = float(torch.empty(1).uniform_(*cfg.crop_scale, generator=g)) * h * w
    ratio = math.exp(float(torch.empty(1).uniform_(math.log(3 / 4), math.log(4 / 3), generator=g)))
    ch, cw = min(h, round(math.sqrt(area / ratio))), min(w, round(math.sqrt(area * ratio)))
    top = int(torch.randint(0, h - ch + 1, (1,), generator=g))
    left = int(torch.randint(0, w - cw + 1, (1,), generator=g))
    x = image[None, :, top:top + ch, left:left + cw].float()  # (1, 1, ch, cw)
    x = F.interpolate(x, size=(cfg.image_size,) * 2, mode="bilinear", align_corners=False, antialias=True)[0]
    if float(torch.rand(1, generator=g)) < cfg.hflip_prob:
        x = x.flip(-1)
    lo, hi = x.amin(), x.amax()
    x = (x - lo) / (hi - lo) if hi > lo else torch.zeros_like(x)  # per-image min–max, as EvalTransform
    return (x.expand(3, -1, -1) - mean) / std  # (3, S, S)


class PairSource:
    """Training pairs: images (decoded once when cached) and their reports."""

    def __init__(self, rows: pd.DataFrame, cfg: CLIPConfig) -> None:
        from raddino_lib.data.io import load_image

        self._load = load_image
        self.paths = [str(p) for p in (rows["abs_path"] if "abs_path" in rows.columns else rows["path"])]
        self.reports = rows["report"].astype(str).tolist()
        ids: dict[str, int] = {}
        self.groups = torch.tensor([ids.setdefault(t.strip().lower(), len(ids)) for t in self.reports])  # (N,)
        self.size = cfg.image_size
        self.cache = [self._read(p) for p in self.paths] if cfg.cache_images else None

    def _read(self, path: str) -> torch.Tensor:
        return resize_shorter(self._load(path), self.size).to(torch.float16)  # (1, H', W')

    def image(self, i: int) -> torch.Tensor:
        return self.cache[i] if self.cache is not None else self._read(self.paths[i])

    def __len__(self) -> int:
        return len(self.paths)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices only (not biases, norms, embeddings' positions, tokens or the temperature)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            embedding = "pos_embed" in name or "token" in name or "embeddings." in name  # BERT: embeddings.*
            (decay if p.ndim >= 2 and not embedding else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_tokenizer(cfg: CLIPConfig, reports: list[str]) -> WordPieceTokenizer:
    """The text_init folder's tokenizer, or a WordPiece vocabulary learned on the training reports."""
    if cfg.text_init:
        return WordPieceTokenizer.from_pretrained(cfg.text_init, max_length=cfg.max_length)
    return WordPieceTokenizer.train(reports, vocab_size=cfg.vocab_size, max_length=cfg.max_length)


def build_model(cfg: CLIPConfig, tokenizer: WordPieceTokenizer) -> CLIPModel:
    if cfg.image_init:
        # the folder's own architecture and normalisation; position table resampled to the training size
        image_encoder = load_backbone(cfg.image_init, img_size=cfg.image_size)
    else:
        image_encoder = create_backbone(cfg.arch, patch_size=cfg.patch_size, img_size=cfg.image_size, depth=cfg.depth)
    if cfg.text_init:
        text = BertTextEncoder.from_pretrained(cfg.text_init, pad_id=tokenizer.pad_id, pool=cfg.text_pool)
        if text.max_length < tokenizer.max_length or text.bert.config.vocab_size < tokenizer.vocab_size:
            raise ValueError(f"text_init {cfg.text_init}: the model takes {text.max_length} positions and "
                             f"{text.bert.config.vocab_size} token ids, its tokenizer gives up to "
                             f"{tokenizer.max_length} and {tokenizer.vocab_size} (lower max_length)")
    else:
        text = BertTextEncoder.from_config(tokenizer.vocab_size, tokenizer.max_length, cfg.text_width, cfg.text_depth,
                                           cfg.text_heads, pad_id=tokenizer.pad_id, pool=cfg.text_pool)
    return CLIPModel(image_encoder, text, cfg.proj_dim, cfg.init_temperature)


class BatchSampler:
    """Epochs of shuffled indices cut into full batches (the tail of an epoch is dropped), from a seeded generator."""

    def __init__(self, n: int, batch_size: int, g: torch.Generator) -> None:
        self.n, self.batch, self.g = n, min(batch_size, n), g
        self.order, self.cursor = torch.randperm(n, generator=g), 0

    def next(self) -> list[int]:
        if self.cursor + self.batch > self.n:
            self.order, self.cursor = torch.randperm(self.n, generator=self.g), 0
        self.cursor += self.batch
        return self.order[self.cursor - self.batch:self.cursor].tolist()


def train_step(model: CLIPModel, optimizer: torch.optim.Optimizer, images: torch.Tensor, ids: torch.Tensor,
               groups: torch.Tensor | None, lr: float, grad_clip: float) -> float:
    """One AdamW step on a batch: images (B, 3, S, S), ids (B, L), groups (B,) or None. Returns the loss."""
    loss = model.criterion(model.encode_image(images), model.encode_text(ids), groups)
    contrastive_update(model, optimizer, loss, lr, grad_clip)
    return loss.item()


def contrastive_update(model: nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor, lr: float,
                       grad_clip: float, what: str = "CLIP") -> None:
    """Set the learning rate, refuse a non-finite loss, backward, clip gradients at ``grad_clip`` (0 = off), step,
    and clamp ``model.criterion``'s logit scale to [0, log 100] as CLIP does."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    if not torch.isfinite(loss):
        raise FloatingPointError(f"{what} loss is {loss.item()}: lower the learning rate (now {lr:g})")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    with torch.no_grad():  # CLIP clamps the stored logit scale too, so its gradient never vanishes at the clamp
        model.criterion.logit_scale.clamp_(0.0, math.log(MAX_LOGIT_SCALE))


def train_clip(cfg: CLIPConfig, progress: bool = True) -> CLIPResult:
    """Train the CLIP baseline on the manifest's train split; evaluate on ``cfg.eval_split``."""
    from tqdm.auto import tqdm

    # ===== data: image–report pairs and a tokenizer built from the training reports =====
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    run_dir = Path(cfg.out_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic.write_json(run_dir / "config.json", asdict(cfg))
    df = read_manifest(cfg.manifest)
    pairs = PairSource(paired_rows(df, "train", cfg.manifest), cfg)
    tokenizer = build_tokenizer(cfg, pairs.reports)
    tokenizer_path = tokenizer.save(run_dir / "tokenizer")
    token_ids = tokenizer(pairs.reports)  # (N, L)

    # ===== model, optimizer, schedule =====
    model = build_model(cfg, tokenizer).to(device)
    encoder = model.image_encoder
    if cfg.patch_drop > 0:  # FLIP: only active in train mode
        encoder.patch_drop = PatchDropout(cfg.patch_drop, num_prefix_tokens=encoder.num_prefix_tokens)
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)
    lrs = cosine_schedule(cfg.lr, cfg.min_lr, cfg.max_steps, cfg.warmup)
    mean = torch.tensor(encoder.spec.image_mean).view(3, 1, 1)
    std = torch.tensor(encoder.spec.image_std).view(3, 1, 1)
    g = torch.Generator().manual_seed(cfg.seed)
    sampler = BatchSampler(len(pairs), cfg.batch_size, g)

    # ===== training loop; metrics.csv is flushed every step (watch it with `tail -f`) =====
    metrics_path = run_dir / "metrics.csv"
    rows: list[dict[str, float]] = []
    model.train()
    start = time.perf_counter()
    with metrics_path.open("w", newline="") as log:
        writer = csv.DictWriter(log, fieldnames=METRIC_COLUMNS)
        writer.writeheader()
        for step in tqdm(range(cfg.max_steps), desc="CLIP", disable=not progress):
            idx = sampler.next()
            images = torch.stack([augment(pairs.image(i), cfg, mean, std, g) for i in idx])  # (B, 3, S, S)
            groups = pairs.groups[idx].to(device) if cfg.same_report_positives else None
            loss = train_step(model, optimizer, images.to(device), token_ids[idx].to(device), groups,
                              float(lrs[step]), cfg.grad_clip)
            rows.append({"step": step, "loss": loss, "lr": float(lrs[step]),
                         "temperature": model.criterion.temperature, "seconds": time.perf_counter() - start})
            writer.writerow({k: repr(v) if isinstance(v, float) else v for k, v in rows[-1].items()})
            log.flush()
    encoder.patch_drop = nn.Identity()
    model.eval()

    # ===== outputs: both towers, the image tower as a backbone, evaluation =====
    model_path = save_clip(model.cpu(), run_dir / "clip_model.safetensors")
    encoder_path = save_backbone(encoder, run_dir / "image_encoder.safetensors",
                                 meta={"objective": "clip", "config": asdict(cfg)})
    final = {"final_loss": rows[-1]["loss"], "first_loss": rows[0]["loss"],
             "last10_mean_loss": float(np.mean([r["loss"] for r in rows[-10:]])),
             "temperature": rows[-1]["temperature"], "train_seconds": rows[-1]["seconds"], "n_train": len(pairs)}
    evaluation = evaluate_clip(model.to(device), tokenizer, df, cfg.eval_split, cfg.image_size, device,
                               cfg.eval_batch_size)
    final.update(evaluation.summary())
    atomic.write_json(run_dir / "eval.json", final)
    return CLIPResult(run_dir, encoder_path, model_path, tokenizer_path, metrics_path, final, evaluation)


def read_metrics(path: str | Path) -> pd.DataFrame:
    return pd.read_csv(path)


def load_config(run_dir: str | Path) -> CLIPConfig:
    return CLIPConfig(**json.loads((Path(run_dir) / "config.json").read_text()))
