"""Dataset builders on tiny fixtures written in each dataset's official file format; cards.

Each dataset's view, sex and age rules are checked against its card, value by
value (``test_<dataset>_builder``). Options every builder shares (gzipped
metadata, metadata-only builds, membership-stable splits) and the manifest
CLI are in ``test_build_options.py``.
"""

from __future__ import annotations

import math
import re
import shutil

import numpy as np
import pytest
import yaml
from official_fixtures import FIXTURES

from raddino_lib.data.builders import BuildError, build_manifest
from raddino_lib.data.builders.common import age_from_dates, map_view, normalize_age, normalize_sex, view_mapping
from raddino_lib.data.builders.siim_acr_pneumothorax import rle_decode, rle_encode
from raddino_lib.data.cards import CARD_DIR, CardError, card_names, load_card
from raddino_lib.data.io import load_image, load_mask
from raddino_lib.data.manifest import read_manifest
from raddino_lib.data.schema import ALL_FINDINGS, FINDINGS, VIEWS

ALL_CARDS = ("brax", "chexpert", "ct_rate", "mimic_cxr_jpg", "nih_cxr14", "padchest", "rsna_pneumonia",
             "siim_acr_pneumothorax", "vindr_cxr")


def _label(df, image_id, finding):
    return df.loc[df["image_id"] == image_id, f"label_{finding}"].item()


def _column(df, column):
    return dict(zip(df["image_id"], df[column], strict=True))


def _build(card, tmp_path, **kwargs):
    root = FIXTURES[card](tmp_path)
    return read_manifest(build_manifest(card, root, root / "manifest.csv", **kwargs))


# ----------------------------------------------------------------------------- values and cards


def test_value_normalisation():
    assert normalize_age("058Y") == 58 and normalize_age("6M") == 0.5 and normalize_age(47.0) == 47
    assert normalize_age("85 or more") == 85 and math.isnan(normalize_age("414")) and math.isnan(normalize_age(""))
    assert math.isnan(normalize_age("-1")) and normalize_age("30D") == pytest.approx(0.08, abs=0.01)
    assert abs(age_from_dates("1939.0", "20140812") - 75.12) < 0.01
    assert math.isnan(age_from_dates("", "20140812"))
    assert [normalize_sex(s) for s in ("M", "Female", "male", "O", "Unknown", "")] == ["M", "F", "M", "", "", ""]
    views = view_mapping({"view_mapping": {"PA": "PA", "ap_horizontal": "AP", "LLD": None, "L": "LATERAL"}})
    assert [map_view(v, views) for v in ("PA", " pa ", "AP_horizontal", "L", "LLD", "COSTAL", "", None)] == [
        "PA", "PA", "AP", "LATERAL", "", "", "", ""]


def test_cards_load_and_map_into_findings_and_views(tmp_path):
    assert tuple(card_names()) == ALL_CARDS
    for name in ALL_CARDS:
        card = load_card(name)
        assert card["name"] == name and card["url"].startswith("https://")
        assert {t for t in card["label_mapping"].values() if t} <= set(ALL_FINDINGS)
        assert {t for t in card.get("view_mapping", {}).values() if t} <= set(VIEWS)
    assert load_card("chexpert")["label_mapping"]["Pleural Effusion"] == "Effusion"
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\n")
    with pytest.raises(CardError, match="missing key"):
        load_card(bad)
    with pytest.raises(CardError, match="known cards"):
        load_card("nope")
    card = yaml.safe_load((CARD_DIR / "nih_cxr14.yaml").read_text())
    card["view_mapping"]["LL"] = "LEFT LATERAL"
    (tmp_path / "views.yaml").write_text(yaml.safe_dump(card))
    with pytest.raises(CardError, match="view_mapping targets .*LEFT LATERAL"):
        load_card(tmp_path / "views.yaml")


# ----------------------------------------------------------------------------- NIH


def test_nih_builder(tmp_path):
    root = FIXTURES["nih_cxr14"](tmp_path)
    shutil.move(root / "images", root / "images_001")  # the Kaggle layout: images_001/images/...
    (root / "images_001" / "images").mkdir()
    for png in sorted((root / "images_001").glob("*.png")):
        png.rename(root / "images_001" / "images" / png.name)
    out = build_manifest("nih_cxr14", root, tmp_path / "out" / "manifest.csv")
    df = read_manifest(out)
    assert len(df) == 5 and df["path"][0] == "../nih/images_001/images/00000001_000.png"  # found by name
    assert _label(df, "00000001_000.png", "Cardiomegaly") == 1 and _label(df, "00000001_000.png", "Mass") == 0
    assert _label(df, "00000001_001.png", "No Finding") == 1 and _label(df, "00000001_000.png", "No Finding") == 0
    assert math.isnan(_label(df, "00000001_000.png", "Support Devices"))
    assert df.set_index("image_id").loc["00000002_000.png", "split"] == "test"
    assert set(df.loc[df["patient_id"] != "2", "split"]) <= {"train", "val"}
    assert df["original_labels"][4] == "Mass|Nodule|Infiltration" and df["study_id"][1] == "1_1"
    # card demographics: age in years ("058Y" in old releases, > 120 empty), sex M/F, view PA/AP as written
    ages = _column(df, "age")
    assert ages["00000001_000.png"] == 58 and ages["00000003_000.png"] == 33 and math.isnan(ages["00000002_000.png"])
    assert df["sex"].tolist() == ["M", "M", "F", "F", "M"] and df["view"].tolist() == ["PA", "AP", "PA", "PA", "AP"]
    again = build_manifest("nih_cxr14", root, tmp_path / "out" / "again.csv")
    assert again.read_bytes() == out.read_bytes()


def test_missing_images_error_or_drop(tmp_path):
    root = FIXTURES["nih_cxr14"](tmp_path)
    (root / "images" / "00000003_000.png").unlink()
    with pytest.raises(BuildError, match=r"1 image\(s\).*00000003_000.png.*--drop-missing.*--no-files"):
        build_manifest("nih_cxr14", root, tmp_path / "m.csv")
    assert len(read_manifest(build_manifest("nih_cxr14", root, tmp_path / "m.csv", drop_missing=True))) == 4
    (tmp_path / "empty").mkdir()
    with pytest.raises(BuildError, match=r"Data_Entry_2017.csv"):
        build_manifest("nih_cxr14", tmp_path / "empty", tmp_path / "m.csv")


# ----------------------------------------------------------------------------- CheXpert, MIMIC, BRAX


def test_chexpert_builder(tmp_path):
    root = FIXTURES["chexpert"](tmp_path)
    df = read_manifest(build_manifest("chexpert", root, root / "manifest.csv"))
    first = "train/patient00001/study1/view1_frontal.jpg"
    assert df["path"].tolist()[0] == first and df["patient_id"][0] == "patient00001"
    assert _label(df, first, "Effusion") == -1 and _label(df, first, "Support Devices") == 1
    assert _label(df, first, "Cardiomegaly") == 0  # blank = not mentioned → 0 (card blank_policy)
    assert math.isnan(_label(df, first, "Infiltration"))  # Lung Opacity is not mapped
    assert "Lung Opacity=1" in df["original_labels"][0] and "Pleural Effusion=-1" in df["original_labels"][0]
    assert df.set_index("patient_id").loc["patient64541", "split"] == "test"
    assert df.loc[df["patient_id"] == "patient00001", "split"].nunique() == 1
    for name in ("train.csv", "valid.csv"):  # csv files beside the release folder: root = its parent
        (tmp_path / name).write_bytes((root / name).read_bytes())
    from_parent = read_manifest(build_manifest("chexpert", tmp_path, tmp_path / "parent.csv"))
    assert from_parent["image_id"].tolist() == df["image_id"].tolist()
    assert from_parent["path"][0] == "CheXpert-v1.0-small/" + first


def test_chexpert_view_sex_age_rules(tmp_path):
    """Card: LATERAL when Frontal/Lateral is Lateral, else AP/PA; a frontal image is never LATERAL; age 0 empty."""
    df = _build("chexpert", tmp_path)
    views = _column(df, "view")
    assert views["train/patient00001/study1/view1_frontal.jpg"] == "AP"
    assert views["train/patient00001/study1/view2_lateral.jpg"] == "LATERAL"
    assert views["train/patient00002/study1/view1_frontal.jpg"] == "PA"
    assert views["train/patient07958/study5/view2_frontal.jpg"] == ""  # Frontal + AP/PA "LL": frontal, not LATERAL
    assert views["train/patient07959/study1/view1_frontal.jpg"] == ""  # Frontal + AP/PA "RL"
    assert views["valid/patient64541/study1/view1_frontal.jpg"] == "AP"
    sexes, ages = _column(df, "sex"), _column(df, "age")
    assert sexes["train/patient00002/study1/view1_frontal.jpg"] == "" and math.isnan(
        ages["train/patient00002/study1/view1_frontal.jpg"])  # Unknown, 0
    assert sexes["train/patient00001/study1/view1_frontal.jpg"] == "F" and sexes[
        "valid/patient64541/study1/view1_frontal.jpg"] == "M"
    assert ages["train/patient07959/study1/view1_frontal.jpg"] == 90


def test_mimic_builder_and_its_view_sex_age_rules(tmp_path):
    df = _build("mimic_cxr_jpg", tmp_path)
    assert df["report"].tolist()[:2] == ["FINDINGS: Small left apical pneumothorax? IMPRESSION: Possible "
                                         "pneumothorax."] * 2 and df["report"][2] == ""
    assert _column(df, "split") == {"d1": "train", "d2": "train", "d3": "val", "d4": "val", "d5": "val",
                                    "d6": "train", "d7": "train"}
    assert _label(df, "d2", "Pneumothorax") == -1 and _label(df, "d3", "Atelectasis") == 1
    # card: PA, AP, LATERAL, LL and XTABLE LATERAL → LATERAL; lordotic (AP AXIAL), decubitus (PA LLD) → empty
    assert _column(df, "view") == {"d1": "PA", "d2": "LATERAL", "d3": "AP", "d4": "LATERAL", "d5": "", "d6": "",
                                   "d7": "LATERAL"}
    # card: age = anchor_age + study year - anchor_year (91 = over 89, kept); sex from gender
    assert _column(df, "age") == {"d1": 52, "d2": 52, "d3": 86, "d4": 86, "d5": 86, "d6": 91, "d7": 91}
    assert _column(df, "sex") == {"d1": "F", "d2": "F", "d3": "M", "d4": "M", "d5": "M", "d6": "F", "d7": "F"}


def test_brax_builder_and_its_view_sex_age_rules(tmp_path):
    df = _build("brax", tmp_path)
    assert df["age"].tolist() == [85, 40, 40]  # "85 or more" → 85, "040Y" → 40
    assert df["view"].tolist() == ["PA", "LATERAL", "LATERAL"] and df["sex"].tolist() == ["F", "M", "M"]  # L, RL
    assert _label(df, "images/p1/a1/i1.png", "Effusion") == 1 and df["original_labels"][1] == "Fracture=-1"
    assert (df["label_Pneumothorax"] == 0).all()


# ----------------------------------------------------------------------------- PadChest, VinDr


def test_padchest_builder_and_its_view_sex_age_rules(tmp_path):
    df = _build("padchest", tmp_path)
    assert _label(df, "a.png", "Effusion") == 1 and _label(df, "a.png", "Cardiomegaly") == 1
    assert _label(df, "a.png", "Pneumonia") == 0 and _label(df, "b.png", "No Finding") == 1
    assert _label(df, "c.png", "Support Devices") == 1 and _label(df, "c.png", "Infiltration") == 0
    assert math.isnan(_label(df, "d.png", "Effusion")) and math.isnan(_label(df, "e.png", "No Finding"))
    assert df["path"][1] == "1/b.png" and "interstitial pattern" in df["original_labels"][2]
    # card: Projection PA, AP, AP_horizontal → AP, L → LATERAL, COSTAL / UNK → empty; sex O → empty
    assert _column(df, "view") == {"a.png": "PA", "b.png": "LATERAL", "c.png": "AP", "d.png": "PA", "e.png": "",
                                   "f.png": "AP", "g.png": ""}
    assert df["sex"].tolist() == ["M", "M", "", "F", "F", "F", "M"]
    assert df["age"][0] == pytest.approx(75.12, abs=0.01) and math.isnan(df["age"][2])  # birth year as 1 July


def test_vindr_builder_votes_and_header_views(tmp_path):
    root = FIXTURES["vindr_cxr"](tmp_path)
    df = read_manifest(build_manifest("vindr_cxr", root, root / "manifest.csv"))
    assert _label(df, "img1", "Cardiomegaly") == 1 and _label(df, "img1", "Pneumothorax") == 0  # 2 of 3 vs 1 of 3
    assert _label(df, "img1", "Effusion") == 0 and _label(df, "img2", "No Finding") == 1
    assert math.isnan(_label(df, "img3", "Nodule"))  # Nodule/Mass is not mapped
    assert _column(df, "original_labels")["img3"] == "Nodule/Mass" and _column(df, "split")["img3"] == "test"
    # card: header ViewPosition LL → LATERAL, LLD (decubitus: a frontal projection) → empty; age "058Y"
    assert _column(df, "view") == {"img1": "", "img2": "", "img3": "PA", "img4": "LATERAL", "img5": ""}
    assert _column(df, "age")["img1"] == 58 and _column(df, "sex") == {"img1": "F", "img2": "", "img3": "M",
                                                                        "img4": "", "img5": ""}
    assert load_image(df["abs_path"][0]).shape == (1, 8, 10)
    card = load_card("vindr_cxr")
    card["options"]["vote"] = "any"
    (tmp_path / "any.yaml").write_text(yaml.safe_dump(card))
    df_any = read_manifest(build_manifest(tmp_path / "any.yaml", root, root / "any.csv"))
    assert _label(df_any, "img1", "Pneumothorax") == 1 and _label(df_any, "img1", "Effusion") == 1


# ----------------------------------------------------------------------------- RSNA, SIIM (masks)


def test_rsna_builder_with_box_masks(tmp_path):
    root = FIXTURES["rsna_pneumonia"](tmp_path)
    df = read_manifest(build_manifest("rsna_pneumonia", root, tmp_path / "out" / "manifest.csv", masks=True))
    assert df["label_Pneumonia"].tolist() == [1, 0] and df["label_No Finding"].tolist() == [0, 1]
    assert df["age"].tolist() == [51, 48] and df["view"].tolist() == ["PA", "AP"] and df["sex"].tolist() == ["F", "M"]
    assert df["mask_Pneumonia"].tolist() == ["masks/a.png", ""]
    mask = load_mask(df["abs_mask_Pneumonia"][0]).numpy()
    expected = np.zeros((8, 10))
    expected[2:6, 1:4] = 1
    expected[0:2, 6:8] = 1
    np.testing.assert_array_equal(mask, expected)


def test_rle_decode_by_hand_and_round_trip():
    # 3 x 3, column-major positions: gap 1 → 1, 2 (col 0, rows 1-2); gap 3 → position 6 (col 2, row 0)
    expected = np.array([[0, 0, 1], [1, 0, 0], [1, 0, 0]], dtype=bool)
    np.testing.assert_array_equal(rle_decode("1 2 3 1", (3, 3)), expected)
    rng = np.random.default_rng(0)
    mask = rng.random((7, 5)) > 0.6
    np.testing.assert_array_equal(rle_decode(rle_encode(mask), (7, 5)), mask)
    assert rle_encode(np.zeros((2, 2))) == "-1"


def test_siim_builder_with_rle_masks(tmp_path):
    root = FIXTURES["siim_acr_pneumothorax"](tmp_path)
    df = read_manifest(build_manifest("siim_acr_pneumothorax", root, root / "manifest.csv", masks=True))
    assert df["label_Pneumothorax"].tolist() == [1, 0] and df["patient_id"].tolist() == ["pat-a", "pat-b"]
    assert df["path"][0] == "dicom-images-train/s1/r1/1.2.3.dcm" and df["mask_Pneumothorax"][1] == ""
    assert df["age"].tolist()[0] == 38 and df["sex"].tolist() == ["M", ""] and df["view"].tolist() == ["PA", ""]
    region = np.zeros((8, 10), dtype=bool)
    region[3:6, 2:5] = True
    region[0, 9] = True
    np.testing.assert_array_equal(load_mask(df["abs_mask_Pneumothorax"][0]).numpy(), region)


def test_readme_counts_and_card_texts_agree_with_the_mappings():
    readme = (CARD_DIR / "README.md").read_text()
    rows = {line.split("|")[1].strip().strip("`"): line for line in readme.splitlines()
            if line.startswith("| `") and line.split("|")[1].strip().strip("`") in ALL_CARDS}
    assert set(rows) == set(ALL_CARDS)
    for name in ALL_CARDS:
        card = load_card(name)
        targets = {t for t in card["label_mapping"].values() if t}
        mapped = [f for f in FINDINGS[:14] if f in targets]
        labels_column = rows[name].split("|")[3]
        assert f"{len(mapped)} of 14" in labels_column, (name, len(mapped), labels_column)
        for extra in ("No Finding", "Support Devices"):
            assert (extra in targets) == (extra in labels_column.replace("Support Devices unknown", "")), (name, extra)
        unmapped = [f for f in FINDINGS[:14] if f not in targets]
        policy = card["label_policy"]
        assert "all other findings" in policy or all(f in policy for f in unmapped), (name, unmapped)
    not_mapped = readme[readme.index("Deliberately **not** mapped"):].split("\n\n")[0]
    nulls = {src for name in ALL_CARDS for src, dst in load_card(name)["label_mapping"].items() if dst is None}
    quoted_names = {" ".join(q.split()) for q in re.findall(r"`([^`]+)`", not_mapped)}
    for quoted in quoted_names - {"original_labels", *FINDINGS}:  # source labels, not the common names
        assert quoted in nulls, f"README says '{quoted}' is not mapped; no card maps it to null"
