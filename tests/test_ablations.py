"""Notebook 08's arms: the grid, the data each arm pretrains on, the bookkeeping (skip, rerun, resume) on tiny
runs, the verdicts, and the claims/summary plumbing that reads them."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from raddino_lib import claims
from raddino_lib.data.manifest import read_manifest
from raddino_lib.data.phantoms import generate
from raddino_lib.experiments import ablations as A
from raddino_lib.probe.pixels import PIXELS_SOURCE
from raddino_lib.results import metric, write_results
from raddino_lib.summary import WIDE_TABLE, notebook_table, render_markdown

BASE = A.base_config("short", arch="vit_tiny", patch_size=8, depth=1, global_crop_size=64, local_crop_size=32,
                     n_local_crops=2, batch_size=16, max_steps=60, out_dim=64)


def test_grid_names_one_arm_per_question_and_holds_the_rest_equal():
    arms = A.build_arms(BASE, [2000, 250, 500], [15, 30, 60], small_crop=48)
    by = {a.name: a for a in arms}
    assert list(by) == ["base", "images_250", "images_500", "images_250_epochs", "images_500_epochs", "steps_15",
                        "steps_30", "one_site_500", "crop_48", "no_ibot", "no_koleo", "softmax_centering",
                        "other_family", "continual"]
    assert by["base"].n_images == 2000 and by["base"].overrides == {}
    assert by["images_250"].overrides == {} and by["images_250"].n_images == 250  # equal steps
    # equal epochs: 60 steps x 16 images over 2000 images = 0.48 passes; 250 images need 7.5 -> 8 steps
    assert by["images_250_epochs"].overrides == {"max_steps": 8}
    assert by["images_500_epochs"].overrides == {"max_steps": 15}
    assert by["steps_15"].overrides == {"max_steps": 15} and by["steps_15"].n_images == 2000
    assert by["one_site_500"].site == "largest" and by["one_site_500"].n_images == 500
    # tokens per image: 2 x (64/8)^2 + 2 x (32/8)^2 = 160 at the base, 2 x 36 + 2 x 9 = 90 at 48/24 px
    assert by["crop_48"].overrides == {"global_crop_size": 48, "local_crop_size": 24, "batch_size": 28}
    assert by["crop_48"].probe_size == 48
    assert by["no_ibot"].overrides == {"ibot_weight": 0.0, "mask_probability": 0.0}
    assert by["softmax_centering"].overrides == {"centering": "softmax"}  # the short-run base uses Sinkhorn
    assert by["continual"].init_from == "other_family" and by["other_family"].family == "shapes"
    dinov2 = A.base_config("dinov2", **{k: v for k, v in BASE.items() if k not in ("centering", "teacher_temp")})
    assert any(a.name == "sinkhorn_centering" for a in A.build_arms(dinov2, [10], [60], groups=["recipe"]))


def test_grid_refuses_what_it_cannot_run():
    with pytest.raises(ValueError, match="largest of steps"):
        A.build_arms(BASE, [100], [15, 30])
    with pytest.raises(ValueError, match="unknown ablation groups"):
        A.build_arms(BASE, [100], [60], groups=["size"])
    with pytest.raises(ValueError, match="multiple of the patch size"):
        A.build_arms(BASE, [100], [60], small_crop=50, groups=["resolution"])
    with pytest.raises(ValueError, match="recipe"):
        A.base_config("dino")


def test_select_arms_adds_the_arm_a_run_starts_from():
    arms = A.build_arms(BASE, [100, 400], [60], groups=["data size", "initialisation"])
    assert [a.name for a in A.select_arms(arms, ["continual"])] == ["other_family", "continual"]
    assert [a.name for a in A.select_arms(arms, ["", ""])] == [a.name for a in arms]
    with pytest.raises(ValueError, match="unknown arms"):
        A.select_arms(arms, ["images_7"])


def test_sizes_as_counts_or_shares_of_the_train_split():
    assert A.resolve_sizes("250, 2000,500", 2100) == [250, 500, 2000]
    assert A.resolve_sizes("12.5%,25%,100%", 2000) == [250, 500, 2000]
    with pytest.raises(ValueError, match="exceeds the 100 images"):
        A.resolve_sizes("50,200", 100)
    with pytest.raises(ValueError, match="positive integers"):
        A.parse_counts("10,x", "step_counts")
    with pytest.raises(ValueError, match="share"):
        A.resolve_sizes("150%", 100)


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    return str(generate(tmp_path_factory.mktemp("phantoms"), n=60, size=32, seed=0))


def test_pretraining_sets_are_nested_draws_of_the_train_split(phantoms, tmp_path):
    df = read_manifest(phantoms)
    train = df[df["split"] == "train"]
    ids = {}
    for n in (8, 16):
        arm = A.Arm(f"images_{n}", "data size", n_images=n)
        (tmp_path / arm.name).mkdir()
        sub = read_manifest(A.pretrain_manifest(arm, phantoms, tmp_path / arm.name, tmp_path / "shapes"))
        assert len(sub) == n and (sub["split"] == "train").all()
        ids[n] = set(sub["image_id"])
        assert set(sub["abs_path"]) <= set(train["abs_path"])  # the same files, read from another folder
    assert ids[8] < ids[16]
    site = train["site"].value_counts().idxmax()
    arm = A.Arm("one_site_5", "diversity", n_images=5, site="largest")
    (tmp_path / arm.name).mkdir()
    sub = read_manifest(A.pretrain_manifest(arm, phantoms, tmp_path / arm.name, tmp_path / "shapes"))
    assert len(sub) == 5 and set(sub["site"]) == {site}
    too_many = A.Arm("images_999", "data size", n_images=999)
    with pytest.raises(ValueError, match=r"999 pretraining images .* has \d+"):
        A.pretrain_manifest(too_many, phantoms, tmp_path, tmp_path / "shapes")


TINY = A.base_config("short", arch="vit_tiny", patch_size=8, depth=1, global_crop_size=32, local_crop_size=16,
                     n_local_crops=1, batch_size=4, max_steps=2, out_dim=32, head_hidden_dim=32,
                     head_bottleneck_dim=16)


def _counting_pretrain(monkeypatch):
    """Wrap pretrain to record how many steps each call ran."""
    import raddino_lib.train.pretrain as P

    calls, real = [], P.pretrain

    def counting(cfg, *args, **kwargs):
        result = real(cfg, *args, **kwargs)
        calls.append((cfg.max_steps, result.final_metrics["steps_run"]))
        return result

    monkeypatch.setattr(P, "pretrain", counting)
    return calls


@pytest.mark.slow
def test_arms_are_skipped_when_complete_rerun_when_changed_and_resumed_when_interrupted(phantoms, tmp_path,
                                                                                       monkeypatch):
    calls = _counting_pretrain(monkeypatch)
    settings = A.ProbeSettings(seg_epochs=1, n_boot=10)
    run = A.ArmRun(tmp_path, phantoms, TINY, settings, checkpoint_every=1)
    arms = A.build_arms(TINY, [8, 16], [2], groups=["data size"])
    records = A.run_arms(run, arms, workers=1)  # in this process: the wrapped pretrain counts the steps
    assert list(records) == ["base", "images_8"] and calls == [(2, 2), (2, 2)]
    side_by_side = A.run_arms(A.ArmRun(tmp_path / "apart", phantoms, TINY, settings, checkpoint_every=1), arms,
                              workers=2, log=lambda _: None)
    for name, record in records.items():  # each arm on one thread, whatever ran beside it: equal numbers
        assert side_by_side[name]["metrics"] == record["metrics"], name
        assert side_by_side[name]["dino_over_log_k"] == record["dino_over_log_k"], name
    for r in records.values():
        assert set(r["metrics"]) == {"cls_macro_auroc", "dice_mean", "age_r2"}
        assert all(c["ci_low"] <= c["ci_high"] and c["value"] is not None for c in r["metrics"].values())
    assert records["images_8"]["n_images"] == 8 and records["images_8"]["epochs"] == 1.0
    assert all(0.0 < r["cls_std"] < 1.0 for r in records.values())  # the collapse diagnostic of metrics.csv

    log = []
    again = A.run_arms(run, arms, log=log.append, workers=1)  # complete: read back, nothing trains
    assert calls == [(2, 2), (2, 2)] and again == records
    assert log == ["base: complete, skipped", "images_8: complete, skipped"]

    changed = A.ArmRun(tmp_path, phantoms, {**TINY, "out_dim": 48}, settings, checkpoint_every=1)
    A.run_arms(changed, arms[:1], log=log.append, workers=1)  # a new definition: rerun from scratch
    assert calls[-1] == (2, 2) and "base: its definition changed, rerunning from scratch" in log
    assert json.loads((tmp_path / "arms/base/pretrain/config.json").read_text())["out_dim"] == 48

    # an interruption after pretraining (here: in the probe) leaves checkpoints and no arm.json ...
    longer = A.build_arms({**TINY, "max_steps": 3}, [8, 16], [3], groups=["data size"])[1]

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(A, "probe_encoder", boom)
    with pytest.raises(KeyboardInterrupt):
        A.run_arm(A.ArmRun(tmp_path, phantoms, {**TINY, "max_steps": 3}, settings, checkpoint_every=1), longer)
    assert not (tmp_path / "arms/images_8/arm.json").exists() and calls[-1] == (3, 3)
    monkeypatch.undo()
    calls = _counting_pretrain(monkeypatch)
    # ... and the next run resumes at the last checkpoint: no step is trained twice
    record = A.run_arm(A.ArmRun(tmp_path, phantoms, {**TINY, "max_steps": 3}, settings, checkpoint_every=1), longer)
    assert calls == [(3, 0)] and record["steps"] == 3
    assert len(pd.read_csv(tmp_path / "arms/images_8/pretrain/metrics.csv")) == 3


def _table():
    return {"base": {"cls_macro_auroc": metric(0.70, 0.66, 0.74), "age_r2": metric(0.5, 0.4, 0.6)},
            "images_250": {"cls_macro_auroc": metric(0.60, 0.56, 0.64), "age_r2": metric(0.45, 0.35, 0.55)},
            "steps_15": {"cls_macro_auroc": metric(0.80, 0.76, 0.84)},
            "random": {"cls_macro_auroc": metric(0.62, 0.58, 0.66), "age_r2": metric(0.48, 0.4, 0.56)}}


def test_verdicts_are_read_from_the_intervals():
    frame = A.verdict_frame(_table(), ["cls_macro_auroc", "age_r2"]).set_index("b")
    assert frame.loc["images_250", "cls_macro_auroc verdict"] == claims.HOLDS
    assert frame.loc["images_250", "cls_macro_auroc a−b"] == pytest.approx(0.10)
    assert frame.loc["steps_15", "cls_macro_auroc verdict"] == claims.CONTRADICTED
    assert frame.loc["random", "cls_macro_auroc verdict"] == claims.OVERLAP
    assert frame.loc["steps_15", "age_r2 verdict"] == claims.NOT_MEASURED
    text = A.describe_verdicts(frame.reset_index(), ["cls_macro_auroc"])
    assert "more images at equal steps" in text and "+0.100 (holds)" in text


def test_the_scaling_claim_reads_the_largest_and_smallest_arms_through_aliases(tmp_path):
    arms = A.build_arms(BASE, [250, 2000], [60], groups=["data size"])
    aliases = A.aliases(arms)
    assert aliases == {"ssl": "base", "largest": "base", "smallest": "images_250"}
    write_results(tmp_path / "08_scaling_and_ablations", {"table": _table(), "aliases": aliases})
    row = next(r for r in claims.evaluate_claims(tmp_path) if r.claim.key == "scaling")
    assert row.verdict == claims.HOLDS and row.cells["ssl"]["value"] == 0.70
    assert row.cells["random"]["value"] == 0.62


def test_summary_shows_many_arms_one_per_row_and_embeds_listed_figures():
    table = {f"arm_{i}": {"cls_macro_auroc": metric(0.5 + i / 100)} for i in range(WIDE_TABLE + 1)}
    lines = notebook_table(table).splitlines()
    assert lines[0] == "| row | cls_macro_auroc |" and len(lines) == WIDE_TABLE + 3
    md = render_markdown("cpu", {"08_scaling_and_ablations": table}, {"08_scaling_and_ablations": 1.0},
                         figures={"08_scaling_and_ablations": ["08_scaling_and_ablations/scaling_curves.png"]})
    assert "![scaling_curves](08_scaling_and_ablations/scaling_curves.png)" in md


def test_arms_frame_lists_each_arm_with_intervals():
    record = {"name": "base", "group": "base", "n_images": 10, "steps": 5, "epochs": 2.0, "probe_size": 64,
              "dino_over_log_k": 0.99, "note": "x", "metrics": {"cls_macro_auroc": metric(0.7, 0.6, 0.8)}}
    frame = A.arms_frame({"base": record})
    assert frame.loc["base", "findings macro AUROC (linear, CLS)"] == "0.700 [0.600, 0.800]"
    assert frame.loc["base", "age R² (ridge, CLS + mean patch)"] == "–"
    assert np.isclose(frame.loc["base", "DINO loss / log K"], 0.99)
    assert np.isnan(frame.loc["base", "[CLS] std"])  # a record written before the diagnostic was kept


def test_auto_device_is_resolved_for_pretraining_and_probes(tmp_path):
    run = A.ArmRun(tmp_path, "m.csv", TINY, A.ProbeSettings(device="auto"), device="auto")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert run.device == expected and run.probe.device == expected


@pytest.mark.parametrize("workers", [1, 2])
def test_an_arm_that_starts_from_another_gets_that_arms_record(phantoms, tmp_path, monkeypatch, workers):
    def fake_run_arm(run, arm, parent=None, masks=None, log=print):
        seen_parent = parent["name"] if parent else None
        log(f"{arm.name} from {seen_parent}")
        return {"name": arm.name, "parent": seen_parent}

    monkeypatch.setattr(A, "run_arm", fake_run_arm)  # the forked workers inherit the stand-in
    run = A.ArmRun(tmp_path, phantoms, TINY)
    arms = A.build_arms(TINY, [8, 16], [2], groups=["initialisation"])
    lines: list[str] = []
    records = A.run_arms(run, arms, log=lines.append, workers=workers)
    assert [a.init_from for a in arms] == ["", "", "other_family"]
    assert records["continual"]["parent"] == "other_family" and records["base"]["parent"] is None
    assert "continual from other_family" in lines


@pytest.mark.parametrize("workers", [1, 2])
def test_the_grid_probes_the_references_on_the_base_arms_random_init_in_the_same_pool(phantoms, tmp_path,
                                                                                      monkeypatch, workers):
    def fake_run_arm(run, arm, parent=None, masks=None, log=print):
        return {"name": arm.name, "backbone_init": f"{arm.name}_init.safetensors", "probe_size": 32}

    def fake_probe(path, manifest, image_size, settings, cache_dir=None, patch_size=8, masks=None):
        return {"probed": {"value": 0.5, "source": f"{path}@{image_size}/{patch_size}"}}

    monkeypatch.setattr(A, "run_arm", fake_run_arm)  # the forked workers inherit the stand-ins
    monkeypatch.setattr(A, "probe_encoder", fake_probe)
    run = A.ArmRun(tmp_path, phantoms, TINY)
    arms = A.build_arms(TINY, [8, 16], [2], groups=["data size"])
    records, references = A.run_grid(run, arms, "sup.safetensors", log=lambda _: None, workers=workers)
    assert list(records) == ["base", "images_8"]
    assert {k: v["probed"]["source"] for k, v in references.items()} == {
        "random": "base_init.safetensors@32/8", "pixels": f"{PIXELS_SOURCE}@32/8", "supervised": "sup.safetensors@32/8"}
    assert references == A.probe_references(run, records["base"], "sup.safetensors", log=lambda _: None)
    assert A.run_arms(run, arms, workers=workers) == records  # the arms alone, no reference probed

    # without the base arm in the selection, its record comes from disk; with none there, a clear error
    with pytest.raises(ValueError, match="the floor and ceiling rows need the base arm"):
        A.run_grid(run, arms[1:], log=lambda _: None, workers=workers)
    (run.arm_dir(arms[0])).mkdir(parents=True)
    (run.arm_dir(arms[0]) / A.RECORD_NAME).write_text(json.dumps(records["base"]))
    _, from_disk = A.run_grid(run, arms[1:], log=lambda _: None, workers=workers)
    assert from_disk == {k: v for k, v in references.items() if k != "supervised"}
