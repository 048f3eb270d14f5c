import numpy as np
import pytest

from raddino_lib.probe.bootstrap import patient_bootstrap


def _mean(x):
    return float(np.mean(x))


def test_interval_matches_normal_theory_for_a_mean():
    rng = np.random.default_rng(0)
    x = rng.normal(size=2000)
    est = patient_bootstrap(_mean, [x], np.arange(2000), n_boot=2000, seed=1)
    se = x.std(ddof=1) / np.sqrt(len(x))
    assert est.value == pytest.approx(x.mean())
    assert est.ci_low == pytest.approx(x.mean() - 1.96 * se, abs=0.25 * se)
    assert est.ci_high == pytest.approx(x.mean() + 1.96 * se, abs=0.25 * se)


def test_patients_are_resampled_whole():
    # 50 patients, 20 identical images each: the effective sample size is 50, not 1000,
    # so the interval must be as wide as for 50 independent values.
    rng = np.random.default_rng(0)
    per_patient = rng.normal(size=50)
    x = np.repeat(per_patient, 20)
    pids = np.repeat(np.arange(50), 20)
    grouped = patient_bootstrap(_mean, [x], pids, n_boot=1000, seed=0)
    naive = patient_bootstrap(_mean, [x], np.arange(1000), n_boot=1000, seed=0)
    width = grouped.ci_high - grouped.ci_low
    expected = 2 * 1.96 * per_patient.std(ddof=1) / np.sqrt(50)
    assert width == pytest.approx(expected, rel=0.2)
    assert width > 3 * (naive.ci_high - naive.ci_low)


def test_undefined_resamples_are_skipped_and_counted():
    def needs_both_classes(y):
        if len(np.unique(y)) < 2:
            raise ValueError("one class")
        return float(np.mean(y))

    y = np.array([0, 1, 0, 0])
    est = patient_bootstrap(needs_both_classes, [y], np.arange(4), n_boot=200, seed=0)
    assert 0 < est.n_boot < 200  # (3/4)^4 of resamples draw no positive


def test_length_mismatch_is_reported():
    with pytest.raises(ValueError, match="patient_ids has 3"):
        patient_bootstrap(_mean, [np.zeros(4)], np.arange(3))


def test_each_resample_takes_every_image_of_each_drawn_patient_in_draw_order():
    rng = np.random.default_rng(1)
    pids = rng.integers(0, 70, 150)
    flags = np.arange(150)
    seen = []
    patient_bootstrap(lambda a: seen.append(a.copy()) or 0.0, [flags], pids, n_boot=20, seed=3)
    unique, inverse = np.unique(pids, return_inverse=True)
    members = [np.flatnonzero(inverse == k) for k in range(len(unique))]  # images of each patient, by hand
    draws = np.random.default_rng(3)
    for resample in seen[1:]:  # seen[0] is the full set
        drawn = draws.integers(0, len(unique), size=len(unique))
        np.testing.assert_array_equal(resample, np.concatenate([members[k] for k in drawn]))
