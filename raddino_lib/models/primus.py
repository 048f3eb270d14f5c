"""Primus, the 3D image encoder of COLIPRI, from ``dynamic-network-architectures`` (the field's implementation).

Primus (Wald et al. 2025) is an EVA-style vision transformer on cubic patches: a strided Conv3d patch embedding,
3D rotary position embeddings plus learned absolute ones, SwiGLU MLPs, layer-scale 0.1 and an inner attention
norm. COLIPRI's public release uses Primus-M (width 864, depth 16, 12 heads, 8³ patches, 192³ voxels at 2 mm →
a 24³ token grid). :class:`PrimusEncoder` keeps the architecture's patch embedding and transformer (its
segmentation decoder is left out) and adds a learned mask token for masked image modelling; ``"tiny"`` is a
CPU preset. :class:`ImageTower` adds COLIPRI's attention pooling (one learned query over all tokens) and a
projection into the shared image–text space. ``save_encoder`` / ``load_encoder`` write and read a folder with
``config.json`` and ``model.safetensors``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from timm.layers import RotaryEmbeddingCat
from torch import nn

from raddino_lib import atomic

# name -> (width, depth, heads); S/B/M/L are the published Primus sizes, tiny fits a laptop
PRESETS: dict[str, tuple[int, int, int]] = {
    "tiny": (96, 4, 2), "S": (396, 12, 6), "B": (792, 12, 12), "M": (864, 16, 12), "L": (1056, 24, 16),
}
CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"


@dataclass(frozen=True)
class PrimusConfig:
    preset: str = "tiny"  # a PRESETS name: the width, depth and heads of the transformer
    input_shape: tuple[int, int, int] = (64, 64, 64)  # (D, H, W) voxels, each a multiple of patch_size
    patch_size: int = 8  # cubic patch edge in voxels (COLIPRI: 8)
    proj_dim: int = 128  # width of the shared image-text embedding

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"Primus preset {self.preset!r} is unknown; choose one of {sorted(PRESETS)}")
        shape = tuple(int(s) for s in self.input_shape)
        object.__setattr__(self, "input_shape", shape)
        if len(shape) != 3 or any(s % self.patch_size for s in shape):
            raise ValueError(f"Primus input_shape {shape} must be three multiples of patch_size {self.patch_size}")

    @property
    def width(self) -> int:
        return PRESETS[self.preset][0]

    @property
    def grid(self) -> tuple[int, int, int]:
        return tuple(s // self.patch_size for s in self.input_shape)  # type: ignore[return-value]


class Rope3d(RotaryEmbeddingCat):
    """timm's axial rotary embedding with its cache sized for any number of axes.

    The ``dynamic-network-architectures`` release builds Primus's rotary embedding with timm's
    ``RotaryEmbeddingCat``; recent timm sizes that class's cache for two axes (2 × dim), while three axes give
    sin and cos of 1.5 × dim each. The embedding itself is timm's, unchanged.
    """

    def _create_cache(self, num_pos, device, dtype) -> None:
        if num_pos is None:
            self.pos_embed = None
            return
        width = (self.dim // 4) * 2 * len(self.feat_shape) * 2  # bands x (sin|cos interleave) x axes x (sin, cos)
        self.register_buffer("pos_embed", torch.empty((num_pos, width), device=device, dtype=dtype), persistent=False)


class PrimusEncoder(nn.Module):
    """(B, 1, D, H, W) → (B, N, E) tokens, N = D·H·W / patch³ in (z, y, x) raster order."""

    def __init__(self, config: PrimusConfig = PrimusConfig()) -> None:
        super().__init__()
        try:
            from dynamic_network_architectures.architectures.primus import Primus
        except ImportError as err:  # pyproject cannot list it: its release pins an older timm
            raise ImportError("Primus needs dynamic-network-architectures: `make setup` installs it, or run `pip "
                              "install --no-deps dynamic-network-architectures==0.4.4 einops`") from err

        self.config = config
        width, depth, heads = PRESETS[config.preset]
        p = config.patch_size
        net = Primus(1, width, (p, p, p), num_classes=1, eva_depth=depth, eva_numheads=heads,
                     input_shape=config.input_shape, init_values=0.1, scale_attn_inner=True, rope_impl=Rope3d)
        self.down_projection, self.eva = net.down_projection, net.eva  # the segmentation decoder is not kept
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    @property
    def embed_dim(self) -> int:
        return self.config.width

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``mask``: (B, N) bool, True where a patch is replaced by the mask token before the transformer."""
        if tuple(x.shape[1:]) != (1, *self.config.input_shape):
            raise ValueError(f"Primus expects (B, 1, {', '.join(map(str, self.config.input_shape))}) volumes, "
                             f"got {tuple(x.shape)}")
        tokens = self.down_projection(x).flatten(2).transpose(1, 2)  # (B, N, E)
        if mask is not None:
            tokens = torch.where(mask[..., None], self.mask_token.to(tokens.dtype), tokens)
        tokens, _ = self.eva(tokens)
        return tokens


class AttentionPool(nn.Module):
    """One learned query attends over all tokens: (B, N, E) → (B, E), and the attention weights (B, N)."""

    def __init__(self, dim: int, heads: int = 1) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.query, std=0.02)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled, weights = self.attn(self.query.expand(len(tokens), -1, -1), tokens, tokens, need_weights=True)
        return self.norm(pooled[:, 0]), weights[:, 0]


class ImageTower(nn.Module):
    """Primus → attention pooling → linear projection: the image side of COLIPRI's shared space."""

    def __init__(self, config: PrimusConfig = PrimusConfig()) -> None:
        super().__init__()
        self.config = config
        self.encoder = PrimusEncoder(config)
        self.pool = AttentionPool(config.width)
        self.proj = nn.Linear(config.width, config.proj_dim, bias=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(the projected embedding (B, proj_dim), unnormalised; the tokens (B, N, E))."""
        tokens = self.encoder(x, mask)
        pooled, _ = self.pool(tokens)
        return self.proj(pooled), tokens

    def token_scores(self, tokens: torch.Tensor) -> torch.Tensor:
        """Each token projected into the shared space on its own: (B, N, E) → (B, N, proj_dim), for score maps."""
        return self.proj(self.pool.norm(tokens))


def save_encoder(tower: ImageTower, folder: str | os.PathLike) -> Path:
    """Write ``config.json`` and ``model.safetensors`` (encoder, pooling and projection) into ``folder``."""
    from safetensors.torch import save

    out = Path(folder)
    state = {k: v.detach().contiguous().cpu() for k, v in tower.state_dict().items()}
    atomic.write_bytes(out / WEIGHTS_NAME, save(state))
    atomic.write_json(out / CONFIG_NAME, {"architecture": "primus", **asdict(tower.config)})
    return out


def load_encoder(folder: str | os.PathLike) -> ImageTower:
    """An :class:`ImageTower` from a folder written by :func:`save_encoder`; clear errors for anything else."""
    from safetensors.torch import load_file

    path = Path(folder)
    if not (path / CONFIG_NAME).is_file() or not (path / WEIGHTS_NAME).is_file():
        raise FileNotFoundError(f"{path}: a Primus encoder folder holds {CONFIG_NAME} and {WEIGHTS_NAME} "
                                "(written by raddino_lib.models.primus.save_encoder)")
    config = json.loads((path / CONFIG_NAME).read_text())
    if config.pop("architecture", None) != "primus":
        raise ValueError(f"{path / CONFIG_NAME}: 'architecture' is not 'primus'")
    tower = ImageTower(PrimusConfig(**config))
    tower.load_state_dict(load_file(str(path / WEIGHTS_NAME)))
    return tower
