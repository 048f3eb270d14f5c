"""Pulmonary arteries: trees that branch from each hilum and taper towards the periphery.

Each lung gets three lobar trunks (upper, middle or lingular, lower) leaving
its hilum; every branch ends in two children that are
shorter, thinner (x 0.7) and diverge by 15-35 degrees, for three more
generations. A branch whose end would leave the lung is shortened once, then
dropped, so the markings stop short of the pleura, as on a normal film.

The trunks are drawn as tapered cylinders; the branches, a few pixels wide at
most, are splatted as points along their centre lines carrying the
attenuation of their cross-section (pi r^2 per mm) and spread by a one-pixel
Gaussian - one vectorised pass for all of them.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import gaussian_filter

from raddino_lib.data.phantoms.body import Body
from raddino_lib.data.phantoms.shapes import FILM_MM, Grid, tube

VESSEL_PER_MM = 0.016  # attenuation of 1 mm of blood-filled vessel crossing aerated lung
GENERATIONS = 3  # generations of branches after the lobar trunks
# lobar trunks: (angle from the lateral direction in degrees, positive downwards; length mm; radius mm)
TRUNKS: tuple[tuple[float, float, float], ...] = ((-65.0, 42.0, 5.0), (-5.0, 38.0, 4.2), (62.0, 48.0, 6.0))


def draw_vessels(b: Body, grid: Grid, hila: dict[int, tuple[float, float]], lung_soft: np.ndarray,
                 rng: np.random.Generator) -> np.ndarray:
    """(S, S) attenuation of the arterial trees of both lungs (hilar trunks included)."""
    canvas = np.zeros_like(grid.X)
    branches: list[tuple[float, float, float, float, float]] = []  # (x0, y0, x1, y1, radius) in mm
    for side, (hx, hy) in hila.items():
        for angle, length, radius in TRUNKS:
            theta = math.radians(angle + rng.normal(0.0, 8.0))
            end = _end(grid, lung_soft, (hx, hy), side, theta, length * b.frame)
            if end is None:
                continue
            tube(canvas, grid, (hx, hy), end, radius, 0.8 * radius, VESSEL_PER_MM)
            _branch(branches, grid, lung_soft, rng, end, side, theta, 0.75 * length * b.frame, 0.7 * radius,
                    GENERATIONS)
    if branches:
        canvas += _splat(grid, np.asarray(branches, dtype=np.float64))
    return canvas * (0.4 + 0.6 * lung_soft)


def _end(grid: Grid, lung: np.ndarray, start: tuple[float, float], side: int, theta: float, length: float
         ) -> tuple[float, float] | None:
    """End point of a branch inside the lung (shortened once if needed), or None."""
    for shorten in (1.0, 0.5):
        end = (start[0] + side * math.cos(theta) * length * shorten, start[1] + math.sin(theta) * length * shorten)
        px = grid.pixel(*end)
        if px is not None and lung[px] > 0.5:
            return end
    return None


def _branch(out: list, grid: Grid, lung: np.ndarray, rng: np.random.Generator, start: tuple[float, float],
            side: int, theta: float, length: float, radius: float, generations: int) -> None:
    """Append the children of a branch ending at ``start`` (and theirs, recursively) to ``out``."""
    spread = math.radians(rng.uniform(15.0, 35.0))
    for i in range(2):
        child = theta + spread * (2 * i - 1) + rng.normal(0.0, 0.1)
        end = _end(grid, lung, start, side, child, length * rng.uniform(0.85, 1.1))
        if end is None:
            continue
        out.append((start[0], start[1], end[0], end[1], radius))
        if generations > 1:
            _branch(out, grid, lung, rng, end, side, child, 0.75 * length, 0.7 * radius, generations - 1)


def _splat(grid: Grid, segments: np.ndarray) -> np.ndarray:
    """(K, 5) segments (x0, y0, x1, y1, radius in mm) → (S, S) attenuation, bilinearly splatted and blurred."""
    s = grid.size
    pixel_mm = (FILM_MM[0] / s, FILM_MM[1] / s)
    length = np.hypot(segments[:, 2] - segments[:, 0], segments[:, 3] - segments[:, 1])  # (K,) mm
    n = np.maximum(np.ceil(length / (0.5 * min(pixel_mm))), 1).astype(int)  # samples per segment, 2 per pixel
    seg = np.repeat(np.arange(len(segments)), n)  # (P,)
    t = (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n) + 0.5) / np.repeat(n, n)  # (P,) in (0, 1)
    x = segments[seg, 0] + t * (segments[seg, 2] - segments[seg, 0])
    y = segments[seg, 1] + t * (segments[seg, 3] - segments[seg, 1])
    radius = segments[seg, 4] * (1.0 - 0.2 * t)
    # attenuation x mm² per sample; x 2 for the veins and smaller arteries running alongside
    mass = 2.0 * VESSEL_PER_MM * np.pi * radius ** 2 * (length[seg] / np.repeat(n, n))
    # pixel coordinates (inverse of the grid's affine map)
    u, v = x / (FILM_MM[0] / 2) - grid.shift[0], y / (FILM_MM[1] / 2) - grid.shift[1]
    det = grid.cos ** 2 + grid.sin ** 2
    col = ((grid.cos * u + grid.sin * v) / det + 1.0) / 2.0 * s - 0.5
    row = ((-grid.sin * u + grid.cos * v) / det + 1.0) / 2.0 * s - 0.5
    r0, c0 = np.floor(row).astype(int), np.floor(col).astype(int)
    fr, fc = row - r0, col - c0
    acc = np.zeros((s + 2) * (s + 2))
    for dr, dc, w in ((0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc), (1, 0, fr * (1 - fc)), (1, 1, fr * fc)):
        rr, cc = np.clip(r0 + dr + 1, 0, s + 1), np.clip(c0 + dc + 1, 0, s + 1)
        acc += np.bincount(rr * (s + 2) + cc, weights=w * mass, minlength=acc.size)
    image = acc.reshape(s + 2, s + 2)[1:-1, 1:-1] / (pixel_mm[0] * pixel_mm[1])  # attenuation x mm² / mm²
    return gaussian_filter(image.astype(np.float32), 0.7)
