"""Frozen-encoder features of every manifest image, cached on disk.

Every probe reads the same arrays per image: the CLS token, the mean of the
patch tokens (DINOv2's linear eval concatenates both) and, for dense probes,
the whole (h, w, D) patch grid of the last block or, for the UPerNet head, the
grids of four blocks spread over the depth (each after the final LayerNorm, as
DINOv2's multi-layer segmentation heads read them). Extraction runs once per
(checkpoint, manifest, image size): the cache file name is a digest of the
backbone file's bytes, the manifest's bytes, the image size and what is kept
(CLS only < + last grid < + four grids), so a rerun reuses it, a richer cache
serves a poorer request and a retrained checkpoint never is reused.

Long extractions write a chunk every ``chunk_batches`` batches into
``<cache>/<key>.parts/``; an interrupted run resumes from the finished chunks.
The final ``<key>.npz`` is written atomically and the chunks are removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from raddino_lib.device import resolve_device

FORMAT_VERSION = 1  # bump when the cache layout changes: old caches are then ignored
N_LAYERS = 4  # blocks whose grids the UPerNet head reads (evenly spread, the last included)


@dataclass
class FeatureSet:
    """Features of N images, in manifest row order."""

    image_ids: np.ndarray  # (N,) str
    cls: np.ndarray  # (N, D) float32, CLS token after the final norm
    mean_patch: np.ndarray  # (N, D) float32, average of the patch tokens
    grid: np.ndarray | None = None  # (N, h, w, D) float16 patch tokens, when extracted with keep_grid
    layers: np.ndarray | None = None  # (N, L, h, w, D) float16 grids of L blocks (last = grid), with keep_layers

    def features(self, kind: str = "cls") -> np.ndarray:
        """ "cls" → (N, D); "cls+mean_patch" → (N, 2D) (DINOv2 linear eval); "mean_patch" → (N, D)."""
        if kind == "cls":
            return self.cls
        if kind == "mean_patch":
            return self.mean_patch
        if kind == "cls+mean_patch":
            return np.concatenate([self.cls, self.mean_patch], axis=1)
        raise ValueError(f"unknown feature set '{kind}': use 'cls', 'mean_patch' or 'cls+mean_patch'")

    def __len__(self) -> int:
        return len(self.image_ids)


def cache_key(backbone_path: str | os.PathLike, manifest: str | os.PathLike, image_size: int,
              keep_grid: bool = False, keep_layers: bool = False) -> str:
    """16 hex digits identifying (checkpoint bytes, manifest bytes, image size, what is kept)."""
    return _cache_keys(backbone_path, manifest, image_size)[_level(keep_grid, keep_layers)]


def _level(keep_grid: bool, keep_layers: bool) -> int:
    """0: CLS and mean patch; 1: + the last grid; 2: + the grids of N_LAYERS blocks."""
    return 2 if keep_layers else int(bool(keep_grid))


def _cache_keys(backbone_path: str | os.PathLike, manifest: str | os.PathLike, image_size: int) -> dict[int, str]:
    """Keys of the three levels (the files are hashed once); levels 0 and 1 keep their historical keys."""
    from raddino_lib.data.manifest import manifest_digest
    from raddino_lib.models.weights import file_digest

    parts = {"backbone": file_digest(backbone_path), "manifest": manifest_digest(manifest),
             "image_size": int(image_size), "format": FORMAT_VERSION}
    flags: dict[int, dict] = {0: {"grid": False}, 1: {"grid": True}, 2: {"grid": True, "layers": N_LAYERS}}
    return {level: hashlib.sha256(json.dumps({**parts, **extra}, sort_keys=True).encode()).hexdigest()[:16]
            for level, extra in flags.items()}


def layer_indices(depth: int, n: int = N_LAYERS) -> list[int]:
    """``n`` block indices spread evenly over ``depth`` blocks, ending at the last: 12 → [2, 5, 8, 11], 4 → [0, 1,
    2, 3]; shallower models repeat blocks (2 → [0, 0, 1, 1])."""
    return [min(depth - 1, max(0, round((i + 1) * depth / n) - 1)) for i in range(n)]


def encode(model: torch.nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, 3, S, S) → cls (B, D), mean_patch (B, D), grid (B, h, w, D), all float32; bf16 autocast on CUDA."""
    from raddino_lib.models.backbone import pool_tokens

    cuda = images.device.type == "cuda"
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
        tokens = model.forward_features(images)  # (B, 1 + R + h*w, D)
    return pool_tokens(model, tokens.float())


def encode_layers(model: torch.nn.Module, images: torch.Tensor, n_layers: int = N_LAYERS
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, 3, S, S) → cls (B, D), mean_patch (B, D), grid (B, h, w, D), layers (B, L, h, w, D), float32.

    ``layers`` are the grids of ``layer_indices(depth, n_layers)`` after the final norm (timm's
    ``forward_intermediates(norm=True)``); the last one equals the grid of ``forward_features``.
    """
    from raddino_lib.models.backbone import pool_tokens

    indices = layer_indices(len(model.blocks), n_layers)
    unique = sorted(set(indices))
    cuda = images.device.type == "cuda"
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
        tokens, inter = model.forward_intermediates(images, indices=unique, norm=True, output_fmt="NCHW")
    cls, mean_patch, grid = pool_tokens(model, tokens.float())  # (B, D), (B, D), (B, h, w, D)
    by_index = dict(zip(unique, inter, strict=True))  # block -> (B, D, h, w)
    layers = torch.stack([by_index[i].float().permute(0, 2, 3, 1) for i in indices], dim=1)  # (B, L, h, w, D)
    return cls, mean_patch, grid, layers


def extract_features(backbone_path: str | os.PathLike, manifest: str | os.PathLike, cache_dir: str | os.PathLike | None,
                     image_size: int, batch_size: int = 64, device: str | torch.device = "cpu", keep_grid: bool = False,
                     num_workers: int = 0, chunk_batches: int = 16, progress: bool = True,
                     keep_layers: bool = False) -> FeatureSet:
    """Features of every image of ``manifest`` (all splits, manifest order); see the module docstring.

    Args:
        backbone_path: anything ``load_backbone`` reads (own file, HF folder, DINOv2 state dict, checkpoint).
        cache_dir: folder for ``<key>.npz``; None or "" = no cache.
        image_size: side of the square eval crop (multiple of the patch size).
        device: "auto" (CUDA when available), "cpu", "cuda" or "cuda:N" (see ``raddino_lib.device``).
        keep_grid: keep the last block's patch grid; keep_layers: also the grids of N_LAYERS blocks (implies it).
        num_workers: DataLoader workers decoding images; raise it when the GPU waits for the disk.
        chunk_batches: batches per resumable chunk.
    """
    if not Path(backbone_path).exists():
        raise FileNotFoundError(f"backbone {backbone_path} not found")
    level = _level(keep_grid, keep_layers)
    if cache_dir:
        keys = _cache_keys(backbone_path, manifest, image_size)
        key = keys[level]
        for candidate in range(level, 3):  # a richer cache also serves a poorer request
            path = Path(cache_dir) / f"{keys[candidate]}.npz"
            if path.is_file():
                return load_feature_file(path, keep_grid=level >= 1, keep_layers=level == 2)
    from raddino_lib.data.datasets import ManifestDataset
    from raddino_lib.data.manifest import read_manifest
    from raddino_lib.data.transforms import eval_transform_for
    from raddino_lib.models.weights import load_backbone

    df = read_manifest(manifest)
    if len(df) == 0:
        raise ValueError(f"manifest {manifest} has no rows: nothing to extract")
    torch_device = resolve_device(device)
    model = load_backbone(backbone_path, img_size=image_size).to(torch_device).eval()
    dataset = ManifestDataset(df, transform=eval_transform_for(backbone_path, image_size))
    chunk_rows = chunk_batches * batch_size
    chunks = [(s, min(s + chunk_rows, len(df))) for s in range(0, len(df), chunk_rows)]
    parts = Path(cache_dir) / f"{key}.parts" if cache_dir else None
    todo = [c for c in chunks if parts is None or not _chunk_path(parts, c).is_file()]
    rows = [i for s, e in todo for i in range(s, e)]
    loader = DataLoader(Subset(dataset, rows), batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=torch_device.type == "cuda", persistent_workers=False)
    done: dict[tuple[int, int], dict[str, np.ndarray]] = {}
    buffer: list[dict[str, torch.Tensor]] = []
    pending = iter(todo)
    current = next(pending, None)
    with _progress(progress, len(rows), Path(backbone_path).name) as bar:
        for batch in loader:
            images = batch["image"].to(torch_device, non_blocking=True)
            if level == 2:
                cls, mean, _, layers = encode_layers(model, images)
                buffer.append({"cls": cls.cpu(), "mean_patch": mean.cpu(), "layers": layers.half().cpu()})
            else:
                cls, mean, grid = encode(model, images)
                buffer.append({"cls": cls.cpu(), "mean_patch": mean.cpu(), **({"grid": grid.half().cpu()}
                                                                              if level == 1 else {})})
            bar.update(len(cls))
            if current is not None and sum(len(b["cls"]) for b in buffer) >= current[1] - current[0]:
                done[current] = _flush(buffer, parts, current)
                buffer, current = [], next(pending, None)
    arrays = [done.get(c) or _read_chunk(_chunk_path(parts, c)) for c in chunks]
    layers = np.concatenate([a["layers"] for a in arrays]) if level == 2 else None
    features = FeatureSet(
        image_ids=np.asarray(df["image_id"].astype(str).to_numpy(), dtype=str),
        cls=np.concatenate([a["cls"] for a in arrays]), mean_patch=np.concatenate([a["mean_patch"] for a in arrays]),
        grid=layers[:, -1] if layers is not None else np.concatenate([a["grid"] for a in arrays]) if level else None,
        layers=layers)
    if cache_dir:
        save_feature_file(Path(cache_dir) / f"{key}.npz", features)
        shutil.rmtree(parts, ignore_errors=True)
    return features


def save_feature_file(path: str | os.PathLike, features: FeatureSet) -> Path:
    """Write a FeatureSet as one .npz, atomically (with layers, the last grid is not stored twice)."""
    from raddino_lib.atomic import atomic_path

    arrays = {"image_ids": features.image_ids, "cls": features.cls, "mean_patch": features.mean_patch}
    if features.layers is not None:
        arrays["layers"] = features.layers
    elif features.grid is not None:
        arrays["grid"] = features.grid
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    return Path(path)


def load_feature_file(path: str | os.PathLike, keep_grid: bool = True, keep_layers: bool = True) -> FeatureSet:
    """A FeatureSet from ``save_feature_file``; grids and layers only when stored and asked for."""
    with np.load(path, allow_pickle=False) as z:
        layers = z["layers"] if "layers" in z.files and (keep_layers or keep_grid) else None
        grid = z["grid"] if keep_grid and "grid" in z.files else layers[:, -1] if keep_grid and layers is not None \
            else None
        return FeatureSet(z["image_ids"], z["cls"], z["mean_patch"], grid, layers if keep_layers else None)


def _chunk_path(parts: Path, chunk: tuple[int, int]) -> Path:
    return parts / f"rows_{chunk[0]:09d}_{chunk[1]:09d}.npz"


def _flush(buffer: list[dict[str, torch.Tensor]], parts: Path | None, chunk: tuple[int, int]) -> dict:
    """Concatenate a finished chunk; write it (atomically) when caching."""
    arrays = {name: torch.cat([b[name] for b in buffer]).numpy() for name in buffer[0]}
    if len(arrays["cls"]) != chunk[1] - chunk[0]:
        raise RuntimeError(f"chunk {chunk} got {len(arrays['cls'])} rows: batches do not align with chunks")
    if parts is not None:
        from raddino_lib.atomic import atomic_path

        with atomic_path(_chunk_path(parts, chunk)) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    return arrays


def _read_chunk(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@contextlib.contextmanager
def _progress(enabled: bool, total: int, name: str):
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=f"features {name}", unit="img", disable=not enabled or total == 0, leave=False)
    try:
        yield bar
    finally:
        bar.close()
