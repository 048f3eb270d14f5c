"""Checkpoint selection during pretraining: score the teacher on the validation split.

RAD-DINO kept the checkpoint of iteration 35,000 of 100,000, chosen by linear probing on validation sets
(PAPERS.md). ``knn_val_scorer`` builds the same kind of judge, cheap enough to run every few hundred steps:
the teacher's [CLS] features of a fixed subset of training images form a bank, and a weighted kNN vote from
that bank scores every validation image; the score is the macro AUROC over the findings (or, for a manifest
with another label column such as the toy shapes, the accuracy). Images are decoded once; only the forward
passes repeat. The test split is never touched.

``pretrain(cfg, scorer=...)`` calls the scorer every ``cfg.eval_every`` steps and keeps the best teacher.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from raddino_lib.data.io import load_image
from raddino_lib.data.manifest import label_matrix, read_manifest
from raddino_lib.data.transforms import EvalTransform
from raddino_lib.probe.classification import auroc
from raddino_lib.probe.knn import knn_scores

__all__ = ["ValScorer", "knn_val_scorer"]

Scorer = Callable[[nn.Module], float]


class ValScorer:
    """Callable: teacher backbone → validation score (higher is better). See the module docstring."""

    def __init__(self, bank: torch.Tensor, bank_labels: np.ndarray, query: torch.Tensor, query_labels: np.ndarray,
                 kind: str, batch_size: int = 128) -> None:
        self.bank, self.bank_labels = bank, bank_labels  # (Nb, 3, S, S), (Nb, F)
        self.query, self.query_labels = query, query_labels  # (Nq, 3, S, S), (Nq, F)
        self.kind, self.batch_size = kind, batch_size  # "auroc" (multi-label) or "accuracy" (one class column)

    @torch.no_grad()
    def _cls(self, model: nn.Module, images: torch.Tensor) -> np.ndarray:
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        out = [model.forward_features(images[i:i + self.batch_size].to(device))[:, 0].float().cpu()
               for i in range(0, len(images), self.batch_size)]
        model.train(was_training)
        return torch.cat(out).numpy()  # (N, D)

    def __call__(self, model: nn.Module) -> float:
        scores = knn_scores(self._cls(model, self.bank), self.bank_labels, self._cls(model, self.query))  # (Nq, F)
        if self.kind == "accuracy":
            return float(np.mean(scores.argmax(1) == self.query_labels.argmax(1)))
        aurocs = [auroc(self.query_labels[:, j], scores[:, j]) for j in range(scores.shape[1])]
        return float(np.nanmean(aurocs))


def _images(df: pd.DataFrame, size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    transform = EvalTransform(size=size, mean=mean, std=std)
    return torch.stack([transform(load_image(p)) for p in df["abs_path"]])  # (N, 3, S, S)


def knn_val_scorer(manifest: str | Path, image_size: int, max_bank: int = 1000, max_query: int = 600,
                   label_column: str = "", mean: tuple[float, ...] = (0.485, 0.456, 0.406),
                   std: tuple[float, ...] = (0.229, 0.224, 0.225), seed: int = 0) -> ValScorer:
    """A ``ValScorer`` on ``manifest``: bank = up to ``max_bank`` train images, queries = up to ``max_query``
    val images (random subsets, fixed by ``seed``).

    label_column: "" = the findings' label columns (macro AUROC over those with positives and negatives in the
    validation subset); a column name (e.g. "shape") = one class per image (accuracy).
    """
    df = read_manifest(manifest)
    rng = np.random.default_rng(seed)
    parts = {}
    for split, limit in (("train", max_bank), ("val", max_query)):
        rows = df[df["split"] == split]
        if len(rows) == 0:
            raise ValueError(f"{manifest}: no '{split}' rows; checkpoint selection needs train and val splits")
        parts[split] = rows.iloc[np.sort(rng.permutation(len(rows))[:limit])]
    if label_column:
        if label_column not in df.columns:
            raise ValueError(f"{manifest}: no column '{label_column}' to score checkpoints with")
        classes = sorted(df[label_column].astype(str).unique())
        labels = {s: np.eye(len(classes))[p[label_column].astype(str).map(classes.index).to_numpy()]
                  for s, p in parts.items()}
        kind = "accuracy"
    else:
        labels = {s: label_matrix(p) for s, p in parts.items()}
        usable = [j for j in range(labels["val"].shape[1])
                  if 0 < np.nansum(labels["val"][:, j]) < np.sum(~np.isnan(labels["val"][:, j]))
                  and np.nansum(labels["train"][:, j]) > 0]
        if not usable:
            raise ValueError(f"{manifest}: no finding has both classes in the val split; pass label_column")
        labels = {s: np.nan_to_num(v[:, usable]) for s, v in labels.items()}
        kind = "auroc"
    images = {s: _images(p, image_size, mean, std) for s, p in parts.items()}
    return ValScorer(images["train"], labels["train"], images["val"], labels["val"], kind)
