"""The recipe sweep: resumable bookkeeping, its table, and one real toy arm end to end."""

import json
import math

import pytest

from raddino_lib.experiments import recipe_sweep as rs


def _record(arm, dino=0.9, best=0.5):
    return {"data": "toy", "arm": arm.name, "note": arm.note, "overrides": json.loads(json.dumps(arm.overrides)),
            "steps": 150, "wall_s": 1.0, "dino_over_log_k": dino, "teacher_entropy": 0.8, "student_entropy": 0.9,
            "cls_std_start": 0.03, "cls_std": 0.06, "val_kind": "accuracy", "val_init": 0.2,
            "val": [[50, 0.3], [100, best]], "val_best": best}


def test_sweep_resumes_skips_finished_arms_and_reruns_changed_ones(tmp_path, monkeypatch):
    calls = []

    def fake_run_arm(kind, arm, root, device="cpu", test=False):
        calls.append(arm.name)
        return _record(arm)

    monkeypatch.setattr(rs, "run_arm", fake_run_arm)
    b = rs.Arm("b", {"global_crops_scale": (0.6, 1.0)})
    monkeypatch.setitem(rs.SWEEPS, "toy", [rs.Arm("a", {"out_dim": 16}), b])
    out = tmp_path / "sweep.json"
    rs.run_sweep("toy", out, tmp_path)
    assert calls == ["a", "b"]
    rs.run_sweep("toy", out, tmp_path)  # nothing left to do (tuples and lists compare equal through JSON)
    assert calls == ["a", "b"]
    monkeypatch.setitem(rs.SWEEPS, "toy", [rs.Arm("a", {"out_dim": 32}), b])
    rs.run_sweep("toy", out, tmp_path)  # arm a changed: rerun, and its new record replaces the old one
    assert calls == ["a", "b", "a"]
    records = rs.load_sweep(out)
    assert sorted(r["arm"] for r in records) == ["a", "b"]
    assert next(r for r in records if r["arm"] == "a")["overrides"] == {"out_dim": 32}


def test_table_has_one_row_per_arm_with_the_val_scores():
    records = [_record(rs.Arm("x"), dino=0.99, best=0.6), _record(rs.Arm("y"), dino=0.8, best=0.3)]
    table = rs.sweep_table(records)
    assert list(table.index) == ["x", "y"]
    assert table.loc["x", "val accuracy, best"] == 0.6 and table.loc["y", "DINO loss / log K"] == 0.8
    assert table.loc["x", "val accuracy, last"] == 0.6  # the last of the val curve


def test_unknown_arm_and_data_are_refused(tmp_path):
    with pytest.raises(SystemExit):
        rs.main(["--data", "toy", "--out", str(tmp_path / "s.json"), "--arms", "no_such_arm"])
    with pytest.raises(ValueError, match="unknown sweep data"):
        rs._data("mnist", tmp_path)


def test_recorded_sweeps_are_complete_and_consistent():
    """The sweeps notebook 01 shows: every arm of SWEEPS recorded, with its current overrides."""
    for kind in ("toy", "phantoms", "phantoms_gpu"):
        records = {r["arm"]: r for r in rs.load_sweep(rs.RESULTS_DIR / f"recipe_sweep_{kind}.json")}
        assert set(records) == {a.name for a in rs.SWEEPS[kind]}
        for arm in rs.SWEEPS[kind]:
            r = records[arm.name]
            assert r["overrides"] == json.loads(json.dumps(arm.overrides))
            assert 0 < r["dino_over_log_k"] < 1.2 and 0 <= r["val_best"] <= 1
            assert r["val_best"] == max(v for _, v in r["val"])
    toy = {r["arm"]: r for r in rs.load_sweep(rs.RESULTS_DIR / "recipe_sweep_toy.json")}
    long = toy.pop("combined_1200")  # with time the loss leaves log K and the toy probe scores its best
    assert long["dino_over_log_k"] < 0.8 < toy["combined"]["dino_over_log_k"]
    assert long["val_best"] > max(r["val_best"] for r in toy.values())


def test_recorded_gpu_arms_test_split_ssl_leaves_random_init_with_steps():
    """The phantoms' combined recipe on a GPU (notebook 01 section 7): the test probes of its best teacher against
    its random init. Every arm starts from the same init (seed 0), so the random rows agree; at 600 steps the
    intervals overlap, at 1,200 and 2,000 they are apart, and the SSL score grows with the steps."""
    records = rs.load_sweep(rs.RESULTS_DIR / "recipe_sweep_phantoms_gpu.json")
    assert [r["steps"] for r in records] == [600, 1200, 2000]
    assert all(r["device"].startswith("NVIDIA") for r in records)
    for r in records:
        for enc in ("ssl", "random"):
            for value, low, high in r["test"][enc].values():
                assert low <= value <= high
    assert all(r["test"]["random"] == records[0]["test"]["random"] for r in records)
    table = rs.test_table(records)
    assert list(table["apart, [CLS]"]) == [False, True, True]
    ssl = [r["test"]["ssl"]["cls"][0] for r in records]
    assert ssl == sorted(ssl) and records[-1]["dino_over_log_k"] < 0.8


def test_test_table_reads_the_intervals():
    arm = rs.Arm("x")
    apart = {"ssl": {"cls": [0.75, 0.72, 0.78], "clsmean": [0.70, 0.66, 0.74]},
             "random": {"cls": [0.63, 0.58, 0.68], "clsmean": [0.66, 0.61, 0.70]}}
    table = rs.test_table([_record(arm), {**_record(rs.Arm("y")), "test": apart}])
    assert list(table.index) == ["y"]  # arms without test probes are left out
    assert bool(table.loc["y", "apart, [CLS]"]) and not bool(table.loc["y", "apart, [CLS, mean patch]"])
    assert table.loc["y", "SSL, [CLS]"] == "0.750 [0.720, 0.780]"
    with pytest.raises(ValueError, match="no arm was run with test probes"):
        rs.test_table([_record(arm)])


def test_test_probes_are_refused_on_toy_shapes_before_any_training(tmp_path, monkeypatch):
    monkeypatch.setattr(rs, "_data", lambda kind, root: (tmp_path / "manifest.csv", 32, "shape"))
    with pytest.raises(ValueError, match="test probes need the phantoms' findings"):
        rs.run_arm("toy", rs.Arm("a"), tmp_path, test=True)
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_one_phantoms_arm_with_test_probes_records_both_encoders(tmp_path, monkeypatch):
    from raddino_lib.data.phantoms import generate

    manifest = generate(tmp_path / "ph", n=48, size=32, seed=0, balanced=True)
    monkeypatch.setattr(rs, "_data", lambda kind, root: (manifest, 32, ""))
    monkeypatch.setitem(rs.BASES, "phantoms", {**rs.BASES["phantoms"], "max_steps": 4, "eval_every": 2,
                                               "batch_size": 8, "global_crop_size": 32, "local_crop_size": 16})
    record = rs.run_arm("phantoms", rs.Arm("tiny", {}), tmp_path, test=True)
    assert set(record["test"]) == {"ssl", "random"} and record["device"].startswith("cpu")
    for enc in ("ssl", "random"):
        value, low, high = record["test"][enc]["clsmean"]
        assert 0 <= low <= value <= high <= 1


@pytest.mark.slow
def test_one_toy_arm_runs_and_records_every_field(tmp_path, monkeypatch):
    monkeypatch.setitem(rs.BASES, "toy", {**rs.BASES["toy"], "max_steps": 6, "eval_every": 3, "batch_size": 8})
    record = rs.run_arm("toy", rs.Arm("tiny", {"layer_scale_init": 0.1}), tmp_path)
    assert [s for s, _ in record["val"]] == [3, 6]
    assert record["val_kind"] == "accuracy" and 0 <= record["val_init"] <= 1
    assert 0 < record["dino_over_log_k"] < 1.5 and math.isfinite(record["cls_std"])


@pytest.mark.slow
def test_toy_shapes_a_short_run_learns_the_classes_far_better_than_random_init(tmp_path):
    """The recorded sweep's best 150-step arm, rerun: the teacher's [CLS] separates the 8 shapes (kNN on val)."""
    arm = next(a for a in rs.SWEEPS["toy"] if a.name == "teacher_momentum_0.9")
    record = rs.run_arm("toy", arm, tmp_path)
    assert record["val_init"] < 0.3  # 8 classes: chance is 0.125
    assert record["val_best"] >= record["val_init"] + 0.1 and record["val_best"] >= 1.5 * record["val_init"]


def test_outside_comparison_is_recorded_for_every_run_and_tabled_beside_the_package_arms():
    """The plain-DINO runs with an outside library (experiments/outside_dino.py), recorded for notebook 01."""
    from raddino_lib.experiments import outside_dino as od

    records = od.load_outside(rs.RESULTS_DIR / "outside_dino_toy.json")
    assert [r["run"] for r in records] == [name for name, _, _ in od.RUNS]
    for r, (_, steps, _) in zip(records, od.RUNS, strict=True):
        assert r["steps"] == steps and r["val"][-1][0] == steps and r["library"].startswith("lightly ")
        assert 0 < r["dino_over_log_k"] < 1.2 and r["val_best"] == max(v for _, v in r["val"])
    sweep = rs.load_sweep(rs.RESULTS_DIR / "recipe_sweep_toy.json")
    table = od.comparison_table(records, sweep)
    assert list(table.index) == [*(name for name, _, _ in od.RUNS), "base", "plain_dino_600"]
    assert table.loc["plain_dino_600", "steps"] == 600 and table.loc["base", "peak lr"] == pytest.approx(5e-4)
    assert table.loc["lightly_600", "val accuracy, last"] == records[1]["val"][-1][1]


def test_test_by_steps_figure_has_one_point_per_arm_for_each_probe():
    import matplotlib.pyplot as plt

    from raddino_lib.viz.training import plot_test_by_steps

    records = rs.load_sweep(rs.RESULTS_DIR / "recipe_sweep_phantoms_gpu.json")
    fig = plot_test_by_steps(records[::-1])  # sorted by steps whatever the order given
    left, right = fig.axes[:2]
    assert len(left.containers) == 2  # one errorbar series per probe
    for container, probe in zip(left.containers, ("cls", "clsmean"), strict=True):
        assert list(container.lines[0].get_xdata()) == [600, 1200, 2000]
        assert list(container.lines[0].get_ydata()) == [r["test"]["ssl"][probe][0] for r in records]
    assert len(right.lines) == len(records)
    plt.close(fig)
    with pytest.raises(ValueError, match="no arm with test probes"):
        plot_test_by_steps([{k: v for k, v in r.items() if k != "test"} for r in records])
