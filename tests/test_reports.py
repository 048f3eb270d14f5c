"""The report labeler against hand-labelled radiology sentences (MIMIC-CXR / CheXpert-style phrasing).

Each case lists the findings it states; every other CXR14 finding must be 0.
"""

import pandas as pd
import pytest

from raddino_lib.data.reports import label_report, labeler_agreement, report_body, split_sentences
from raddino_lib.data.schema import CXR14_FINDINGS, reported_column

CASES: list[tuple[str, dict[str, int]]] = [
    # plain positives, with laterality / size words that must not matter
    ("Small left pleural effusion.", {"Effusion": 1}),
    ("Moderate bilateral pleural effusions, larger on the right.", {"Effusion": 1}),
    ("Blunting of the right costophrenic angle, likely due to a small effusion.", {"Effusion": 1}),
    ("There is a small amount of fluid in the left costophrenic sulcus.", {"Effusion": 1}),
    ("Large right-sided pneumothorax with leftward mediastinal shift.", {"Pneumothorax": 1}),
    ("Small apical PTX on the left.", {"Pneumothorax": 1}),
    ("Right hydropneumothorax.", {"Pneumothorax": 1, "Effusion": 1}),
    ("The cardiac silhouette is moderately enlarged.", {"Cardiomegaly": 1}),
    ("Heart size is enlarged.", {"Cardiomegaly": 1}),
    ("Stable cardiomegaly. No acute cardiopulmonary process.", {"Cardiomegaly": 1}),
    ("Enlarged cardiac silhouette with mild pulmonary vascular congestion.", {"Cardiomegaly": 1, "Edema": 1}),
    ("Moderate pulmonary edema with bilateral Kerley B lines.", {"Edema": 1}),
    ("Patchy consolidation in the right lower lobe.", {"Consolidation": 1}),
    ("Bibasilar atelectasis.", {"Atelectasis": 1}),
    ("Plate-like atelectasis at the left base.", {"Atelectasis": 1}),
    ("Left lower lobe collapse.", {"Atelectasis": 1}),
    ("The lungs are hyperinflated with flattening of the diaphragms, consistent with emphysema.", {"Emphysema": 1}),
    ("Interstitial fibrosis with honeycombing at the lung bases.", {"Fibrosis": 1}),
    ("Large hiatal hernia is again noted.", {"Hernia": 1}),
    ("A 1.5 cm nodule in the right upper lobe.", {"Nodule": 1}),
    ("There is a 4 cm mass in the left hilum.", {"Mass": 1}),
    ("Biapical pleural thickening.", {"Pleural_Thickening": 1}),
    ("Diffuse interstitial infiltrates.", {"Infiltration": 1}),
    ("Right lower lobe pneumonia.", {"Pneumonia": 1}),
    ("Right middle lobe opacity consistent with pneumonia.", {"Pneumonia": 1}),
    # negation with forward scope over lists, and post-mention negation
    ("No pneumothorax.", {}),
    ("No pleural effusion or pneumothorax.", {}),
    ("No focal consolidation, pleural effusion, pneumothorax, or pulmonary edema.", {}),
    ("There is no evidence of pneumothorax.", {}),
    ("Lungs are clear without consolidation or effusion.", {}),
    ("The lungs are clear of focal consolidation.", {}),
    ("Negative for pneumonia.", {}),
    ("Pneumothorax is not seen.", {}),
    ("The previously seen left pleural effusion has resolved.", {}),
    ("Interval resolution of the right pneumothorax.", {}),
    ("Heart size is not enlarged.", {}),
    ("Heart size is normal. The lungs are clear.", {}),
    ("No acute cardiopulmonary process.", {}),
    ("Free of pleural effusion.", {}),
    ("The pneumothorax is no longer visualized.", {}),
    # scope terminators: negation does not reach past "but" / a new clause
    ("No pneumothorax, but there is a small left pleural effusion.", {"Effusion": 1}),
    ("Small right pleural effusion without pneumothorax.", {"Effusion": 1}),
    ("No pleural effusion; mild cardiomegaly.", {"Cardiomegaly": 1}),
    ("No pneumothorax is identified and the heart is enlarged.", {"Cardiomegaly": 1}),
    # pseudo-negation: "no change" states the finding is still there
    ("No change in the moderate right pleural effusion.", {"Effusion": 1}),
    ("No significant interval change in bibasilar atelectasis.", {"Atelectasis": 1}),
    # uncertainty before and after the mention
    ("Possible small left pleural effusion.", {"Effusion": -1}),
    ("Left basilar opacity may represent atelectasis or pneumonia.", {"Atelectasis": -1, "Pneumonia": -1}),
    ("Pneumonia cannot be excluded.", {"Pneumonia": -1}),
    ("Early pneumonia is not excluded.", {"Pneumonia": -1}),
    ("Findings are suggestive of mild pulmonary edema.", {"Edema": -1}),
    ("Questionable tiny right apical pneumothorax.", {"Pneumothorax": -1}),
    ("Opacity at the right base, concerning for pneumonia.", {"Pneumonia": -1}),
    ("Borderline cardiomegaly.", {"Cardiomegaly": -1}),
    ("Atelectasis versus consolidation in the left lower lobe.", {"Atelectasis": -1, "Consolidation": -1}),
    ("Nodular opacity in the right upper lobe, possibly a nodule or mass.", {"Nodule": 1, "Mass": -1}),
    ("Streaky opacities likely reflect atelectasis.", {"Atelectasis": -1}),
    ("Pneumothorax?", {"Pneumothorax": -1}),
    ("Hazy opacity at the left base which could represent layering effusion.", {"Effusion": -1}),
    ("No definite focal consolidation to suggest pneumonia.", {}),
    ("No radiographic evidence of pneumonia.", {}),
    ("There is a small left pleural effusion and the heart is enlarged.", {"Effusion": 1, "Cardiomegaly": 1}),
    # mixed sentences and cross-finding look-alikes
    ("No pneumothorax. Possible small effusion.", {"Effusion": -1}),
    ("Mild cardiomegaly with small bilateral effusions; no pneumothorax.", {"Cardiomegaly": 1, "Effusion": 1}),
    ("Small pericardial effusion.", {}),
    ("Subcutaneous emphysema in the left chest wall.", {}),
    ("Mild soft tissue edema.", {}),
    ("Massive right pleural effusion.", {"Effusion": 1}),
    ("No mass effect.", {}),
]


@pytest.mark.parametrize("text,expected", CASES, ids=[c[0][:40] for c in CASES])
def test_labels_realistic_sentences(text, expected):
    labels = label_report(text)
    assert set(labels) == set(CXR14_FINDINGS)
    want = {f: expected.get(f, 0) for f in CXR14_FINDINGS}
    wrong = {f: (labels[f], want[f]) for f in CXR14_FINDINGS if labels[f] != want[f]}
    assert not wrong, f"{text!r}: (got, expected) {wrong}"


def test_at_least_forty_hand_labelled_sentences_cover_every_finding_and_value():
    assert len(CASES) >= 40
    stated = {(f, v) for _, exp in CASES for f, v in exp.items()}
    assert {f for f, v in stated if v == 1} == set(CXR14_FINDINGS)
    assert {v for _, v in stated} == {1, -1}


def test_indication_and_history_sections_are_ignored():
    report = ("INDICATION: Cough and fever, evaluate for pneumonia.\nCOMPARISON: None.\n"
              "FINDINGS: The lungs are clear. No pleural effusion.\nIMPRESSION: No acute cardiopulmonary process.")
    assert "pneumonia" not in report_body(report).lower()
    assert label_report(report) == dict.fromkeys(CXR14_FINDINGS, 0)
    assert label_report("FINDINGS: small left effusion.\nIMPRESSION: effusion.")["Effusion"] == 1


def test_sentences_split_on_periods_but_not_decimals_and_drop_laterality():
    assert split_sentences("A 1.5 cm nodule. No left effusion; right PTX") == [
        "a 1.5 cm nodule", "no effusion", "ptx"]


def test_positive_mention_wins_over_negated_and_uncertain_ones_in_the_same_report():
    assert label_report("No effusion on the right. Small left effusion.")["Effusion"] == 1
    assert label_report("No consolidation. Possible consolidation at the left base.")["Consolidation"] == -1


def test_empty_or_missing_report_is_all_zero():
    assert label_report("") == dict.fromkeys(CXR14_FINDINGS, 0)
    assert label_report(float("nan")) == dict.fromkeys(CXR14_FINDINGS, 0)


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
