"""Do patient factors leak through global image statistics?

A phantom's sex or age must be readable only from anatomy (breast shadows,
thoracic shape, calcified cartilage, the aortic knob, bone texture), never from
a number that summarises the whole image: its mean, spread, percentiles,
histogram or noise level. ``global_statistics`` computes those numbers for one
image; ``leak_scores`` fits simple models on them with patient-grouped
cross-validation and reports how well they recover sex (AUROC) and age (R²).
Near chance (AUROC 0.5, R² 0) means no global shortcut.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import r2_score, roc_auc_score
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

PERCENTILES: tuple[float, ...] = (1, 5, 10, 25, 50, 75, 90, 95, 99)
HISTOGRAM_BINS = 16


def statistic_names() -> list[str]:
    """Names of the :func:`global_statistics` entries, in order."""
    return (["mean", "std", "skew", "kurtosis"] + [f"p{p:g}" for p in PERCENTILES]
            + [f"hist{i}" for i in range(HISTOGRAM_BINS)] + ["noise", "gradient"])


def global_statistics(image: np.ndarray) -> np.ndarray:
    """(H, W) uint8 image → (K,) float64: moments, percentiles, a 16-bin histogram, noise and edge energy.

    ``noise``: median absolute Laplacian (robust detector-noise estimate); ``gradient``: mean absolute
    gradient (global contrast of edges). K = len(statistic_names()).
    """
    a = np.asarray(image, dtype=np.float64) / 255.0
    mean, std = a.mean(), a.std() + 1e-9
    z = (a - mean) / std
    hist = np.histogram(a, bins=HISTOGRAM_BINS, range=(0.0, 1.0))[0] / a.size
    lap = 4 * a[1:-1, 1:-1] - a[:-2, 1:-1] - a[2:, 1:-1] - a[1:-1, :-2] - a[1:-1, 2:]
    grad = np.abs(np.diff(a, axis=0)).mean() + np.abs(np.diff(a, axis=1)).mean()
    return np.concatenate([[mean, std, (z ** 3).mean(), (z ** 4).mean()], np.percentile(a, PERCENTILES), hist,
                           [np.median(np.abs(lap)), grad]])


def manifest_statistics(manifest: str | Path, rows: Sequence[int] | None = None) -> np.ndarray:
    """(N, K) global statistics of the manifest's images (all rows, or ``rows``)."""
    manifest = Path(manifest)
    df = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    paths = df["path"] if rows is None else df["path"].iloc[list(rows)]
    return np.stack([global_statistics(np.asarray(Image.open(manifest.parent / p).convert("L"))) for p in paths])


def leak_scores(stats: np.ndarray, sex: Sequence[str], age: Sequence[float], patient_ids: Sequence[str],
                folds: int = 5, seed: int = 0) -> dict[str, float]:
    """Patient-grouped ``folds``-fold CV of global statistics → {"sex_auroc", "age_r2"} (out-of-fold).

    Sex: L2 logistic regression; age: ridge regression; both on standardised statistics, with a fixed,
    moderate penalty (no tuning on the test folds).
    """
    x = np.asarray(stats, dtype=np.float64)
    male = (np.asarray(sex) == "M").astype(int)
    years = np.asarray(age, dtype=np.float64)
    groups = np.asarray(patient_ids)
    if len(np.unique(male)) < 2:
        raise ValueError("leak_scores: sex needs both 'M' and 'F' among the images")
    if len(np.unique(groups)) < folds:
        raise ValueError(f"leak_scores: {len(np.unique(groups))} patients cannot fill {folds} folds")
    sex_score, age_pred = np.zeros(len(x)), np.zeros(len(x))
    order = np.random.default_rng(seed).permutation(len(x))  # GroupKFold is deterministic in row order
    for train, test in GroupKFold(n_splits=folds).split(x[order], groups=groups[order]):
        tr, te = order[train], order[test]
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000)).fit(x[tr], male[tr])
        sex_score[te] = clf.decision_function(x[te])
        reg = make_pipeline(StandardScaler(), Ridge(alpha=1.0)).fit(x[tr], years[tr])
        age_pred[te] = reg.predict(x[te])
    return {"sex_auroc": float(roc_auc_score(male, sex_score)), "age_r2": float(r2_score(years, age_pred))}
