"""Does an encoder look where the finding is? CLS attention scored against masks, by finding size.

Two scores per image, computed on the patch grid of a map (one map per layer and head, plus the head mean):

* **mass in region** — the share of the CLS attention (renormalized over patches) that falls inside the
  finding's region, each patch weighted by the fraction of its area inside. Uniform attention scores exactly
  the region's area fraction: that is the *chance level*, and ``excess`` = mass − chance per image is the
  paired test (an encoder looks at the finding only when the interval of the mean excess lies above 0).
* **pointing game** (Zhang et al., 2016) — a hit when the most attended patch lies within ``tolerance`` patches
  of the region; chance = the share of patches that would be a hit.

Findings are scored by **size class**: large ones (effusion, cardiomegaly, pneumothorax, consolidation) cover a
good part of a lung, small ones (nodule, mass) a few patches; a finding's region is its mask, or for
cardiomegaly (which has no mask of its own) the heart on images labelled with it. Scores are averaged over the
images that have the class, with patient-level bootstrap CIs.

Every layer and head is scored. The headline reads one layer (the last by default), averaged over heads; the
*best* (layer, head) of each class is chosen on the **val** split and scored on test, so that scanning many
heads does not flatter an encoder. The raw-pixel floor uses the image's own brightness per patch as its map:
what "look where it is bright" scores without any learning.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from raddino_lib.data.schema import label_column, mask_column
from raddino_lib.probe.bootstrap import patient_bootstrap
from raddino_lib.results import metric

LUNGS: tuple[str, ...] = ("left_lung", "right_lung")
SIZE_CLASSES: dict[str, tuple[str, ...]] = {
    "large": ("Effusion", "Cardiomegaly", "Pneumothorax", "Consolidation"),
    "small": ("Nodule", "Mass"),
}
FINDING_REGION: dict[str, str] = {"Cardiomegaly": "heart"}  # findings without a mask: this anatomy when labelled


# ===== scores of maps against masks =====

def mask_to_grid(mask: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
    """Fraction of each patch inside the mask: (N, H, W) in {0, 1} → (N, h, w) in [0, 1]."""
    return F.adaptive_avg_pool2d(mask.float()[:, None], tuple(grid))[:, 0]


def mass_in_mask(attn: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """Share of each map's mass inside the mask: attn (N, ..., h, w) ≥ 0, mask (N, H, W) → (N, ...)."""
    frac = mask_to_grid(mask, attn.shape[-2:])  # (N, h, w)
    a = attn.float()
    frac = frac.reshape(frac.shape[0], *([1] * (a.ndim - 3)), *frac.shape[-2:])  # broadcast over layers/heads
    total = a.sum((-1, -2)).clamp_min(1e-12)
    return ((a * frac).sum((-1, -2)) / total).numpy()


def _near_mask(mask: torch.Tensor, grid: Sequence[int], tolerance: int) -> torch.Tensor:
    """(N, H, W) → (N, h, w) bool: patches within ``tolerance`` patches (Chebyshev) of a mask pixel."""
    touched = (mask_to_grid(mask, grid) > 0).float()[:, None]  # (N, 1, h, w)
    if tolerance > 0:
        touched = F.max_pool2d(touched, 2 * tolerance + 1, stride=1, padding=tolerance)
    return touched[:, 0] > 0


def pointing_hits(attn: torch.Tensor, mask: torch.Tensor, tolerance: int = 1) -> np.ndarray:
    """Is the argmax patch of each map (N, ..., h, w) within ``tolerance`` patches of the mask? → (N, ...)."""
    near = _near_mask(mask, attn.shape[-2:], tolerance).flatten(1)  # (N, h*w)
    top = attn.flatten(-2).argmax(dim=-1)  # (N, ...)
    flat_top = top.reshape(len(top), -1)  # (N, K)
    return near.gather(1, flat_top).reshape(top.shape).numpy()


def pointing_chance(mask: torch.Tensor, grid: Sequence[int], tolerance: int = 1) -> np.ndarray:
    """Hit rate of a uniformly random patch: the share of patches counted as hits, (N,)."""
    return _near_mask(mask, grid, tolerance).float().mean((-1, -2)).numpy()


def brightness_maps(images: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
    """The floor's 'attention': mean brightness per patch of (B, 3, S, S) inputs → (B, 1, 1, h, w), ≥ 0."""
    x = images[:, :1].float()
    x = x - x.amin(dim=(-1, -2), keepdim=True)  # per image, so that the darkest pixel weighs nothing
    return F.adaptive_avg_pool2d(x, tuple(grid))[:, None]  # (B, 1, 1, h, w)


# ===== regions of the size classes =====

def class_members(df: pd.DataFrame) -> dict[str, list[str]]:
    """Size class → its findings that this manifest can localize (a mask column, or a labelled region)."""
    out = {}
    for name, findings in SIZE_CLASSES.items():
        usable = [f for f in findings if mask_column(f) in df.columns
                  or (f in FINDING_REGION and mask_column(FINDING_REGION[f]) in df.columns
                      and label_column(f) in df.columns)]
        if usable:
            out[name] = usable
    return out


def region_masks(batch: Mapping[str, torch.Tensor], rows: pd.DataFrame, findings: Sequence[str]) -> torch.Tensor:
    """Union of the regions of ``findings`` on each image of the batch → (B, S, S) in {0, 1}."""
    first = batch["image"]
    union = torch.zeros(first.shape[0], *first.shape[-2:])
    for f in findings:
        if mask_column(f) in batch:
            union = torch.maximum(union, batch[mask_column(f)])
        elif f in FINDING_REGION:
            labelled = torch.as_tensor(pd.to_numeric(rows[label_column(f)], errors="coerce").fillna(0).to_numpy()
                                       == 1, dtype=torch.float32)
            union = torch.maximum(union, batch[mask_column(FINDING_REGION[f])] * labelled[:, None, None])
    return union


# ===== per-image scores of one encoder =====

@dataclass
class AttentionScores:
    """Per-image scores of one encoder over (layer, head); the last head index is the mean over heads."""

    image_ids: list[str] = field(default_factory=list)
    patient_ids: list[str] = field(default_factory=list)
    splits: list[str] = field(default_factory=list)
    mass: dict[str, list[np.ndarray]] = field(default_factory=dict)  # region -> batches of (B, L, H+1), nan = absent
    hits: dict[str, list[np.ndarray]] = field(default_factory=dict)  # region -> batches of (B, L, H+1)
    chance: dict[str, list[np.ndarray]] = field(default_factory=dict)  # "<region>" / "pointing_<region>" -> (B,)

    def add(self, region: str, maps: torch.Tensor, mask: torch.Tensor, tolerance: int) -> None:
        present = (mask.flatten(1).amax(1) > 0).numpy()
        nan = np.where(present, 1.0, np.nan)
        self.mass.setdefault(region, []).append(mass_in_mask(maps, mask) * nan[:, None, None])
        self.hits.setdefault(region, []).append(pointing_hits(maps, mask, tolerance) * nan[:, None, None])
        self.chance.setdefault(region, []).append(mask.float().mean((-1, -2)).numpy() * nan)
        self.chance.setdefault(f"pointing_{region}", []).append(pointing_chance(mask, maps.shape[-2:], tolerance)
                                                                * nan)

    def array(self, kind: str, region: str) -> np.ndarray:
        """(N, L, H+1) for "mass" / "hits", (N,) for "chance" / "pointing_chance"."""
        if kind in ("chance", "pointing_chance"):
            key = region if kind == "chance" else f"pointing_{region}"
            return np.concatenate(self.chance[key])
        return np.concatenate(getattr(self, kind)[region])


@torch.no_grad()
def score_attention(model: nn.Module | None, batches: Iterable[dict], manifest_df: pd.DataFrame,
                    classes: Mapping[str, Sequence[str]], lungs: Sequence[str] = LUNGS, tolerance: int = 1,
                    device: str = "cpu", floor_patch: int = 8) -> AttentionScores:
    """Score every layer and head of ``model`` (None = the brightness floor, on ``floor_patch`` pixel patches)
    on ``ManifestDataset`` batches carrying "image" (B, 3, S, S), "index" (B,) and the ``mask_<s>`` of every
    region the classes and ``lungs`` need.
    """
    from raddino_lib.viz.attention import all_layers_cls_attention

    scores = AttentionScores()
    for batch in batches:
        images = batch["image"].to(device)
        if model is None:
            maps = brightness_maps(images, (images.shape[-2] // floor_patch, images.shape[-1] // floor_patch)).cpu()
        else:
            maps = all_layers_cls_attention(model.to(device).eval(), images).cpu()  # (B, L, H, h, w)
        maps = torch.cat([maps, maps.mean(dim=2, keepdim=True)], dim=2)  # (B, L, H+1, h, w)
        rows = manifest_df.iloc[batch["index"].tolist()]
        scores.image_ids += [str(v) for v in rows["image_id"]]
        scores.patient_ids += [str(v) for v in rows["patient_id"]]
        scores.splits += [str(v) for v in rows["split"]]
        for name, findings in classes.items():
            scores.add(name, maps, region_masks(batch, rows, findings), tolerance)
        if lungs:
            scores.add("lungs", maps, torch.stack([batch[mask_column(s)] for s in lungs]).amax(0), tolerance)
    return scores


# ===== summaries =====

def _estimate(values: np.ndarray, pids: np.ndarray, n_boot: int, seed: int) -> dict:
    keep = np.isfinite(values)
    if not keep.any():
        return metric(float("nan"))
    est = patient_bootstrap(np.mean, [values[keep]], pids[keep], n_boot=n_boot, seed=seed)
    return metric(est.value, est.ci_low, est.ci_high)


def best_map(scores: AttentionScores, region: str, split: str = "val") -> tuple[int, int] | None:
    """(layer, head) with the largest mean excess mass on ``split`` (head index H = the head mean)."""
    rows = np.asarray(scores.splits) == split
    excess = scores.array("mass", region)[rows] - scores.array("chance", region)[rows][:, None, None]
    if not np.isfinite(excess).any():
        return None
    mean = np.nanmean(np.where(np.isfinite(excess), excess, np.nan), axis=0)  # (L, H+1)
    layer, head = np.unravel_index(np.nanargmax(mean), mean.shape)
    return int(layer), int(head)


def summarize_scores(scores: AttentionScores, layer: int = -1, n_boot: int = 1000, seed: int = 0,
                     split: str = "test") -> tuple[dict[str, dict], dict[str, tuple[int, int] | None]]:
    """Table cells on ``split``: per region, mass / chance / excess / pointing / pointing chance at ``layer``
    (mean over heads), and the excess of the val-chosen best map. Returns (cells, best map per region)."""
    rows = np.asarray(scores.splits) == split
    pids = np.asarray(scores.patient_ids)[rows]
    table, best = {}, {}
    for region in scores.mass:
        mass, hits = scores.array("mass", region)[rows], scores.array("hits", region)[rows]
        chance = scores.array("chance", region)[rows]
        p = f"attn_mass_{region}"
        table[p] = _estimate(mass[:, layer, -1], pids, n_boot, seed)
        table[f"{p}_chance"] = _estimate(chance, pids, n_boot, seed)
        table[f"{p}_excess"] = _estimate(mass[:, layer, -1] - chance, pids, n_boot, seed)
        table[f"pointing_{region}"] = _estimate(hits[:, layer, -1], pids, n_boot, seed)
        table[f"pointing_{region}_chance"] = _estimate(scores.array("pointing_chance", region)[rows], pids, n_boot,
                                                       seed)
        best[region] = best_map(scores, region)
        if best[region] is not None:
            lb, hb = best[region]
            table[f"{p}_best_excess"] = _estimate(mass[:, lb, hb] - chance, pids, n_boot, seed)
    return table, best


def excess_grid(scores: AttentionScores, region: str, split: str = "test") -> np.ndarray:
    """(L, H+1) mean mass divided by mean chance on ``split``: 1 = chance, per layer and head (last = mean)."""
    rows = np.asarray(scores.splits) == split
    mass, chance = scores.array("mass", region)[rows], scores.array("chance", region)[rows]
    if not np.isfinite(chance).any():
        return np.full(mass.shape[1:], np.nan)
    return np.nanmean(mass, axis=0) / np.nanmean(chance)


def describe_attention(table: dict[str, dict], region: str) -> str:
    """One line per encoder: the mean excess over chance for ``region`` and whether its interval clears 0."""
    lines = []
    for encoder, row in table.items():
        cell, mass = row.get(f"attn_mass_{region}_excess") or {}, row.get(f"attn_mass_{region}") or {}
        chance = (row.get(f"attn_mass_{region}_chance") or {}).get("value")
        if cell.get("value") is None or cell.get("ci_low") is None or chance is None:
            lines.append(f"- {encoder}: no {region} finding to score (or no interval).")
            continue
        verdict = ("above chance" if cell["ci_low"] > 0 else "below chance" if cell["ci_high"] < 0
                   else "at chance (the interval of the excess contains 0)")
        best = row.get(f"attn_mass_{region}_best_excess") or {}
        best_text = (f"; the best map chosen on val: excess {best['value']:+.4f} [{best['ci_low']:+.4f}, "
                     f"{best['ci_high']:+.4f}]" if best.get("ci_low") is not None else "")
        lines.append(f"- {encoder}: mass {mass['value']:.4f} vs chance {chance:.4f}, excess {cell['value']:+.4f} "
                     f"[{cell['ci_low']:+.4f}, {cell['ci_high']:+.4f}] — {verdict}{best_text}.")
    return "\n".join(lines)
