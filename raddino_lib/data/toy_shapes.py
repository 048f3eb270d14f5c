"""A toy image set with known structure: eight shape classes on noisy backgrounds.

Self-supervised training is hard to judge on radiographs, where what "should" be learned is open. On this
set it is not: an encoder that learned anything separates the eight shapes, whatever their position, size,
brightness and background. It serves as a sanity check of the pretraining recipe (a test pretrains on it and
asks a kNN probe on the teacher's [CLS] to beat random init by far) and as a quick playground.

``generate_shapes(out_dir, n, size, seed)`` writes ``images/*.png`` and a manifest in the common schema
(``site`` = "shapes", the class in an extra ``shape`` column, patient = image), same seed → same bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from raddino_lib.atomic import write_bytes
from raddino_lib.data.manifest import assign_splits, write_manifest
from raddino_lib.data.phantoms.png import encode_gray8

SHAPES: tuple[str, ...] = ("disk", "ring", "square", "frame", "triangle", "plus", "cross", "bars")


def _shape_mask(kind: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean mask of one shape in shape coordinates (u, v), unit half-size, centred at 0."""
    r = np.hypot(u, v)
    box = np.maximum(np.abs(u), np.abs(v))
    if kind == "disk":
        return r < 1.0
    if kind == "ring":
        return (r < 1.0) & (r > 0.6)
    if kind == "square":
        return box < 0.85
    if kind == "frame":
        return (box < 0.9) & (box > 0.55)
    if kind == "triangle":
        return (v < 0.8) & (v > 1.7 * np.abs(u) - 0.9)
    if kind == "plus":
        return ((np.abs(u) < 0.25) | (np.abs(v) < 0.25)) & (box < 1.0)
    if kind == "cross":
        return ((np.abs(u - v) < 0.35) | (np.abs(u + v) < 0.35)) & (box < 0.85)
    if kind == "bars":
        return (np.abs(u) < 0.95) & (np.abs(v) < 0.95) & (np.cos(v * np.pi * 2.5) > 0.2)
    raise ValueError(f"unknown shape {kind!r}; choose one of {SHAPES}")


def draw_shape(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, size) float image in [0, 1]: one shape at a random place, scale, tilt and contrast."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size  # (S, S) in [0, 1)
    half = rng.uniform(0.18, 0.32)
    cy, cx = rng.uniform(0.5 - (0.45 - half), 0.5 + (0.45 - half), size=2)
    angle = np.deg2rad(rng.uniform(-15, 15))
    dy, dx = (yy - cy) / half, (xx - cx) / half
    u = np.cos(angle) * dx + np.sin(angle) * dy
    v = -np.sin(angle) * dx + np.cos(angle) * dy
    background = rng.uniform(0.15, 0.45) + rng.uniform(-0.15, 0.15) * (xx - 0.5) + rng.uniform(-0.15, 0.15) * (yy - 0.5)
    image = np.where(_shape_mask(kind, u, v), background + rng.uniform(0.3, 0.5), background)
    image = image + rng.normal(0.0, rng.uniform(0.02, 0.06), size=image.shape)
    return np.clip(image, 0.0, 1.0)


def generate_shapes(out_dir: str | Path, n: int = 400, size: int = 64, seed: int = 0) -> Path:
    """Write ``n`` images (classes balanced: image i has class i mod 8) and ``manifest.csv``; return its path."""
    if n < len(SHAPES) or size < 16:
        raise ValueError(f"generate_shapes: need n >= {len(SHAPES)} and size >= 16, got n={n}, size={size}")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        kind = SHAPES[i % len(SHAPES)]
        image = draw_shape(kind, size, np.random.default_rng([seed, i]))
        path = f"images/shape_{i:05d}.png"
        write_bytes(out / path, encode_gray8(np.round(image * 255).astype(np.uint8)))
        rows.append({"image_id": f"shape_{i:05d}", "path": path, "patient_id": f"s{i:05d}", "study_id": f"s{i:05d}",
                     "age": "", "sex": "", "view": "", "site": "shapes", "shape": kind})
    df = pd.DataFrame(rows)
    splits = assign_splits(df["patient_id"], seed=seed)
    df.insert(4, "split", df["patient_id"].map(splits))
    return write_manifest(df, out / "manifest.csv")
