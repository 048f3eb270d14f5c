"""``PretrainConfig``: every setting of a DINOv2 / RAD-DINO pretraining run, with its default.

Defaults follow DINOv2's ``ssl_default_config.yaml`` (see docs PAPERS.md) unless a comment says
otherwise. DINOv2 counts in "epochs" of 1,250 iterations; here schedules are fractions of
``max_steps`` so that a 30-step smoke run and a 100,000-step run share one recipe.

Two presets (:meth:`PretrainConfig.from_preset`):

- ``"dinov2"``: the defaults below (ViT-S/14 from scratch, 224/98 px crops, softmax-centering).
- ``"rad-dino"``: RAD-DINO's changes (Pérez-García et al. 2025): a ViT-B/14 continually
  pretrained from DINOv2 weights (pass ``init_weights``), 518 px global crops, Sinkhorn-Knopp
  teacher targets (as DINOv2's released large-model configs), 40 images per GPU, 100,000
  iterations scheduled (the released checkpoint is iteration 35,000, chosen by linear probing).
  The 224 px local crops are this package's choice (scaled with the global crops), not a published
  RAD-DINO value. RAD-DINO trained with fp16 + FSDP; this package uses bf16 autocast + DDP.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CENTERINGS = ("softmax", "sinkhorn")
PHOTOMETRIC_NAMES = ("full", "lite", "none")  # data.augment.PHOTOMETRIC_LEVELS
LR_SCALINGS = ("sqrt", "linear", "none")
PRECISIONS = ("auto", "fp32", "bf16")

PRESETS: dict[str, dict[str, Any]] = {
    "dinov2": {},
    "rad-dino": {
        "arch": "vit_base", "patch_size": 14, "depth": 0,  # ViT-B/14 = dinov2-base, the starting point
        "global_crop_size": 518, "local_crop_size": 224, "n_local_crops": 8,
        "centering": "sinkhorn",
        "batch_size": 40,  # per GPU in the paper (16 nodes x 4 GPUs: global batch 2,560)
        "max_steps": 100_000,
        "drop_path_rate": 0.1,
    },
}

# Fields that may differ between a run and its resumption (they do not change the computation).
RESUMABLE_CHANGES = ("resume", "stop_after_steps", "num_workers", "output_dir", "checkpoint_every",
                     "keep_checkpoints", "manifest", "cache_images", "eval_every")


@dataclass
class PretrainConfig:
    # ===== data =====
    manifest: str = ""  # manifest.csv; images of split `split` are used (labels are never read)
    split: str = "train"  # manifest split to pretrain on; "" = every row
    output_dir: str = "runs/pretrain"  # the run dir: config.json, metrics.csv, checkpoints/, backbone exports
    num_workers: int = 0  # DataLoader worker processes; 0 loads in the main process (best on 2 cores)
    cache_images: bool = True  # keep decoded images in memory when the split has <= 20,000 images

    # ===== backbone =====
    arch: str = "vit_small"  # vit_tiny | vit_small | vit_base | vit_large (models.backbone.create_backbone)
    patch_size: int = 14  # 14 for DINOv2 / RAD-DINO weights; 8 gives more tokens on small phantoms
    depth: int = 0  # number of blocks; 0 = the arch's default (12 / 24)
    drop_path_rate: float = 0.1  # stochastic depth of the student (DINOv2: 0.3 for ViT-L, ~0.1 for smaller)
    layer_scale_init: float = 1e-5  # LayerScale init (DINOv2)
    weight_init: str = ""  # new backbones: "" truncated normal 0.02 (DINOv2), "jax" Xavier (learns faster briefly)
    num_register_tokens: int = 0  # extra learned tokens ("registers"); 0 as in RAD-DINO
    init_weights: str = ""  # continual pretraining: backbone weights (DINOv2 / RAD-DINO) for student+teacher
    init_head: str = ""  # optional DINOHead weights (e.g. RAD-DINO's dino_head.safetensors); "" = random head

    # ===== heads =====
    out_dim: int = 65536  # prototypes K of the DINO/iBOT head; try 4096 on small data
    head_hidden_dim: int = 2048  # MLP width of the head
    head_bottleneck_dim: int = 256  # dimension before the weight-normalized last layer
    head_nlayers: int = 3  # MLP layers of the head
    head_use_bn: bool = False  # BatchNorm after the head's hidden layers (DINO option; off in DINOv2)
    head_center_bottleneck: bool = False  # batch-standardise the bottleneck (removes what all images share)
    head_train_norms: bool = False  # prototype norms learn (DINOv2's head) instead of staying 1 (DINO's default)

    # ===== multi-crop and masking =====
    global_crop_size: int = 224  # px; RAD-DINO: 518
    local_crop_size: int = 98  # px
    n_local_crops: int = 8  # local crops per image; 0 disables them
    global_crops_scale: tuple[float, float] = (0.32, 1.0)  # area fraction range of global crops
    local_crops_scale: tuple[float, float] = (0.05, 0.32)  # area fraction range of local crops
    photometric: str = "full"  # photometric changes: "full" (DINOv2-like, grayscale), "lite", "none" (crops only)
    mask_probability: float = 0.5  # fraction of global crops that get an iBOT mask
    mask_ratio_min: float = 0.1  # masked-patch fraction is drawn in [min, max] per masked crop
    mask_ratio_max: float = 0.5

    # ===== losses =====
    dino_weight: float = 1.0  # image-level self-distillation on CLS tokens
    ibot_weight: float = 1.0  # masked patch-token self-distillation
    koleo_weight: float = 0.1  # KoLeo regularizer on student CLS features (spreads them out)
    student_temp: float = 0.1
    teacher_temp: float = 0.07  # final teacher temperature; lower = sharper targets
    warmup_teacher_temp: float = 0.04  # starting teacher temperature (try lower if the loss explodes)
    teacher_temp_warmup_fraction: float = 0.3  # of max_steps (DINOv2: 30 of 100 epochs)
    centering: str = "softmax"  # teacher targets: "softmax" (centering) or "sinkhorn" (Sinkhorn-Knopp)
    center_momentum: float = 0.9  # EMA momentum of the softmax-centering center
    sinkhorn_iterations: int = 3

    # ===== optimization =====
    batch_size: int = 64  # images per step per process; the global batch is batch_size x world size
    max_steps: int = 1000  # optimizer steps; schedules span exactly this many
    base_lr: float = 0.004  # lr for a batch of 1024 (scaled by lr_scaling)
    lr_scaling: str = "sqrt"  # "sqrt": lr = base_lr * sqrt(batch/1024) (DINOv2); "linear"; "none"
    min_lr: float = 1e-6  # lr at the end of the cosine
    lr_warmup_fraction: float = 0.1  # linear warm-up, of max_steps (DINOv2: 10 of 100 epochs)
    weight_decay: float = 0.04  # start of the cosine weight-decay schedule
    weight_decay_end: float = 0.2
    momentum_teacher: float = 0.992  # EMA momentum of the teacher, cosine to final_momentum_teacher
    final_momentum_teacher: float = 1.0
    layerwise_decay: float = 0.9  # lr multiplier per block counted from the top (1.0 = off)
    patch_embed_lr_mult: float = 0.2  # extra lr multiplier of the patch embedding
    freeze_last_layer_steps: int = -1  # head's last layer frozen this long; -1 = one pass over the data
    clip_grad: float = 3.0  # max gradient norm; 0 = no clipping
    adam_beta2: float = 0.999

    # ===== engineering =====
    device: str = "auto"  # "auto" (cuda if available), "cpu", "cuda", "cuda:1"
    precision: str = "auto"  # "auto" = bf16 autocast on CUDA, fp32 on CPU; "fp32"; "bf16" (CUDA only)
    compile: bool = False  # torch.compile the backbones (GPU; slow to start)
    grad_checkpointing: bool = False  # recompute student blocks in backward (less memory, ~30% slower)
    seed: int = 0
    checkpoint_every: int = 100  # steps between checkpoints (a final one is always written)
    keep_checkpoints: int = 2  # newest checkpoints kept
    eval_every: int = 0  # steps between validation scores of the teacher (pretrain(scorer=...)); 0 = never
    resume: bool = False  # continue from the newest checkpoint in output_dir (if any)
    stop_after_steps: int = 0  # end this invocation after this global step (checkpointed); 0 = run to max_steps
    preset: str = "dinov2"  # recorded for the reader; set through from_preset

    def __post_init__(self) -> None:
        self.global_crops_scale = tuple(float(x) for x in self.global_crops_scale)  # JSON gives lists
        self.local_crops_scale = tuple(float(x) for x in self.local_crops_scale)
        checks = [
            (self.batch_size >= 2, "batch_size must be >= 2 (KoLeo and centering need several images)"),
            (self.max_steps >= 1, "max_steps must be >= 1"),
            (self.global_crop_size % self.patch_size == 0 and self.local_crop_size % self.patch_size == 0,
             f"crop sizes ({self.global_crop_size}, {self.local_crop_size}) must be multiples of "
             f"patch_size {self.patch_size}"),
            (self.local_crop_size <= self.global_crop_size, "local_crop_size must be <= global_crop_size"),
            (self.n_local_crops >= 0, "n_local_crops must be >= 0"),
            (self.centering in CENTERINGS, f"centering must be one of {CENTERINGS}, got {self.centering!r}"),
            (self.lr_scaling in LR_SCALINGS, f"lr_scaling must be one of {LR_SCALINGS}"),
            (self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}"),
            (0.0 <= self.mask_probability <= 1.0, "mask_probability must be in [0, 1]"),
            (0.0 <= self.mask_ratio_min <= self.mask_ratio_max < 1.0, "need 0 <= mask_ratio_min <= max < 1"),
            (all(0 < a <= b <= 1 for a, b in (self.global_crops_scale, self.local_crops_scale)),
             "crop scales must be (low, high) with 0 < low <= high <= 1"),
            (self.warmup_teacher_temp > 0 and self.teacher_temp > 0 and self.student_temp > 0,
             "temperatures must be > 0"),
            (0.0 <= self.momentum_teacher <= self.final_momentum_teacher <= 1.0,
             "need 0 <= momentum_teacher <= final_momentum_teacher <= 1"),
            (0.0 <= self.lr_warmup_fraction <= 1.0 and 0.0 <= self.teacher_temp_warmup_fraction <= 1.0,
             "warm-up fractions must be in [0, 1]"),
            (min(self.dino_weight, self.ibot_weight, self.koleo_weight) >= 0, "loss weights must be >= 0"),
            (self.dino_weight + self.ibot_weight > 0, "dino_weight and ibot_weight cannot both be 0"),
            (self.checkpoint_every >= 1 and self.keep_checkpoints >= 1, "checkpoint_every, keep_checkpoints >= 1"),
            (self.eval_every >= 0, "eval_every must be >= 0 (0 = no validation scoring)"),
            (self.photometric in PHOTOMETRIC_NAMES,
             f"photometric must be one of {PHOTOMETRIC_NAMES}, got {self.photometric!r}"),
            (self.preset in PRESETS, f"preset must be one of {sorted(PRESETS)}"),
            (self.clip_grad >= 0 and self.base_lr > 0, "clip_grad must be >= 0 and base_lr > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"PretrainConfig: {message}")
        for name in ("init_weights", "init_head"):
            path = getattr(self, name)
            if path and not Path(path).exists():
                raise FileNotFoundError(f"PretrainConfig.{name}: {path} does not exist")

    # ----- derived values -----
    def peak_lr(self, world_size: int = 1) -> float:
        """Learning rate after scaling by the global batch ``batch_size * world_size``."""
        batch = self.batch_size * world_size
        factor = {"sqrt": math.sqrt(batch / 1024), "linear": batch / 1024, "none": 1.0}
        return self.base_lr * factor[self.lr_scaling]

    @property
    def n_patches_global(self) -> int:
        return (self.global_crop_size // self.patch_size) ** 2

    # ----- construction / serialization -----
    @classmethod
    def from_preset(cls, name: str = "dinov2", **overrides: Any) -> PretrainConfig:
        """Defaults, then the preset's values, then ``overrides`` (which win)."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}: choose one of {sorted(PRESETS)}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"PretrainConfig has no field(s) {unknown}")
        return cls(**{**PRESETS[name], **overrides, "preset": name})

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PretrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def differences(self, other: PretrainConfig) -> dict[str, tuple[Any, Any]]:
        """Fields (other than RESUMABLE_CHANGES) whose values differ: name -> (self, other)."""
        mine, theirs = self.to_dict(), other.to_dict()
        return {k: (mine[k], theirs.get(k)) for k in mine if k not in RESUMABLE_CHANGES and mine[k] != theirs.get(k)}
