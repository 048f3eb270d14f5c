"""CT preprocessing as in the public COLIPRI release: isotropic resampling, HU clipping and scaling, crop or pad.

The release (``colipri`` 0.1.3, its processor config) reorients to RAS, resamples linearly without
anti-aliasing to 2 mm isotropic voxels, clamps to [-1000, 1000] HU, maps that range linearly onto [-1, 1],
and crops or pads symmetrically to 192³ (8³ patches → a 24³ token grid), padding with the volume's minimum.
:class:`CTPreprocess` holds the same steps as fields, so a phantom volume of 64³ at 6 mm and a CT-RATE volume
at 0.75 mm go through one code path. Volumes here are canonical (D, H, W) tensors (``volume_io``); the
resampling keeps the field of view centred, like TorchIO's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class CTPreprocess:
    """Resample → clip → scale → crop/pad; the defaults are the COLIPRI release's."""

    spacing: tuple[float, float, float] = (2.0, 2.0, 2.0)  # target voxel size (z, y, x) mm; phantoms: their own
    size: tuple[int, int, int] = (192, 192, 192)  # output (D, H, W); a multiple of the encoder's patch size
    hu_range: tuple[float, float] = (-1000.0, 1000.0)  # clipped to this window first
    out_range: tuple[float, float] = (-1.0, 1.0)  # ... then mapped linearly onto this range
    antialias: bool = False  # Gaussian pre-filter before downsampling; the release does not (False)
    pad_value: str = "minimum"  # "minimum" (the release: the volume's minimum after scaling) or a number as text

    def __post_init__(self) -> None:
        if len(self.spacing) != 3 or min(self.spacing) <= 0:
            raise ValueError(f"CTPreprocess.spacing {self.spacing} must be three positive numbers (z, y, x) in mm")
        if len(self.size) != 3 or min(self.size) < 1:
            raise ValueError(f"CTPreprocess.size {self.size} must be three positive integers (D, H, W)")
        if self.hu_range[0] >= self.hu_range[1] or self.out_range[0] >= self.out_range[1]:
            raise ValueError(f"CTPreprocess: hu_range {self.hu_range} and out_range {self.out_range} must be "
                             "increasing (low, high) pairs")

    def __call__(self, hu: torch.Tensor, spacing: tuple[float, float, float]) -> torch.Tensor:
        """(D, H, W) HU at ``spacing`` → (size) float32 in ``out_range``."""
        x = resample(hu, spacing, self.spacing, antialias=self.antialias)
        x = scale_hu(x, self.hu_range, self.out_range)
        pad = float(x.min()) if self.pad_value == "minimum" else float(self.pad_value)
        return crop_or_pad(x, self.size, pad)


def resample(volume: torch.Tensor, spacing: tuple[float, float, float], target: tuple[float, float, float],
             mode: str = "linear", antialias: bool = False) -> torch.Tensor:
    """(D, H, W) at ``spacing`` → (D', H', W') at ``target``, D' = round(D · spacing / target); the field of view
    stays centred. ``mode``: "linear" (trilinear, images) or "nearest" (label maps)."""
    if mode not in ("linear", "nearest"):
        raise ValueError(f"resample mode '{mode}' is not 'linear' or 'nearest'")
    out = volume if mode == "nearest" else volume.to(torch.float32)
    if antialias and mode == "linear":
        out = _antialias(out, spacing, target)
    for axis in range(3):
        out = _resample_axis(out, axis, spacing[axis], target[axis], mode)
    return out


def _resample_axis(x: torch.Tensor, axis: int, step: float, target: float, mode: str) -> torch.Tensor:
    n = x.shape[axis]
    m = max(1, int(round(n * step / target)))
    if m == n and abs(step - target) < 1e-9:
        return x
    start = (n * step - m * target) / 2.0  # the output grid's first edge, mm from the input's first edge
    centres = start + (np.arange(m) + 0.5) * target  # output voxel centres, mm
    u = np.clip(centres / step - 0.5, 0.0, n - 1)  # in input index units, clamped at the borders
    if mode == "nearest":
        return x.index_select(axis, torch.from_numpy(np.rint(u).astype(np.int64)))
    i0 = np.floor(u).astype(np.int64)
    i1 = np.minimum(i0 + 1, n - 1)
    shape = [1, 1, 1]
    shape[axis] = m
    w = torch.from_numpy((u - i0).astype(np.float32)).view(shape)
    a, b = x.index_select(axis, torch.from_numpy(i0)), x.index_select(axis, torch.from_numpy(i1))
    return torch.lerp(a, b, w)


def _antialias(x: torch.Tensor, spacing: tuple[float, float, float], target: tuple[float, float, float]
               ) -> torch.Tensor:
    from scipy.ndimage import gaussian_filter

    sigma = [max(0.0, (t / s - 1.0) / 2.0) for s, t in zip(spacing, target, strict=True)]  # voxels, per axis
    if max(sigma) == 0:
        return x
    return torch.from_numpy(gaussian_filter(x.numpy(), sigma=sigma, mode="nearest"))


def scale_hu(hu: torch.Tensor, hu_range: tuple[float, float] = (-1000.0, 1000.0),
             out_range: tuple[float, float] = (-1.0, 1.0)) -> torch.Tensor:
    """Clip to ``hu_range`` and map it linearly onto ``out_range``."""
    lo, hi = hu_range
    a, b = out_range
    return (hu.clamp(lo, hi) - lo) * ((b - a) / (hi - lo)) + a


def crop_or_pad(x: torch.Tensor, size: tuple[int, int, int], value: float) -> torch.Tensor:
    """Centre crop and/or pad (D, H, W) → ``size``; odd differences put the extra voxel at the end."""
    out = x
    for axis, target in enumerate(size):
        n = out.shape[axis]
        if n > target:
            start = (n - target) // 2
            out = out.narrow(axis, start, target)
        elif n < target:
            before = (target - n) // 2
            widths = [(0, 0)] * 3
            widths[axis] = (before, target - n - before)
            pad = [w for pair in reversed(widths) for w in pair]  # F.pad wants the last axis first
            out = torch.nn.functional.pad(out[None], pad, value=value)[0]
    return out.contiguous()


def load_volumes(df, preprocess: CTPreprocess, progress: bool = False) -> torch.Tensor:
    """(N, 1, D, H, W) float32: every row of a volume manifest (``abs_path``, ``spacing_zyx``) read and passed
    through ``preprocess``."""
    from tqdm.auto import tqdm

    from raddino_lib.data.volume_io import load_volume

    rows = zip(df["abs_path"], df["spacing_zyx"], strict=True)
    vols = [preprocess(load_volume(p).hu, s) for p, s in tqdm(rows, total=len(df), desc="volumes", leave=False,
                                                              disable=not progress)]
    return torch.stack(vols)[:, None]
