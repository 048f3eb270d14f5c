"""Does an encoder look where the finding is? Attention maps scored against masks.

Two scores per image, both computed on the patch grid of the map:

* **mass in mask** — the share of the CLS attention (renormalized over patches)
  that falls inside a mask, each patch weighted by the fraction of its area
  inside the mask. Uniform attention scores exactly the mask's area fraction:
  that is the *chance level* reported next to it.
* **pointing game** (Zhang et al., 2016) — a hit when the most attended patch
  lies within ``tolerance`` patches of the mask. Its chance level is the share
  of patches that would be a hit.

Scores are averaged over the images that have the mask (lesion masks exist
only on images with a localized finding) with patient-level bootstrap CIs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from raddino_lib.data.schema import ANATOMY, mask_column
from raddino_lib.device import resolve_device
from raddino_lib.probe.bootstrap import patient_bootstrap
from raddino_lib.results import metric
from raddino_lib.viz.attention import cls_attention, mean_heads

LUNGS: tuple[str, ...] = ("left_lung", "right_lung")


def mask_to_grid(mask: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
    """Fraction of each patch inside the mask: (N, H, W) in {0, 1} → (N, h, w) in [0, 1]."""
    return F.adaptive_avg_pool2d(mask.float()[:, None], tuple(grid))[:, 0]


def mass_in_mask(attn: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """Share of each map's mass inside the mask: attn (N, h, w) ≥ 0, mask (N, H, W) → (N,)."""
    frac = mask_to_grid(mask, attn.shape[-2:])  # (N, h, w)
    a = attn.float()
    total = a.sum((-1, -2)).clamp_min(1e-12)
    return ((a * frac).sum((-1, -2)) / total).numpy()


def _near_mask(mask: torch.Tensor, grid: Sequence[int], tolerance: int) -> torch.Tensor:
    """(N, H, W) → (N, h, w) bool: patches within ``tolerance`` patches (Chebyshev) of a mask pixel."""
    touched = (mask_to_grid(mask, grid) > 0).float()[:, None]  # (N, 1, h, w)
    if tolerance > 0:
        touched = F.max_pool2d(touched, 2 * tolerance + 1, stride=1, padding=tolerance)
    return touched[:, 0] > 0


def pointing_hits(attn: torch.Tensor, mask: torch.Tensor, tolerance: int = 1) -> np.ndarray:
    """Pointing game: is the argmax patch of each map (N, h, w) within ``tolerance`` patches of the mask? → (N,)."""
    near = _near_mask(mask, attn.shape[-2:], tolerance).flatten(1)  # (N, h*w)
    top = attn.flatten(1).argmax(dim=1)  # (N,)
    return near.gather(1, top[:, None])[:, 0].numpy()


def pointing_chance(mask: torch.Tensor, grid: Sequence[int], tolerance: int = 1) -> np.ndarray:
    """Hit rate of a uniformly random patch: the share of patches counted as hits, (N,)."""
    return _near_mask(mask, grid, tolerance).float().mean((-1, -2)).numpy()


def finding_masks(manifest_df: pd.DataFrame) -> list[str]:
    """Names ``s`` of the non-anatomy ``mask_<s>`` columns (localized findings, e.g. Nodule)."""
    return [c[len("mask_"):] for c in manifest_df.columns if c.startswith("mask_") and c[len("mask_"):] not in ANATOMY]


@dataclass
class AttentionScores:
    """Per-image scores of one encoder; nan where the image lacks the mask (e.g. no lesion)."""

    image_ids: list[str] = field(default_factory=list)
    patient_ids: list[str] = field(default_factory=list)
    columns: dict[str, list[float]] = field(default_factory=dict)  # score name -> (N,) values

    def add(self, name: str, values: np.ndarray, present: np.ndarray) -> None:
        self.columns.setdefault(name, []).extend(np.where(present, values, np.nan).tolist())

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame({"image_id": self.image_ids, "patient_id": self.patient_ids, **self.columns})


@torch.no_grad()
def score_attention(model: nn.Module, batches: Iterable[dict], manifest_df: pd.DataFrame, lesions: Sequence[str],
                    lungs: Sequence[str] = LUNGS, layer: int = -1, tolerance: int = 1,
                    device: str = "cpu") -> AttentionScores:
    """Score the head-averaged CLS attention of ``model`` on batches of a ``ManifestDataset``.

    ``batches`` items carry "image" (B, 3, S, S), "index" (B,) and ``mask_<s>`` (B, S, S) for every
    ``s`` in ``lesions`` and ``lungs``; the lesion mask is the union of the finding masks.
    """
    model = model.to(device).eval()
    scores = AttentionScores()
    for batch in batches:
        attn = mean_heads(cls_attention(model, batch["image"].to(device), layer)).cpu()  # (B, h, w)
        rows = manifest_df.iloc[batch["index"].tolist()]
        scores.image_ids += [str(v) for v in rows["image_id"]]
        scores.patient_ids += [str(v) for v in rows["patient_id"]]
        for name, parts in (("lesion", lesions), ("lungs", lungs)):
            if not parts:
                continue
            mask = torch.stack([batch[mask_column(s)] for s in parts]).amax(0)  # (B, S, S) union
            present = mask.flatten(1).amax(1).numpy() > 0
            scores.add(f"attn_mass_in_{name}", mass_in_mask(attn, mask), present)
            scores.add(f"attn_mass_in_{name}_chance", mask.float().mean((-1, -2)).numpy(), present)
            if name == "lesion":
                scores.add("pointing_game", pointing_hits(attn, mask, tolerance).astype(float), present)
                scores.add("pointing_game_chance", pointing_chance(mask, attn.shape[-2:], tolerance), present)
    return scores


def summarize_scores(scores: AttentionScores, n_boot: int = 1000, seed: int = 0) -> dict[str, dict]:
    """Mean of every score over the images that have it, with a patient bootstrap CI → {name: metric(...)}.

    Scores no image has are reported as ``metric(nan)`` (value None).
    """
    df = scores.frame()
    table: dict[str, dict] = {}
    for name in scores.columns:
        rows = df[name].notna().to_numpy()
        if not rows.any():
            table[name] = metric(float("nan"))
            continue
        est = patient_bootstrap(np.mean, [df[name].to_numpy()[rows]], df["patient_id"].to_numpy()[rows],
                                n_boot=n_boot, seed=seed)
        table[name] = metric(est.value, est.ci_low, est.ci_high)
    return table


def score_counts(scores: AttentionScores) -> dict[str, int]:
    """How many images each score averages over, e.g. {"attn_mass_in_lesion": 41, ...}."""
    return {name: int(np.isfinite(values).sum()) for name, values in scores.columns.items()
            if not name.endswith("_chance")}


def describe_attention(table: dict[str, dict], score: str = "attn_mass_in_lesion") -> str:
    """One sentence per encoder comparing ``score`` with its chance level, CIs included (computed, not claimed)."""
    lines = []
    for encoder, row in table.items():
        cell, chance = row.get(score) or {}, (row.get(f"{score}_chance") or {}).get("value")
        if cell.get("value") is None or chance is None:
            lines.append(f"{encoder}: no image carries the mask for {score}.")
            continue
        lo, hi = cell.get("ci_low"), cell.get("ci_high")
        verdict = ("above" if lo is not None and lo > chance else "below" if hi is not None and hi < chance
                   else "not distinguishable from")
        ratio = cell["value"] / chance if chance > 0 else float("nan")
        lines.append(f"{encoder}: {score} = {cell['value']:.3f} [{lo:.3f}, {hi:.3f}], {ratio:.1f}x the chance level "
                     f"{chance:.3f} — {verdict} uniform attention." if lo is not None and hi is not None else
                     f"{encoder}: {score} = {cell['value']:.3f} vs chance {chance:.3f} (no interval).")
    return "\n".join(lines)


@dataclass
class AttentionComparison:
    """Encoders side by side: summary table, per-image scores and the maps of a few shown images."""

    table: dict[str, dict]  # encoder -> summarize_scores(...)
    scores: dict[str, pd.DataFrame]  # encoder -> per-image scores (AttentionScores.frame())
    counts: dict[str, dict[str, int]]  # encoder -> images behind each score
    images: np.ndarray  # (n, S, S) shown images in [0, 1]
    lesion_masks: np.ndarray  # (n, S, S) union of finding masks of the shown images
    maps: dict[str, torch.Tensor] = field(default_factory=dict)  # encoder -> (n, heads, h, w) at the chosen layer
    inputs: dict[str, torch.Tensor] = field(default_factory=dict)  # encoder -> (n, 3, S, S) its normalized inputs
    shown_ids: list[str] = field(default_factory=list)
    lesions: list[str] = field(default_factory=list)  # finding masks scored as "lesion"


def shown_rows(manifest_df: pd.DataFrame, split: str, lesions: Sequence[str], n_images: int) -> list[int]:
    """Row positions of ``n_images`` images of ``split`` to draw, those with a lesion mask first."""
    in_split = np.flatnonzero((manifest_df["split"] == split).to_numpy())
    cols = [mask_column(s) for s in lesions]
    has = manifest_df[cols].fillna("").astype(str).ne("").any(axis=1).to_numpy() if cols else np.zeros(len(manifest_df))
    ordered = [i for i in in_split if has[i]] + [i for i in in_split if not has[i]]
    return ordered[:n_images]


def compare_attention(encoders: dict[str, str], manifest: str, image_size: int, layer: int = -1, split: str = "test",
                      n_images: int = 4, n_boot: int = 1000, seed: int = 0, device: str = "cpu",
                      batch_size: int = 32, tolerance: int = 1) -> AttentionComparison:
    """Score every encoder's CLS attention on ``split`` of ``manifest`` and keep the maps of ``n_images`` images."""
    from torch.utils.data import DataLoader, Subset

    from raddino_lib.data.datasets import ManifestDataset
    from raddino_lib.data.manifest import read_manifest
    from raddino_lib.data.transforms import eval_transform_for
    from raddino_lib.models import load_backbone

    device = resolve_device(device)
    df = read_manifest(manifest)
    lesions = [s for s in finding_masks(df) if df[mask_column(s)].fillna("").astype(str).ne("").any()]
    lungs = [s for s in LUNGS if mask_column(s) in df.columns]
    shown = shown_rows(df, split, lesions, n_images)
    empty = np.zeros((0, image_size, image_size))
    result = AttentionComparison({}, {}, {}, empty, empty, shown_ids=[str(df["image_id"].iloc[i]) for i in shown],
                                 lesions=lesions)
    for name, path in encoders.items():
        model = load_backbone(path, img_size=image_size)
        data = ManifestDataset(df, split=split, transform=eval_transform_for(path, image_size), masks=lesions + lungs)
        if len(data) == 0:
            raise ValueError(f"{manifest}: no images in split '{split}' to score attention on")
        loader = DataLoader(data, batch_size=batch_size, shuffle=False)
        scores = score_attention(model, loader, df, lesions, lungs, layer, tolerance, device)
        result.table[name] = summarize_scores(scores, n_boot=n_boot, seed=seed)
        result.scores[name] = scores.frame()
        result.counts[name] = score_counts(scores)
        if shown:
            items = next(iter(DataLoader(Subset(ManifestDataset(df, transform=data.transform, masks=lesions), shown),
                                         batch_size=len(shown))))
            result.inputs[name] = items["image"]
            result.maps[name] = cls_attention(model.to(device).eval(), items["image"].to(device), layer).cpu()
            result.images = np.stack([_unit(x) for x in items["image"]])
            result.lesion_masks = (torch.stack([items[mask_column(s)] for s in lesions]).amax(0).numpy() if lesions
                                   else np.zeros_like(result.images))
    return result


def _unit(image: torch.Tensor) -> np.ndarray:
    """(3, S, S) normalized model input → (S, S) in [0, 1] for display."""
    x = image[0]
    return ((x - x.min()) / (x.max() - x.min()).clamp_min(1e-12)).numpy()
