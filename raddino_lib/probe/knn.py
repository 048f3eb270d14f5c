"""Weighted k-nearest-neighbour probe (DINO's kNN evaluation), one score per finding.

No training at all: each test image looks up its k most cosine-similar train
images and lets them vote, each vote weighted by ``exp(similarity / T)``
(DINO: k = 20, T = 0.07). For a multi-label manifest the score of a finding is
the weighted fraction of neighbours that have it, which AUROC then ranks.
Good features put images with the same finding close together, so kNN is a
second, hyper-parameter-free view on the same question the linear probe asks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from raddino_lib.probe.classification import ProbeResult, _check_shapes, evaluate_scores, select_labels

K = 20  # neighbours (DINO's default)
TEMPERATURE = 0.07  # vote weight exp(cos / T) (DINO's default)


def knn_scores(train: np.ndarray, train_labels: np.ndarray, query: np.ndarray, k: int = K,
               temperature: float = TEMPERATURE, chunk: int = 1024) -> np.ndarray:
    """Weighted kNN vote per label.

    Args:
        train: (N, D) features; train_labels: (N, F) 1/0, nan = unknown (ignored for that label).
        query: (M, D) features.
    Returns:
        (M, F) scores in [0, 1]: the exp(cos/T)-weighted fraction of the k neighbours labelled 1.
    """
    def unit(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a, dtype=np.float32)
        return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)

    train_n, query_n = unit(train), unit(query)
    labels = np.asarray(train_labels, dtype=np.float32)
    out = np.zeros((len(query_n), labels.shape[1]), dtype=np.float64)
    for f in range(labels.shape[1]):
        known = ~np.isnan(labels[:, f])
        bank, y = train_n[known], labels[known, f]
        kk = min(k, len(bank))
        if kk == 0:
            raise ValueError(f"label column {f} has no known train labels: kNN cannot vote")
        for start in range(0, len(query_n), chunk):
            sim = query_n[start:start + chunk] @ bank.T  # (m, N_known)
            top = np.argpartition(-sim, kk - 1, axis=1)[:, :kk]  # (m, k) unordered neighbours
            w = np.exp((np.take_along_axis(sim, top, axis=1) - 1.0) / temperature)  # shift by max cos 1: no overflow
            out[start:start + chunk, f] = (w * y[top]).sum(1) / w.sum(1)
    return out


def knn_probe(features: np.ndarray, labels: np.ndarray, splits: Sequence[str], patient_ids: Sequence,
              findings: Sequence[str], k: int = K, temperature: float = TEMPERATURE, n_boot: int = 1000,
              seed: int = 0, min_count: int = 2) -> ProbeResult:
    """kNN scores of the test split from the train split; metrics as in ``linear_probe``.

    Args:
        features: (N, D); labels: (N, F) 1/0/nan; splits, patient_ids: (N,).
    """
    x, y = np.asarray(features, dtype=np.float32), np.asarray(labels, dtype=np.float64)
    splits, pids = np.asarray(splits), np.asarray(patient_ids)
    _check_shapes(x, y, splits, pids, findings)
    keep, skipped = select_labels(y, splits, findings, min_count)
    if not keep:
        raise ValueError(f"no finding can be probed: {skipped} (use a larger or more balanced manifest)")
    train, test = np.flatnonzero(splits == "train"), np.flatnonzero(splits == "test")
    scores = knn_scores(x[train], y[train][:, keep], x[test], k, temperature)
    names = [findings[f] for f in keep]
    table, macro_auroc, macro_auprc = evaluate_scores(y[test][:, keep], scores, pids[test], names, n_boot, seed)
    table["k"] = min(k, len(train))
    return ProbeResult(table, macro_auroc, macro_auprc, scores, test, skipped)
