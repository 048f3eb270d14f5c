"""iBOT / BEiT block-wise masking of the patch grid.

Rectangular blocks of random area (between ``min_num_patches`` and ``max_num_patches``) and aspect ratio (in
[min_aspect, max_aspect], sampled log-uniformly) are added until the requested number of patches is masked. A
block is only placed if it adds new patches without overshooting the target. Unlike the BEiT/DINOv2 original,
which may stop a few patches short, this generator then tops the mask up one patch at a time, picking
unmasked patches that touch the mask (so the result stays blocky): the returned mask has **exactly**
``num_masking_patches`` True entries (capped at the grid size).

Randomness comes from ``torch`` (a ``torch.Generator`` when given, else the global RNG, which DataLoader
seeds differently in every worker).
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["MaskingGenerator"]


class MaskingGenerator:
    """Block masks for a (h, w) grid of patch tokens.

    Args:
        input_size: (h, w) patch grid, or an int for a square grid.
        num_masking_patches: default count for ``__call__`` without an argument.
        min_num_patches: smallest block area (4 in BEiT / DINOv2).
        max_num_patches: largest block area (DINOv2: half the grid); default ``num_masking_patches`` or the grid.
        min_aspect: smallest block aspect ratio h/w (0.3); ``max_aspect`` defaults to 1 / min_aspect.
    """

    def __init__(
        self,
        input_size: tuple[int, int] | int,
        num_masking_patches: int | None = None,
        min_num_patches: int = 4,
        max_num_patches: float | None = None,
        min_aspect: float = 0.3,
        max_aspect: float | None = None,
    ) -> None:
        self.height, self.width = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
        if self.height < 1 or self.width < 1 or min_aspect <= 0:
            raise ValueError(f"MaskingGenerator: bad input_size {input_size} or min_aspect {min_aspect}")
        self.num_patches = self.height * self.width
        self.num_masking_patches = num_masking_patches or 0
        self.min_num_patches = min_num_patches
        default_max = num_masking_patches if num_masking_patches else self.num_patches
        self.max_num_patches = default_max if max_num_patches is None else max_num_patches
        max_aspect = max_aspect or 1.0 / min_aspect
        self.log_aspect_ratio = (math.log(min_aspect), math.log(max_aspect))

    def __repr__(self) -> str:
        return (
            f"MaskingGenerator({self.height}, {self.width} -> [{self.min_num_patches} ~ {self.max_num_patches}], "
            f"aspect {math.exp(self.log_aspect_ratio[0]):.2f} ~ {math.exp(self.log_aspect_ratio[1]):.2f})"
        )

    def get_shape(self) -> tuple[int, int]:
        return self.height, self.width

    @staticmethod
    def _uniform(low: float, high: float, g: torch.Generator | None) -> float:
        return low + (high - low) * torch.rand((), generator=g).item()

    @staticmethod
    def _randint(low: int, high: int, g: torch.Generator | None) -> int:
        """Uniform integer in [low, high] (inclusive, like random.randint)."""
        return int(torch.randint(low, high + 1, (), generator=g).item())

    def _add_block(self, mask: np.ndarray, max_mask_patches: float, g: torch.Generator | None) -> int:
        """Try (up to 10 times) to add one block masking 1..max_mask_patches new patches; returns how many."""
        for _ in range(10):
            target_area = self._uniform(self.min_num_patches, max_mask_patches, g)
            aspect_ratio = math.exp(self._uniform(*self.log_aspect_ratio, g))
            h = int(round(math.sqrt(target_area * aspect_ratio)))
            w = int(round(math.sqrt(target_area / aspect_ratio)))
            if 0 < w < self.width and 0 < h < self.height:
                top = self._randint(0, self.height - h, g)
                left = self._randint(0, self.width - w, g)
                new = h * w - int(mask[top : top + h, left : left + w].sum())
                if 0 < new <= max_mask_patches:
                    mask[top : top + h, left : left + w] = True
                    return new
        return 0

    def _top_up(self, mask: np.ndarray, missing: int, g: torch.Generator | None) -> None:
        """Mask ``missing`` more patches one at a time, preferring unmasked neighbours of the mask."""
        for _ in range(missing):
            grown = mask.copy()
            grown[1:, :] |= mask[:-1, :]
            grown[:-1, :] |= mask[1:, :]
            grown[:, 1:] |= mask[:, :-1]
            grown[:, :-1] |= mask[:, 1:]
            candidates = np.flatnonzero(grown & ~mask)
            if candidates.size == 0:
                candidates = np.flatnonzero(~mask)
            mask.flat[candidates[self._randint(0, candidates.size - 1, g)]] = True

    def __call__(self, num_masking_patches: int | None = None, generator: torch.Generator | None = None) -> np.ndarray:
        """Bool array (h, w) with exactly ``min(num_masking_patches, h * w)`` True entries."""
        target = self.num_masking_patches if num_masking_patches is None else int(num_masking_patches)
        target = min(max(target, 0), self.num_patches)
        mask = np.zeros(self.get_shape(), dtype=bool)
        count = 0
        while count < target:
            budget = min(target - count, self.max_num_patches)
            added = self._add_block(mask, budget, generator)
            if added == 0:
                break
            count += added
        if count < target:
            self._top_up(mask, target - count, generator)
        return mask
