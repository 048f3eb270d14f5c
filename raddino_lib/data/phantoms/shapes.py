"""Vectorised drawing primitives on normalised coordinate grids.

Coordinates: ``x`` in [-1, 1] from image left to image right, ``y`` in [-1, 1]
from top to bottom, both (S, S) float32. Every primitive returns a soft
(S, S) float32 field in [0, 1] so that shapes stay anti-aliased at any size.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image


@functools.lru_cache(maxsize=8)
def base_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, y), each (S, S) float32, at pixel centres."""
    t = (np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0
    y, x = np.meshgrid(t, t, indexing="ij")
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def step(z: np.ndarray, width: float) -> np.ndarray:
    """Soft step 0 → 1 as z goes from -width to +width (a linear ramp: cheaper than tanh, same look)."""
    out = z * np.float32(0.5 / width)
    out += np.float32(0.5)
    np.maximum(out, np.float32(0.0), out=out)
    return np.minimum(out, np.float32(1.0), out=out)


def frac(z: np.ndarray) -> np.ndarray:
    """Fractional part in [0, 1) (np.mod is several times slower)."""
    return z - np.floor(z)


def where(cond: np.ndarray, a: float | np.ndarray, b: float | np.ndarray) -> np.ndarray:
    """np.where that stays float32 (Python floats would promote to float64)."""
    return np.where(cond, np.float32(a) if np.isscalar(a) else a, np.float32(b) if np.isscalar(b) else b)


def ellipse(x: np.ndarray, y: np.ndarray, cx: float, cy: float, a: float, b: float, angle: float = 0.0
            ) -> np.ndarray:
    """Normalised squared radius of a rotated ellipse: < 1 inside. (S, S)."""
    dx, dy = x - cx, y - cy
    if angle:
        c, s = float(np.cos(angle)), float(np.sin(angle))  # Python floats keep the grid float32
        dx, dy = c * dx + s * dy, -s * dx + c * dy
    return (dx / a) ** 2 + (dy / b) ** 2


def disc(x: np.ndarray, y: np.ndarray, cx: float, cy: float, a: float, b: float, angle: float = 0.0,
         edge: float = 0.15) -> np.ndarray:
    """Soft ellipse indicator in [0, 1] with a relative edge width ``edge``."""
    return step(1.0 - ellipse(x, y, cx, cy, a, b, angle), edge)


def band(dist: np.ndarray, half_width: float, edge: float) -> np.ndarray:
    """Soft indicator of |dist| < half_width."""
    return step(half_width - np.abs(dist), edge)


def smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise: a (cells, cells) normal grid upsampled bicubically to (S, S), unit-ish std."""
    small = rng.standard_normal((cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC))


def segment_distance(x: np.ndarray, y: np.ndarray, p0: tuple[float, float], p1: tuple[float, float]
                     ) -> np.ndarray:
    """Distance from each pixel to the segment p0–p1. (S, S)."""
    (x0, y0), (x1, y1) = p0, p1
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((x - x0) * dx + (y - y0) * dy) / max(dx * dx + dy * dy, 1e-9), 0.0, 1.0)
    return np.hypot(x - x0 - t * dx, y - y0 - t * dy)


def polyline_distance(x: np.ndarray, y: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Distance to a polyline given as (P, 2) points. (S, S)."""
    d = segment_distance(x, y, tuple(points[0]), tuple(points[1]))
    for i in range(1, len(points) - 1):
        d = np.minimum(d, segment_distance(x, y, tuple(points[i]), tuple(points[i + 1])))
    return d
