import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from raddino_lib.probe.classification import auprc, auroc, fit_label, linear_probe, select_labels


def _toy(n=120, d=6, seed=0):
    """Two findings: A separable along feature 0, B along feature 1; patients own 2 images each."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = np.stack([x[:, 0] > 0, x[:, 1] > 0.3], axis=1).astype(float)
    x[:, 0] += np.where(y[:, 0] > 0, 1.0, -1.0)  # margin: linearly separable
    x[:, 1] += np.where(y[:, 1] > 0, 1.0, -1.0)
    splits = np.array(["train", "val", "test"])[np.arange(n) // 2 % 3]
    return x, y, splits, np.arange(n) // 2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rank_metrics_equal_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=200)
    s = rng.integers(0, 7, size=200).astype(float)  # many ties
    assert auroc(y, s) == pytest.approx(roc_auc_score(y, s))
    assert auprc(y, s) == pytest.approx(average_precision_score(y, s))


def test_separable_toy_problem_reaches_auroc_one_with_intervals():
    x, y, splits, pids = _toy()
    res = linear_probe(x, y, splits, pids, ["A", "B"], n_boot=30)
    assert res.per_label["auroc"].tolist() == pytest.approx([1.0, 1.0])
    assert res.macro_auroc.value == pytest.approx(1.0) and res.macro_auroc.ci_low == pytest.approx(1.0)
    assert res.macro_auprc.value == pytest.approx(1.0)
    assert res.scores.shape == ((splits == "test").sum(), 2)


def test_noise_features_give_chance_auroc():
    x, y, splits, pids = _toy(n=300)
    noise = np.random.default_rng(5).normal(size=x.shape)
    res = linear_probe(noise, y, splits, pids, ["A", "B"], n_boot=50)
    assert 0.3 < res.macro_auroc.value < 0.7
    assert res.macro_auroc.ci_low < 0.5 < res.macro_auroc.ci_high or abs(res.macro_auroc.value - 0.5) < 0.15


def test_rare_label_is_skipped_with_a_reason_and_unknowns_are_ignored():
    x, y, splits, pids = _toy()
    rare = np.zeros(len(x))
    rare[np.flatnonzero(splits == "test")[0]] = 1  # one positive, none in train
    y3 = np.column_stack([y, rare])
    y3[:5, 0] = np.nan  # unknown labels are left out, not counted as negatives
    res = linear_probe(x, y3, splits, pids, ["A", "B", "Rare"], n_boot=10)
    assert list(res.per_label["finding"]) == ["A", "B"]
    assert "0 positives" in res.skipped["Rare"] and "train" in res.skipped["Rare"]


def test_all_one_labels_raise_a_clear_error():
    x, y, splits, pids = _toy()
    ones = np.ones((len(x), 1))
    with pytest.raises(ValueError, match="no finding can be probed.*Everything"):
        linear_probe(x, ones, splits, pids, ["Everything"], n_boot=5)
    with pytest.raises(ValueError, match="finding 'Everything'.*every train label is \\[1.0\\]"):
        fit_label(x, ones[:, 0], finding="Everything")


def test_select_labels_counts_both_classes():
    y = np.array([[1, 0], [0, 0], [1, 0], [0, 1], [1, 1], [0, 1], [1, 1], [0, 0]], dtype=float)
    splits = np.array(["train"] * 4 + ["test"] * 4)
    keep, skipped = select_labels(y, splits, ["a", "b"])
    assert keep == [0] and "1 positives" in skipped["b"]


def test_mismatched_shapes_are_rejected():
    x, y, splits, pids = _toy()
    with pytest.raises(ValueError, match="expected \\(N, 3\\)"):
        linear_probe(x, y, splits, pids, ["A", "B", "C"])
