import numpy as np
import pytest

from raddino_lib.probe.knn import knn_probe, knn_scores


def test_clustered_points_vote_for_their_cluster():
    rng = np.random.default_rng(0)
    centers = np.eye(4)[:3] * 5  # three well separated directions
    labels_of_cluster = np.array([[1, 0], [0, 1], [1, 1]], dtype=float)
    cluster = np.repeat(np.arange(3), 30)
    train = centers[cluster] + rng.normal(scale=0.3, size=(90, 4))
    query = centers[[0, 1, 2]] + rng.normal(scale=0.3, size=(3, 4))
    scores = knn_scores(train, labels_of_cluster[cluster], query, k=20)
    assert scores == pytest.approx(labels_of_cluster, abs=1e-6)


def test_votes_are_temperature_weighted():
    train = np.array([[1.0, 0.0], [0.6, 0.8]])  # cos to query: 1.0 and 0.6
    y = np.array([[1.0], [0.0]])
    s = knn_scores(train, y, np.array([[1.0, 0.0]]), k=2, temperature=0.1)
    w1, w2 = np.exp(1.0 / 0.1), np.exp(0.6 / 0.1)
    assert s[0, 0] == pytest.approx(w1 / (w1 + w2))
    assert knn_scores(train, y, np.array([[1.0, 0.0]]), k=2, temperature=100.0)[0, 0] == pytest.approx(0.5, abs=0.01)


def test_unknown_labels_do_not_vote():
    train = np.array([[1.0, 0.0], [0.99, 0.01], [0.0, 1.0]])
    y = np.array([[np.nan], [0.0], [1.0]])
    s = knn_scores(train, y, np.array([[1.0, 0.0]]), k=1)
    assert s[0, 0] == 0.0


def test_knn_probe_on_clusters_reaches_auroc_one():
    rng = np.random.default_rng(1)
    n = 150
    y = rng.integers(0, 2, size=(n, 1)).astype(float)
    x = np.where(y > 0, 1.0, -1.0) * np.array([[3.0, 0, 0]]) + rng.normal(scale=0.5, size=(n, 3)) + [[0, 0, 4.0]]
    splits = np.array(["train", "test", "val"])[np.arange(n) % 3]
    res = knn_probe(x, y, splits, np.arange(n), ["F"], n_boot=20)
    assert res.macro_auroc.value == pytest.approx(1.0)
    assert res.per_label.loc[0, "k"] == 20
