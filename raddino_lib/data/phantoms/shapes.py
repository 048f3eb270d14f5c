"""Vectorised drawing primitives on normalised coordinate grids.

Coordinates: ``x`` in [-1, 1] from image left to image right, ``y`` in [-1, 1]
from top to bottom, both (S, S) float32. The square image shows a 35 x 43 cm
film (``FILM_MM``), so anatomy and lesions are drawn on millimetre grids
``X = x * 175``, ``Y = y * 215`` (origin at the film centre) and keep their
physical size at any image size. Every primitive returns a soft (S, S) float32
field in [0, 1] so that shapes stay anti-aliased at any size.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

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


FILM_MM: tuple[float, float] = (350.0, 430.0)  # simulated film (width, height) in mm


@dataclass
class Grid:
    """Pixel-centre coordinates of one image under the patient's positioning (rotation, scale, shift).

    ``x``, ``y``: normalised (S, S); ``X``, ``Y``: the same in mm from the film centre. ``window`` finds the
    pixel rows and columns that cover a mm box, so that small structures are drawn on a few pixels only.
    """

    x: np.ndarray
    y: np.ndarray
    X: np.ndarray
    Y: np.ndarray
    cos: float  # normalised coords = scale^-1 * rotation(pixel coords) + shift
    sin: float
    shift: tuple[float, float]

    @property
    def size(self) -> int:
        return self.x.shape[0]

    def to_pixel(self, x_mm: float, y_mm: float) -> tuple[float, float]:
        """(row, col) as floats (pixel centres at integers) of a point given in mm."""
        u = x_mm / (FILM_MM[0] / 2) - self.shift[0]
        v = y_mm / (FILM_MM[1] / 2) - self.shift[1]
        det = self.cos * self.cos + self.sin * self.sin
        x0, y0 = (self.cos * u + self.sin * v) / det, (-self.sin * u + self.cos * v) / det
        return (y0 + 1.0) / 2.0 * self.size - 0.5, (x0 + 1.0) / 2.0 * self.size - 0.5

    def window(self, x0: float, x1: float, y0: float, y1: float) -> tuple[slice, slice]:
        """(rows, cols) slices of the pixels whose centres may lie in the mm box [x0, x1] x [y0, y1]."""
        corners = [self.to_pixel(x, y) for x in (x0, x1) for y in (y0, y1)]
        s = self.size
        r0 = min(max(int(min(c[0] for c in corners)), 0), s)
        r1 = min(max(int(max(c[0] for c in corners)) + 2, 0), s)
        c0 = min(max(int(min(c[1] for c in corners)), 0), s)
        c1 = min(max(int(max(c[1] for c in corners)) + 2, 0), s)
        return slice(r0, r1), slice(c0, c1)

    def pixel(self, x_mm: float, y_mm: float) -> tuple[int, int] | None:
        """(row, col) of the pixel nearest to a point in mm; None outside the image."""
        r, c = self.to_pixel(x_mm, y_mm)
        r, c = int(round(r)), int(round(c))
        return (r, c) if 0 <= r < self.size and 0 <= c < self.size else None


def make_grid(size: int, angle: float = 0.0, scale: float = 1.0, shift: tuple[float, float] = (0.0, 0.0)) -> Grid:
    """A :class:`Grid` whose anatomy appears rotated by ``angle``, magnified by ``scale`` and shifted."""
    x0, y0 = base_grid(size)
    c, sn = float(np.cos(angle) / scale), float(np.sin(angle) / scale)
    x = (c * x0 - sn * y0 + shift[0]).astype(np.float32)
    y = (sn * x0 + c * y0 + shift[1]).astype(np.float32)
    return Grid(x, y, x * np.float32(FILM_MM[0] / 2), y * np.float32(FILM_MM[1] / 2), c, sn,
                (float(shift[0]), float(shift[1])))


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


def tube(canvas: np.ndarray, grid: Grid, p0: tuple[float, float], p1: tuple[float, float], r0: float, r1: float,
         density: float) -> None:
    """Add a tapered cylinder from ``p0`` (radius ``r0``) to ``p1`` (``r1``), all in mm, to ``canvas`` in place.

    The value added is ``density`` times the projected path length through the cylinder (mm), computed on
    the pixels of the segment's bounding box only.
    """
    r = max(r0, r1)
    rows, cols = grid.window(min(p0[0], p1[0]) - r, max(p0[0], p1[0]) + r,
                             min(p0[1], p1[1]) - r, max(p0[1], p1[1]) + r)
    X, Y = grid.X[rows, cols], grid.Y[rows, cols]
    if X.size == 0:
        return
    dx, dy = p1[0] - p0[0], p1[1] - p0[1]
    t = np.clip(((X - p0[0]) * dx + (Y - p0[1]) * dy) / max(dx * dx + dy * dy, 1e-9), 0.0, 1.0)
    d2 = (X - p0[0] - t * dx) ** 2 + (Y - p0[1] - t * dy) ** 2
    radius = r0 + (r1 - r0) * t
    canvas[rows, cols] += np.float32(2.0 * density) * np.sqrt(np.maximum(radius * radius - d2, 0.0))


def polyline_distance(x: np.ndarray, y: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Distance to a polyline given as (P, 2) points. (S, S)."""
    d = segment_distance(x, y, tuple(points[0]), tuple(points[1]))
    for i in range(1, len(points) - 1):
        d = np.minimum(d, segment_distance(x, y, tuple(points[i]), tuple(points[i + 1])))
    return d
