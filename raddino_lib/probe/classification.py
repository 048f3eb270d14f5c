"""Linear probing: per-finding logistic regression on frozen features.

The encoder stays frozen; only a linear classifier is trained on its
features, so the score measures what the features already encode (DINOv2's
"linear evaluation"; RAD-DINO reports linear-probe AUROC/AUPRC on
ChestX-ray14, CheXpert, RSNA pneumonia and others). Two feature sets, as in
DINOv2's linear eval: the CLS token alone ("cls") and CLS concatenated with the
average of the patch tokens ("cls+mean_patch").

Recipe per finding: standardise features on the train split, fit an L2
logistic regression (lbfgs) for each C of a small grid, keep the C with the
best validation AUROC, report test AUROC/AUPRC with patient-level bootstrap
intervals. Macro scores average the per-finding scores over the findings that
could be probed (bootstrapped jointly, so the interval covers the average).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression  # imported here, so that threadpool_limits below reaches its BLAS
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from raddino_lib.probe.bootstrap import Estimate, patient_bootstrap

FEATURE_SETS: tuple[str, ...] = ("cls", "cls+mean_patch")
DEFAULT_CS: tuple[float, ...] = (0.01, 0.1, 1.0)  # inverse L2 strength; widen for large data (DINOv2 sweeps more)


# ===== metrics (rank-based, equal to sklearn's roc_auc_score / average_precision_score) =====

def auroc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann–Whitney U with tied ranks). Raises ValueError with one class."""
    y = np.asarray(y_true) > 0.5
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUROC needs both classes")
    order = np.argsort(score, kind="mergesort")
    s = np.asarray(score)[order]
    ranks = np.empty(len(s))
    boundaries = np.flatnonzero(np.diff(s)) + 1  # start of each run of tied scores
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(s)]])
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)  # mean 1-based rank of each tie run
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def auprc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Average precision (sklearn's step-wise AUPRC). Raises ValueError without positives."""
    y = np.asarray(y_true) > 0.5
    if not y.any():
        raise ValueError("AUPRC needs at least one positive")
    order = np.argsort(-np.asarray(score), kind="mergesort")
    s, yy = np.asarray(score)[order], y[order]
    last = np.concatenate([np.flatnonzero(np.diff(s)), [len(s) - 1]])  # last index of each threshold
    tp = np.cumsum(yy)[last]
    precision = tp / (last + 1)
    recall_gain = np.diff(np.concatenate([[0], tp])) / y.sum()
    return float((precision * recall_gain).sum())


def macro(metric, y_true: np.ndarray, score: np.ndarray) -> float:
    """Mean of ``metric`` over columns of (N, F) arrays, ignoring nan labels and undefined columns."""
    values = []
    for f in range(y_true.shape[1]):
        known = ~np.isnan(y_true[:, f])
        try:
            values.append(metric(y_true[known, f], score[known, f]))
        except ValueError:
            continue
    if not values:
        raise ValueError("no label is defined in this sample")
    return float(np.mean(values))


# ===== results =====

@dataclass
class ProbeResult:
    """Scores of one probe on the test split."""

    per_label: pd.DataFrame  # one row per probed finding: finding, n_train_pos, n_test_pos, C, auroc(+ci), auprc(+ci)
    macro_auroc: Estimate
    macro_auprc: Estimate
    scores: np.ndarray  # (N_test, F) predicted scores, columns = per_label.finding
    test_index: np.ndarray  # (N_test,) row positions of the test images
    skipped: dict[str, str] = field(default_factory=dict)  # finding -> why it was not probed


def select_labels(labels: np.ndarray, splits: np.ndarray, findings: Sequence[str],
                  min_count: int = 2) -> tuple[list[int], dict[str, str]]:
    """Columns with at least ``min_count`` positives and negatives in both train and test; reasons for the rest."""
    keep, skipped = [], {}
    for f, name in enumerate(findings):
        for split in ("train", "test"):
            y = labels[splits == split, f]
            y = y[~np.isnan(y)]
            n_pos, n_neg = int((y > 0.5).sum()), int((y <= 0.5).sum())
            if min(n_pos, n_neg) < min_count:
                skipped[name] = f"{n_pos} positives / {n_neg} negatives in {split} (need {min_count} of each)"
                break
        else:
            keep.append(f)
    return keep, skipped


def fit_label(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray | None = None,
              y_val: np.ndarray | None = None, cs: Sequence[float] = DEFAULT_CS, finding: str = "label"):
    """Fit standardised logistic regression for one label, choosing C on validation AUROC.

    Args:
        x_train: (N, D) features; y_train: (N,) 0/1.
        x_val, y_val: validation data; without both classes there, C = 1.0 (or the grid's middle).
    Returns:
        (fitted sklearn pipeline, chosen C)
    """
    classes = np.unique(y_train)
    if len(classes) < 2:
        raise ValueError(f"finding '{finding}': every train label is {classes.tolist()} - a probe needs positives "
                         "and negatives (check the manifest's label column or choose other findings)")

    def fit(c: float):
        return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000)).fit(x_train, y_train)

    can_select = y_val is not None and len(np.unique(y_val)) == 2 and len(cs) > 1
    if not can_select:
        c = 1.0 if 1.0 in cs else cs[len(cs) // 2]
        return fit(c), c
    fits = [(auroc(y_val, m.predict_proba(x_val)[:, 1]), -i, c, m) for i, c in enumerate(map(float, cs))
            for m in [fit(c)]]
    _, _, c, model = max(fits, key=lambda t: t[:2])  # best AUROC; ties go to the smallest C (strongest penalty)
    return model, c


def evaluate_scores(y_test: np.ndarray, scores: np.ndarray, patient_ids: np.ndarray, findings: Sequence[str],
                    n_boot: int = 1000, seed: int = 0) -> tuple[pd.DataFrame, Estimate, Estimate]:
    """Per-finding and macro AUROC/AUPRC with patient bootstrap intervals. y_test, scores: (N, F)."""
    rows = []
    for f, name in enumerate(findings):
        known = ~np.isnan(y_test[:, f])
        row = {"finding": name}
        for metric_name, fn in (("auroc", auroc), ("auprc", auprc)):
            est = patient_bootstrap(fn, [y_test[known, f], scores[known, f]], patient_ids[known], n_boot, seed=seed)
            row.update({metric_name: est.value, f"{metric_name}_ci_low": est.ci_low,
                        f"{metric_name}_ci_high": est.ci_high})
        rows.append(row)
    macro_est = [patient_bootstrap(lambda y, s, fn=fn: macro(fn, y, s), [y_test, scores], patient_ids, n_boot,
                                   seed=seed) for fn in (auroc, auprc)]
    return pd.DataFrame(rows), macro_est[0], macro_est[1]


def linear_probe(features: np.ndarray, labels: np.ndarray, splits: Sequence[str], patient_ids: Sequence,
                 findings: Sequence[str], cs: Sequence[float] = DEFAULT_CS, n_boot: int = 1000,
                 seed: int = 0, min_count: int = 2) -> ProbeResult:
    """Probe every finding that has enough positives; see the module docstring.

    Args:
        features: (N, D) frozen features of every image (all splits).
        labels: (N, F) 1/0, nan = unknown (rows with unknown labels are left out for that finding).
        splits: (N,) "train" / "val" / "test"; patient_ids: (N,).
        findings: (F,) names of the label columns.
    """
    x, y = np.asarray(features, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    splits, pids = np.asarray(splits), np.asarray(patient_ids)
    _check_shapes(x, y, splits, pids, findings)
    keep, skipped = select_labels(y, splits, findings, min_count)
    if not keep:
        raise ValueError(f"no finding can be probed: {skipped} (use a larger or more balanced manifest)")
    test = np.flatnonzero(splits == "test")
    scores, rows = np.full((len(test), len(keep)), np.nan), []
    with threadpool_limits(1):  # small problems: multi-threaded BLAS / OpenMP only spin (several times slower)
        for j, f in enumerate(keep):
            tr = (splits == "train") & ~np.isnan(y[:, f])
            va = (splits == "val") & ~np.isnan(y[:, f])
            model, c = fit_label(x[tr], y[tr, f], x[va], y[va, f], cs, finding=findings[f])
            scores[:, j] = model.predict_proba(x[test])[:, 1]
            rows.append({"C": c, "n_train_pos": int(y[tr, f].sum()), "n_test_pos": int(np.nansum(y[test, f]))})
    names = [findings[f] for f in keep]
    table, macro_auroc, macro_auprc = evaluate_scores(y[test][:, keep], scores, pids[test], names, n_boot, seed)
    table = pd.concat([table, pd.DataFrame(rows)], axis=1)
    return ProbeResult(table, macro_auroc, macro_auprc, scores, test, skipped)


def _check_shapes(x: np.ndarray, y: np.ndarray, splits: np.ndarray, pids: np.ndarray, findings: Sequence[str]):
    n = len(x)
    if y.ndim != 2 or y.shape[1] != len(findings):
        raise ValueError(f"labels have shape {y.shape}, expected (N, {len(findings)}) for findings {list(findings)}")
    if not (len(y) == len(splits) == len(pids) == n):
        raise ValueError(f"features ({n}), labels ({len(y)}), splits ({len(splits)}) and patient ids ({len(pids)}) "
                         "must have one row per image")
    if not (splits == "test").any() or not (splits == "train").any():
        raise ValueError("a probe needs 'train' and 'test' rows in the manifest's split column")
