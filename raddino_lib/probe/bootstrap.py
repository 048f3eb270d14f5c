"""Confidence intervals by patient-level bootstrap.

Images of one patient are correlated, so resampling images would give
intervals that are too narrow. We resample *patients* with replacement and
take every image of each drawn patient, then read the percentile interval.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Estimate:
    value: float  # the metric on the full evaluation set
    ci_low: float  # lower end of the percentile interval
    ci_high: float  # upper end
    n_boot: int  # resamples on which the metric was defined

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "ci_low": self.ci_low, "ci_high": self.ci_high}


def patient_bootstrap(
    metric: Callable[..., float],
    arrays: Sequence[np.ndarray],
    patient_ids: Sequence,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """Bootstrap ``metric(*arrays)`` over patients.

    Args:
        metric: e.g. ``sklearn.metrics.roc_auc_score``; called as ``metric(*subsets)``.
        arrays: arrays of equal first dimension (images), e.g. ``(y_true, y_score)``.
        patient_ids: (N,) patient of each image.
        n_boot: number of resamples; resamples where the metric raises
            ``ValueError`` (e.g. only one class drawn) are skipped.
    """
    arrays = [np.asarray(a) for a in arrays]
    pids = np.asarray(patient_ids)
    n = len(pids)
    if any(len(a) != n for a in arrays):
        raise ValueError(f"patient_bootstrap: arrays have lengths {[len(a) for a in arrays]}, patient_ids has {n}")
    value = float(metric(*arrays))
    unique, inverse = np.unique(pids, return_inverse=True)
    # images of patient k: order[start[k] : start[k] + count[k]], in image order (a stable sort)
    order = np.argsort(inverse, kind="stable")
    count = np.bincount(inverse, minlength=len(unique))
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    rng = np.random.default_rng(seed)
    stats = []
    for _ in range(n_boot):
        drawn = rng.integers(0, len(unique), size=len(unique))
        idx = order[_members(start[drawn], count[drawn])]  # every image of each drawn patient, in draw order
        try:
            stats.append(float(metric(*(a[idx] for a in arrays))))
        except ValueError:
            continue
    if not stats:
        return Estimate(value, float("nan"), float("nan"), 0)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(stats, [alpha, 1.0 - alpha])
    return Estimate(value, float(lo), float(hi), len(stats))


def _members(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenated ranges [starts[i], starts[i] + counts[i]) (a vectorised ``np.concatenate`` of ``arange``s)."""
    total = int(counts.sum())
    ends = np.cumsum(counts)
    return np.repeat(starts - (ends - counts), counts) + np.arange(total)
