"""Metadata probes recover signals planted in synthetic features, and find nothing in noise."""

import numpy as np
import pandas as pd
import pytest

from raddino_lib.probe.metadata import MetadataProbeConfig, align_features, probe_metadata, table_row
from raddino_lib.viz.embeddings import embed_2d, pc_metadata_correlation

CFG = MetadataProbeConfig(n_boot=30)


def _manifest(n: int = 240, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Two images per patient; features (n, 12) with age, sex and site planted linearly."""
    rng = np.random.default_rng(seed)
    patients = np.repeat(np.arange(n // 2), 2)
    split = np.array(["train"] * 6 + ["val"] + ["test"] * 3)[patients % 10]
    X = rng.normal(size=(n, 12))
    age = 50 + 12 * X[:, 0] - 6 * X[:, 1]  # exact linear signal, years
    sex = np.where(X[:, 2] > 0, "M", "F")
    site = np.array(["a", "b", "c"])[np.argmax(X[:, 3:6], axis=1)]
    df = pd.DataFrame({"image_id": [f"img{i}" for i in range(n)], "patient_id": [f"p{p}" for p in patients],
                       "split": split, "age": age, "sex": sex, "view": np.where(X[:, 6] > 0, "PA", "AP"),
                       "site": site})
    return df, X


def test_recovers_planted_age_sex_view_site():
    df, X = _manifest()
    probes = probe_metadata(X, df, cfg=CFG)
    assert set(probes) == {"age", "sex", "view", "site"}  # no bmi column -> no bmi probe
    assert probes["age"].metrics["r2"].value > 0.98
    assert probes["age"].metrics["mae"].value < 1.5  # years, on an age sd of ~13
    assert probes["sex"].metrics["auroc"].value > 0.95
    assert probes["view"].metrics["auroc"].value > 0.95
    assert probes["site"].metrics["accuracy"].value > 0.8
    assert probes["site"].y_score.shape[1] == 3  # three sites -> (n_test, 3) probabilities
    row = table_row(probes)
    assert {"age_r2", "age_mae", "sex_auroc", "view_auroc", "site_accuracy"} <= set(row)
    assert row["age_r2"]["ci_low"] <= row["age_r2"]["value"] <= row["age_r2"]["ci_high"]


def test_random_features_carry_no_age():
    df, _ = _manifest(seed=1)
    noise = np.random.default_rng(2).normal(size=(len(df), 12))
    probes = probe_metadata(noise, df, targets=("age", "sex"), cfg=CFG)
    assert probes["age"].metrics["r2"].value == pytest.approx(0.0, abs=0.15)
    assert probes["sex"].metrics["auroc"].value == pytest.approx(0.5, abs=0.2)


def test_align_features_follows_the_manifest_and_names_missing_images():
    df, X = _manifest(n=8)
    order = np.arange(8)[::-1]
    ids = df["image_id"].to_numpy()[order]
    np.testing.assert_array_equal(align_features(ids, X[order], df), X)
    with pytest.raises(KeyError, match="img0"):
        align_features(ids[:-1], X[order][:-1], df)


def test_embedding_falls_back_to_pca_for_few_samples_and_pcs_correlate_with_age():
    df, X = _manifest(n=12)
    coords, method = embed_2d(X, seed=0)
    assert coords.shape == (12, 2) and method.startswith("PCA")
    df, X = _manifest(n=200)
    X = X.copy()
    X[:, 0] *= 10  # the first feature dominates the variance -> PC1 is it, and age is 12/sqrt(12²+6²) of it
    corr = pc_metadata_correlation(X, df, n_components=3)
    assert abs(corr.loc["PC1", "age"]) == pytest.approx(12 / np.sqrt(180), abs=0.05)
    assert abs(corr.loc["PC1", "sex=M"]) < 0.3


def test_claim_sentence_follows_the_intervals():
    from raddino_lib.probe.metadata import compare_sentence, describe_metadata

    def cell(v, lo, hi):
        return {"value": v, "ci_low": lo, "ci_high": hi}

    table = {"ssl": {"age_r2": cell(0.6, 0.5, 0.7), "age_mae": cell(5.0, 4.0, 6.0), "sex_auroc": cell(0.8, 0.7, 0.9)},
             "language": {"age_r2": cell(0.2, 0.1, 0.3), "age_mae": cell(5.5, 4.5, 6.5),
                          "sex_auroc": cell(0.6, 0.5, 0.75)}}
    assert "ssl is higher than language, and the 95% intervals do not overlap" in compare_sentence(table, "age_r2")
    assert "ssl is lower than language, but the 95% intervals overlap" in compare_sentence(table, "age_mae")
    assert "supported by 1 of 3 metrics" in describe_metadata(table)
    assert "no comparison" in compare_sentence(table, "age_r2", "ssl", "random")


def test_site_auroc_interval_survives_draws_missing_a_site():
    df, X = _manifest(n=60, seed=3)
    probes = probe_metadata(X, df, targets=("site",), cfg=CFG)
    est = probes["site"].metrics["auroc"]
    assert est.n_boot > 0 and est.ci_low <= est.value <= est.ci_high


def test_fast_metrics_equal_sklearn():
    from sklearn.metrics import r2_score, roc_auc_score

    from raddino_lib.probe import metadata as md

    rng = np.random.default_rng(4)
    y, pred = rng.normal(size=50), rng.normal(size=50)
    assert md._r2(y, pred) == pytest.approx(r2_score(y, pred))
    labels, probs = rng.integers(0, 3, size=60), rng.dirichlet(np.ones(3), size=60)
    expected = np.mean([roc_auc_score(labels == k, probs[:, k]) for k in range(3)])
    assert md._auroc(labels, probs) == pytest.approx(expected)
    assert md._accuracy(labels, probs) == pytest.approx(np.mean(probs.argmax(1) == labels))


def test_map_sample_is_a_sorted_subset_and_all_rows_when_few():
    from raddino_lib.viz.embeddings import map_sample

    rows = map_sample(3000, max_points=1000, seed=1)
    assert len(rows) == 1000 and len(set(rows)) == 1000 and np.all(np.diff(rows) > 0) and rows.max() < 3000
    np.testing.assert_array_equal(map_sample(3000, 1000, seed=1), rows)
    np.testing.assert_array_equal(map_sample(20, 1000), np.arange(20))


def test_rows_side_by_side_equal_rows_in_turn(monkeypatch):
    from raddino_lib.probe.metadata import probe_metadata_rows
    from raddino_lib.viz.embeddings import embed_rows

    df, X = _manifest()
    rows = {"planted": X, "noise": np.random.default_rng(3).normal(size=X.shape)}
    monkeypatch.setenv("RADDINO_WORKERS", "2")
    probes = probe_metadata_rows(rows, df, targets=("age", "sex", "site"), cfg=CFG)
    maps = embed_rows(rows, seed=0, method="pca")
    assert list(probes) == list(maps) == ["planted", "noise"]
    for name, x in rows.items():
        alone = probe_metadata(x, df, targets=("age", "sex", "site"), cfg=CFG)
        assert table_row(probes[name]) == table_row(alone)  # one thread either way: equal to the last bit
        np.testing.assert_array_equal(probes[name]["site"].y_score, alone["site"].y_score)
        coords, method = embed_2d(x, seed=0, method="pca")
        np.testing.assert_array_equal(maps[name][0], coords)
        assert maps[name][1] == method == "PCA"
    assert probes["planted"]["age"].metrics["r2"].value > 0.98 > 0.2 > probes["noise"]["age"].metrics["r2"].value


def test_ridge_probe_is_the_float64_closed_form_on_float32_features_that_barely_vary():
    """Features of a collapsed encoder: a common offset plus variation a thousandth of it. The age probe's ridge
    must equal the closed form (standardise, solve (ZᵀZ + αI) w = Zᵀ(y - ȳ)) computed by hand in float64, whatever
    the BLAS thread count; sklearn solving in float32 missed it by about 1e-4 here, and by an R² of 0.52 against
    -87 on notebook 08's KoLeo-off arm."""
    from threadpoolctl import threadpool_limits

    from raddino_lib.probe.metadata import _fit, _predict

    rng = np.random.default_rng(0)
    n, d, alpha = 400, 300, 0.01
    latent = rng.normal(size=(n, 12))
    x = (0.3 + 1e-3 * (latent @ rng.normal(size=(12, d))) + 1e-7 * rng.normal(size=(n, d))).astype(np.float32)
    y = 50 + 10 * latent[:, 0] + rng.normal(size=n)
    x64 = x.astype(np.float64)
    z = (x64 - x64.mean(0)) / x64.std(0)
    w = np.linalg.solve(z.T @ z + alpha * np.eye(d), z.T @ (y - y.mean()))
    expected = z @ w + y.mean()
    for threads in (1, 2):
        with threadpool_limits(threads):
            pred = _predict("regression", _fit("regression", x, y, alpha, MetadataProbeConfig()), x)
        np.testing.assert_allclose(pred, expected, rtol=0, atol=1e-8)
