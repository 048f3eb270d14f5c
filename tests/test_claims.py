"""The claims table: verdict rules on hand-made intervals, reading notes, and rows read from a run folder."""

import json

import pytest

from raddino_lib.claims import (
    CLAIMS,
    CONTRADICTED,
    HOLDS,
    NOT_MEASURED,
    NOT_RUN,
    OVERLAP,
    Claim,
    claims_markdown,
    evaluate_claim,
    evaluate_claims,
    interval,
    reading_notes,
    verdict,
)
from raddino_lib.results import metric


def cell(value, lo, hi):
    return metric(value, lo, hi)


@pytest.mark.parametrize("a, b, expected", [
    (cell(0.80, 0.76, 0.84), cell(0.70, 0.66, 0.74), HOLDS),  # disjoint, a above
    (cell(0.60, 0.55, 0.65), cell(0.70, 0.66, 0.74), CONTRADICTED),  # disjoint, a below
    (cell(0.72, 0.68, 0.76), cell(0.70, 0.66, 0.74), OVERLAP),  # a's point higher but intervals overlap
    (cell(0.70, 0.66, 0.74), cell(0.72, 0.68, 0.76), OVERLAP),  # a's point lower, still overlapping
    (cell(0.75, 0.74, 0.76), cell(0.70, 0.66, 0.74), OVERLAP),  # touching ends are not separated
])
def test_verdict_from_intervals_higher_is_better(a, b, expected):
    assert verdict(a, b) == expected


def test_verdict_reverses_for_errors():
    low_error, high_error = cell(4.0, 3.5, 4.5), cell(6.0, 5.5, 6.5)
    assert verdict(low_error, high_error, higher_is_better=False) == HOLDS
    assert verdict(high_error, low_error, higher_is_better=False) == CONTRADICTED


@pytest.mark.parametrize("a, b", [
    (None, cell(0.7, 0.6, 0.8)),
    (cell(0.7, None, None), cell(0.7, 0.6, 0.8)),
    (cell(float("nan"), 0.1, 0.2), cell(0.7, 0.6, 0.8)),
])
def test_missing_interval_is_not_measured(a, b):
    assert verdict(a, b) == NOT_MEASURED
    assert interval(a) is None


def _results(table):
    return {"table": table}


CLS = CLAIMS[0]


def test_row_reads_every_column_and_the_verdict():
    table = {"pixels": {"cls_macro_auroc": cell(0.55, 0.50, 0.60)},
             "random": {"cls_macro_auroc": cell(0.60, 0.55, 0.65)},
             "ssl": {"cls_macro_auroc": cell(0.80, 0.77, 0.83)},
             "language": {"cls_macro_auroc": cell(0.70, 0.66, 0.74)},
             "supervised": {"cls_macro_auroc": cell(0.90, 0.88, 0.92)}}
    row = evaluate_claim(CLS, _results(table))
    assert row.verdict == HOLDS and row.metric == "cls_macro_auroc"
    assert row.cells["floor"]["value"] == 0.55 and row.cells["ceiling"]["value"] == 0.90
    assert row.cells["random"]["value"] == 0.60
    assert row.notes == []  # ceiling clears the floor, both encoders clear the floor, none beats the ceiling


def test_notes_flag_a_saturated_measure_and_encoders_at_the_floor():
    cells = {"floor": cell(0.97, 0.95, 0.99), "random": cell(0.96, 0.94, 0.98), "ssl": cell(0.98, 0.96, 0.99),
             "language": cell(0.99, 0.98, 1.0), "ceiling": cell(0.99, 0.98, 1.0)}
    notes = reading_notes(cells, CLS)
    assert "the ceiling does not clear the raw-pixel floor: the measure cannot rank encoders" in notes
    assert "ssl and language not above the raw-pixel floor" in notes


def test_notes_flag_an_encoder_above_the_ceiling():
    cells = {"floor": cell(0.5, 0.45, 0.55), "ssl": cell(0.9, 0.88, 0.92), "language": cell(0.7, 0.65, 0.75),
             "ceiling": cell(0.75, 0.72, 0.78)}
    notes = reading_notes(cells, CLS)
    assert notes == ["ssl lies above the ceiling (the ceiling is undertrained for this measure)"]


def test_not_run_and_not_measured_rows():
    assert evaluate_claim(CLS, None).verdict == NOT_RUN
    assert evaluate_claim(CLS, _results({"ssl": {"other": cell(1, 0, 2)}})).verdict == NOT_MEASURED
    only_ssl = evaluate_claim(CLS, _results({"ssl": {"cls_macro_auroc": cell(0.8, 0.7, 0.9)}}))
    assert only_ssl.verdict == NOT_MEASURED and only_ssl.cells["language"] is None


def test_first_available_metric_and_custom_rows_are_used():
    claim = Claim("x", "more data helps", "AUROC", "08", ("missing", "auroc"), a="largest", b="smallest")
    table = {"largest": {"auroc": cell(0.9, 0.85, 0.95)}, "smallest": {"auroc": cell(0.6, 0.55, 0.65)}}
    row = evaluate_claim(claim, _results(table))
    assert row.metric == "auroc" and row.verdict == HOLDS


def test_claims_are_read_from_run_folders_by_notebook_number(tmp_path):
    nb = tmp_path / "06_metadata_correlation"
    nb.mkdir()
    table = {"ssl": {"age_r2": cell(0.5, 0.4, 0.6), "sex_auroc": cell(0.7, 0.6, 0.8)},
             "language": {"age_r2": cell(0.8, 0.75, 0.85), "sex_auroc": cell(0.72, 0.62, 0.82)}}
    (nb / "results.json").write_text(json.dumps({"table": table}))
    rows = {r.claim.key: r for r in evaluate_claims(tmp_path)}
    assert rows["metadata_age"].verdict == CONTRADICTED
    assert rows["metadata_sex"].verdict == OVERLAP
    assert rows["classification"].verdict == NOT_RUN and rows["report_generation"].verdict == NOT_RUN
    md = claims_markdown(list(rows.values()), fmt=lambda c: "–" if c is None else f"{c['value']:.2f}")
    assert md.splitlines()[0].startswith("| claim | measure | ssl | language | random | floor | ceiling | verdict")
    assert "| **contradicted** |" in md and "| **not run** |" in md
