"""Pretraining data: manifest images → multi-crop views + iBOT masks, deterministic by (seed, step).

Every random draw is keyed, not sequential, so that a resumed or a data-parallel run sees exactly the
batches an uninterrupted single-process run sees:

- the image order of epoch e is a permutation drawn from ``(seed, e)``;
- the global batch of step s is positions ``[s*G, (s+1)*G)`` of that order (G = batch_size x world size);
  process r takes the slice ``[r*B, (r+1)*B)``;
- the crops of image i in epoch e come from a generator seeded with ``(seed, e, i)`` (whatever the worker);
- the iBOT masks of step s are drawn for the whole global batch from ``(seed, s)`` and sliced per process
  (same semantics as ``data.augment.collate_multicrop``, which draws them per process).

No draw touches the global RNGs, which belong to the model (drop path) and are checkpointed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from raddino_lib.data.io import load_image
from raddino_lib.data.masking import MaskingGenerator

CACHE_LIMIT = 20_000  # images kept decoded in memory when cache_images is on
N_GLOBAL = 2


def key_seed(*parts: int) -> int:
    """A 63-bit seed from integers (stable across processes and Python versions)."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, np.uint64)[0] >> 1)


class PretrainImages(Dataset):
    """Images of one split; item ``(step, epoch, i)`` → the augmentation's views of image i."""

    def __init__(self, paths: list[str], augment: Callable[[torch.Tensor], dict[str, Any]], seed: int,
                 cache: bool = True) -> None:
        self.paths, self.augment, self.seed = paths, augment, seed
        self.cache: dict[int, torch.Tensor] | None = {} if cache and len(paths) <= CACHE_LIMIT else None

    def __len__(self) -> int:
        return len(self.paths)

    def image(self, i: int) -> torch.Tensor:
        """(1, H, W) float in [0, 1]."""
        if self.cache is None:
            return load_image(self.paths[i])
        if i not in self.cache:
            self.cache[i] = load_image(self.paths[i])
        return self.cache[i]

    def __getitem__(self, key: tuple[int, int, int]) -> dict[str, Any]:
        step, epoch, i = key
        views = self.augment(self.image(i), generator=torch.Generator().manual_seed(key_seed(self.seed, epoch, i)))
        return {"step": step, "global_crops": views["global_crops"], "local_crops": views["local_crops"]}


class StepBatchSampler(Sampler[list[tuple[int, int, int]]]):
    """Yields, for steps ``start_step, start_step + 1, ...`` (forever), this process's ``(step, epoch, i)``."""

    def __init__(self, n_images: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 start_step: int = 0) -> None:
        self.n, self.batch_size, self.seed = n_images, batch_size, seed
        self.rank, self.world_size, self.start_step = rank, world_size, start_step
        self.global_batch = batch_size * world_size
        if n_images < self.global_batch:
            raise ValueError(f"{n_images} training images but a global batch of {self.global_batch} "
                             f"(batch_size {batch_size} x {world_size} processes): lower batch_size or add images")
        self.steps_per_epoch = n_images // self.global_batch  # the incomplete last batch is dropped

    def order(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(key_seed(self.seed, epoch, 7))
        return torch.randperm(self.n, generator=g)

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        step = self.start_step
        while True:
            epoch, within = divmod(step, self.steps_per_epoch)
            order = self.order(epoch)
            for s in range(within, self.steps_per_epoch):
                first = s * self.global_batch + self.rank * self.batch_size
                yield [(step, epoch, int(i)) for i in order[first:first + self.batch_size]]
                step += 1


class MultiCropCollator:
    """Stacks views view-major and attaches the step's iBOT masks (drawn for the global batch, then sliced)."""

    def __init__(self, grid: int, seed: int, mask_probability: float, ratio_min: float, ratio_max: float,
                 rank: int = 0, world_size: int = 1) -> None:
        self.grid, self.seed = grid, seed
        self.mask_probability, self.ratio = mask_probability, (ratio_min, ratio_max)
        self.rank, self.world_size = rank, world_size
        self.generator = MaskingGenerator(grid, max_num_patches=0.5 * grid * grid)

    def masks(self, step: int, n_images: int) -> torch.Tensor:
        """(N_GLOBAL * B_global, N) bool, view-major, as DINOv2's collate: a fraction of crops gets a mask
        with ratios spread evenly over [ratio_min, ratio_max]; crops are shuffled."""
        n_crops, n_patches = N_GLOBAL * n_images, self.grid * self.grid
        g = torch.Generator().manual_seed(key_seed(self.seed, step, 11))
        n_masked = int(n_crops * self.mask_probability)
        bounds = np.linspace(*self.ratio, n_masked + 1)
        masks = torch.zeros(n_crops, n_patches, dtype=torch.bool)
        for j in range(n_masked):
            ratio = bounds[j] + (bounds[j + 1] - bounds[j]) * torch.rand((), generator=g).item()
            masks[j] = torch.from_numpy(self.generator(int(n_patches * ratio), generator=g)).flatten()
        return masks[torch.randperm(n_crops, generator=g)]

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        B = len(items)
        global_crops = torch.stack([it["global_crops"][v] for v in range(N_GLOBAL) for it in items])  # (2B, 3, G, G)
        n_local = len(items[0]["local_crops"])
        local = [it["local_crops"][v] for v in range(n_local) for it in items]
        all_masks = self.masks(items[0]["step"], B * self.world_size).view(N_GLOBAL, self.world_size * B, -1)
        masks = all_masks[:, self.rank * B:(self.rank + 1) * B].reshape(N_GLOBAL * B, -1)  # (2B, N)
        per_crop = 1.0 / masks.sum(-1).clamp(min=1).float()  # (2B,)
        return {
            "global_crops": global_crops,
            "local_crops": torch.stack(local) if local else torch.empty(0),  # (nL*B, 3, L, L)
            "masks": masks,
            "mask_indices": masks.flatten().nonzero().flatten(),  # (M,)
            "masks_weight": per_crop.unsqueeze(-1).expand_as(masks)[masks],  # (M,)
            "step": torch.tensor(items[0]["step"]),
        }


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def build_augmentation(cfg: Any, image_mean: tuple[float, ...], image_std: tuple[float, ...]) -> Callable:
    """The multi-crop augmentation of ``cfg`` normalizing with the backbone's mean/std."""
    from raddino_lib.data.augment import PHOTOMETRIC_LEVELS, MultiCropAugmentation

    return MultiCropAugmentation(
        global_crop_size=cfg.global_crop_size, local_crop_size=cfg.local_crop_size, n_local_crops=cfg.n_local_crops,
        global_crops_scale=cfg.global_crops_scale, local_crops_scale=cfg.local_crops_scale,
        mean=image_mean, std=image_std, **PHOTOMETRIC_LEVELS[cfg.photometric])


def build_pretrain_loader(cfg: Any, spec: Any, info: Any, start_step: int = 0) -> tuple[DataLoader, int]:
    """(infinite DataLoader starting at ``start_step``, number of training images) for a PretrainConfig."""
    from raddino_lib.data.manifest import read_manifest

    if not cfg.manifest:
        raise ValueError("PretrainConfig.manifest is empty: pass a manifest.csv (e.g. 'raddino phantoms --out DIR')")
    df = read_manifest(cfg.manifest)
    if cfg.split:
        df = df[df["split"] == cfg.split]
    if len(df) == 0:
        raise ValueError(f"{cfg.manifest}: no rows with split '{cfg.split}' to pretrain on (set split='' for all)")
    paths = [str(p) for p in df["abs_path"]]
    augment = build_augmentation(cfg, tuple(spec.image_mean), tuple(spec.image_std))
    dataset = PretrainImages(paths, augment, cfg.seed, cache=cfg.cache_images)
    sampler = StepBatchSampler(len(paths), cfg.batch_size, cfg.seed, info.rank, info.world_size, start_step)
    collate = MultiCropCollator(cfg.global_crop_size // spec.patch_size, cfg.seed, cfg.mask_probability,
                                cfg.mask_ratio_min, cfg.mask_ratio_max, info.rank, info.world_size)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=cfg.num_workers,
                        persistent_workers=cfg.num_workers > 0, pin_memory=torch.cuda.is_available(),
                        generator=torch.Generator().manual_seed(cfg.seed))  # never draws from the global RNG
    return loader, len(paths)


def preview_batch(cfg: Any, n_images: int = 4) -> dict[str, torch.Tensor]:
    """The first batch (up to ``n_images`` images) a run with ``cfg`` would see, for figures."""
    from types import SimpleNamespace

    from raddino_lib.models import IMAGENET_MEAN, IMAGENET_STD
    from raddino_lib.train.distributed import DistInfo

    spec = SimpleNamespace(image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD, patch_size=cfg.patch_size)
    small = dataclasses.replace(cfg, batch_size=max(2, min(n_images, cfg.batch_size)), num_workers=0,
                                cache_images=False)
    loader, _ = build_pretrain_loader(small, spec, DistInfo())
    return next(iter(loader))
