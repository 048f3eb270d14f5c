"""What do frozen features know about the patient? Linear probes to record fields.

RAD-DINO (PAPERS.md) reports that its image-only features predict patient
metadata that reports never mention (sex, age, ...) better than
language-supervised features do: text supervision only rewards what a report
says. We test that with linear probes on frozen features ``[CLS, mean patch]``
(standardized on the training split):

| target | probe                                  | metrics                      |
|--------|----------------------------------------|------------------------------|
| age    | ridge regression (years)               | R², MAE in years             |
| sex    | logistic regression                    | AUROC                        |
| view   | logistic (one-vs-rest if > 2 views)    | AUROC (macro if > 2)         |
| site   | multinomial logistic                   | accuracy, macro AUROC (OvR)  |
| bmi    | ridge regression                       | R²                           |

The regularization strength is chosen on the ``val`` split, the probe refit on
train + val and scored on ``test`` with a patient-level bootstrap.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.linalg import LinAlgWarning
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import r2_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from raddino_lib.probe.bootstrap import Estimate, patient_bootstrap
from raddino_lib.probe.classification import auroc
from raddino_lib.results import metric


@dataclass(frozen=True)
class MetadataProbeConfig:
    alphas: tuple[float, ...] = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4)  # ridge grid; widen for many features
    Cs: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0, 10.0)  # inverse L2 strength grid of the logistic probes
    max_iter: int = 2000  # lbfgs iterations; raise if sklearn warns about convergence
    n_boot: int = 1000  # bootstrap resamples (patients) for the CIs
    seed: int = 0  # bootstrap seed

    def __post_init__(self) -> None:
        if not self.alphas or not self.Cs or min(self.alphas) <= 0 or min(self.Cs) <= 0:
            raise ValueError("MetadataProbeConfig: alphas and Cs must be non-empty and positive")


# target -> (manifest column, kind); kind "regression" or "classification"
TARGETS: dict[str, tuple[str, str]] = {
    "age": ("age", "regression"),
    "sex": ("sex", "classification"),
    "view": ("view", "classification"),
    "site": ("site", "classification"),
    "bmi": ("bmi", "regression"),
}


def _auroc(y: np.ndarray, scores: np.ndarray) -> float:
    """Binary AUROC for (N,) scores; for (N, K) probabilities the macro one-vs-rest AUROC over the classes
    present in ``y``. Raises ValueError when fewer than two classes are present (bootstrap skips the draw)."""
    if scores.ndim == 1:
        if len(np.unique(y)) < 2:
            raise ValueError("AUROC needs both classes")
        return auroc(y, scores)
    present = [k for k in range(scores.shape[1]) if 0 < np.sum(y == k) < len(y)]
    if len(present) < 2:
        raise ValueError("macro AUROC needs at least two classes")
    return float(np.mean([auroc(y == k, scores[:, k]) for k in present]))


def _accuracy(y: np.ndarray, scores: np.ndarray) -> float:
    pred = (scores > 0.5).astype(int) if scores.ndim == 1 else scores.argmax(1)
    return float(np.mean(pred == y))


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    """Coefficient of determination (sklearn's r2_score for 1-D targets); 1 - SSE / SST."""
    sst = float(np.sum((y - np.mean(y)) ** 2))
    if sst == 0:
        raise ValueError("R² is undefined when every target is the same")
    return 1.0 - float(np.sum((y - pred) ** 2)) / sst


def _target(df: pd.DataFrame, column: str, kind: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(values, present mask, class names); regression values are float years / units, classes are codes."""
    if column not in df.columns:
        return np.full(len(df), np.nan), np.zeros(len(df), bool), []
    raw = df[column]
    if kind == "regression":
        y = pd.to_numeric(raw, errors="coerce").to_numpy(float)
        return y, ~np.isnan(y), []
    text = raw.astype("string").fillna("").str.strip()
    present = (text != "").to_numpy()
    classes = sorted(set(text[present]))
    codes = np.array([classes.index(v) if v else -1 for v in text])
    return codes, present, classes


def _fit(kind: str, X: np.ndarray, y: np.ndarray, strength: float, cfg: MetadataProbeConfig) -> Pipeline:
    """Standardise, then ridge or logistic regression, in float64 whatever the features' dtype.

    sklearn keeps float32 features in float32, and a ridge solve in float32 fails on features that vary little
    between images (a collapsed encoder): with alpha 0.01 its normal matrix has a condition number beyond float32's
    precision, and the solution then depends on the BLAS thread count (age R² 0.52 with two threads, -87 with one,
    on the same features).
    """
    head = Ridge(alpha=strength) if kind == "regression" else LogisticRegression(C=strength, max_iter=cfg.max_iter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LinAlgWarning)  # small alphas on D > N: the grid search judges them on val
        return make_pipeline(StandardScaler(), head).fit(np.asarray(X, dtype=np.float64), y)


def _predict(kind: str, model: Pipeline, X: np.ndarray, n_classes: int = 2) -> np.ndarray:
    """Regression: (N,) predictions; binary: (N,) P(class 1); multiclass: (N, K) probabilities.

    Classes absent from the training rows get probability 0.
    """
    X = np.asarray(X, dtype=np.float64)
    if kind == "regression":
        return model.predict(X)
    proba = np.zeros((len(X), n_classes))
    proba[:, model[-1].classes_] = model.predict_proba(X)
    return proba[:, 1] if n_classes == 2 else proba


def _select(kind: str, X: np.ndarray, y: np.ndarray, split: np.ndarray, n_classes: int,
            cfg: MetadataProbeConfig) -> float:
    """The strength with the best val score (R² or AUROC); the smallest such strength on ties."""
    grid = cfg.alphas if kind == "regression" else cfg.Cs
    tr, va = split == "train", split == "val"
    one_class = kind == "classification" and (len(np.unique(y[va])) < 2 or len(np.unique(y[tr])) < 2)
    if va.sum() < 2 or one_class:
        return grid[len(grid) // 2]  # no usable val split: the middle of the grid
    best, best_score = grid[0], -np.inf
    for strength in grid:
        pred = _predict(kind, _fit(kind, X[tr], y[tr], strength, cfg), X[va], n_classes)
        score = r2_score(y[va], pred) if kind == "regression" else _safe(_auroc, y[va], pred)
        if score > best_score + 1e-12:
            best, best_score = strength, score
    return best


def _safe(fn, *args) -> float:
    try:
        return fn(*args)
    except ValueError:
        return -np.inf


@dataclass
class TargetProbe:
    """One fitted probe's test-set predictions and metrics."""

    target: str
    strength: float  # chosen ridge alpha or logistic C
    classes: list[str]  # class names (classification), [] for regression
    y_true: np.ndarray  # (n_test,) targets (years / class codes)
    y_score: np.ndarray  # (n_test,) predictions or P(class 1); (n_test, K) for multiclass
    patient_ids: np.ndarray  # (n_test,)
    metrics: dict[str, Estimate]


METRICS = {
    "regression": {"r2": _r2, "mae": lambda y, p: float(np.mean(np.abs(y - p)))},
    "classification": {"auroc": _auroc, "accuracy": _accuracy},
}


def probe_target(features: np.ndarray, manifest_df: pd.DataFrame, target: str,
                 cfg: MetadataProbeConfig = MetadataProbeConfig()) -> TargetProbe | None:
    """Fit and score one target; None when the manifest cannot support it (missing column, one class, no test).

    features: (N, D) aligned with the rows of ``manifest_df`` (which needs ``split`` and ``patient_id``).
    """
    column, kind = TARGETS[target]
    y, present, classes = _target(manifest_df, column, kind)
    split = manifest_df["split"].astype(str).to_numpy()
    train, test = present & np.isin(split, ("train", "val")), present & (split == "test")
    if train.sum() < 2 or test.sum() < 2 or (kind == "classification" and len(np.unique(y[train])) < 2):
        return None
    y_fit = y if kind == "regression" else np.where(present, y, 0)
    strength = _select(kind, features[present], y_fit[present], split[present], len(classes), cfg)
    model = _fit(kind, features[train], y_fit[train], strength, cfg)
    score = _predict(kind, model, features[test], len(classes))
    pids = manifest_df["patient_id"].astype(str).to_numpy()[test]
    metrics = {name: patient_bootstrap(fn, [y[test], score], pids, n_boot=cfg.n_boot, seed=cfg.seed)
               for name, fn in METRICS[kind].items() if _ok(fn, y[test], score)}
    return TargetProbe(target, strength, classes, y[test], score, pids, metrics)


def _ok(fn, y: np.ndarray, score: np.ndarray) -> bool:
    return np.isfinite(_safe(fn, y, score))


def probe_metadata(features: np.ndarray, manifest_df: pd.DataFrame, targets: Sequence[str] = tuple(TARGETS),
                   cfg: MetadataProbeConfig = MetadataProbeConfig()) -> dict[str, TargetProbe]:
    """Probe every target the manifest supports: {target: TargetProbe} (unsupported targets are left out)."""
    if len(features) != len(manifest_df):
        raise ValueError(f"probe_metadata: {len(features)} feature rows but {len(manifest_df)} manifest rows "
                         "(align them with align_features first)")
    with threadpool_limits(1):  # small problems: multi-threaded BLAS only spins, several times slower on busy cores
        probes = {t: probe_target(features, manifest_df, t, cfg) for t in targets}
    return {t: p for t, p in probes.items() if p is not None}


def probe_metadata_rows(features: Mapping[str, np.ndarray], manifest_df: pd.DataFrame,
                        targets: Sequence[str] = tuple(TARGETS),
                        cfg: MetadataProbeConfig = MetadataProbeConfig()) -> dict[str, dict[str, TargetProbe]]:
    """``probe_metadata`` for every row (encoder name -> aligned features); on a CPU the rows run side by side,
    one core each (``parallel.map_jobs``). Each row runs on one thread either way, so its numbers do not change."""
    from raddino_lib.parallel import map_jobs

    names = list(features)
    done = map_jobs(lambda name: probe_metadata(features[name], manifest_df, targets, cfg), names, names=names,
                    log=None)
    return dict(zip(names, done, strict=True))


def align_features(image_ids: Sequence[str], features: np.ndarray, manifest_df: pd.DataFrame) -> np.ndarray:
    """Reorder feature rows (one per ``image_ids``) to the manifest's row order → (len(manifest_df), D)."""
    position = {str(i): k for k, i in enumerate(image_ids)}
    missing = [str(i) for i in manifest_df["image_id"] if str(i) not in position]
    if missing:
        raise KeyError(f"align_features: {len(missing)} manifest images have no features (e.g. {missing[:3]}); "
                       "extract features from the same manifest (or clear the feature cache)")
    return features[[position[str(i)] for i in manifest_df["image_id"]]]


# results.json names of the headline metrics: (target, metric) -> column name
TABLE_NAMES: dict[tuple[str, str], str] = {
    ("age", "r2"): "age_r2", ("age", "mae"): "age_mae", ("sex", "auroc"): "sex_auroc",
    ("view", "auroc"): "view_auroc", ("site", "accuracy"): "site_accuracy", ("site", "auroc"): "site_auroc",
    ("bmi", "r2"): "bmi_r2", ("bmi", "mae"): "bmi_mae",
}


def table_row(probes: dict[str, TargetProbe]) -> dict[str, dict]:
    """One encoder's results.json row: {"age_r2": metric(...), ...}."""
    row = {}
    for (target, name), column in TABLE_NAMES.items():
        if target in probes and name in probes[target].metrics:
            est = probes[target].metrics[name]
            row[column] = metric(est.value, est.ci_low, est.ci_high)
    return row


def _interval(cell: dict | None) -> tuple[float, float, float] | None:
    if not cell or cell.get("value") is None or cell.get("ci_low") is None or cell.get("ci_high") is None:
        return None
    return cell["value"], cell["ci_low"], cell["ci_high"]


def compare_sentence(table: dict[str, dict], metric_name: str, a: str = "ssl", b: str = "language") -> str:
    """A sentence comparing encoders ``a`` and ``b`` on one metric, read off the numbers and their CIs."""
    ca, cb = _interval(table.get(a, {}).get(metric_name)), _interval(table.get(b, {}).get(metric_name))
    if ca is None or cb is None:
        return f"{metric_name}: '{a}' or '{b}' has no value with an interval here, so no comparison."
    lower_is_better = metric_name.endswith("_mae")
    better_a = ca[0] < cb[0] if lower_is_better else ca[0] > cb[0]
    separated = ca[1] > cb[2] or cb[1] > ca[2]
    lead, trail = (a, b) if better_a else (b, a)
    strength = "and the 95% intervals do not overlap" if separated else "but the 95% intervals overlap"
    return (f"{metric_name}: {a} {ca[0]:.3f} [{ca[1]:.3f}, {ca[2]:.3f}] vs {b} {cb[0]:.3f} [{cb[1]:.3f}, "
            f"{cb[2]:.3f}] — {lead} is {'lower' if lower_is_better else 'higher'} than {trail}, {strength}.")


def describe_metadata(table: dict[str, dict], metrics: Sequence[str] = ("age_r2", "age_mae", "sex_auroc")) -> str:
    """The paper's claim checked on this run: image-only SSL vs language-supervised (and vs random) features."""
    lines = [compare_sentence(table, m) for m in metrics]
    lines += [compare_sentence(table, m, "ssl", "random") for m in metrics[:1]]
    verdicts = []
    for m in metrics:
        ca, cb = _interval(table.get("ssl", {}).get(m)), _interval(table.get("language", {}).get(m))
        if ca and cb:
            verdicts.append(ca[1] > cb[2] if not m.endswith("_mae") else ca[2] < cb[1])
    if verdicts:
        supported = sum(verdicts)
        lines.append(f"On this run the claim (SSL features carry more age/sex information than language-supervised "
                     f"ones) is clearly supported by {supported} of {len(verdicts)} metrics.")
    return "\n".join(lines)
