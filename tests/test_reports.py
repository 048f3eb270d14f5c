"""The report labeler against hand-labelled radiology sentences (MIMIC-CXR / CheXpert / IU X-ray phrasing).

The suite lives in ``tests/data/labeler_sentences.tsv``: one sentence (or a
whole report) per row with the labels it states; every finding not listed
is 0 and No Finding follows from the 14 findings.
"""

import csv
from pathlib import Path

import pandas as pd
import pytest

from raddino_lib.data.reports import label_report, labeler_agreement, report_body, split_sentences
from raddino_lib.data.schema import CXR14_FINDINGS, FINDINGS, reported_column

SUITE = Path(__file__).parent / "data" / "labeler_sentences.tsv"


def _suite() -> list[tuple[str, dict[str, int], set[str]]]:
    lines = [line for line in SUITE.read_text().splitlines() if not line.startswith("#")]
    out = []
    for row in csv.DictReader(lines, delimiter="\t"):
        labels = {k: int(v) for k, v in (part.split("=") for part in row["labels"].split(";") if part)}
        out.append((row["sentence"], labels, set(row["tags"].split())))
    return out


CASES = _suite()


def _expected(labels: dict[str, int]) -> dict[str, int]:
    want = {f: labels.get(f, 0) for f in FINDINGS}
    want["No Finding"] = int(all(want[f] == 0 for f in CXR14_FINDINGS))
    return want


@pytest.mark.parametrize("text,labels", [(t, lab) for t, lab, _ in CASES], ids=[c[0][:50] for c in CASES])
def test_labels_realistic_sentences(text, labels):
    got = label_report(text)
    want = _expected(labels)
    assert set(got) == set(FINDINGS)
    wrong = {f: (got[f], want[f]) for f in FINDINGS if got[f] != want[f]}
    assert not wrong, f"{text!r}: (got, expected) {wrong}"


def test_suite_covers_every_finding_negation_uncertainty_and_the_look_alikes():
    assert len(CASES) >= 300 and len({t for t, _, _ in CASES}) == len(CASES)
    labels = [lab for _, lab, _ in CASES]
    tags = set().union(*(tag for _, _, tag in CASES))
    labeled = CXR14_FINDINGS + ("Support Devices",)
    for finding in labeled:
        assert any(lab.get(finding) == 1 for lab in labels), f"no positive {finding}"
        assert f"neg:{finding.replace(' ', '_')}" in tags, f"no negated {finding}"
    for finding in CXR14_FINDINGS:
        assert any(lab.get(finding) == -1 for lab in labels), f"no uncertain {finding}"
    for kind in ("neg-pre", "neg-post", "unc-pre", "unc-post", "unc-or", "pseudo", "scope", "temporal", "spurious",
                 "normal", "report", "lookalike:hyperinflation", "lookalike:nodular", "lookalike:infection",
                 "lookalike:hydropneumothorax", "lookalike:congestion", "lookalike:emphysema"):
        assert kind in tags, kind
    for _, lab, tag in CASES:  # the negated finding of a neg: tag is not stated positive in that sentence
        for t in (t for t in tag if t.startswith("neg:")):
            assert lab.get(t[4:].replace("_", " "), 0) != 1


def test_indication_and_history_sections_are_ignored():
    report = ("INDICATION: Cough and fever, evaluate for pneumonia.\nCOMPARISON: None.\n"
              "FINDINGS: The lungs are clear. No pleural effusion.\nIMPRESSION: No acute cardiopulmonary process.")
    assert "pneumonia" not in report_body(report).lower()
    assert label_report(report) == {**dict.fromkeys(FINDINGS, 0), "No Finding": 1}
    assert label_report("FINDINGS: small left effusion.\nIMPRESSION: effusion.")["Effusion"] == 1


def test_sentences_split_on_periods_but_not_decimals_and_drop_laterality():
    assert split_sentences("A 1.5 cm nodule. No left effusion; right PTX") == [
        "a 1.5 cm nodule", "no effusion", "ptx"]


def test_no_finding_and_support_devices_outputs():
    assert label_report("Lungs are clear. Endotracheal tube in place.")["No Finding"] == 1  # devices do not count
    assert label_report("Possible small effusion.")["No Finding"] == 0  # an uncertain finding is a finding
    assert label_report("No pneumothorax. Hyperinflated lungs.")["No Finding"] == 1  # outside the 14: none
    assert label_report("")["No Finding"] == 0  # nothing stated
    assert label_report("The PICC line has been removed.")["Support Devices"] == 0


def test_positive_mention_wins_over_negated_and_uncertain_ones_in_the_same_report():
    assert label_report("No effusion on the right. Small left effusion.")["Effusion"] == 1
    assert label_report("No consolidation. Possible consolidation at the left base.")["Consolidation"] == -1


def test_empty_or_missing_report_is_all_zero():
    assert label_report("") == dict.fromkeys(FINDINGS, 0)
    assert label_report(float("nan")) == dict.fromkeys(FINDINGS, 0)


def test_labeler_agreement_counts_right_and_wrong_labels():
    df = pd.DataFrame({"report": ["Small left pleural effusion.", "No pneumothorax.", "Possible pneumonia.", ""]})
    for f in CXR14_FINDINGS:
        df[reported_column(f)] = 0
    df.loc[0, reported_column("Effusion")] = 1
    df.loc[1, reported_column("Pneumothorax")] = 1  # deliberately wrong truth: the report negates it
    df.loc[2, reported_column("Pneumonia")] = -1
    out = labeler_agreement(df)
    assert out["n_reports"] == 3  # the empty report is skipped
    assert out["accuracy"]["Effusion"] == 1.0
    assert out["accuracy"]["Pneumothorax"] == pytest.approx(2 / 3)
    assert out["exact_match"] == pytest.approx(2 / 3)
    assert out["n_positive"]["Pneumothorax"] == 1


def test_labeler_agreement_names_missing_columns():
    with pytest.raises(ValueError, match="report"):
        labeler_agreement(pd.DataFrame({"x": [1]}))
    with pytest.raises(ValueError, match="reported_"):
        labeler_agreement(pd.DataFrame({"report": ["no effusion"]}))
