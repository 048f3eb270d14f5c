"""What the supervised ceiling learns and sees: targets found from a manifest's columns, the train split as
tensors, and the one augmentation (a shared random shift of image and masks).

Every target is discovered from the manifest: the label columns with both classes in train (findings), the
patient fields (age and BMI as standardized regression; sex, view and site as classes), and every
``mask_<structure>`` column with masks in train and test — so a new mask column is learned without code changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from raddino_lib.data.manifest import label_matrix
from raddino_lib.data.masks import load_masks, mask_structures
from raddino_lib.data.schema import FINDINGS, label_column

REGRESSION_FIELDS: tuple[str, ...] = ("age", "bmi")  # standardized, MSE
CLASS_FIELDS: tuple[str, ...] = ("sex", "view", "site")  # cross-entropy over the values seen in train


# ===== targets =====

@dataclass
class Targets:
    """What the ceiling learns, for the rows of one split; names first, then (N, ...) arrays."""

    findings: list[str]  # label columns with positives and negatives in train
    regression: list[str]  # of REGRESSION_FIELDS present
    classes: dict[str, list[str]]  # field -> values seen in train
    structures: list[str]  # mask columns with masks in train and test
    labels: np.ndarray  # (N, F) 1/0, nan unknown
    values: np.ndarray  # (N, R) standardized with the train statistics, nan unknown
    codes: np.ndarray  # (N, C) class index per field, -1 unknown
    stats: dict[str, tuple[float, float]]  # regression field -> (train mean, train std)


def discover_targets(df: pd.DataFrame) -> Targets:
    """Every target the manifest supports, with train statistics (``df`` holds all splits)."""
    train = (df["split"] == "train").to_numpy()
    findings = []
    for f in FINDINGS:
        if label_column(f) in df.columns:
            y = label_matrix(df.loc[train], [f])[:, 0]
            if (y == 1).any() and (y == 0).any():
                findings.append(f)
    regression, stats, values = [], {}, []
    for name in REGRESSION_FIELDS:
        v = pd.to_numeric(df[name], errors="coerce").to_numpy(float) if name in df.columns else None
        if v is not None and np.isfinite(v[train]).sum() >= 2:
            mu, sd = float(np.nanmean(v[train])), float(np.nanstd(v[train])) or 1.0
            regression.append(name)
            stats[name] = (mu, sd)
            values.append((v - mu) / sd)
    classes, codes = {}, []
    for name in CLASS_FIELDS:
        if name not in df.columns:
            continue
        text = df[name].astype("string").fillna("").str.strip().to_numpy()
        seen = sorted({t for t in text[train] if t})
        if len(seen) >= 2:
            classes[name] = seen
            codes.append(np.array([seen.index(t) if t in seen else -1 for t in text]))
    n = len(df)
    return Targets(findings, regression, classes, mask_structures(df),
                   label_matrix(df, findings) if findings else np.zeros((n, 0)),
                   np.stack(values, 1) if values else np.zeros((n, 0)),
                   np.stack(codes, 1) if codes else np.zeros((n, 0), int), stats)


def shift_batch(images: torch.Tensor, masks: torch.Tensor, max_shift: int, g: torch.Generator
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Translate each image (B, C, S, S) and its masks (B, M, m, m) by the same random offset (zero padding)."""
    if max_shift == 0:
        return images, masks
    out_i, out_m = torch.zeros_like(images), torch.zeros_like(masks)
    scale = masks.shape[-1] / images.shape[-1]
    for b in range(len(images)):
        dy, dx = (int(v) for v in torch.randint(-max_shift, max_shift + 1, (2,), generator=g))
        out_i[b] = _translate(images[b], dy, dx)
        out_m[b] = _translate(masks[b], round(dy * scale), round(dx * scale))
    return out_i, out_m


def _translate(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """(C, H, W) shifted by (dy, dx) pixels, zeros where nothing moves in."""
    out = torch.zeros_like(x)
    h, w = x.shape[-2:]
    out[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = x[:, max(-dy, 0):h - max(dy, 0),
                                                                      max(-dx, 0):w - max(dx, 0)]
    return out


def load_split(df: pd.DataFrame, targets: Targets, split: str, image_size: int, mask_size: int,
               chunk: int = 512) -> dict[str, torch.Tensor]:
    """The rows of ``split`` as tensors: images (N, 1, S, S) in [0, 1] (float16), labels (N, F), values (N, R),
    codes (N, C) and soft masks (N, S_m, m, m) (area fractions, float16), read ``chunk`` rows at a time."""
    positions = np.flatnonzero((df["split"] == split).to_numpy())
    if len(positions) == 0:
        raise ValueError(f"the supervised ceiling needs '{split}' rows in the manifest's split column")
    images, soft = [], []
    for start in range(0, len(positions), chunk):
        rows = df.iloc[positions[start:start + chunk]]
        masks, x = load_masks(rows, targets.structures, image_size)  # (n, S_m, S, S) uint8, (n, S, S)
        images.append(torch.from_numpy(x)[:, None].half())
        soft.append(F.adaptive_avg_pool2d(torch.from_numpy(masks).float(), mask_size).half())
    return {"images": torch.cat(images), "labels": torch.as_tensor(targets.labels[positions], dtype=torch.float32),
            "values": torch.as_tensor(targets.values[positions], dtype=torch.float32),
            "codes": torch.as_tensor(targets.codes[positions], dtype=torch.long), "masks": torch.cat(soft)}


def normalize(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """(B, 1, S, S) in [0, 1] → (B, 3, S, S) with the backbone's normalisation (as EvalTransform)."""
    x = images.float().expand(-1, 3, -1, -1)
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)




def base_rate_bce(labels: np.ndarray) -> float:
    """Mean binary cross-entropy of predicting each finding's train prevalence for every image, over the known
    labels of ``labels`` (N, F) (nan unknown): the findings loss of a model that ignores the image."""
    known = np.isfinite(labels)
    if not known.any():
        raise ValueError("base_rate_bce: no known label")
    prevalence = np.nansum(labels, axis=0) / np.maximum(known.sum(axis=0), 1)  # (F,)
    p = np.clip(np.broadcast_to(prevalence, labels.shape)[known], 1e-7, 1 - 1e-7)
    y = labels[known]
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())
