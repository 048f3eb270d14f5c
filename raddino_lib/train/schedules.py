"""Training schedules as whole arrays indexed by the global step, and layer-wise lr-decay parameter groups.

DINOv2 recipe (``ssl_default_config.yaml``): lr linear warm-up then cosine to ``min_lr``; weight decay cosine
0.04 → 0.2; teacher EMA momentum cosine 0.992 → 1.0; teacher temperature linear warm-up 0.04 → 0.07 then
constant; the head's last layer gets lr 0 for the first ``freeze_last_layer_steps`` (it stabilises training).

The cosine follows DINO/DINOv2 exactly: value(t) = final + (base - final) * (1 + cos(pi * t / n)) / 2 for the
n post-warm-up steps t = 0 .. n-1, so the last step is close to (not exactly) ``final_value``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = ["Schedules", "apply_optimizer_schedules", "cosine_schedule", "param_groups_lrd"]


def cosine_schedule(
    base_value: float,
    final_value: float,
    total_steps: int,
    warmup_steps: int = 0,
    start_warmup_value: float = 0.0,
) -> np.ndarray:
    """(total_steps,) float64: linear warm-up start_warmup_value → base_value, then cosine base → final."""
    if total_steps < 0 or not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"need 0 <= warmup_steps ({warmup_steps}) <= total_steps ({total_steps})")
    warmup = np.linspace(start_warmup_value, base_value, warmup_steps)  # ends exactly at base_value
    t = np.arange(total_steps - warmup_steps)
    cosine = final_value + 0.5 * (base_value - final_value) * (1 + np.cos(np.pi * t / max(len(t), 1)))
    return np.concatenate([warmup, cosine]).astype(np.float64)


@dataclass
class Schedules:
    """Per-step values of every scheduled hyper-parameter, each a (total_steps,) array indexed by global step.

    Build with ``Schedules.build(total_steps, ...)``; read ``s.lr[step]`` or ``s.at(step)``.
    """

    lr: np.ndarray  # (T,) peak-scaled learning rate
    wd: np.ndarray  # (T,) weight decay
    momentum: np.ndarray  # (T,) teacher EMA momentum
    teacher_temp: np.ndarray  # (T,) teacher softmax / Sinkhorn temperature
    last_layer_lr: np.ndarray  # (T,) lr of the head's last layer (0 while frozen)

    def __post_init__(self) -> None:
        lengths = {k: len(getattr(self, k)) for k in ("lr", "wd", "momentum", "teacher_temp", "last_layer_lr")}
        if len(set(lengths.values())) != 1 or min(lengths.values()) < 1:
            raise ValueError(f"Schedules: arrays must share one length >= 1, got {lengths}")

    @classmethod
    def build(
        cls,
        total_steps: int,
        base_lr: float = 0.004,
        min_lr: float = 1e-6,
        warmup_steps: int = 0,
        weight_decay: float = 0.04,
        weight_decay_end: float = 0.2,
        momentum_teacher: float = 0.992,
        final_momentum_teacher: float = 1.0,
        warmup_teacher_temp: float = 0.04,
        teacher_temp: float = 0.07,
        teacher_temp_warmup_steps: int = 0,
        freeze_last_layer_steps: int = 0,
    ) -> Schedules:
        """The DINOv2 schedules for a run of ``total_steps`` optimizer steps.

        base_lr: peak lr, already scaled for the batch (DINOv2: 0.004 * sqrt(global_batch / 1024)), reached
        after ``warmup_steps`` of linear warm-up from 0 (DINOv2: 10% of training), then cosine to ``min_lr``.
        weight_decay → weight_decay_end: cosine. momentum_teacher → final_momentum_teacher: cosine (raise the
        start, e.g. 0.996, for small batches). warmup_teacher_temp → teacher_temp: linear over
        ``teacher_temp_warmup_steps`` (DINOv2: 30%), then constant; lower it if training is unstable.
        freeze_last_layer_steps: the head's last layer gets lr 0 for these first steps (DINOv2: one epoch).
        """
        n = total_steps
        if n < 1:
            raise ValueError(f"Schedules: total_steps must be >= 1, got {n}")
        for name, value in (("warmup_steps", warmup_steps), ("teacher_temp_warmup_steps", teacher_temp_warmup_steps),
                            ("freeze_last_layer_steps", freeze_last_layer_steps)):
            if not 0 <= value <= n:
                raise ValueError(f"Schedules: {name}={value} must be in [0, total_steps={n}]")
        lr = cosine_schedule(base_lr, min_lr, n, warmup_steps)
        last_layer_lr = lr.copy()
        last_layer_lr[:freeze_last_layer_steps] = 0.0
        k = teacher_temp_warmup_steps
        temps = np.concatenate([np.linspace(warmup_teacher_temp, teacher_temp, k), np.full(n - k, teacher_temp)])
        return cls(
            lr=lr,
            wd=cosine_schedule(weight_decay, weight_decay_end, n),
            momentum=cosine_schedule(momentum_teacher, final_momentum_teacher, n),
            teacher_temp=temps,
            last_layer_lr=last_layer_lr,
        )

    @property
    def total_steps(self) -> int:
        return len(self.lr)

    def at(self, step: int) -> dict[str, float]:
        """Values at a global step (steps past the end keep the last values)."""
        i = min(max(int(step), 0), self.total_steps - 1)
        return {
            "lr": float(self.lr[i]),
            "wd": float(self.wd[i]),
            "momentum": float(self.momentum[i]),
            "teacher_temp": float(self.teacher_temp[i]),
            "last_layer_lr": float(self.last_layer_lr[i]),
        }

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> dict[str, float]:
        """Set lr / weight_decay of every param group for ``step``; returns ``at(step)``."""
        values = self.at(step)
        apply_optimizer_schedules(optimizer, values["lr"], values["wd"], values["last_layer_lr"])
        return values


def apply_optimizer_schedules(
    optimizer: torch.optim.Optimizer, lr: float, wd: float, last_layer_lr: float | None = None
) -> None:
    """group lr = (last_layer_lr if group["is_last_layer"] else lr) * group["lr_multiplier"];
    group weight_decay = wd * group["wd_multiplier"] (missing keys: False / 1.0)."""
    for group in optimizer.param_groups:
        group_lr = last_layer_lr if (group.get("is_last_layer", False) and last_layer_lr is not None) else lr
        group["lr"] = group_lr * group.get("lr_multiplier", 1.0)
        group["weight_decay"] = wd * group.get("wd_multiplier", 1.0)


# ===== layer-wise lr decay =====

_EMBED_NAMES = ("pos_embed", "cls_token", "reg_token", "register_tokens", "mask_token", "patch_embed")
_NO_WD_NAMES = ("pos_embed", "cls_token", "reg_token", "register_tokens", "mask_token")


def _layer_id(name: str, num_layers: int) -> int:
    """0 for embeddings/tokens, i + 1 for ``blocks.i``, num_layers + 1 for everything after (norm, heads)."""
    if any(k in name for k in _EMBED_NAMES):
        return 0
    m = re.search(r"(?:^|\.)blocks\.(\d+)\.", name)
    return int(m.group(1)) + 1 if m else num_layers + 1


def _count_blocks(model: nn.Module) -> int:
    ids = [int(m.group(1)) for n, _ in model.named_parameters() if (m := re.search(r"(?:^|\.)blocks\.(\d+)\.", n))]
    return max(ids) + 1 if ids else 0


def param_groups_lrd(
    model: nn.Module,
    weight_decay: float,
    layer_decay: float = 0.9,
    no_weight_decay_list: tuple[str, ...] | set[str] = (),
    patch_embed_lr_mult: float = 1.0,
    num_layers: int | None = None,
) -> list[dict]:
    """Optimizer param groups with layer-wise lr decay for a timm ViT (or any module holding one).

    Layer ids: embeddings/tokens 0, ``blocks.i`` → i + 1, the rest (final norm, heads) L + 1 with L blocks;
    ``lr_multiplier = layer_decay ** (L + 1 - layer_id)`` (x ``patch_embed_lr_mult`` for the patch embedding).
    No weight decay (``wd_multiplier`` 0) on 1-D parameters (biases, norms, LayerScale gammas), position
    embeddings, cls/register/mask tokens and names in ``no_weight_decay_list``. Parameters whose name contains
    ``last_layer`` get ``is_last_layer`` True (see ``Schedules.last_layer_lr``). Frozen parameters are skipped.

    Returns groups with keys params, param_names, lr_multiplier, wd_multiplier, is_last_layer, weight_decay
    (= weight_decay * wd_multiplier), fused so that equal settings share one group.
    """
    num_layers = _count_blocks(model) if num_layers is None else num_layers
    groups: dict[tuple[float, float, bool], dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        lr_mult = layer_decay ** (num_layers + 1 - _layer_id(name, num_layers))
        if "patch_embed" in name:
            lr_mult *= patch_embed_lr_mult
        no_wd = (
            param.ndim <= 1
            or name.endswith(".bias")
            or any(k in name for k in _NO_WD_NAMES)
            or name in no_weight_decay_list
            or name.split(".")[-1] in no_weight_decay_list
        )
        wd_mult = 0.0 if no_wd else 1.0
        is_last = "last_layer" in name
        key = (lr_mult, wd_mult, is_last)
        group = groups.setdefault(
            key,
            {"params": [], "param_names": [], "lr_multiplier": lr_mult, "wd_multiplier": wd_mult,
             "is_last_layer": is_last, "weight_decay": weight_decay * wd_mult},
        )
        group["params"].append(param)
        group["param_names"].append(name)
    return list(groups.values())
