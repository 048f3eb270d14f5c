"""The raw-pixel floor: what the same probes read from the image itself, with no encoder at all.

A learned encoder earns its place only by what it adds *over the pixels*: if a linear probe on a downsampled
image already predicts sex with AUROC 0.95, an encoder at 0.96 has shown little. So every probe also runs on
pixel features built with the encoders' own eval transform (resize, center crop, min–max to [0, 1]):

* ``cls``: the image area-averaged to ``side × side``, flattened, projected on its first ``n_components``
  principal components (PCA fitted on the train split only) — "downsampled image + PCA";
* ``mean_patch``: the average of the pixel patches below (the analogue of the mean patch token);
* ``grid``: the (h, w) grid of raw ``patch × patch`` pixel patches, one ``patch²``-vector per patch — what a
  ViT's patch embedding receives, so a linear head on it is the dense floor of the linear segmentation probe;
  ``layers`` repeats that grid once per level of the UPerNet head (there are no deeper layers to read).

The features come back as a :class:`~raddino_lib.probe.features.FeatureSet`, so every probe treats the floor
like an encoder; they are cached like encoder features (keyed by the manifest's bytes and this config).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from raddino_lib.probe.features import N_LAYERS, FeatureSet, load_feature_file, save_feature_file

PIXELS = "pixels"  # the floor's row name in every table
PIXELS_SOURCE = "raw-pixels"  # its "path" in an encoders mapping (name -> path): no file, the manifest's images
FORMAT_VERSION = 1  # bump when the features change: old caches are then ignored


@dataclass(frozen=True)
class PixelFloorConfig:
    side: int = 16  # the image is area-averaged to side x side before PCA (16 x 16 = 256 values)
    n_components: int = 64  # principal components kept (fewer when the train split is smaller)
    patch_size: int = 8  # pixel patch side of the dense grid; use the encoders' patch size so the grids align

    def __post_init__(self) -> None:
        if self.side < 1 or self.n_components < 1 or self.patch_size < 1:
            raise ValueError(f"PixelFloorConfig: side, n_components and patch_size must be >= 1, got {self}")


def is_pixels(path: str) -> bool:
    return str(path) == PIXELS_SOURCE


def pixel_patches(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(N, S, S) → (N, S/p, S/p, p*p): non-overlapping patches, row-major inside each patch."""
    n, s, _ = images.shape
    if s % patch_size:
        raise ValueError(f"image side {s} is not a multiple of the pixel patch size {patch_size}")
    g = s // patch_size
    x = images.reshape(n, g, patch_size, g, patch_size)  # (N, h, p, w, p)
    return x.permute(0, 1, 3, 2, 4).reshape(n, g, g, patch_size * patch_size)  # (N, h, w, p*p)


def pca_features(vectors: np.ndarray, train: np.ndarray, n_components: int) -> np.ndarray:
    """Project (N, P) ``vectors`` on the leading principal components of the ``train`` rows → (N, k) float32."""
    from sklearn.decomposition import PCA

    if not train.any():
        raise ValueError("the pixel floor fits its PCA on the train split, and the manifest has no 'train' rows")
    k = int(min(n_components, train.sum(), vectors.shape[1]))
    pca = PCA(n_components=k, svd_solver="full", random_state=0).fit(vectors[train])
    return pca.transform(vectors).astype(np.float32)


def features_from_images(images: torch.Tensor, image_ids: np.ndarray, train: np.ndarray,
                         cfg: PixelFloorConfig = PixelFloorConfig()) -> FeatureSet:
    """Pixel features of (N, S, S) images in [0, 1]; ``train`` (N,) bool marks the rows the PCA is fitted on."""
    small = F.adaptive_avg_pool2d(images[:, None].float(), cfg.side)[:, 0]  # (N, side, side)
    cls = pca_features(small.reshape(len(images), -1).numpy().astype(np.float64), np.asarray(train, bool),
                       cfg.n_components)
    grid = pixel_patches(images.float(), cfg.patch_size)  # (N, h, w, p*p)
    return FeatureSet(np.asarray(image_ids, dtype=str), cls, grid.mean(dim=(1, 2)).numpy().astype(np.float32),
                      grid.half().numpy())


def pixel_features(manifest: str | os.PathLike, image_size: int, cfg: PixelFloorConfig = PixelFloorConfig(),
                   cache_dir: str | os.PathLike | None = None, keep_grid: bool = True, keep_layers: bool = False,
                   batch_size: int = 128, num_workers: int = 0) -> FeatureSet:
    """The floor's features for every image of ``manifest`` (manifest order), cached in ``cache_dir``."""
    from raddino_lib.data.manifest import manifest_digest

    key = hashlib.sha256(json.dumps({"manifest": manifest_digest(manifest), "image_size": int(image_size),
                                     "config": asdict(cfg), "format": FORMAT_VERSION, "layers": N_LAYERS},
                                    sort_keys=True).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"pixels_{key}.npz" if cache_dir else None
    if path is not None and path.is_file():
        features = load_feature_file(path, keep_grid=True, keep_layers=False)
    else:
        df, images = load_eval_images(manifest, image_size, batch_size, num_workers)
        train = (df["split"] == "train").to_numpy()
        features = features_from_images(images, df["image_id"].astype(str).to_numpy(), train, cfg)
        if path is not None:
            save_feature_file(path, features)
    if keep_layers:  # the same pixel grid at every level of the UPerNet head (not stored twice)
        features.layers = np.repeat(features.grid[:, None], N_LAYERS, axis=1)
    if not keep_grid and not keep_layers:
        features.grid = None
    return features


def load_eval_images(manifest: str | os.PathLike, image_size: int, batch_size: int = 128, num_workers: int = 0):
    """(manifest DataFrame, (N, S, S) images in [0, 1]) with the probes' eval geometry (no normalization)."""
    from torch.utils.data import DataLoader

    from raddino_lib.data.datasets import ManifestDataset
    from raddino_lib.data.manifest import read_manifest
    from raddino_lib.data.transforms import EvalTransform

    df = read_manifest(manifest)
    if len(df) == 0:
        raise ValueError(f"manifest {manifest} has no rows: nothing to read")
    data = ManifestDataset(df, transform=EvalTransform(image_size, mean=(0.0,), std=(1.0,)))
    images = [b["image"][:, 0] for b in DataLoader(data, batch_size=batch_size, num_workers=num_workers)]
    return df, torch.cat(images)  # (N, S, S)
