"""CT report labeler against independent truth: what the CT phantom generator recorded it wrote (``reported``),
and hand-written sentences for negation, hedging and look-alike findings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from raddino_lib.data.ct_reports import (
    CT_PHRASES,
    ct_labeler_agreement,
    ct_zero_shot_prompts,
    label_ct_report,
    label_ct_reports,
)
from raddino_lib.data.phantoms_ct import generate
from raddino_lib.data.phantoms_ct.knobs import CTPhantomKnobs
from raddino_lib.data.phantoms_ct.patients import sample_case
from raddino_lib.data.phantoms_ct.reports import HEDGES, ORGANS, write_report
from raddino_lib.data.schema import CT_FINDINGS, reported_column
from raddino_lib.data.volume_manifest import read_volume_manifest


def _stated(text: str) -> dict[str, int]:
    """The non-zero labels of a text."""
    return {f: v for f, v in label_ct_report(text).items() if v}


# ----------------------------------------------------------------------------- the generator's own record


@pytest.mark.parametrize("knobs", [CTPhantomKnobs(), CTPhantomKnobs(hedged_fraction=0.5, unreported_fraction=0.3)],
                         ids=["default", "many_hedges"])
@pytest.mark.parametrize("balanced", [True, False], ids=["balanced", "ct_rate"])
def test_labeler_reproduces_what_the_generator_wrote(knobs, balanced):
    failures, cells = [], 0
    for i in range(400):
        case = sample_case(np.random.default_rng(i), balanced, knobs)
        text, reported = write_report(case, np.random.default_rng(77_000 + i), knobs)
        got = label_ct_report(text)
        assert list(got) == list(CT_FINDINGS)
        cells += len(CT_FINDINGS)
        failures += [(f, reported[f], got[f], text) for f in CT_FINDINGS if got[f] != reported[f]]
    agreement = 1 - len(failures) / cells
    assert agreement == 1.0, f"agreement {agreement:.4f}; (finding, reported, labeler, text): {failures[:5]}"


def test_generator_hedges_and_stock_sentences_are_covered():
    """Every hedge template over every finding's short phrase is -1; every normal-organ sentence names nothing."""
    for finding, phrase in CT_PHRASES.items():
        for template in HEDGES:
            text = template.format(phrase)
            assert _stated(text[0].upper() + text[1:] + ".") == {finding: -1}, (finding, template)
    for _, _, normal in ORGANS:
        for sentence in normal:
            assert _stated(sentence) == {}, sentence


def test_agreement_on_a_generated_manifest(tmp_path):
    manifest = generate(tmp_path / "ct", n=40, size=16, seed=0, balanced=True)
    df = read_volume_manifest(manifest)
    out = ct_labeler_agreement(df)
    assert out["n_reports"] == 40 and set(out["per_finding"]) == set(CT_FINDINGS)
    wrong = {f: a for f, a in out["per_finding"].items() if a != 1.0}
    assert out["overall"] == 1.0 and out["exact_match"] == 1.0, wrong
    assert (df[[reported_column(f) for f in CT_FINDINGS]].to_numpy() != 0).any()  # the comparison is not trivial


def test_agreement_counts_disagreements_and_needs_reports():
    df = pd.DataFrame({"report": ["Mild cardiomegaly.", "No pleural effusion."],
                       reported_column("Cardiomegaly"): [1, 1], reported_column("Pleural effusion"): [0, 0]})
    out = ct_labeler_agreement(df)
    assert out["per_finding"] == {"Cardiomegaly": 0.5, "Pleural effusion": 1.0}
    assert out["overall"] == 0.75 and out["exact_match"] == 0.5 and out["n_reports"] == 2
    with pytest.raises(ValueError, match="report"):
        ct_labeler_agreement(df.drop(columns="report"))
    with pytest.raises(ValueError, match="reported_"):
        ct_labeler_agreement(df[["report"]])


# ----------------------------------------------------------------------------- hand-written sentences


@pytest.mark.parametrize("text, expected", [
    ("No pericardial effusion or thickening.", {}),
    ("Pericardial effusion was not seen.", {}),
    ("No pleural effusion, consolidation or atelectasis.", {}),
    ("No enlarged lymph nodes are seen in the mediastinum or the hila.", {}),
    ("No lymph node of pathological size in the mediastinal or hilar stations.", {}),
    ("The heart is not enlarged.", {}),
    ("Both lungs are clear; no mass, nodule or infiltrate is detected.", {}),
    ("The thoracic esophagus is of normal calibre without wall thickening.", {}),
    ("Pleural effusion and cardiomegaly are not seen.", {}),
    ("There is no hiatal hernia.", {}),
    ("Without emphysema or bronchiectasis.", {}),
    ("No pleural effusion, the heart is enlarged.", {"Cardiomegaly": 1}),
    ("Pericardial effusion was not seen, but there is a right pleural effusion.", {"Pleural effusion": 1}),
    ("Possible consolidation, no pleural effusion.", {"Consolidation": -1}),
    ("No change in the right pleural effusion.", {"Pleural effusion": 1}),
])
def test_negation(text, expected):
    assert _stated(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("FINDINGS: Possible mild centrilobular emphysema. IMPRESSION: Possible emphysema.", {"Emphysema": -1}),
    ("FINDINGS: Bronchiectasis in the right lower lobe cannot be excluded.", {"Bronchiectasis": -1}),
    ("IMPRESSION: Findings suspicious for mediastinal lymphadenopathy.", {"Lymphadenopathy": -1}),
    ("Questionable the heart is enlarged.", {"Cardiomegaly": -1}),
    ("Enlarged lymph nodes in the subcarinal station, the largest 13 mm in short axis cannot be excluded.",
     {"Lymphadenopathy": -1}),
    ("Pleural effusion is not excluded.", {"Pleural effusion": -1}),
    ("Possible a nasogastric tube in the esophagus and median sternotomy wires is seen.", {"Medical material": -1}),
])
def test_hedges(text, expected):
    assert _stated(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("Coronary artery calcification.", {"Coronary artery wall calcification": 1}),
    ("Calcified plaques in the coronary arteries.", {"Coronary artery wall calcification": 1}),
    ("Calcification of the coronary arterial walls.", {"Coronary artery wall calcification": 1}),
    ("Aortic atherosclerosis.", {"Arterial wall calcification": 1}),
    ("Atherosclerotic calcifications in the aortic wall.", {"Arterial wall calcification": 1}),
    ("Severe calcified atherosclerotic plaques in the thoracic aorta.", {"Arterial wall calcification": 1}),
    ("Thoracic aorta diameter is normal.", {}),
    ("Aortic atherosclerosis. No coronary artery calcification.", {"Arterial wall calcification": 1}),
    ("Pericardial effusion up to 12 mm thick.", {"Pericardial effusion": 1}),
    ("Moderate bilateral pleural effusions.", {"Pleural effusion": 1}),
    ("Pericardial effusion. No pleural effusion.", {"Pericardial effusion": 1}),
    ("No pericardial or pleural effusion.", {}),
    ("Pleural and pericardial effusions.", {"Pleural effusion": 1, "Pericardial effusion": 1}),
    ("Enlarged lymph nodes in the aortopulmonary window station.", {"Lymphadenopathy": 1}),
    ("Bronchial wall thickening in both lungs.", {"Peribronchial thickening": 1}),
    ("Thickening of the interlobular septa in the periphery of both lungs.", {"Interlobular septal thickening": 1}),
    ("Herniation of the stomach through the esophageal hiatus (hiatal hernia).", {"Hiatal hernia": 1}),
    ("A left chest wall pacemaker with its lead in the right heart is seen.", {"Medical material": 1}),
    ("Emphysematous changes in both lungs. Mild atelectatic changes in the left lower lobe.",
     {"Emphysema": 1, "Atelectasis": 1}),
    ("Linear fibrotic bands and sequelae changes in the right upper lobe.", {"Pulmonary fibrotic sequela": 1}),
    ("Moderate ground-glass density increase in the left upper lobe.", {"Lung opacity": 1}),
])
def test_look_alikes_and_wordings(text, expected):
    assert _stated(text) == expected


def test_stated_beats_hedged_beats_absent():
    assert _stated("Possible atelectasis. Subsegmental atelectasis in the right lower lobe.") == {"Atelectasis": 1}
    assert _stated("No consolidation. Consolidation cannot be excluded.") == {"Consolidation": -1}
    assert _stated("No mosaic attenuation. Unremarkable chest CT.") == {}


def test_label_ct_reports_frame():
    df = label_ct_reports(["Mild cardiomegaly.", "", None, "Possible pulmonary nodule."])
    assert list(df.columns) == list(CT_FINDINGS) and len(df) == 4
    assert df["Cardiomegaly"].tolist() == [1, 0, 0, 0] and df["Lung nodule"].tolist() == [0, 0, 0, -1]
    assert int(df.abs().to_numpy().sum()) == 2


# ----------------------------------------------------------------------------- zero-shot prompts


@pytest.mark.parametrize("finding", CT_FINDINGS)
def test_prompts_name_their_finding(finding):
    negative, positive = ct_zero_shot_prompts(finding)
    assert negative == f"No {CT_PHRASES[finding]}." and positive.lower() == f"{CT_PHRASES[finding]}."
    assert positive[0].isupper()
    assert _stated(positive) == {finding: 1}
    assert _stated(negative) == {}


def test_prompts_examples_and_unknown_finding():
    assert ct_zero_shot_prompts("Pleural effusion") == ("No pleural effusion.", "Pleural effusion.")
    assert CT_PHRASES["Lung nodule"] == "pulmonary nodule" and CT_PHRASES["Medical material"] == "medical devices"
    assert tuple(CT_PHRASES) == CT_FINDINGS
    with pytest.raises(KeyError, match="Lung nodule"):
        ct_zero_shot_prompts("Pneumothorax")
