"""Masks derived from other masks: lung zones, and how many probe patches a mask covers.

Lung zones follow the radiological convention of dividing each lung into an
upper, middle and lower zone of equal height (from the apex to the lowest
point of the costophrenic recess). They are cut from the final lung masks, so
the three zones of a lung are disjoint and their union is exactly the lung.
"""

from __future__ import annotations

import numpy as np


def lung_zones(right_lung: np.ndarray, left_lung: np.ndarray) -> dict[str, np.ndarray]:
    """{"right_upper_zone": (S, S) bool, ...}: the six zones of ``schema.LUNG_ZONES``."""
    out = {}
    for side, lung in (("right", right_lung), ("left", left_lung)):
        rows = np.flatnonzero(lung.any(axis=1))
        row = np.arange(lung.shape[0])[:, None]  # (S, 1)
        top, bottom = (rows[0], rows[-1] + 1) if rows.size else (0, 0)
        cut1, cut2 = (int(round(top + (bottom - top) * f)) for f in (1 / 3, 2 / 3))
        out[f"{side}_upper_zone"] = lung & (row < cut1)
        out[f"{side}_middle_zone"] = lung & (row >= cut1) & (row < cut2)
        out[f"{side}_lower_zone"] = lung & (row >= cut2)
    return out


def patches_covered(mask: np.ndarray, patch: int) -> int:
    """Number of ``patch`` x ``patch`` cells of a (S, S) mask (S divisible by ``patch``) holding any of it."""
    s = mask.shape[0]
    if s % patch or mask.shape[1] != s:
        raise ValueError(f"mask of shape {mask.shape} does not tile into {patch} px patches")
    cells = mask.reshape(s // patch, patch, s // patch, patch).any(axis=(1, 3))  # (S/p, S/p)
    return int(cells.sum())
