"""A UPerNet / FPN segmentation head on several layers of a frozen ViT.

RAD-DINO segments lungs, lung zones and ribs with a UPerNet head on its frozen encoder (PAPERS.md); a linear
1x1 head on the last layer asks how much a *single* token already says, a UPerNet head how well the frozen
features support a real decoder. A ViT has one resolution, so the pyramid is built first (ViTDet's "simple
feature pyramid"): shallower layers are resampled to finer scales, deeper ones to coarser scales.

    layers (B, L, h, w, D), L = 4 blocks spread over the depth (probe.features.layer_indices)
      → standardize each layer with fixed train statistics                     (B, L, D, h, w)
      → per layer: 1x1 conv D→C, bilinear resample to scale s_l x (h, w)       s = (2, 1, 1, 1/2)
      → pyramid pooling module on the coarsest level (bins 1, 2), 3x3 conv     UPerNet's global context
      → FPN top-down: p_l = lateral_l + upsample(p_{l+1}), 3x3 conv-BN-ReLU
      → fuse: upsample every level to the finest, concat (L*C), 3x3 conv → C, 1x1 → S logits
      → bilinear upsample to the mask size                                     (B, S, H, W)

Sizes are kept small so that it trains on two CPU cores within the probes' time budget: C = 32 channels, and
scales (2, 1, 1, 1/2) where BEiT's and MAE's UPerNet on a ViT use (4, 2, 1, 1/2) — on the 8 x 8 token grid of
the cpu profile the 4x level alone would cost three times the rest. The paper's head is wider (512 channels);
``channels`` and ``scales`` accept any values.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn_relu(c_in: int, c_out: int, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


class PyramidPooling(nn.Module):
    """UPerNet's PPM: average-pool to a few bin sizes, project, upsample back, concatenate with the input."""

    def __init__(self, channels: int, bins: Sequence[int] = (1, 2)) -> None:
        super().__init__()
        self.bins = tuple(bins)
        self.stages = nn.ModuleList(conv_bn_relu(channels, channels, 1) for _ in self.bins)
        self.out = conv_bn_relu(channels * (1 + len(self.bins)), channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) → (B, C, h, w)."""
        size = x.shape[-2:]
        pooled = [F.interpolate(stage(F.adaptive_avg_pool2d(x, b)), size=size, mode="bilinear", align_corners=False)
                  for b, stage in zip(self.bins, self.stages, strict=True)]
        return self.out(torch.cat([x, *pooled], dim=1))


class UPerNetHead(nn.Module):
    """(B, L, h, w, D) frozen tokens of L layers → (B, S, H, W) logits; see the module docstring.

    Args:
        dim: token width D; n_structures: output channels S; n_layers: L (one pyramid level per layer).
        mean, std: (L, D) per-layer token statistics of the train split (fixed buffers).
        channels: decoder width C. scales: resampling factor of each level, shallow to deep.
    """

    def __init__(self, dim: int, n_structures: int, mean: torch.Tensor, std: torch.Tensor, n_layers: int = 4,
                 channels: int = 32, scales: Sequence[float] = (2.0, 1.0, 1.0, 0.5)) -> None:
        super().__init__()
        if len(scales) != n_layers:
            raise ValueError(f"UPerNetHead: {len(scales)} scales for {n_layers} layers (one scale per layer)")
        if mean.shape != (n_layers, dim) or std.shape != (n_layers, dim):
            raise ValueError(f"UPerNetHead: mean/std must be ({n_layers}, {dim}), got {tuple(mean.shape)}, "
                             f"{tuple(std.shape)}")
        self.scales = tuple(float(s) for s in scales)
        self.register_buffer("mean", mean.reshape(1, n_layers, dim, 1, 1).float())
        self.register_buffer("std", std.reshape(1, n_layers, dim, 1, 1).float())
        self.lateral = nn.ModuleList(conv_bn_relu(dim, channels, 1) for _ in range(n_layers))
        self.ppm = PyramidPooling(channels)
        self.smooth = nn.ModuleList(conv_bn_relu(channels, channels) for _ in range(n_layers - 1))
        self.fuse = conv_bn_relu(channels * n_layers, channels)
        self.classifier = nn.Conv2d(channels, n_structures, kernel_size=1)

    def pyramid(self, layers: torch.Tensor) -> list[torch.Tensor]:
        """(B, L, h, w, D) → L maps (B, C, s_l*h, s_l*w), finest first, after the FPN top-down pass."""
        x = (layers.float().permute(0, 1, 4, 2, 3) - self.mean) / self.std  # (B, L, D, h, w)
        h, w = x.shape[-2:]
        lateral = []
        for i, (conv, s) in enumerate(zip(self.lateral, self.scales, strict=True)):
            size = (max(1, round(h * s)), max(1, round(w * s)))
            lateral.append(F.interpolate(conv(x[:, i]), size=size, mode="bilinear", align_corners=False))
        levels = [self.ppm(lateral[-1])]  # coarsest level with global context
        for i in range(len(lateral) - 2, -1, -1):  # top-down
            up = F.interpolate(levels[0], size=lateral[i].shape[-2:], mode="bilinear", align_corners=False)
            levels.insert(0, self.smooth[i](lateral[i] + up))
        return levels

    def forward(self, layers: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        levels = self.pyramid(layers)
        top = levels[0].shape[-2:]
        fused = torch.cat([levels[0]] + [F.interpolate(p, size=top, mode="bilinear", align_corners=False)
                                         for p in levels[1:]], dim=1)  # (B, L*C, s_0*h, s_0*w)
        logits = self.classifier(self.fuse(fused))  # (B, S, s_0*h, s_0*w)
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)  # (B, S, H, W)
