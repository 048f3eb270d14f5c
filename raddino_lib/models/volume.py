"""A minimal 3D vision transformer: cubic patches → tokens → transformer blocks (timm's), with a CLS token.

Generic on purpose (the reference point for 3D probes and the CT phantoms' difficulty floor): patch embedding
by a strided Conv3d, learned absolute position embeddings, pre-norm blocks. Encoders with rotary positions and
the COLIPRI release's sizes belong to their own module.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from timm.models.vision_transformer import Block
from torch import nn


@dataclass(frozen=True)
class VolumeViTConfig:
    img_size: tuple[int, int, int] = (64, 64, 64)  # (D, H, W) input voxels; each a multiple of patch_size
    patch_size: int = 8  # cubic patch edge in voxels
    in_chans: int = 1  # CT: one channel
    embed_dim: int = 96  # token width
    depth: int = 4  # transformer blocks
    num_heads: int = 3  # attention heads (embed_dim divisible by it)
    mlp_ratio: float = 4.0  # hidden width of each block's MLP / embed_dim

    def __post_init__(self) -> None:
        if any(s % self.patch_size for s in self.img_size):
            raise ValueError(f"VolumeViTConfig: img_size {self.img_size} must be multiples of patch_size "
                             f"{self.patch_size}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"VolumeViTConfig: embed_dim {self.embed_dim} is not divisible by num_heads "
                             f"{self.num_heads}")

    @property
    def grid(self) -> tuple[int, int, int]:
        return tuple(s // self.patch_size for s in self.img_size)  # type: ignore[return-value]


class VolumeViT(nn.Module):
    def __init__(self, config: VolumeViTConfig = VolumeViTConfig()) -> None:
        super().__init__()
        self.config = config
        c = config
        self.patch_embed = nn.Conv3d(c.in_chans, c.embed_dim, kernel_size=c.patch_size, stride=c.patch_size)
        n = c.grid[0] * c.grid[1] * c.grid[2]
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + n, c.embed_dim))
        self.blocks = nn.ModuleList(Block(c.embed_dim, c.num_heads, c.mlp_ratio, qkv_bias=True) for _ in range(c.depth))
        self.norm = nn.LayerNorm(c.embed_dim, eps=1e-6)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.apply(_init)

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, D, H, W) → (B, 1 + N, E) tokens after the final norm; N = D·H·W / patch³."""
        if tuple(x.shape[2:]) != self.config.img_size:
            raise ValueError(f"VolumeViT expects volumes of {self.config.img_size} voxels, got {tuple(x.shape[2:])}")
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, N, E)
        tokens = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), tokens], dim=1) + self.pos_embed  # (B, 1+N, E)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, D, H, W) → (B, 2E): the CLS token and the mean patch token."""
        tokens = self.forward_features(x)
        return torch.cat([tokens[:, 0], tokens[:, 1:].mean(1)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)


def _init(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
