"""Dataset builders on tiny fixtures written in each dataset's official file format; cards; the manifest CLI."""

from __future__ import annotations

import argparse
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from raddino_lib.cli import COMMAND_MODULES
from raddino_lib.data.builders import BuildError, build_manifest
from raddino_lib.data.builders.common import age_from_dates, normalize_age, normalize_sex, normalize_view
from raddino_lib.data.builders.siim_acr_pneumothorax import rle_decode, rle_encode
from raddino_lib.data.cards import CardError, card_names, load_card
from raddino_lib.data.io import load_image, load_mask
from raddino_lib.data.manifest import read_manifest
from raddino_lib.data.schema import ALL_FINDINGS

ALL_CARDS = ("brax", "chexpert", "ct_rate", "mimic_cxr_jpg", "nih_cxr14", "padchest", "rsna_pneumonia",
             "siim_acr_pneumothorax", "vindr_cxr")
CHEXPERT_LABELS = ("No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion",
                   "Edema", "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion",
                   "Pleural Other", "Fracture", "Support Devices")


def _png(path, size=(8, 8), bits=8):
    path.parent.mkdir(parents=True, exist_ok=True)
    dtype = np.uint8 if bits == 8 else np.uint16
    Image.fromarray((np.arange(size[0] * size[1]).reshape(size) % 200).astype(dtype)).save(path)


def _dicom(path, rows=8, cols=10, **tags):
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = rows, cols, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = (np.arange(rows * cols) % 4000).astype(np.uint16).tobytes()
    with warnings.catch_warnings():  # RSNA / SIIM write ages like "51", not valid DICOM AS values; so do we
        warnings.simplefilter("ignore", UserWarning)
        for key, value in tags.items():
            setattr(ds, key, value)
        ds.save_as(path, enforce_file_format=True)


def _csv(path, rows: list[dict], columns=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=columns).to_csv(path, index=False)


def _label(df, image_id, finding):
    return df.loc[df["image_id"] == image_id, f"label_{finding}"].item()


# ----------------------------------------------------------------------------- value normalisation


def test_value_normalisation():
    assert normalize_age("058Y") == 58 and normalize_age("6M") == 0.5 and normalize_age(47.0) == 47
    assert normalize_age("85 or more") == 85 and math.isnan(normalize_age("414")) and math.isnan(normalize_age(""))
    assert abs(age_from_dates("1939.0", "20140812") - 75.12) < 0.01
    assert math.isnan(age_from_dates("", "20140812"))
    assert [normalize_sex(s) for s in ("M", "Female", "male", "O", "Unknown", "")] == ["M", "F", "M", "", "", ""]
    views = ("PA", "AP_horizontal", "AP Supine", "L", "LL", "LATERAL", "COSTAL", "UNK")
    assert [normalize_view(v) for v in views] == ["PA", "AP", "AP", "LATERAL", "LATERAL", "LATERAL", "", ""]


def test_cards_load_and_map_into_findings(tmp_path):
    assert tuple(card_names()) == ALL_CARDS
    for name in ALL_CARDS:
        card = load_card(name)
        assert card["name"] == name and card["url"].startswith("https://")
        assert {t for t in card["label_mapping"].values() if t} <= set(ALL_FINDINGS)
    assert load_card("chexpert")["label_mapping"]["Pleural Effusion"] == "Effusion"
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\n")
    with pytest.raises(CardError, match="missing key"):
        load_card(bad)
    with pytest.raises(CardError, match="known cards"):
        load_card("nope")


# ----------------------------------------------------------------------------- NIH


def _nih(root):
    rows = [("00000001_000.png", "Cardiomegaly|Effusion", 0, 1, 58, "M", "PA"),
            ("00000001_001.png", "No Finding", 1, 1, 59, "M", "AP"),
            ("00000002_000.png", "Hernia", 0, 2, 414, "F", "PA"),
            ("00000003_000.png", "No Finding", 0, 3, 33, "F", "PA"),
            ("00000004_000.png", "Mass|Nodule|Infiltration", 0, 4, 70, "M", "AP")]
    cols = ["Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender",
            "View Position"]
    _csv(root / "Data_Entry_2017.csv", [dict(zip(cols, r, strict=True)) for r in rows])
    (root / "train_val_list.txt").write_text("00000001_000.png\n00000001_001.png\n00000003_000.png\n"
                                             "00000004_000.png\n")
    (root / "test_list.txt").write_text("00000002_000.png\n")
    for r in rows:
        _png(root / "images_001" / "images" / r[0])


def test_nih_builder(tmp_path):
    root = tmp_path / "nih"
    _nih(root)
    out = build_manifest("nih_cxr14", root, tmp_path / "out" / "manifest.csv")
    df = read_manifest(out)
    assert len(df) == 5 and df["path"][0] == "../nih/images_001/images/00000001_000.png"
    assert _label(df, "00000001_000.png", "Cardiomegaly") == 1 and _label(df, "00000001_000.png", "Mass") == 0
    assert _label(df, "00000001_001.png", "No Finding") == 1 and _label(df, "00000001_000.png", "No Finding") == 0
    assert math.isnan(_label(df, "00000001_000.png", "Support Devices"))
    assert df.set_index("image_id").loc["00000002_000.png", "split"] == "test"
    assert math.isnan(df.set_index("image_id").loc["00000002_000.png", "age"])  # 414 is a release error
    assert set(df.loc[df["patient_id"] != "2", "split"]) <= {"train", "val"}
    assert df["original_labels"][4] == "Mass|Nodule|Infiltration" and df["study_id"][1] == "1_1"
    again = build_manifest("nih_cxr14", root, tmp_path / "out" / "again.csv")
    assert again.read_bytes() == out.read_bytes()


def test_missing_images_error_or_drop(tmp_path):
    root = tmp_path / "nih"
    _nih(root)
    (root / "images_001" / "images" / "00000003_000.png").unlink()
    with pytest.raises(BuildError, match=r"1 image\(s\).*00000003_000.png.*--drop-missing"):
        build_manifest("nih_cxr14", root, tmp_path / "m.csv")
    assert len(read_manifest(build_manifest("nih_cxr14", root, tmp_path / "m.csv", drop_missing=True))) == 4
    (tmp_path / "empty").mkdir()
    with pytest.raises(BuildError, match=r"Data_Entry_2017.csv.*not found|none of .*Data_Entry_2017.csv"):
        build_manifest("nih_cxr14", tmp_path / "empty", tmp_path / "m.csv")


# ----------------------------------------------------------------------------- CheXpert, MIMIC, BRAX


def _chexpert_row(path, sex, age, frontal, appa, **labels):
    row = {"Path": path, "Sex": sex, "Age": age, "Frontal/Lateral": frontal, "AP/PA": appa}
    row.update({name: labels.get(name.replace(" ", "_"), "") for name in CHEXPERT_LABELS})
    return row


def test_chexpert_builder(tmp_path):
    root = tmp_path / "CheXpert-v1.0-small"
    release = "CheXpert-v1.0-small/"
    train = [_chexpert_row(release + "train/patient00001/study1/view1_frontal.jpg", "Female", 68, "Frontal", "AP",
                           Pleural_Effusion=-1.0, Lung_Opacity=1.0, Support_Devices=1.0),
             _chexpert_row(release + "train/patient00001/study1/view2_lateral.jpg", "Female", 68, "Lateral", "",
                           Pleural_Effusion=-1.0),
             _chexpert_row(release + "train/patient00002/study1/view1_frontal.jpg", "Unknown", 0, "Frontal", "PA",
                           No_Finding=1.0)]
    valid = [_chexpert_row(release + "valid/patient64541/study1/view1_frontal.jpg", "Male", 73, "Frontal", "AP",
                           Cardiomegaly=1.0, Edema=0.0)]
    _csv(root / "train.csv", train)
    _csv(root / "valid.csv", valid)
    for row in train + valid:
        _png(tmp_path / row["Path"])
    df = read_manifest(build_manifest("chexpert", root, root / "manifest.csv"))
    first = "train/patient00001/study1/view1_frontal.jpg"
    assert df["path"].tolist()[0] == first and df["patient_id"][0] == "patient00001"
    assert _label(df, first, "Effusion") == -1 and _label(df, first, "Support Devices") == 1
    assert _label(df, first, "Cardiomegaly") == 0  # blank = not mentioned → 0 (card blank_policy)
    assert math.isnan(_label(df, first, "Infiltration"))  # Lung Opacity is not mapped
    assert "Lung Opacity=1" in df["original_labels"][0] and "Pleural Effusion=-1" in df["original_labels"][0]
    assert df["view"].tolist()[:2] == ["AP", "LATERAL"] and df["sex"][2] == "" and math.isnan(df["age"][2])
    assert df.set_index("patient_id").loc["patient64541", "split"] == "test"
    assert df.loc[df["patient_id"] == "patient00001", "split"].nunique() == 1
    for name in ("train.csv", "valid.csv"):  # csv files beside the release folder: root = its parent
        (tmp_path / name).write_bytes((root / name).read_bytes())
    from_parent = read_manifest(build_manifest("chexpert", tmp_path, tmp_path / "parent.csv"))
    assert from_parent["image_id"].tolist() == df["image_id"].tolist()
    assert from_parent["path"][0] == "CheXpert-v1.0-small/" + first


def test_mimic_builder(tmp_path):
    root = tmp_path / "mimic"
    images = [("d1", "10000032", "50414267", "PA", "21800506"), ("d2", "10000032", "50414267", "LATERAL", "21800506"),
              ("d3", "10000764", "57375967", "AP", "21320722")]
    _csv(root / "mimic-cxr-2.0.0-metadata.csv", [dict(zip(("dicom_id", "subject_id", "study_id", "ViewPosition",
                                                           "StudyDate"), r, strict=True)) for r in images])
    labels = [{"subject_id": "10000032", "study_id": "50414267", **{n: "" for n in CHEXPERT_LABELS}},
              {"subject_id": "10000764", "study_id": "57375967", **{n: "" for n in CHEXPERT_LABELS}}]
    labels[0]["Pneumothorax"], labels[1]["Atelectasis"] = "-1.0", "1.0"
    _csv(root / "mimic-cxr-2.0.0-chexpert.csv", labels)
    _csv(root / "mimic-cxr-2.0.0-split.csv", [{"dicom_id": "d1", "split": "train"}, {"dicom_id": "d2", "split":
                                              "train"}, {"dicom_id": "d3", "split": "validate"}])
    _csv(root / "patients.csv", [{"subject_id": "10000032", "gender": "F", "anchor_age": 52, "anchor_year": 2180},
                                 {"subject_id": "10000764", "gender": "M", "anchor_age": 86, "anchor_year": 2132}])
    for d, subject, study, _, _ in images:
        _png(root / f"files/p{subject[:2]}/p{subject}/s{study}/{d}.jpg")
    (root / "files/p10/p10000032/s50414267.txt").write_text(
        "                                 FINAL REPORT\n EXAMINATION:  CHEST (PA AND LAT)\n\n FINDINGS: \n Small\n"
        " left apical pneumothorax?\n\n IMPRESSION: \n Possible pneumothorax.\n")
    df = read_manifest(build_manifest("mimic_cxr_jpg", root, root / "manifest.csv"))
    assert df["report"].tolist() == ["FINDINGS: Small left apical pneumothorax? IMPRESSION: Possible pneumothorax."] \
        * 2 + [""]
    assert df["split"].tolist() == ["train", "train", "val"] and df["view"].tolist() == ["PA", "LATERAL", "AP"]
    assert _label(df, "d2", "Pneumothorax") == -1 and _label(df, "d3", "Atelectasis") == 1
    assert df["age"].tolist() == [52, 52, 86] and df["sex"].tolist() == ["F", "F", "M"]


def test_brax_builder(tmp_path):
    root = tmp_path / "brax"
    rows = [{"PatientID": "p1", "AccessionNumber": "a1", "PngPath": "images/p1/a1/i1.png", "ViewPosition": "PA",
             "PatientSex": "F", "PatientAge": "85 or more", **{n: "" for n in CHEXPERT_LABELS}},
            {"PatientID": "p2", "AccessionNumber": "a2", "PngPath": "images/p2/a2/i1.png", "ViewPosition": "L",
             "PatientSex": "M", "PatientAge": "040Y", **{n: "" for n in CHEXPERT_LABELS}}]
    rows[0]["Pleural Effusion"], rows[1]["Fracture"] = "1.0", "-1.0"
    _csv(root / "master_spreadsheet_update.csv", rows)
    for r in rows:
        _png(root / r["PngPath"], bits=16)
    df = read_manifest(build_manifest("brax", root, root / "manifest.csv"))
    assert df["age"].tolist() == [85, 40] and df["view"].tolist() == ["PA", "LATERAL"]
    assert _label(df, "images/p1/a1/i1.png", "Effusion") == 1 and df["original_labels"][1] == "Fracture=-1"
    assert (df["label_Pneumothorax"] == 0).all()


# ----------------------------------------------------------------------------- PadChest, VinDr


def test_padchest_builder(tmp_path):
    root = tmp_path / "padchest"
    rows = [("a.png", "P1", "S1", "M", "1939.0", "20140812", "PA", "['pleural effusion', ' cardiomegaly']"),
            ("b.png", "P1", "S2", "M", "1939.0", "20150101", "L", "['normal']"),
            ("c.png", "P2", "S3", "O", "", "20150101", "AP_horizontal", "['NSG tube', 'interstitial pattern']"),
            ("d.png", "P3", "S4", "F", "1980", "20100101", "PA", ""),
            ("e.png", "P4", "S5", "F", "1980", "20100101", "PA", "['exclude']")]
    cols = ["ImageID", "PatientID", "StudyID", "PatientSex_DICOM", "PatientBirth", "StudyDate_DICOM", "Projection",
            "Labels"]
    _csv(root / "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv", [dict(zip(cols, r, strict=True)) for r in rows])
    for i, r in enumerate(rows):
        _png(root / str(i % 2) / r[0], bits=16)
    df = read_manifest(build_manifest("padchest", root, root / "manifest.csv"))
    assert _label(df, "a.png", "Effusion") == 1 and _label(df, "a.png", "Cardiomegaly") == 1
    assert _label(df, "a.png", "Pneumonia") == 0 and _label(df, "b.png", "No Finding") == 1
    assert _label(df, "c.png", "Support Devices") == 1 and _label(df, "c.png", "Infiltration") == 0
    assert math.isnan(_label(df, "d.png", "Effusion")) and math.isnan(_label(df, "e.png", "No Finding"))
    assert df["sex"].tolist() == ["M", "M", "", "F", "F"] and df["view"].tolist()[:4] == ["PA", "LATERAL", "AP", "PA"]
    assert df["age"][0] == pytest.approx(75.12, abs=0.01) and math.isnan(df["age"][2])
    assert df["path"][1] == "1/b.png" and "interstitial pattern" in df["original_labels"][2]


def test_vindr_builder_votes(tmp_path):
    root = tmp_path / "vindr"
    card = load_card("vindr_cxr")
    classes = [k for k in card["label_mapping"] if k not in ("Other disease",)]
    def reader(image, rad, **pos):
        return {"image_id": image, "rad_id": rad, **{c: int(c in pos.values()) for c in classes}}
    train = [reader("img1", "R1", a="Cardiomegaly"), reader("img1", "R2", a="Cardiomegaly", b="Pneumothorax"),
             reader("img1", "R3", a="Pleural effusion"), reader("img2", "R1", a="No finding"),
             reader("img2", "R4", a="No finding"), reader("img2", "R5", a="No finding")]
    _csv(root / "image_labels_train.csv", train)
    _csv(root / "image_labels_test.csv", [{k: v for k, v in reader("img3", "", a="Nodule/Mass").items()
                                           if k != "rad_id"}])
    _dicom(root / "train" / "img1.dicom", PatientAge="058Y", PatientSex="F")
    _dicom(root / "train" / "img2.dicom")
    _dicom(root / "test" / "img3.dicom", PatientAge="030Y", PatientSex="M", ViewPosition="PA")
    df = read_manifest(build_manifest("vindr_cxr", root, root / "manifest.csv"))
    assert _label(df, "img1", "Cardiomegaly") == 1 and _label(df, "img1", "Pneumothorax") == 0  # 2 of 3 vs 1 of 3
    assert _label(df, "img1", "Effusion") == 0 and _label(df, "img2", "No Finding") == 1
    assert _label(df, "img3", "Nodule") != _label(df, "img3", "Nodule")  # Nodule/Mass is not mapped → NaN
    assert df["original_labels"][2] == "Nodule/Mass" and df["split"][2] == "test"
    assert df["age"][0] == 58 and df["sex"].tolist() == ["F", "", "M"] and df["view"][2] == "PA"
    assert load_image(df["abs_path"][0]).shape == (1, 8, 10)
    card["options"]["vote"] = "any"
    import yaml
    (tmp_path / "any.yaml").write_text(yaml.safe_dump(card))
    df_any = read_manifest(build_manifest(tmp_path / "any.yaml", root, root / "any.csv"))
    assert _label(df_any, "img1", "Pneumothorax") == 1 and _label(df_any, "img1", "Effusion") == 1


# ----------------------------------------------------------------------------- RSNA, SIIM (masks)


def test_rsna_builder_with_box_masks(tmp_path):
    root = tmp_path / "rsna"
    _csv(root / "stage_2_train_labels.csv", [
        {"patientId": "a", "x": 1, "y": 2, "width": 3, "height": 4, "Target": 1},
        {"patientId": "a", "x": 6, "y": 0, "width": 2, "height": 2, "Target": 1},
        {"patientId": "b", "x": "", "y": "", "width": "", "height": "", "Target": 0}])
    _csv(root / "stage_2_detailed_class_info.csv", [{"patientId": "a", "class": "Lung Opacity"},
                                                    {"patientId": "a", "class": "Lung Opacity"},
                                                    {"patientId": "b", "class": "Normal"}])
    _dicom(root / "stage_2_train_images" / "a.dcm", PatientAge="51", PatientSex="F", ViewPosition="PA")
    _dicom(root / "stage_2_train_images" / "b.dcm", PatientAge="48", PatientSex="M", ViewPosition="AP")
    df = read_manifest(build_manifest("rsna_pneumonia", root, tmp_path / "out" / "manifest.csv", masks=True))
    assert df["label_Pneumonia"].tolist() == [1, 0] and df["label_No Finding"].tolist() == [0, 1]
    assert df["age"].tolist() == [51, 48] and df["view"].tolist() == ["PA", "AP"]
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
    root = tmp_path / "siim"
    region = np.zeros((8, 10), dtype=bool)
    region[3:6, 2:5] = True
    other = np.zeros((8, 10), dtype=bool)
    other[0, 9] = True
    (root).mkdir()
    lines = ["ImageId, EncodedPixels", f"1.2.3, {rle_encode(region)}", f"1.2.3, {rle_encode(other)}", "1.2.4, -1"]
    (root / "train-rle.csv").write_text("\n".join(lines) + "\n")  # the original header has a leading space
    _dicom(root / "dicom-images-train" / "s1" / "r1" / "1.2.3.dcm", PatientID="pat-a", PatientAge="38",
           PatientSex="M", ViewPosition="PA")
    _dicom(root / "dicom-images-train" / "s2" / "r2" / "1.2.4.dcm", PatientID="pat-b")
    df = read_manifest(build_manifest("siim_acr_pneumothorax", root, root / "manifest.csv", masks=True))
    assert df["label_Pneumothorax"].tolist() == [1, 0] and df["patient_id"].tolist() == ["pat-a", "pat-b"]
    assert df["path"][0] == "dicom-images-train/s1/r1/1.2.3.dcm" and df["mask_Pneumothorax"][1] == ""
    np.testing.assert_array_equal(load_mask(df["abs_mask_Pneumothorax"][0]).numpy(), region | other)


# ----------------------------------------------------------------------------- CLI


def raddino(argv: list[str]) -> int:
    """``raddino`` with only the manifest command registered (the full CLI imports every subsystem)."""
    from raddino_lib.data import cli

    assert cli.__name__ in COMMAND_MODULES
    parser = argparse.ArgumentParser(prog="raddino")
    cli.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_build_and_validate(tmp_path, capsys):
    root = tmp_path / "nih"
    _nih(root)
    out = tmp_path / "manifest.csv"
    assert raddino(["manifest", "build", "--card", "nih_cxr14", "--root", str(root), "--out", str(out),
                    "--seed", "1"]) == 0
    assert "images: 5  patients: 4" in capsys.readouterr().out
    assert raddino(["manifest", "validate", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "valid" in printed and "Cardiomegaly" in printed
    broken = tmp_path / "broken.csv"
    broken.write_text(out.read_text().replace(",M,PA,", ",Male,PA,", 1))
    assert raddino(["manifest", "validate", str(broken)]) == 2
    assert "row 1, column 'sex': 'Male'" in capsys.readouterr().err
    assert raddino(["manifest", "build", "--card", "nih_cxr14", "--root", str(tmp_path / "none"), "--out",
                    str(out)]) == 2
    assert "not a folder" in capsys.readouterr().err
