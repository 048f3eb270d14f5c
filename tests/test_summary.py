"""summary.md: the claims table first, rows from floor to ceiling, each notebook as metrics × rows."""

import json

from raddino_lib.results import metric
from raddino_lib.summary import notebook_table, write_summary


def _write(folder, table):
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps({"table": table}))


def test_summary_opens_with_the_claims_and_orders_rows_floor_to_ceiling(tmp_path):
    c = metric
    _write(tmp_path / "03_classification_probe", {
        "ssl": {"cls_macro_auroc": c(0.80, 0.77, 0.83)}, "supervised": {"cls_macro_auroc": c(0.95, 0.93, 0.97)},
        "language": {"cls_macro_auroc": c(0.70, 0.66, 0.74)}, "pixels": {"cls_macro_auroc": c(0.55, 0.50, 0.60)},
        "random": {"cls_macro_auroc": c(0.60, 0.55, 0.65)}})
    _write(tmp_path / "06_metadata_correlation", {
        "ssl": {"age_r2": c(0.5, 0.4, 0.6)}, "language": {"age_r2": c(0.5, 0.45, 0.55)}})
    summary = write_summary(tmp_path, "smoke", {"03_classification_probe": 12.0, "06_metadata_correlation": 3.0})
    md = (tmp_path / "summary.md").read_text()
    sections = [line for line in md.splitlines() if line.startswith("## ")]
    assert sections[:2] == ["## RAD-DINO's claims", "## The comparison"]
    claims = {r["key"]: r for r in summary["claims"]}
    assert claims["classification"]["verdict"] == "holds"
    assert claims["metadata_age"]["verdict"] == "not shown (intervals overlap)"
    assert claims["report_generation"]["verdict"] == "not run" and claims["scaling"]["verdict"] == "not run"
    row = next(line for line in md.splitlines() if line.startswith("| Image-only SSL matches or beats language "
                                                                    "supervision on classification"))
    assert "| 0.800 [0.770, 0.830] | 0.700 [0.660, 0.740] | 0.600 [0.550, 0.650] | 0.550 [0.500, 0.600] | " \
           "0.950 [0.930, 0.970] | **holds** |" in row
    headline = md.split("## The comparison")[1].split("## ")[0]
    order = [line.split(" | ")[0].strip("| ") for line in headline.splitlines() if line.startswith("| ")][1:]
    assert order == ["pixels", "random", "ssl", "language", "supervised"]
    assert "| total | 15 |" in md


def test_a_notebook_table_is_metrics_by_rows():
    table = {"supervised": {"a": metric(0.9), "b": metric(0.8)}, "pixels": {"a": metric(0.1)}}
    lines = notebook_table(table).splitlines()
    assert lines[0] == "| metric | pixels | supervised |"
    assert lines[2] == "| a | 0.100 | 0.900 |" and lines[3] == "| b | – | 0.800 |"


def test_rows_run_from_report_generation_floor_to_its_oracle():
    from raddino_lib.probe.encoders import table_order

    rows = ["oracle", "ssl", "most_frequent", "supervised", "retrieval_ssl", "pixels", "random", "language"]
    assert table_order(rows) == ["most_frequent", "pixels", "random", "ssl", "language", "retrieval_ssl",
                                 "supervised", "oracle"]
