"""Every encoder's CLS attention scored side by side on one manifest (notebook 05).

The rows are the probe notebooks' rows: the brightness floor (``pixels``), random init, the encoders and the
supervised ceiling; the scores are those of ``probe.attention_metrics`` (per finding size class, every layer
and head, val-chosen best map, against chance).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from raddino_lib.data.schema import mask_column
from raddino_lib.device import resolve_device
from raddino_lib.probe.attention_metrics import (
    FINDING_REGION,
    LUNGS,
    AttentionScores,
    class_members,
    excess_grid,
    region_masks,
    score_attention,
    summarize_scores,
)
from raddino_lib.probe.pixels import is_pixels


@dataclass
class AttentionComparison:
    """Encoders side by side: summary table, chosen maps, per-layer/head grids and the maps of shown images."""

    table: dict[str, dict]  # encoder -> summarize_scores cells
    best: dict[str, dict[str, tuple[int, int] | None]]  # encoder -> region -> (layer, head) chosen on val
    grids: dict[str, dict[str, np.ndarray]]  # encoder -> region -> (L, H+1) mass / chance on test
    counts: dict[str, dict[str, int]]  # encoder -> region -> test images behind the score
    classes: dict[str, list[str]]  # size class -> findings scored in it
    images: np.ndarray  # (n, S, S) shown images in [0, 1]
    region_masks: np.ndarray  # (n, S, S) union of the class regions of the shown images
    maps: dict[str, torch.Tensor] = field(default_factory=dict)  # encoder -> (n, heads, h, w) at the chosen layer
    inputs: dict[str, torch.Tensor] = field(default_factory=dict)  # encoder -> (n, 3, S, S) its normalized inputs
    shown_ids: list[str] = field(default_factory=list)


def shown_rows(df, split: str, classes: dict[str, list[str]], n_images: int) -> list[int]:
    """Row positions of ``n_images`` images of ``split``: those with a small finding first, then large ones."""
    in_split = np.flatnonzero((df["split"] == split).to_numpy())
    order: list[int] = []
    for name in ("small", "large"):
        cols = [mask_column(f) for f in classes.get(name, []) if mask_column(f) in df.columns]
        if cols:
            has = df[cols].fillna("").astype(str).ne("").any(axis=1).to_numpy()
            order += [i for i in in_split if has[i] and i not in order]
    order += [i for i in in_split if i not in order]
    return order[:n_images]


def compare_attention(encoders: dict[str, str], manifest: str, image_size: int, layer: int = -1,
                      n_images: int = 4, n_boot: int = 1000, seed: int = 0, device: str = "cpu",
                      batch_size: int = 32, tolerance: int = 1, split: str = "test") -> AttentionComparison:
    """Score every row on the val and ``split`` images of ``manifest``; keep the maps of ``n_images`` images."""
    from torch.utils.data import DataLoader, Subset

    from raddino_lib.data.datasets import ManifestDataset
    from raddino_lib.data.manifest import read_manifest
    from raddino_lib.data.transforms import EvalTransform, eval_transform_for
    from raddino_lib.models import load_backbone
    from raddino_lib.models.weights import read_backbone_spec

    device = str(resolve_device(device))
    df = read_manifest(manifest)
    classes = class_members(df)
    needed = sorted({f if mask_column(f) in df.columns else FINDING_REGION[f] for findings in classes.values()
                     for f in findings})  # mask columns the regions read
    lungs = [s for s in LUNGS if mask_column(s) in df.columns]
    rows = np.flatnonzero(df["split"].isin(["val", split]).to_numpy())
    if not (df["split"] == split).any():
        raise ValueError(f"{manifest}: no images in split '{split}' to score attention on")
    shown = shown_rows(df, split, classes, n_images)
    real = [p for p in encoders.values() if not is_pixels(p)]
    floor_patch = read_backbone_spec(real[0])["patch_size"] if real else 8
    empty = np.zeros((0, image_size, image_size))
    result = AttentionComparison({}, {}, {}, {}, classes, empty, empty,
                                 shown_ids=[str(df["image_id"].iloc[i]) for i in shown])
    for name, path in encoders.items():
        model = None if is_pixels(path) else load_backbone(path, img_size=image_size)
        transform = EvalTransform(image_size) if model is None else eval_transform_for(path, image_size)
        data = ManifestDataset(df, transform=transform, masks=needed + lungs)
        loader = DataLoader(Subset(data, rows.tolist()), batch_size=batch_size, shuffle=False)
        scores = score_attention(model, loader, df, classes, lungs, tolerance, device, floor_patch)
        result.table[name], result.best[name] = summarize_scores(scores, layer, n_boot, seed, split)
        result.grids[name] = {r: excess_grid(scores, r, split) for r in scores.mass}
        result.counts[name] = _counts(scores, split)
        if shown and model is not None:
            from raddino_lib.viz.attention import cls_attention

            items = next(iter(DataLoader(Subset(data, shown), batch_size=len(shown))))
            result.inputs[name] = items["image"]
            result.maps[name] = cls_attention(model.to(device).eval(), items["image"].to(device), layer).cpu()
            result.images = np.stack([_unit(x) for x in items["image"]])
            masks = [region_masks(items, df.iloc[shown], findings) for findings in classes.values()]
            result.region_masks = (torch.stack(masks).amax(0).numpy() if masks else np.zeros_like(result.images))
    return result


def _counts(scores: AttentionScores, split: str) -> dict[str, int]:
    rows = np.asarray(scores.splits) == split
    return {r: int(np.isfinite(scores.array("chance", r)[rows]).sum()) for r in scores.mass}


def _unit(image: torch.Tensor) -> np.ndarray:
    """(3, S, S) normalized model input → (S, S) in [0, 1] for display."""
    x = image[0]
    return ((x - x.min()) / (x.max() - x.min()).clamp_min(1e-12)).numpy()
