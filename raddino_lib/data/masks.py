"""Every segmentation target a manifest offers, loaded as one array with the probes' eval geometry.

A manifest carries one ``mask_<structure>`` column per structure it can segment: anatomy (lungs, heart, and
whatever else a dataset or phantom generator adds, such as lung zones or ribs) and localized findings. Nothing
here lists structures by name: the columns decide, so a new mask column is probed without code changes.
An empty cell means "absent on this image" (an all-zero mask), never "unknown".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from raddino_lib.data.schema import FINDINGS, mask_column

MASK_PREFIX = "mask_"


def mask_columns(df: pd.DataFrame) -> list[str]:
    """Structures with a ``mask_<s>`` column, in column order (not ``abs_mask_*`` helper columns)."""
    return [c[len(MASK_PREFIX):] for c in df.columns if c.startswith(MASK_PREFIX)]


def has_mask(df: pd.DataFrame, structure: str) -> np.ndarray:
    """(N,) bool: rows whose ``mask_<structure>`` cell names a file."""
    return df[mask_column(structure)].fillna("").astype(str).str.strip().ne("").to_numpy()


def mask_structures(df: pd.DataFrame, structures: Sequence[str] | None = None) -> list[str]:
    """Structures with masks in both the train and the test split (all mask columns, or check ``structures``).

    Raises:
        KeyError: an explicitly requested structure has no masks in train or test (the message lists the columns).
    """
    split = df["split"].to_numpy()

    def usable(s: str) -> bool:
        if mask_column(s) not in df.columns:
            return False
        has = has_mask(df, s)
        return bool(has[split == "train"].any() and has[split == "test"].any())

    if structures is None:
        return [s for s in mask_columns(df) if usable(s)]
    bad = [s for s in structures if not usable(s)]
    if bad:
        raise KeyError(f"no masks in both train and test for {bad} (mask columns of the manifest: "
                       f"{[mask_column(s) for s in mask_columns(df)]})")
    return list(structures)


def is_finding(structure: str) -> bool:
    """True for a finding's mask (a lesion), False for anatomy."""
    return structure in FINDINGS


def load_masks(df: pd.DataFrame, structures: Sequence[str], image_size: int, num_workers: int = 0,
               rows_per_job: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(N, S, size, size) uint8 masks and (N, size, size) float32 images in [0, 1], in manifest order.

    Masks go through the eval transform's geometry (shorter side resized, center crop, nearest neighbour), so a
    mask pixel lines up with an image pixel of every probe. Blocks of ``rows_per_job`` rows are read side by side
    on a CPU (``parallel.map_jobs``; ``num_workers`` processes, 0 = one per core): 3,000 phantoms with 20
    structures took 29 s in one process.
    """
    from raddino_lib.data.datasets import ManifestDataset
    from raddino_lib.data.transforms import EvalTransform
    from raddino_lib.parallel import map_jobs

    ds = ManifestDataset(df, transform=EvalTransform(image_size, mean=(0.0,), std=(1.0,)), masks=structures)

    def read(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        masks = np.zeros((len(block), len(structures), image_size, image_size), np.uint8)
        images = np.zeros((len(block), image_size, image_size), np.float32)
        for k, i in enumerate(block):
            image, stack = ds.image_and_masks(int(i))
            images[k], masks[k] = image[0].numpy(), (stack > 0.5).numpy()
        return masks, images

    blocks = np.array_split(np.arange(len(df)), max(1, -(-len(df) // rows_per_job)))
    parts = map_jobs(read, blocks, num_workers, log=None)
    return np.concatenate([m for m, _ in parts]), np.concatenate([x for _, x in parts])
