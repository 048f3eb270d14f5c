"""Every notebook: hygiene (parameters cell, no outputs, kernel) and a full
smoke-profile run through the pipeline with assertions on each results.json."""

import ast
import json
from pathlib import Path

import nbformat
import papermill as pm
import pytest
from jupyter_client.kernelspec import KernelSpecManager

from raddino_lib.config import NOTEBOOKS, get_profile
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
    assert "check_params(" in following.source, f"{name}: the cell after parameters must call check_params"
    declared = set(pm.inspect_notebook(str(NOTEBOOK_DIR / f"{name}.ipynb")))
    assert set(get_profile("cpu").params(section)) <= declared


def test_teaching_markdown_comes_first_and_sections_are_numbered():
    for name in NAMES:
        nb = _load(name)
        assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), name
        headings = [line for c in nb.cells if c.cell_type == "markdown" for line in c.source.splitlines()
                    if line.startswith("## ")]
        assert any(h.startswith("## 1") for h in headings), f"{name}: no numbered '## 1.' section"


# ---------------------------------------------------------------------------------------------------
# The smoke profile, end to end (the same run `raddino run --profile smoke` does).


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke")
    summary = run_pipeline(RunOptions(profile="smoke", out=out), log=print)
    return out, summary


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
    assert set(summary["wall_time_s"]) == set(NAMES)
