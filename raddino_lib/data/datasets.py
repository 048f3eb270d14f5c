"""A torch Dataset over manifest rows: image (and masks) in, one dict per item out."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd
import torch
from torch.utils.data import Dataset

from raddino_lib.data.io import load_image, load_mask
from raddino_lib.data.schema import SPLITS, mask_column


class ManifestDataset(Dataset):
    """Rows of a manifest (from ``read_manifest``) as items.

    Item: ``"image"`` — ``transform(load_image(path))``, (3, S, S) for an
    ``EvalTransform``, the raw (1, H, W) image without a transform;
    ``"index"`` — the row's position in ``manifest_df`` (stable across splits,
    use it to index ``label_matrix(manifest_df)``); ``"image_id"``; and
    ``"mask_<s>"`` (S, S) float in {0, 1} for each structure / finding ``s`` in
    ``masks`` (an empty mask cell means "absent" → all zeros).
    """

    def __init__(self, manifest_df: pd.DataFrame, split: str | None = None,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None, masks: Sequence[str] = ()) -> None:
        if split is not None and split not in SPLITS:
            raise ValueError(f"split '{split}' is not one of {list(SPLITS)} (or None for all rows)")
        for s in masks:
            if mask_column(s) not in manifest_df.columns:
                raise KeyError(f"manifest has no column '{mask_column(s)}' for mask '{s}' "
                               f"(mask columns present: {[c for c in manifest_df.columns if c.startswith('mask_')]})")
        if transform is not None and masks and not hasattr(transform, "mask"):
            raise TypeError("masks need a transform with a .mask(m) method (e.g. EvalTransform) to match geometry")
        self.df = manifest_df
        self.transform = transform
        self.masks = tuple(masks)
        keep = [True] * len(manifest_df) if split is None else (manifest_df["split"] == split).tolist()
        self.positions = [i for i, k in enumerate(keep) if k]  # row positions in manifest_df
        self._paths = _column(manifest_df, "path")
        self._mask_paths = {s: _column(manifest_df, mask_column(s)) for s in self.masks}
        self._ids = [str(v) for v in manifest_df["image_id"]]

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int) -> dict[str, object]:
        pos = self.positions[i]
        image = load_image(self._paths[pos])  # (1, H, W)
        item: dict[str, object] = {"index": pos, "image_id": self._ids[pos]}
        item["image"] = self.transform(image) if self.transform is not None else image
        for s in self.masks:
            mask = self._raw_mask(s, pos, image)
            item[mask_column(s)] = self.transform.mask(mask) if self.transform is not None else mask
        return item

    def image_and_masks(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Item i's image and its masks stacked as (len(masks), S, S), resized and cropped in one call (the same
        values as the items' ``mask_<s>`` entries, read faster when there are many structures)."""
        pos = self.positions[i]
        image = load_image(self._paths[pos])  # (1, H, W)
        raw = torch.stack([self._raw_mask(s, pos, image) for s in self.masks]) if self.masks else \
            torch.zeros((0, *image.shape[-2:]))
        if self.transform is None:
            return image, raw
        return self.transform(image), self.transform.masks(raw)

    def _raw_mask(self, structure: str, pos: int, image: torch.Tensor) -> torch.Tensor:
        """(H, W) mask of one structure at the image's size (all zeros where the cell is empty)."""
        path = self._mask_paths[structure][pos]
        mask = load_mask(path) if path else torch.zeros(image.shape[-2:])  # (H, W)
        if mask.shape != image.shape[-2:]:
            raise ValueError(f"mask '{path}' has shape {tuple(mask.shape)} but image '{self._paths[pos]}' "
                             f"has {tuple(image.shape[-2:])}; masks must match their image's size")
        return mask


def _column(df: pd.DataFrame, col: str) -> list[str]:
    """Resolved paths: ``abs_<col>`` from ``read_manifest`` when present, else the column itself."""
    values = df["abs_" + col] if "abs_" + col in df.columns else df[col]
    return ["" if pd.isna(v) else str(v) for v in values]
