"""COLIPRI pretraining: a 3D encoder trained by contrast with reports, by writing them, and by masked modelling.

Three objectives, each with its own weight (0 switches it off):

- **contrastive**: symmetric InfoNCE between the attention-pooled image embedding and the text tower's [CLS]
  (a small BERT trained from scratch, or a local CXR-BERT folder), with a learnable temperature;
- **generation**: the report decoder of notebook 07 (a small GPT-2 behind a 2-layer MLP projector), fed the
  encoder's token grid (average-pooled by ``prefix_pool``) and trained by teacher forcing; unlike notebook 07 the
  gradient flows into the encoder;
- **mim**: masked image modelling on every volume, reports or not: a ``mask_ratio`` share of the patches is
  replaced by a learned mask token and a linear head reconstructs their voxels (normalised per patch, squared
  error on the masked patches only).

``paired_fraction`` keeps the reports of that share of the training volumes (a nested subset: 25% ⊂ 100%); the
others are image-only. They train only when ``mim`` is on; batches then draw ``batch_paired`` of their volumes
from the paired pool. Training follows the package's conventions: ``metrics.csv`` per step, atomic checkpoints
with bit-exact resume on CPU, the encoder exported with :func:`raddino_lib.models.primus.save_encoder`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from raddino_lib import atomic
from raddino_lib.data.phantoms_ct.generate import NOMINAL_FOV_MM
from raddino_lib.data.tokenizer import WordPieceTokenizer
from raddino_lib.data.volume_manifest import read_volume_manifest
from raddino_lib.data.volume_transforms import CTPreprocess, load_volumes
from raddino_lib.device import resolve_device
from raddino_lib.losses.clip import CLIPLoss
from raddino_lib.models.primus import ImageTower, PrimusConfig, save_encoder
from raddino_lib.models.report_decoder import ReportDecoder, encode_reports, small_gpt2, train_tokenizer
from raddino_lib.models.text import POOLS, BertTextEncoder
from raddino_lib.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from raddino_lib.train.language import contrastive_update, param_groups
from raddino_lib.train.metrics_log import MetricsLog, read_metrics

METRIC_COLUMNS = ("step", "total_loss", "contrastive_loss", "generation_loss", "mim_loss", "lr", "temperature",
                  "volumes_per_s")
OBJECTIVES = ("contrastive", "generation", "mim")
TEXT_TOKENIZER, DECODER_TOKENIZER, ENCODER_DIR, CONFIG_NAME = "text_tokenizer", "decoder_tokenizer", "encoder", \
    "colipri_config.json"


@dataclass
class COLIPRIConfig:
    manifest: str = ""  # a CT volume manifest (data/phantoms_ct or a CT-RATE-style manifest with a report column)
    out_dir: str = "runs/colipri"
    # image encoder
    preset: str = "tiny"  # Primus size: tiny (CPU), S, B, M (the release), L
    input_size: int = 48  # cubic input in voxels after preprocessing; a multiple of patch_size
    spacing_mm: float = 0.0  # isotropic voxel size; 0 = the phantoms' nominal field of view / input_size
    patch_size: int = 8
    proj_dim: int = 128  # shared image-text space
    # objectives
    contrastive: float = 1.0
    generation: float = 0.0
    mim: float = 0.0
    paired_fraction: float = 1.0  # share of the training volumes whose report is used
    batch_paired: float = 0.5  # share of a batch from the paired pool when image-only volumes train too
    mask_ratio: float = 0.6
    prefix_pool: int = 2  # token grid average-pooled by this factor per axis for the decoder's prefix
    # text tower and report decoder
    text_init: str = ""  # a local BERT folder (CXR-BERT) with its tokenizer; empty = trained from scratch
    text_width: int = 128
    text_depth: int = 2
    text_heads: int = 4
    text_max_length: int = 160
    text_pool: str = "mean"  # report embedding: "mean" of the token outputs, or the "cls" token (models.text.POOLS)
    text_vocab: int = 2000
    decoder_embd: int = 128
    decoder_layers: int = 2
    decoder_heads: int = 4
    decoder_max_len: int = 192  # report tokens kept (with <eos>); longer reports are truncated
    decoder_vocab: int = 1000
    # optimisation
    batch_size: int = 16
    steps: int = 200
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_fraction: float = 0.1
    grad_clip: float = 1.0
    init_temperature: float = 0.07
    ckpt_every: int = 50
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if not any(getattr(self, o) > 0 for o in OBJECTIVES):
            raise ValueError("COLIPRIConfig: every objective weight is 0; switch on contrastive, generation or mim")
        if min(getattr(self, o) for o in OBJECTIVES) < 0:
            raise ValueError("COLIPRIConfig: objective weights must be >= 0")
        if not 0 < self.paired_fraction <= 1:
            raise ValueError(f"COLIPRIConfig.paired_fraction {self.paired_fraction} must be in (0, 1]")
        if not 0 < self.batch_paired <= 1 or not 0 < self.mask_ratio < 1:
            raise ValueError("COLIPRIConfig: batch_paired must be in (0, 1] and mask_ratio in (0, 1)")
        if self.text_pool not in POOLS:
            raise ValueError(f"COLIPRIConfig.text_pool {self.text_pool!r}: choose one of {POOLS}")
        grid = self.input_size // self.patch_size
        if self.input_size % self.patch_size or grid % self.prefix_pool:
            raise ValueError(f"COLIPRIConfig: input_size {self.input_size} must be a multiple of patch_size "
                             f"{self.patch_size}, and its grid of {grid} a multiple of prefix_pool {self.prefix_pool}")

    @property
    def uses_reports(self) -> bool:
        return self.contrastive > 0 or self.generation > 0

    def preprocess(self) -> CTPreprocess:
        spacing = self.spacing_mm or NOMINAL_FOV_MM / self.input_size
        return CTPreprocess(spacing=(spacing,) * 3, size=(self.input_size,) * 3)

    def primus(self) -> PrimusConfig:
        return PrimusConfig(self.preset, (self.input_size,) * 3, self.patch_size, self.proj_dim)


# ===== data =====

def read_ct_manifest(path: str | Path) -> pd.DataFrame:
    """The volume manifest with a ``report`` column (reports may be empty for image-only volumes)."""
    df = read_volume_manifest(path)
    if "report" not in df.columns:
        raise ValueError(f"{path}: no 'report' column; COLIPRI needs reports for its paired volumes (image-only "
                         "volumes may leave it empty)")
    df["report"] = df["report"].fillna("").astype(str)
    return df.reset_index(drop=True)


def paired_mask(df: pd.DataFrame, fraction: float, seed: int) -> np.ndarray:
    """(N,) bool: training volumes whose report is used; nested in ``fraction`` for a fixed seed."""
    train = np.flatnonzero((df["split"] == "train").to_numpy() & (df["report"].str.strip() != "").to_numpy())
    order = train[np.random.default_rng(seed).permutation(len(train))]
    keep = np.zeros(len(df), dtype=bool)
    keep[order[: max(1, int(round(fraction * len(train))))]] = True
    return keep


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, 1, D, H, W) → (B, N, p³) in the patch embedding's (z, y, x) raster order."""
    b, c, d, h, w = x.shape
    x = x.reshape(b, c, d // p, p, h // p, p, w // p, p)
    return x.permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(b, (d // p) * (h // p) * (w // p), c * p ** 3)


def pool_grid(tokens: torch.Tensor, grid: tuple[int, int, int], factor: int) -> torch.Tensor:
    """(B, N, E) tokens on ``grid`` → (B, N / factor³, E) averaged over factor³ neighbourhoods."""
    if factor == 1:
        return tokens
    b, _, e = tokens.shape
    vol = tokens.transpose(1, 2).reshape(b, e, *grid)
    return F.avg_pool3d(vol, factor).flatten(2).transpose(1, 2)


def mim_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Squared error on masked patches; targets normalised per patch (zero mean, unit variance)."""
    mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
    target = (target - mean) / (var + 1e-6).sqrt()
    per_patch = (pred - target).pow(2).mean(-1)  # (B, N)
    return (per_patch * mask).sum() / mask.sum().clamp(min=1)


def random_mask(batch: int, n: int, ratio: float, device: torch.device,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """(batch, n) bool with exactly round(ratio · n) True per row, drawn from ``generator`` (a CPU generator;
    None: the global torch RNG)."""
    k = max(1, int(round(ratio * n)))
    order = torch.rand(batch, n, generator=generator).argsort(dim=1)
    return (order < k).to(device)


# ===== model =====

# Offsets added to the config's seed for each random draw of a run, so that one part's draws never depend on
# whether another part exists: arms that switch objectives on or off share the towers' initialisation, the
# order in which volumes are drawn, and (for the masked objective) the masks.
SEED_OFFSETS = {"image": 0, "text": 1, "decoder": 2, "text_proj": 3, "mim_head": 4, "sampler": 5, "masks": 6}


def derived_seed(base: int, index: int) -> int:
    """The seed of draw ``index`` of a stream seeded by ``base`` (the sampler's epochs, the masks' steps)."""
    return base * 1_000_003 + index


class COLIPRIModel(nn.Module):
    """Image tower, text tower with its projection, the contrastive temperature, report decoder and MIM head."""

    def __init__(self, cfg: COLIPRIConfig, text: BertTextEncoder, decoder: ReportDecoder | None) -> None:
        super().__init__()
        # each part from its own seed (see build_model): the image tower is the same whichever objectives are on
        torch.manual_seed(cfg.seed + SEED_OFFSETS["image"])
        self.image = ImageTower(cfg.primus())
        self.text = text
        torch.manual_seed(cfg.seed + SEED_OFFSETS["text_proj"])
        self.text_proj = nn.Linear(text.width, cfg.proj_dim, bias=False)
        self.criterion = CLIPLoss(cfg.init_temperature)
        self.decoder = decoder
        torch.manual_seed(cfg.seed + SEED_OFFSETS["mim_head"])
        self.mim_head = nn.Linear(self.image.encoder.embed_dim, cfg.patch_size ** 3) if cfg.mim > 0 else None
        self.grid, self.patch, self.prefix_pool = cfg.primus().grid, cfg.patch_size, cfg.prefix_pool

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        return self.text_proj(self.text(ids))

    def prefix_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        return pool_grid(tokens, self.grid, self.prefix_pool)


@dataclass
class Tokenizers:
    text: WordPieceTokenizer
    decoder: Any  # PreTrainedTokenizerFast (byte-level BPE) or the decoder folder's own


def build_tokenizers(cfg: COLIPRIConfig, reports: list[str]) -> Tokenizers:
    """The text tower's WordPiece (or text_init's) and the decoder's BPE, both learned from the paired reports."""
    text = (WordPieceTokenizer.from_pretrained(cfg.text_init, cfg.text_max_length) if cfg.text_init else
            WordPieceTokenizer.train(reports, vocab_size=cfg.text_vocab, max_length=cfg.text_max_length))
    return Tokenizers(text, train_tokenizer(reports, cfg.decoder_vocab))


def build_model(cfg: COLIPRIConfig, tok: Tokenizers) -> COLIPRIModel:
    """The untrained model; every part is initialised from its own seed (``SEED_OFFSETS``)."""
    torch.manual_seed(cfg.seed + SEED_OFFSETS["text"])
    if cfg.text_init:
        text = BertTextEncoder.from_pretrained(cfg.text_init, pad_id=tok.text.pad_id, pool=cfg.text_pool)
    else:
        text = BertTextEncoder.from_config(tok.text.vocab_size, tok.text.max_length, cfg.text_width, cfg.text_depth,
                                           cfg.text_heads, pad_id=tok.text.pad_id, pool=cfg.text_pool)
    decoder = None
    if cfg.generation > 0:
        n_prefix = math.prod(g // cfg.prefix_pool for g in cfg.primus().grid)
        d = tok.decoder
        lm = small_gpt2(len(d), n_prefix + 1 + cfg.decoder_max_len + 1, cfg.decoder_embd, cfg.decoder_layers,
                        cfg.decoder_heads, cfg.seed + SEED_OFFSETS["decoder"], d.bos_token_id, d.eos_token_id,
                        d.pad_token_id)
        decoder = ReportDecoder(cfg.primus().width, lm, d.bos_token_id, d.eos_token_id, d.pad_token_id)
    return COLIPRIModel(cfg, text, decoder)


# ===== one step =====

@dataclass
class Batch:
    volumes: torch.Tensor  # (B, 1, D, H, W): paired volumes first, then image-only ones
    n_paired: int
    text_ids: torch.Tensor | None  # (n_paired, L) text-tower ids
    groups: torch.Tensor | None  # (n_paired,) identical reports share a group (all positives of each other)
    report_ids: torch.Tensor | None  # (n_paired, T) decoder ids, right-padded
    report_mask: torch.Tensor | None
    mask_seed: int | None = None  # seed of this batch's masks for the masked objective; None: the global RNG


def losses(model: COLIPRIModel, cfg: COLIPRIConfig, batch: Batch) -> dict[str, torch.Tensor]:
    """{"contrastive", "generation", "mim", "total"}; switched-off or inapplicable objectives are 0."""
    zero = batch.volumes.new_zeros(())
    out = dict.fromkeys(OBJECTIVES, zero)
    if batch.n_paired and cfg.uses_reports:
        emb, tokens = model.image(batch.volumes[:batch.n_paired])
        if cfg.contrastive > 0 and batch.n_paired > 1:
            out["contrastive"] = model.criterion(emb, model.encode_text(batch.text_ids), batch.groups)
        if cfg.generation > 0:
            out["generation"] = model.decoder(model.prefix_tokens(tokens), batch.report_ids, batch.report_mask)
    if cfg.mim > 0:
        x = batch.volumes
        gen = None if batch.mask_seed is None else torch.Generator().manual_seed(batch.mask_seed)
        mask = random_mask(len(x), math.prod(model.grid), cfg.mask_ratio, x.device, gen)
        pred = model.mim_head(model.image.encoder(x, mask))
        out["mim"] = mim_loss(pred, patchify(x, model.patch), mask.float())
    out["total"] = sum(getattr(cfg, k) * out[k] for k in OBJECTIVES)
    return out


class MixedSampler:
    """Batches of ``batch_paired`` paired volumes and the rest image-only, each pool cycled in shuffled epochs.

    Epoch e of pool k is shuffled by a generator seeded from (seed, k, e) alone, so the order does not depend on
    what else draws random numbers (masks, dropout): arms with and without the masked objective see the paired
    volumes in the same order. ``state()`` / ``restore()`` carry it across a resume.
    """

    def __init__(self, paired: np.ndarray, unpaired: np.ndarray, batch_size: int, batch_paired: float,
                 seed: int = 0) -> None:
        self.pools = [paired, unpaired]
        n_p = batch_size if len(unpaired) == 0 else max(1, int(round(batch_paired * batch_size)))
        self.sizes = [min(n_p, len(paired)), min(batch_size - n_p, len(unpaired))]
        self.orders: list[list[int]] = [[], []]
        self.epochs = [0, 0]
        self.seed = seed

    def next(self) -> tuple[list[int], list[int]]:
        picked = []
        for k in (0, 1):
            if len(self.orders[k]) < self.sizes[k]:
                gen = torch.Generator().manual_seed(derived_seed(self.seed, 2 * self.epochs[k] + k))
                self.orders[k] = torch.randperm(len(self.pools[k]), generator=gen).tolist()
                self.epochs[k] += 1
            picked.append([int(self.pools[k][i]) for i in self.orders[k][: self.sizes[k]]])
            self.orders[k] = self.orders[k][self.sizes[k]:]
        return picked[0], picked[1]

    def state(self) -> dict[str, list]:
        return {"orders": [list(o) for o in self.orders], "epochs": list(self.epochs)}

    def restore(self, state: dict[str, list]) -> None:
        if not isinstance(state, dict):
            raise ValueError("this checkpoint's sampler state predates seeded epochs (a list of orders); the run "
                             "cannot continue bit-exactly: delete its folder and train it again")
        self.orders = [list(o) for o in state["orders"]]
        self.epochs = [int(e) for e in state["epochs"]]


# ===== training =====

@dataclass
class COLIPRIResult:
    out_dir: Path
    encoder_dir: Path
    metrics_path: Path
    steps: int
    seconds: float
    n_paired: int
    n_image_only: int


def lr_at(cfg: COLIPRIConfig, step: int) -> float:
    """Linear warm-up to ``lr``, then cosine to 0 over the remaining steps."""
    warm = max(1, int(cfg.warmup_fraction * cfg.steps))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    t = (step - warm) / max(1, cfg.steps - warm)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * t))


def train_colipri(cfg: COLIPRIConfig, volumes: torch.Tensor | None = None, progress: bool = True,
                  log=print) -> COLIPRIResult:
    """Train on the manifest's train split; resume from ``out_dir``'s latest checkpoint when it has one.

    ``volumes``: the manifest's volumes already preprocessed with ``cfg.preprocess()`` (arms share them).
    """
    from tqdm.auto import tqdm

    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _check_same_config(out, cfg)
    device = resolve_device(cfg.device)
    df = read_ct_manifest(cfg.manifest)
    if volumes is None:
        volumes = load_volumes(df, cfg.preprocess(), progress)
    if len(volumes) != len(df) or tuple(volumes.shape[2:]) != (cfg.input_size,) * 3:
        raise ValueError(f"volumes {tuple(volumes.shape)} do not match the manifest's {len(df)} rows at "
                         f"{cfg.input_size}³ voxels")
    paired = paired_mask(df, cfg.paired_fraction, cfg.seed)
    train = (df["split"] == "train").to_numpy()
    unpaired = np.flatnonzero(train & ~paired) if cfg.mim > 0 else np.zeros(0, dtype=int)
    if cfg.uses_reports and paired.sum() < 2:
        raise ValueError(f"{cfg.manifest}: fewer than 2 training volumes with a report; nothing to contrast")
    reports = df["report"].tolist()
    tok = _tokenizers(out, cfg, [reports[i] for i in np.flatnonzero(paired)])
    model = build_model(cfg, tok).to(device)
    text_ids = tok.text(reports)
    enc = encode_reports(tok.decoder, reports, cfg.decoder_max_len)
    groups = torch.as_tensor(pd.factorize(df["report"])[0])
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.98))
    torch.manual_seed(cfg.seed)
    sampler = MixedSampler(np.flatnonzero(paired), unpaired, cfg.batch_size, cfg.batch_paired,
                           cfg.seed + SEED_OFFSETS["sampler"])
    start = 0
    ckpt = latest_checkpoint(out / "checkpoints")
    if ckpt is not None:
        state = load_checkpoint(ckpt, model, optimizer)
        sampler.restore(state["sampler"])
        start = ckpt.step
        log(f"resuming {out} from step {start}")
    metrics = MetricsLog(out / "metrics.csv", start_step=start, columns=METRIC_COLUMNS)
    begin = time.perf_counter()
    bar = tqdm(range(start, cfg.steps), desc="COLIPRI", unit="step", disable=not progress, leave=False)
    model.train()
    for step in bar:
        tick = time.perf_counter()
        idx_p, idx_u = sampler.next()
        idx = torch.as_tensor(idx_p + idx_u)
        keep = int(enc.attention_mask[idx_p].sum(1).max()) if idx_p else 0
        batch = Batch(volumes[idx].to(device), len(idx_p), text_ids[idx_p].to(device), groups[idx_p].to(device),
                      enc.input_ids[idx_p, :keep].to(device), enc.attention_mask[idx_p, :keep].to(device),
                      mask_seed=derived_seed(cfg.seed + SEED_OFFSETS["masks"], step))
        lr = lr_at(cfg, step)
        parts = losses(model, cfg, batch)
        contrastive_update(model, optimizer, parts["total"], lr, cfg.grad_clip, f"COLIPRI (step {step})")
        row = {f"{k}_loss": float(parts[k].detach()) for k in OBJECTIVES}
        row.update(step=step, total_loss=float(parts["total"].detach()), lr=lr, temperature=model.criterion.temperature,
                   volumes_per_s=len(idx) / (time.perf_counter() - tick))
        metrics.append(row)
        bar.set_postfix(loss=f"{row['total_loss']:.3f}")
        done = step + 1
        if done % cfg.ckpt_every == 0 or done == cfg.steps:
            save_checkpoint(out / "checkpoints", done, model, optimizer, asdict(cfg),
                            extra={"sampler": sampler.state()})
    metrics.close()
    encoder_dir = save_encoder(model.image, out / ENCODER_DIR)
    return COLIPRIResult(out, encoder_dir, out / "metrics.csv", cfg.steps, time.perf_counter() - begin,
                         int(paired.sum()), len(unpaired))


def _tokenizers(out: Path, cfg: COLIPRIConfig, paired_reports: list[str]) -> Tokenizers:
    """Learned once and saved, so that a resumed run and its evaluation use the same token ids."""
    from transformers import PreTrainedTokenizerFast

    if (out / TEXT_TOKENIZER).is_dir() and (out / DECODER_TOKENIZER).is_dir():
        return Tokenizers(WordPieceTokenizer.load(out / TEXT_TOKENIZER),
                          PreTrainedTokenizerFast.from_pretrained(str(out / DECODER_TOKENIZER)))
    tok = build_tokenizers(cfg, paired_reports)
    tok.text.save(out / TEXT_TOKENIZER)
    tok.decoder.save_pretrained(str(out / DECODER_TOKENIZER))
    return tok


def _check_same_config(out: Path, cfg: COLIPRIConfig) -> None:
    """A run folder belongs to one config: a different one fails instead of resuming into a mixture."""
    path = out / CONFIG_NAME
    mine = {k: v for k, v in asdict(cfg).items() if k not in ("device", "out_dir")}  # a moved folder still resumes
    if path.is_file():
        theirs = {k: v for k, v in json.loads(path.read_text()).items() if k not in ("device", "out_dir")}
        if theirs != mine:
            diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            raise ValueError(f"{out} holds a COLIPRI run with another config (differs in {diff}); use another "
                             "out_dir or delete it")
    else:
        atomic.write_json(path, asdict(cfg))


def load_run(out_dir: str | Path, device: str = "cpu") -> tuple[COLIPRIModel, Tokenizers, COLIPRIConfig]:
    """The trained model (final checkpoint), its tokenizers and config, from a finished run folder."""
    from transformers import PreTrainedTokenizerFast

    out = Path(out_dir)
    if not (out / CONFIG_NAME).is_file():
        raise FileNotFoundError(f"{out}: no {CONFIG_NAME}; not a COLIPRI run folder")
    fields = {f.name for f in dataclasses.fields(COLIPRIConfig)}
    saved = json.loads((out / CONFIG_NAME).read_text())
    saved.setdefault("text_pool", "cls")  # runs saved before pooling was a choice used the [CLS] token
    cfg = COLIPRIConfig(**{k: v for k, v in saved.items() if k in fields and k != "out_dir"}, out_dir=str(out))
    ckpt = latest_checkpoint(out / "checkpoints")
    if ckpt is None or ckpt.step < cfg.steps:
        raise FileNotFoundError(f"{out}: the run has not finished ({ckpt.step if ckpt else 0} of {cfg.steps} "
                                "steps); run train_colipri again to resume it")
    tok = Tokenizers(WordPieceTokenizer.load(out / TEXT_TOKENIZER),
                     PreTrainedTokenizerFast.from_pretrained(str(out / DECODER_TOKENIZER)))
    model = build_model(cfg, tok)
    load_checkpoint(ckpt, model, restore_rng=False)
    return model.to(resolve_device(device)).eval(), tok, cfg


def read_run_metrics(out_dir: str | Path) -> pd.DataFrame:
    return pd.DataFrame(read_metrics(Path(out_dir) / "metrics.csv"))
