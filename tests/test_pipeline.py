"""The papermill pipeline, on stand-in notebooks that only pass artifacts along.

The real notebooks are executed in tests/test_notebooks.py; here we check
the orchestration: parameter passing, artifacts, resume, failure reports and
the summary, quickly.
"""

import json
from pathlib import Path

import nbformat
import pytest

from raddino_lib.config import NOTEBOOKS, PROFILES
from raddino_lib.pipeline import (
    PipelineError,
    RunOptions,
    expected_time,
    notebook_parameters,
    parse_overrides,
    run_pipeline,
)

ARTIFACTS = {"phantoms": {"manifest": "data/manifest.csv"},
             "pretrain": {"backbone": "ssl.safetensors", "backbone_init": "init.safetensors"},
             "language": {"image_encoder": "clip.safetensors"}}


def _stand_in(section: str, params: dict, fail: bool = False) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "raddino", "display_name": "raddino (Python 3)", "language": "python"}
    declared = "\n".join(f"{k} = {v!r}" for k, v in params.items())
    cell = nbformat.v4.new_code_cell(declared)
    cell.metadata["tags"] = ["parameters"]
    body = [
        "import sys; preloaded = 'raddino_lib.results' in sys.modules  # imported ahead in a warm kernel?",
        "import json, pathlib",
        "from raddino_lib.results import write_results, metric",
        f"artifacts = {ARTIFACTS.get(section, {})!r}",
        "received = {k: v for k, v in dict(globals()).items() if k in " + repr(sorted(params)) + "}",
        "table = {'ssl': {'cls_macro_auroc': metric(0.8, 0.7, 0.9)}, 'random': {'age_r2': metric(0.1)}}",
        "write_results(output_dir, {'artifacts': artifacts, 'received': received, 'table': table, "
        "'preloaded': preloaded, 'cwd': str(pathlib.Path.cwd())})",
    ]
    if fail:
        body.insert(0, "raise RuntimeError('planted failure')")
    nb.cells = [nbformat.v4.new_markdown_cell("# stand-in"), cell, nbformat.v4.new_code_cell("\n".join(body))]
    return nb


def _write_stand_ins(folder: Path, options: RunOptions, fail_section: str = "") -> None:
    artifacts: dict[str, str] = {}
    for section, name in NOTEBOOKS:
        params = notebook_parameters(options, section, options.out / name, artifacts)
        nbformat.write(_stand_in(section, params, fail=section == fail_section), folder / f"{name}.ipynb")
        artifacts.update(ARTIFACTS.get(section, {}))


@pytest.fixture
def options(tmp_path):
    nb_dir = tmp_path / "notebooks"
    nb_dir.mkdir()
    opts = RunOptions(profile="smoke", out=tmp_path / "run", notebook_dir=nb_dir)
    _write_stand_ins(nb_dir, opts)
    return opts


def test_artifacts_flow_into_later_notebooks_and_summary_is_written(options):
    summary = run_pipeline(options, log=lambda _: None)
    received = json.loads((options.out / "03_classification_probe" / "results.json").read_text())["received"]
    assert received["manifest"] == "data/manifest.csv"
    assert received["ssl_encoder"] == "ssl.safetensors"
    assert received["random_encoder"] == "init.safetensors"
    assert received["language_encoder"] == "clip.safetensors"
    assert received["feature_cache_dir"] == str(options.out / "features")
    assert set(summary["wall_time_s"]) == {name for _, name in NOTEBOOKS}
    md = (options.out / "summary.md").read_text()
    assert "| ssl | 0.800 [0.700, 0.900] |" in md
    assert (options.out / "05_attention_maps" / "05_attention_maps.ipynb").is_file()
    # from the second notebook on, each kernel was started while the one before ran, its imports done, in its folder
    results = {name: json.loads((options.out / name / "results.json").read_text()) for _, name in NOTEBOOKS}
    assert [r["preloaded"] for r in results.values()] == [False] + [True] * (len(NOTEBOOKS) - 1)
    assert all(r["cwd"] == str(options.out / name) for name, r in results.items())


def test_cold_kernels_when_asked_and_no_kernel_left_behind(options):
    import psutil

    before = {p.pid for p in psutil.Process().children(recursive=True)}
    options.warm_kernels = False
    run_pipeline(options, log=lambda _: None)
    assert not any(json.loads((options.out / name / "results.json").read_text())["preloaded"] for _, name in NOTEBOOKS)
    options.warm_kernels = True
    _write_stand_ins(options.notebook_dir, options, fail_section="language")  # a failure: the warm kernel goes too
    with pytest.raises(PipelineError):
        run_pipeline(options, log=lambda _: None)
    assert {p.pid for p in psutil.Process().children(recursive=True) if p.is_running()
            and p.status() != psutil.STATUS_ZOMBIE} <= before


def test_notebook_modules_are_the_top_level_imports(tmp_path):
    from raddino_lib.pipeline import notebook_modules

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("import markdown_is_not_code"),
                nbformat.v4.new_code_cell("from __future__ import annotations\nimport os, json\n"
                                          "from raddino_lib.probe.compare import (\n    extract_all,\n)\n"
                                          "if True:\n    import inside_a_block\nx = 1  # import not_a_statement"),
                nbformat.v4.new_code_cell("import os\nimport matplotlib.pyplot as plt")]
    nbformat.write(nb, tmp_path / "n.ipynb")
    assert notebook_modules(tmp_path / "n.ipynb") == ["os", "json", "raddino_lib.probe.compare", "matplotlib.pyplot"]


def test_resume_skips_complete_notebooks_and_reruns_changed_ones(options):
    run_pipeline(options, log=lambda _: None)
    lines: list[str] = []
    options.resume = True
    run_pipeline(options, log=lines.append)
    assert all("complete, skipped" in line for line in lines)
    options.overrides = {"segmentation": {"epochs": 7}}
    _write_stand_ins(options.notebook_dir, options)
    lines.clear()
    run_pipeline(options, log=lines.append)
    rerun = [line for line in lines if "running" in line]
    assert len(rerun) == 1 and rerun[0].startswith(f"[5/{len(NOTEBOOKS)}] 04_segmentation_probe: running ...")
    assert "last time)" in rerun[0]  # it ran before: the log says how long it took then


def test_the_estimate_before_a_notebook_prefers_this_folders_time_to_the_recorded_run():
    assert expected_time(None, None) == ""
    assert expected_time(None, 363.6) == " (about 364 s in the profile's recorded run on 2 CPU cores)"
    assert expected_time(120.0, 363.6) == " (took 120 s last time)"


def test_recorded_times_name_real_notebooks_and_cover_the_laptop_profiles():
    names = {name for _, name in NOTEBOOKS}
    for profile in PROFILES.values():
        assert set(profile.recorded_s) <= names, profile.name
        assert all(s > 0 for s in profile.recorded_s.values()), profile.name
    for name in ("smoke", "cpu"):  # the profiles a person runs on a laptop show an estimate from a fresh clone
        assert set(PROFILES[name].recorded_s) == names, name


def test_failure_names_notebook_and_cell_and_keeps_partial_output(options):
    _write_stand_ins(options.notebook_dir, options, fail_section="language")
    with pytest.raises(PipelineError, match=r"notebook 02_language_supervised failed in cell \d+ \(RuntimeError: "
                                            r"planted failure\)"):
        run_pipeline(options, log=lambda _: None)
    assert (options.out / "02_language_supervised" / "02_language_supervised.ipynb").is_file()
    assert not (options.out / "02_language_supervised" / "done.json").exists()


def test_undeclared_profile_parameter_is_an_error(options):
    options.overrides = {"phantoms": {"not_a_parameter": 1}}
    with pytest.raises(PipelineError, match=r"00_phantoms_tour: profile 'smoke' passes parameters the notebook does "
                                            r"not declare: \['not_a_parameter'\]"):
        run_pipeline(options, log=lambda _: None)


def test_overrides_parse_json_values():
    assert parse_overrides(["pretrain.max_steps=100", "phantoms.balanced=true", "x.name=abc"]) == {
        "pretrain": {"max_steps": 100}, "phantoms": {"balanced": True}, "x": {"name": "abc"}}
    with pytest.raises(ValueError, match="expected SECTION.PARAM=VALUE"):
        parse_overrides(["max_steps=100"])


def test_unknown_profile_and_missing_manifest_fail_early(tmp_path):
    with pytest.raises(KeyError, match="unknown profile 'huge'"):
        RunOptions(profile="huge", out=tmp_path)
    with pytest.raises(FileNotFoundError, match="--manifest .*nope.csv: no such file"):
        RunOptions(profile="smoke", out=tmp_path, manifest=str(tmp_path / "nope.csv"))


def test_kernels_talk_over_ipc_and_print_no_transport_warning(options, capfd):
    """The console of `raddino run` shows progress, not ipykernel's unencrypted-TCP warning (kernels use IPC)."""
    from raddino_lib.pipeline import _kernel_manager_class, execute_notebook

    assert _kernel_manager_class()().transport == "ipc"
    section, name = NOTEBOOKS[0]
    params = notebook_parameters(options, section, options.out / name, {})
    execute_notebook(name, params, options.out / name, options)
    captured = capfd.readouterr()
    assert "without encryption" not in captured.err + captured.out
    assert (options.out / name / "results.json").is_file()
