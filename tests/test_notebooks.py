"""Every notebook: hygiene (parameters cell, no outputs, kernel) and a full
smoke-profile run through the pipeline with assertions on each results.json."""

import ast
import json
from pathlib import Path

import nbformat
import papermill as pm
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from shared_once import build_once, shared_root

from raddino_lib.config import NOTEBOOKS, get_profile
from raddino_lib.notebook_params import PARAMS_BY_NOTEBOOK
from raddino_lib.params import declared_names
from raddino_lib.pipeline import KERNEL_NAME, NOTEBOOK_DIR, RunOptions, run_pipeline

NAMES = [name for _, name in NOTEBOOKS]


def _load(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)


@pytest.mark.parametrize("name", NAMES)
def test_one_parameters_cell_of_flat_primitives_with_output_dir(name):
    nb = _load(name)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{name}: {len(tagged)} cells tagged 'parameters'"
    tree = ast.parse(tagged[0].source)
    values = {}
    for node in tree.body:
        assert isinstance(node, ast.Assign | ast.AnnAssign), f"{name}: parameters cell has a statement {ast.dump(node)}"
        target = node.targets[0] if isinstance(node, ast.Assign) else node.target
        values[target.id] = ast.literal_eval(node.value)
    assert "output_dir" in values
    assert all(isinstance(v, str | int | float | bool) for v in values.values()), f"{name}: non-primitive parameter"


@pytest.mark.parametrize("name", NAMES)
def test_committed_without_outputs_and_with_the_pipeline_kernel(name):
    nb = _load(name)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name}: committed with outputs"
    assert nb.metadata["kernelspec"]["name"] == KERNEL_NAME
    assert KERNEL_NAME in KernelSpecManager().find_kernel_specs(), "kernel not registered: run 'make setup'"


@pytest.mark.parametrize("section_name", NOTEBOOKS, ids=NAMES)
def test_parameters_are_validated_right_after_injection(section_name):
    section, name = section_name
    nb = _load(name)
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    following = next(c for c in nb.cells[index + 1:] if c.cell_type == "code")
    spec = PARAMS_BY_NOTEBOOK[name]
    assert f"check_params({spec.__name__}, globals())" in following.source, \
        f"{name}: the cell after parameters must call check_params({spec.__name__}, globals())"
    declared = set(pm.inspect_notebook(str(NOTEBOOK_DIR / f"{name}.ipynb")))
    assert declared == set(declared_names(spec)), f"{name}: parameters cell and {spec.__name__} differ"
    for profile in ("smoke", "cpu", "gpu", "paper"):
        assert set(get_profile(profile).params(section)) <= declared, (name, profile)


def test_teaching_markdown_comes_first_and_sections_are_numbered():
    for name in NAMES:
        nb = _load(name)
        assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), name
        headings = [line for c in nb.cells if c.cell_type == "markdown" for line in c.source.splitlines()
                    if line.startswith("## ")]
        assert any(h.startswith("## 1") for h in headings), f"{name}: no numbered '## 1.' section"


# ---------------------------------------------------------------------------------------------------
# The smoke profile, end to end (the same run `raddino run --profile smoke` does).


EXTRA = ("dinov2", "timm", "clip")  # tiny encoder folders of three other layouts, probed as extra rows


def save_encoder_folders(root: Path) -> str:
    """A Hugging Face Dinov2Model, a timm and a Hugging Face CLIP folder, each saved by its library;
    the ``--extra-encoders`` value naming them."""
    import torch
    from test_encoder_folders import save_hf_clip_folder, save_timm_folder
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                             patch_size=8, image_size=32)).save_pretrained(root / "dinov2")
    save_timm_folder(root / "timm")
    save_hf_clip_folder(root / "clip")
    return ",".join(f"{name}={root / name}" for name in EXTRA)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, worker_id):
    """One smoke pipeline per test session, shared by the xdist workers (tests/shared_once.py); the probe notebooks
    get three encoder folders of other libraries as extra rows (`raddino run --extra-encoders`)."""
    def build(out: Path) -> dict:
        extra = save_encoder_folders(out.parent / "encoder_folders")
        return run_pipeline(RunOptions(profile="smoke", out=out, extra_encoders=extra), log=print)

    return build_once(shared_root(tmp_path_factory, worker_id), "smoke_pipeline", build)


def _results(out: Path, name: str) -> dict:
    return json.loads((out / name / "results.json").read_text())


def _value(cell) -> float:
    return cell["value"] if isinstance(cell, dict) else cell


@pytest.mark.slow
@pytest.mark.xdist_group("smoke_pipeline")
def test_smoke_run_writes_every_result_and_a_summary(smoke_run):
    out, summary = smoke_run
    for name in NAMES:
        assert (out / name / f"{name}.ipynb").is_file()
        assert (out / name / "results.json").is_file()
        assert list((out / name).glob("*.png")), f"{name} saved no figure"
    md = (out / "summary.md").read_text()
    assert "## The comparison" in md and "## Wall time" in md
    assert md.index("## RAD-DINO's claims") < md.index("## The comparison")  # the claims table opens the summary
    assert {c["key"] for c in summary["claims"]} >= {"classification", "segmentation_upernet", "metadata_age"}
    assert set(summary["wall_time_s"]) == set(NAMES)


def _cell_ok(cell) -> bool:
    """A metric() cell: a value in range and, when present, an interval around it."""
    value, lo, hi = cell["value"], cell.get("ci_low"), cell.get("ci_high")
    if value is None:
        return False
    return lo is None or hi is None or lo - 1e-9 <= value <= hi + 1e-9


@pytest.mark.slow
@pytest.mark.xdist_group("smoke_pipeline")
def test_smoke_phantoms_tour(smoke_run):
    out, _ = smoke_run
    res = _results(out, "00_phantoms_tour")
    manifest = Path(res["artifacts"]["manifest"])
    assert manifest.is_file()
    n_rows = sum(1 for _ in manifest.open()) - 1
    assert n_rows == get_profile("smoke").params("phantoms")["n_images"]
    table = res["table"]
    assert {"random_linear", "supervised_cnn"} <= set(table)
    for encoder in ("random_linear", "supervised_cnn"):  # floor and ceiling: AUROCs in [0, 1], R² at most 1
        cells = table[encoder]
        assert all(_cell_ok(cells[k]) and 0.0 <= cells[k]["value"] <= 1.0 for k in ("macro_auroc", "sex_auroc"))
        assert _cell_ok(cells["age_r2"]) and cells["age_r2"]["value"] <= 1.0
    assert set(res["global_statistics_leak"]) == {"sex_auroc", "age_r2"}
    from raddino_lib.data.manifest import read_manifest
    from raddino_lib.data.schema import ANATOMY, mask_column

    df = read_manifest(manifest)
    assert all((df[mask_column(s)] != "").all() for s in ANATOMY)  # organs, ribs and lung zones on every image


@pytest.mark.slow
@pytest.mark.xdist_group("smoke_pipeline")
def test_smoke_pretraining_writes_loadable_encoders(smoke_run):
    from raddino_lib.models import load_backbone

    out, _ = smoke_run
    res = _results(out, "01_pretrain_rad_dino")
    for key in ("backbone", "backbone_init"):
        model = load_backbone(res["artifacts"][key])
        assert model.embed_dim == 192
    metrics = (Path(res["artifacts"]["run_dir"]) / "metrics.csv").read_text().splitlines()
    assert len(metrics) - 1 == get_profile("smoke").params("pretrain")["max_steps"]


@pytest.mark.slow
@pytest.mark.xdist_group("smoke_pipeline")
def test_smoke_language_supervised(smoke_run):
    from raddino_lib.models import load_backbone

    out, _ = smoke_run
    res = _results(out, "02_language_supervised")
    load_backbone(res["artifacts"]["image_encoder"])
    cell = res["table"]["language"]["zeroshot_macro_auroc"]
    assert _cell_ok(cell) and 0.0 <= cell["value"] <= 1.0


ROWS = ("pixels", "random", "ssl", "language", "supervised")  # floor, floor, encoders, ceiling


@pytest.mark.slow
@pytest.mark.xdist_group("smoke_pipeline")
@pytest.mark.parametrize("name, metric", [
    ("03_classification_probe", "cls_macro_auroc"),
    ("03_classification_probe", "knn_macro_auroc"),
    ("04_segmentation_probe", "dice_mean"),
    ("04_segmentation_probe", "dice_mean_upernet"),
    ("05_attention_maps", "attn_mass_large"),
    ("06_metadata_correlation", "sex_auroc"),
])
def test_smoke_probes_compare_encoders_between_floor_and_ceiling(smoke_run, name, metric):
    out, _ = smoke_run
    table = _results(out, name)["table"]
    assert set(table) == set(ROWS) | set(EXTRA), f"{name}: rows {sorted(table)}"  # results.json keeps keys sorted
    for row in (*ROWS, *EXTRA):
        cell = table[row][metric]
        assert _cell_ok(cell), f"{name}/{row}/{metric}: {cell}"
        assert 0.0 <= cell["value"] <= 1.0


@pytest.mark.slow
@pytest.mark.xdist_group("smoke_pipeline")
def test_smoke_ceiling_is_trained_once_and_probed_everywhere(smoke_run):
    from raddino_lib.models import load_backbone

    out, _ = smoke_run
    path = _results(out, "03_classification_probe")["artifacts"]["supervised_encoder"]
    ssl = load_backbone(_results(out, "01_pretrain_rad_dino")["artifacts"]["backbone"])
    assert load_backbone(path).embed_dim == ssl.embed_dim and len(load_backbone(path).blocks) == len(ssl.blocks)
    for name in ("04_segmentation_probe", "05_attention_maps", "06_metadata_correlation"):
        assert _results(out, name)["encoders"]["supervised"] == path, name
    assert len(list((out / "features").glob("supervised_*/supervised_encoder.safetensors"))) == 1


@pytest.mark.slow
@pytest.mark.xdist_group("smoke_pipeline")
def test_smoke_segmentation_finds_the_lungs(smoke_run):
    # Independent floor: the Dice of predicting "lung" everywhere, from the phantoms' own test masks.
    # A linear head on patch tokens must outline the lung clearly better than that.
    import numpy as np

    from raddino_lib.data.io import load_mask
    from raddino_lib.data.manifest import read_manifest

    out, _ = smoke_run
    df = read_manifest(_results(out, "00_phantoms_tour")["artifacts"]["manifest"])
    masks = [load_mask(p).numpy() for p in df.loc[df["split"] == "test", "abs_mask_left_lung"]]
    all_lung = float(np.mean([2 * m.sum() / (m.size + m.sum()) for m in masks]))
    table = _results(out, "04_segmentation_probe")["table"]
    best = max(table[enc]["dice_left_lung"]["value"] for enc in table)
    assert best > all_lung + 0.15, (best, all_lung)


@pytest.mark.slow
@pytest.mark.xdist_group("smoke_pipeline")
def test_smoke_ct_phantoms_tour(smoke_run):
    from raddino_lib.data.volume_manifest import read_volume_manifest

    out, _ = smoke_run
    res = _results(out, "09_ct_phantoms_tour")
    df = read_volume_manifest(res["artifacts"]["ct_manifest"])
    assert len(df) == get_profile("smoke").params("ct_phantoms")["n_volumes"]
    assert set(df["modality"]) == {"CT"} and df["patient_id"].is_unique
    table = res["table"]
    assert {"random_vit_linear", "supervised_cnn3d"} <= set(table)
    for model in ("random_vit_linear", "supervised_cnn3d"):
        cell = table[model]["ct_macro_auroc"]
        assert _cell_ok(cell) and 0.0 <= cell["value"] <= 1.0
    assert res["difficulty"]["findings"], "no finding with positives and negatives in both splits"


@pytest.mark.slow
@pytest.mark.xdist_group("smoke_pipeline")
def test_smoke_colipri_arms_references_and_table(smoke_run):
    out, summary = smoke_run
    res = _results(out, "10_colipri_3d")
    params = get_profile("smoke").params("colipri")
    n_arms = len(params["objective_sets"].split(",")) * len(params["paired_fractions"].split(","))
    assert len(res["arms"]) == n_arms
    for name, arm in res["arms"].items():
        assert arm["final_losses"]["contrastive_loss"] > 0, name
        assert Path(arm["encoder"], "model.safetensors").is_file(), name
    full = next(a for a in res["arms"].values() if a["objectives"] == "+vision")
    assert full["final_losses"]["generation_loss"] > 0 and full["final_losses"]["mim_loss"] > 0
    assert "clinical_f1_macro_gt" in full["generation"]
    assert set(full["segmentation"]["per_structure"]) == {"lungs", "heart", "aorta", "vertebrae", "liver"}
    assert (out / "data_ct_colipri" / "manifest.csv").is_file()  # its own phantoms, sized for its arms
    table = res["table"]
    assert {"random init", "supervised 3D CNN", "most frequent report", "chance"} <= set(table)
    for row, metrics in table.items():
        for metric, cell in metrics.items():
            assert cell["value"] is not None and (cell["ci_low"] is None or cell["ci_low"] <= cell["ci_high"]), (
                row, metric)
    assert set(res["above_chance"]) == {"zero-shot AUROC", "image→report R@5", "report→image R@5"}
    assert "10_colipri_3d" in summary["wall_time_s"]


@pytest.mark.slow
@pytest.mark.xdist_group("smoke_pipeline")
def test_smoke_metadata_age_is_regression_on_years(smoke_run):
    out, _ = smoke_run
    table = _results(out, "06_metadata_correlation")["table"]
    for encoder, metrics in table.items():
        assert metrics["age_r2"]["value"] <= 1.0, encoder
        assert 0.0 < metrics["age_mae"]["value"] < 60.0, encoder


@pytest.mark.slow
@pytest.mark.xdist_group("smoke_pipeline")
def test_smoke_report_generation_rows_metrics_and_claim(smoke_run):
    out, summary = smoke_run
    res = _results(out, "07_report_generation")
    table = res["table"]
    assert {"most_frequent", "pixels", "random", "ssl", "language", "supervised", "oracle",
            "retrieval_ssl", "retrieval_language"} <= set(table)
    metrics = ("bleu4", "rouge_l", "clinical_f1_micro", "clinical_f1_macro", "clinical_f1_macro_5",
               "clinical_f1_macro_gt")
    for row, cells in table.items():
        for m in metrics:
            assert _cell_ok(cells[m]) and 0.0 <= cells[m]["value"] <= 1.0, (row, m)
    # the floor writes one report for every image; every decoder wrote text
    assert len(set(res["examples"]["most_frequent"])) == 1
    assert all(isinstance(t, str) and t for row in ("ssl", "oracle") for t in res["examples"][row])
    assert all(0.0 < loss < 3.0 for loss in res["train_loss"].values())  # from log(vocab) = 6.2 at the start
    claim = next(c for c in summary["claims"] if c["key"] == "report_generation")
    assert claim["verdict"] != "not run" and claim["metric"] == "clinical_f1_macro"


@pytest.mark.slow
@pytest.mark.xdist_group("smoke_pipeline")
def test_smoke_scaling_arms_between_floor_and_ceiling_and_the_scaling_claim(smoke_run):
    out, summary = smoke_run
    res = _results(out, "08_scaling_and_ablations")
    table = res["table"]
    assert {"base", "images_48", "random", "pixels", "supervised"} <= set(table)
    for row, cells in table.items():
        for m in ("cls_macro_auroc", "dice_mean", "age_r2"):
            assert _cell_ok(cells[m]), (row, m)
        assert 0.0 <= cells["cls_macro_auroc"]["value"] <= 1.0 and 0.0 <= cells["dice_mean"]["value"] <= 1.0
    assert res["aliases"] == {"ssl": "base", "largest": "base", "smallest": "images_48"}
    assert (res["arms"]["base"]["n_images"], res["arms"]["images_48"]["n_images"]) == (160, 48)
    assert all((out / "08_scaling_and_ablations" / "arms" / arm / "arm.json").is_file() for arm in res["arms"])
    claim = next(c for c in summary["claims"] if c["key"] == "scaling")
    assert claim["verdict"] != "not run" and claim["metric"] == "cls_macro_auroc"
    assert "![scaling_curves](08_scaling_and_ablations/scaling_curves.png)" in (out / "summary.md").read_text()


@pytest.mark.slow
@pytest.mark.xdist_group("smoke_pipeline")
@pytest.mark.parametrize("name, metric", [("03_classification_probe", "cls_macro_auroc"),
                                          ("04_segmentation_probe", "dice_mean"),
                                          ("05_attention_maps", "attn_mass_large_excess"),
                                          ("06_metadata_correlation", "age_r2"),
                                          ("07_report_generation", "clinical_f1_macro")])
def test_smoke_probes_take_encoder_folders_of_other_libraries_as_rows(smoke_run, name, metric):
    out, _ = smoke_run
    table = _results(out, name)["table"]
    for row in EXTRA:
        assert row in table and _cell_ok(table[row][metric]), (name, row)
