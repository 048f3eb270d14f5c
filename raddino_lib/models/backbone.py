"""Vision Transformer backbones with DINOv2 semantics, built on timm.

A backbone is a timm ``VisionTransformer`` (subclass :class:`DinoVisionTransformer`)
that behaves like the DINOv2 / Hugging Face ``Dinov2Model`` encoder:

* token order ``[CLS, registers..., patches...]``; ``forward_features(x)`` returns
  ``(B, 1 + R + h*w, D)`` after the final LayerNorm;
* the learned position embedding covers the patch grid only (``no_embed_class``);
  DINOv2's CLS position embedding is a constant, so it is folded into ``cls_token``
  when weights are converted (exactly equivalent in the forward pass);
* other input sizes interpolate the position embedding like Hugging Face ``Dinov2Model``
  (bicubic, ``align_corners=False``, float32; antialiased for models with registers, as
  ``Dinov2WithRegistersModel`` and DINOv2's reg4 models do). The original DINOv2 code for models without
  registers resamples with a +0.1 scale offset, so at other sizes it differs slightly from both;
  at the stored size all agree exactly;
* an iBOT ``mask_token`` (1, D) replaces masked patch embeddings:
  ``forward_features(x, masks=(B, h*w) bool)``.

The resolved :class:`BackboneSpec` rides on the model (``model.spec``) so that
:func:`raddino_lib.models.save_backbone` / ``load_backbone`` round-trip it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from timm.models import checkpoint_seq
from timm.models.vision_transformer import VisionTransformer
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# name -> (embed_dim, num_heads, default depth)
ARCHS: dict[str, tuple[int, int, int]] = {
    "vit_tiny": (192, 3, 12),
    "vit_small": (384, 6, 12),
    "vit_base": (768, 12, 12),
    "vit_large": (1024, 16, 24),
}
WEIGHT_INITS = ("", "jax")
ACT_LAYERS = ("gelu", "quick_gelu")
# DINOv2 presets: arch, patch 14, 518 px (37 x 37 grid), layer scale 1e-5, mlp ratio 4.
PRESETS: dict[str, dict[str, Any]] = {
    "vit_small_patch14_dinov2": {"arch": "vit_small", "patch_size": 14, "img_size": 518},
    "vit_base_patch14_dinov2": {"arch": "vit_base", "patch_size": 14, "img_size": 518},
}


@dataclass
class BackboneSpec:
    """Everything needed to rebuild a backbone; saved inside every backbone file."""

    arch: str = "vit_small"  # a key of ARCHS, or "custom" (explicit embed_dim / num_heads, e.g. converted weights)
    patch_size: int = 14  # 14 for DINOv2 / RAD-DINO; 8 or 16 for tiny smoke models
    img_size: int = 224  # size the position embedding is stored at; other sizes are interpolated
    depth: int = 12  # number of transformer blocks
    embed_dim: int = 384  # token width D
    num_heads: int = 6  # attention heads (embed_dim must divide)
    mlp_ratio: float = 4.0  # MLP hidden width = mlp_ratio * D
    num_register_tokens: int = 0  # DINOv2 "registers"; 4 in the *_reg4 models
    layer_scale_init: float | None = 1e-5  # LayerScale init (DINOv2: 1e-5); None disables LayerScale
    drop_path_rate: float = 0.0  # stochastic depth; DINOv2 pretraining uses 0.1-0.4
    drop_path_uniform: bool = False  # True: same rate in every block (DINOv2 default); False: linear ramp (timm)
    layer_norm_eps: float = 1e-6  # DINOv2 / timm ViT value
    # antialiased bicubic when resampling positions; None = True with registers (DINOv2 reg models and HF
    # Dinov2WithRegistersModel do so), False without (HF Dinov2Model)
    pos_interp_antialias: bool | None = None
    # initialisation of a new backbone: "" = truncated normal (std 0.02; DINOv2, timm's default), "jax" = Xavier
    # uniform for the linear layers and LeCun normal for the patch embedding (timm's JAX/Flax ViT scheme)
    weight_init: str = ""
    # CLIP-style towers (timm ``pre_norm``; OpenAI CLIP, open_clip, HF CLIPVisionModel): a LayerNorm after the
    # position embedding and no patch-embedding bias
    pre_norm: bool = False
    act_layer: str = "gelu"  # MLP activation: "gelu" (DINOv2, timm ViT) or "quick_gelu" (OpenAI CLIP)
    image_mean: tuple[float, ...] = field(default=IMAGENET_MEAN)  # input normalisation the weights expect
    image_std: tuple[float, ...] = field(default=IMAGENET_STD)

    def __post_init__(self) -> None:
        self.image_mean = tuple(float(v) for v in self.image_mean)
        self.image_std = tuple(float(v) for v in self.image_std)
        if self.pos_interp_antialias is None:
            self.pos_interp_antialias = self.num_register_tokens > 0
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.img_size % self.patch_size:
            raise ValueError(f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}")
        if self.weight_init not in WEIGHT_INITS:
            raise ValueError(f"weight_init {self.weight_init!r} is not one of {WEIGHT_INITS}")
        if self.act_layer not in ACT_LAYERS:
            raise ValueError(f"act_layer {self.act_layer!r} is not one of {ACT_LAYERS}")
        if self.depth < 1 or self.num_register_tokens < 0:
            raise ValueError(f"need depth >= 1 and num_register_tokens >= 0, got {self.depth}, "
                             f"{self.num_register_tokens}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> BackboneSpec:
        """Build from a (possibly larger) dict, e.g. JSON metadata; unknown keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["image_mean"], out["image_std"] = list(self.image_mean), list(self.image_std)
        return out

    @property
    def grid_size(self) -> int:
        return self.img_size // self.patch_size


def interpolate_pos_embed(
    pos_embed: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int], antialias: bool = False
) -> torch.Tensor:
    """Resample a patch position embedding like Hugging Face ``Dinov2Model``.

    pos_embed: (1, old_h*old_w, D) -> (1, new_h*new_w, D). Bicubic, ``align_corners=False``,
    computed in float32 (antialias only matters when shrinking). Unchanged when the grids agree.
    """
    if tuple(old_grid) == tuple(new_grid):
        return pos_embed
    dim = pos_embed.shape[-1]
    grid = pos_embed.reshape(1, old_grid[0], old_grid[1], dim).permute(0, 3, 1, 2)  # (1, D, h, w)
    grid = F.interpolate(grid.float(), size=tuple(new_grid), mode="bicubic", align_corners=False, antialias=antialias)
    return grid.to(pos_embed.dtype).permute(0, 2, 3, 1).reshape(1, -1, dim)  # (1, h'*w', D)


class DinoVisionTransformer(VisionTransformer):
    """timm ViT with DINOv2 position-embedding semantics, a mask token and a spec."""

    def __init__(self, spec: BackboneSpec) -> None:
        super().__init__(
            img_size=spec.img_size, patch_size=spec.patch_size, num_classes=0, global_pool="token",
            embed_dim=spec.embed_dim, depth=spec.depth, num_heads=spec.num_heads, mlp_ratio=spec.mlp_ratio,
            qkv_bias=True, init_values=spec.layer_scale_init, class_token=True, no_embed_class=True,
            reg_tokens=spec.num_register_tokens, dynamic_img_size=True,
            drop_path_rate=spec.drop_path_rate, norm_layer=partial(nn.LayerNorm, eps=spec.layer_norm_eps),
            weight_init=spec.weight_init, pre_norm=spec.pre_norm,
            act_layer=None if spec.act_layer == "gelu" else spec.act_layer,
        )
        self.spec = spec
        self.mask_token = nn.Parameter(torch.zeros(1, spec.embed_dim))  # iBOT: replaces masked patches
        if spec.drop_path_uniform and spec.drop_path_rate > 0:
            for blk in self.blocks:
                blk.drop_path1 = DropPath(spec.drop_path_rate)
                blk.drop_path2 = DropPath(spec.drop_path_rate)

    def _pos_embed(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, h, w, D) patch embeddings -> (B, 1 + R + h*w, D) tokens with positions."""
        B, h, w, D = x.shape
        pos = interpolate_pos_embed(self.pos_embed, self.patch_embed.grid_size, (h, w),
                                    self.spec.pos_interp_antialias)  # (1, h*w, D)
        x = x.reshape(B, h * w, D) + pos
        prefix = [self.cls_token.expand(B, -1, -1)]
        if self.reg_token is not None:
            prefix.append(self.reg_token.expand(B, -1, -1))
        return self.pos_drop(torch.cat(prefix + [x], dim=1))

    def forward_features(
        self, x: torch.Tensor, masks: torch.Tensor | None = None, attn_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x: (B, 3, H, W); masks: optional (B, h*w) bool (True = masked) -> (B, 1 + R + h*w, D)."""
        x = self.patch_embed(x)  # (B, h, w, D)
        if masks is not None:
            B, h, w, D = x.shape
            x = torch.where(masks.reshape(B, h, w, 1), self.mask_token.to(x.dtype).reshape(1, 1, 1, D), x)
        x = self.norm_pre(self.patch_drop(self._pos_embed(x)))
        if attn_mask is not None:
            for blk in self.blocks:
                x = blk(x, attn_mask=attn_mask)
        elif self.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint_seq(self.blocks, x)
        else:
            x = self.blocks(x)
        return self.norm(x)

    def set_img_size(self, img_size: int) -> None:
        """Store the position embedding at ``img_size`` (resampled like ``Dinov2Model``)."""
        new_grid = (img_size // self.spec.patch_size,) * 2
        with torch.no_grad():
            pos = interpolate_pos_embed(self.pos_embed.data, self.patch_embed.grid_size, new_grid,
                                        self.spec.pos_interp_antialias)
        self.pos_embed = nn.Parameter(pos, requires_grad=self.pos_embed.requires_grad)
        self.patch_embed.set_input_size(img_size=(img_size, img_size))
        self.spec = dataclasses.replace(self.spec, img_size=img_size)


def create_backbone(
    arch: str = "vit_small",
    patch_size: int | None = None,
    img_size: int | None = None,
    depth: int = 0,
    drop_path_rate: float = 0.0,
    layer_scale_init: float | None = 1e-5,
    num_register_tokens: int = 0,
    **overrides: Any,
) -> DinoVisionTransformer:
    """Build a randomly initialised backbone (nothing is downloaded).

    arch: "vit_tiny" (192 wide, 3 heads), "vit_small" (384, 6), "vit_base" (768, 12), "vit_large" (1024, 16),
    or a DINOv2 preset "vit_small_patch14_dinov2" / "vit_base_patch14_dinov2" (patch 14, 518 px).
    patch_size / img_size: None = 14 / 224 (presets: 14 / 518). depth: 0 = the arch default (12; large 24).
    overrides: further :class:`BackboneSpec` fields (``image_mean``, ``image_std``, ``drop_path_uniform`` ...).
    """
    preset = PRESETS.get(arch, {})
    base = preset.get("arch", arch)
    if base not in ARCHS:
        raise ValueError(f"unknown backbone arch {arch!r}; choose one of {sorted(ARCHS) + sorted(PRESETS)}")
    embed_dim, num_heads, default_depth = ARCHS[base]
    return backbone_from_spec(BackboneSpec(
        arch=base,
        patch_size=patch_size or preset.get("patch_size", 14),
        img_size=img_size or preset.get("img_size", 224),
        depth=depth or default_depth,
        embed_dim=embed_dim,
        num_heads=num_heads,
        num_register_tokens=num_register_tokens,
        layer_scale_init=layer_scale_init,
        drop_path_rate=drop_path_rate,
        **overrides,
    ))


def backbone_from_spec(spec: BackboneSpec | dict[str, Any]) -> DinoVisionTransformer:
    """Build a randomly initialised backbone from a spec (dataclass or dict)."""
    if isinstance(spec, dict):
        spec = BackboneSpec.from_dict(spec)
    return DinoVisionTransformer(spec)


def backbone_spec(model: nn.Module) -> dict[str, Any]:
    """The model's spec as a plain dict (arch, patch_size, img_size, depth, embed_dim, num_heads, ...)."""
    spec = getattr(model, "spec", None)
    if not isinstance(spec, BackboneSpec):
        raise TypeError(f"{type(model).__name__} carries no BackboneSpec; build it with create_backbone/load_backbone")
    return spec.to_dict()


def split_tokens(model: nn.Module, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``model.forward_features`` output into CLS and the patch grid.

    tokens: (B, 1 + R + N, D) -> cls (B, D), patches (B, h, w, D). The grid is taken as square
    (h = w = sqrt(N)), which holds for the square crops used throughout this package.
    """
    n_prefix = int(getattr(model, "num_prefix_tokens", 1))
    B, T, D = tokens.shape
    n = T - n_prefix
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"{n} patch tokens do not form a square grid (tokens {tuple(tokens.shape)}, "
                         f"{n_prefix} prefix tokens); use square inputs")
    return tokens[:, 0], tokens[:, n_prefix:].reshape(B, side, side, D)  # (B, D), (B, h, w, D)


def pool_tokens(model: nn.Module, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``split_tokens`` and the mean patch token: (B, 1 + R + N, D) -> cls (B, D), mean_patch (B, D), grid (B, h, w, D).

    The pooled features every probe reads ([CLS], [CLS, mean patch]) and the supervised ceiling's heads train on;
    differentiable (the probes call it under ``no_grad``).
    """
    cls, grid = split_tokens(model, tokens)
    return cls, grid.mean(dim=(1, 2)), grid
