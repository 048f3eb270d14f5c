"""Tiny datasets in each dataset's official file format, written under a folder (shared by the builder tests).

``FIXTURES[card](base) -> root`` writes one dataset under ``base`` and returns
the root to build from. Image files are small real PNG / DICOM files.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

CHEXPERT_LABELS = ("No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion",
                   "Edema", "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion",
                   "Pleural Other", "Fracture", "Support Devices")
NIH_COLUMNS = ["Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender",
               "View Position"]
PADCHEST_COLUMNS = ["ImageID", "ImageDir", "PatientID", "StudyID", "PatientSex_DICOM", "PatientBirth",
                    "StudyDate_DICOM", "Projection", "Labels"]


def png(path: Path, size=(8, 8), bits=8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    dtype = np.uint8 if bits == 8 else np.uint16
    Image.fromarray((np.arange(size[0] * size[1]).reshape(size) % 200).astype(dtype)).save(path)


def dicom(path: Path, rows=8, cols=10, **tags) -> None:
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


def csv(path: Path, rows: list[dict], columns=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=columns).to_csv(path, index=False)


def chexpert_row(path, sex, age, frontal, appa, **labels) -> dict:
    row = {"Path": path, "Sex": sex, "Age": age, "Frontal/Lateral": frontal, "AP/PA": appa}
    row.update({name: labels.get(name.replace(" ", "_"), "") for name in CHEXPERT_LABELS})
    return row


def nih(base: Path) -> Path:
    root = base / "nih"
    rows = [("00000001_000.png", "Cardiomegaly|Effusion", 0, 1, 58, "M", "PA"),
            ("00000001_001.png", "No Finding", 1, 1, 59, "M", "AP"),
            ("00000002_000.png", "Hernia", 0, 2, 414, "F", "PA"),
            ("00000003_000.png", "No Finding", 0, 3, "033Y", "F", "PA"),
            ("00000004_000.png", "Mass|Nodule|Infiltration", 0, 4, 70, "M", "AP")]
    csv(root / "Data_Entry_2017.csv", [dict(zip(NIH_COLUMNS, r, strict=True)) for r in rows])
    (root / "train_val_list.txt").write_text("00000001_000.png\n00000001_001.png\n00000003_000.png\n"
                                             "00000004_000.png\n")
    (root / "test_list.txt").write_text("00000002_000.png\n")
    for r in rows:
        png(root / "images" / r[0])
    return root


def chexpert(base: Path) -> Path:
    root = base / "CheXpert-v1.0-small"
    release = "CheXpert-v1.0-small/"
    train = [chexpert_row(release + "train/patient00001/study1/view1_frontal.jpg", "Female", 68, "Frontal", "AP",
                          Pleural_Effusion=-1.0, Lung_Opacity=1.0, Support_Devices=1.0),
             chexpert_row(release + "train/patient00001/study1/view2_lateral.jpg", "Female", 68, "Lateral", "",
                          Pleural_Effusion=-1.0),
             chexpert_row(release + "train/patient00002/study1/view1_frontal.jpg", "Unknown", 0, "Frontal", "PA",
                          No_Finding=1.0),
             # the release's slip: frontal images whose AP/PA column holds a lateral code
             chexpert_row(release + "train/patient07958/study5/view2_frontal.jpg", "Male", 55, "Frontal", "LL",
                          Edema=1.0),
             chexpert_row(release + "train/patient07959/study1/view1_frontal.jpg", "Male", 90, "Frontal", "RL")]
    valid = [chexpert_row(release + "valid/patient64541/study1/view1_frontal.jpg", "Male", 73, "Frontal", "AP",
                          Cardiomegaly=1.0, Edema=0.0)]
    csv(root / "train.csv", train)
    csv(root / "valid.csv", valid)
    for row in train + valid:
        png(base / row["Path"])
    return root


def mimic(base: Path) -> Path:
    root = base / "mimic"
    images = [("d1", "10000032", "50414267", "PA", "21800506"), ("d2", "10000032", "50414267", "LATERAL", "21800506"),
              ("d3", "10000764", "57375967", "AP", "21320722"), ("d4", "10000764", "57375967", "LL", "21320722"),
              ("d5", "10000764", "57375967", "AP AXIAL", "21320722"), ("d6", "10000898", "50771383", "PA LLD",
                                                                        "21530101"),
              ("d7", "10000898", "50771383", "XTABLE LATERAL", "21530101")]
    csv(root / "mimic-cxr-2.0.0-metadata.csv", [dict(zip(("dicom_id", "subject_id", "study_id", "ViewPosition",
                                                          "StudyDate"), r, strict=True)) for r in images])
    labels = [{"subject_id": s, "study_id": st, **{n: "" for n in CHEXPERT_LABELS}}
              for s, st in (("10000032", "50414267"), ("10000764", "57375967"), ("10000898", "50771383"))]
    labels[0]["Pneumothorax"], labels[1]["Atelectasis"] = "-1.0", "1.0"
    csv(root / "mimic-cxr-2.0.0-chexpert.csv", labels)
    csv(root / "mimic-cxr-2.0.0-split.csv", [{"dicom_id": d, "split": "validate" if s == "10000764" else "train"}
                                             for d, s, *_ in images])
    csv(root / "patients.csv", [{"subject_id": "10000032", "gender": "F", "anchor_age": 52, "anchor_year": 2180},
                                {"subject_id": "10000764", "gender": "M", "anchor_age": 86, "anchor_year": 2132},
                                {"subject_id": "10000898", "gender": "F", "anchor_age": 91, "anchor_year": 2153}])
    for d, subject, study, _, _ in images:
        png(root / f"files/p{subject[:2]}/p{subject}/s{study}/{d}.jpg")
    (root / "files/p10/p10000032/s50414267.txt").write_text(
        "                                 FINAL REPORT\n EXAMINATION:  CHEST (PA AND LAT)\n\n FINDINGS: \n Small\n"
        " left apical pneumothorax?\n\n IMPRESSION: \n Possible pneumothorax.\n")
    return root


def brax(base: Path) -> Path:
    root = base / "brax"
    rows = [{"PatientID": "p1", "AccessionNumber": "a1", "PngPath": "images/p1/a1/i1.png", "ViewPosition": "PA",
             "PatientSex": "F", "PatientAge": "85 or more", **{n: "" for n in CHEXPERT_LABELS}},
            {"PatientID": "p2", "AccessionNumber": "a2", "PngPath": "images/p2/a2/i1.png", "ViewPosition": "L",
             "PatientSex": "M", "PatientAge": "040Y", **{n: "" for n in CHEXPERT_LABELS}},
            {"PatientID": "p2", "AccessionNumber": "a2", "PngPath": "images/p2/a2/i2.png", "ViewPosition": "RL",
             "PatientSex": "M", "PatientAge": "040Y", **{n: "" for n in CHEXPERT_LABELS}}]
    rows[0]["Pleural Effusion"], rows[1]["Fracture"] = "1.0", "-1.0"
    csv(root / "master_spreadsheet_update.csv", rows)
    for r in rows:
        png(root / r["PngPath"], bits=16)
    return root


def padchest(base: Path) -> Path:
    root = base / "padchest"
    rows = [("a.png", "0", "P1", "S1", "M", "1939.0", "20140812", "PA", "['pleural effusion', ' cardiomegaly']"),
            ("b.png", "1", "P1", "S2", "M", "1939.0", "20150101", "L", "['normal']"),
            ("c.png", "0", "P2", "S3", "O", "", "20150101", "AP_horizontal", "['NSG tube', 'interstitial pattern']"),
            ("d.png", "1", "P3", "S4", "F", "1980", "20100101", "PA", ""),
            ("e.png", "0", "P4", "S5", "F", "1980", "20100101", "COSTAL", "['exclude']"),
            ("f.png", "1", "P5", "S6", "F", "1975", "20100101", "AP", "['normal']"),
            ("g.png", "0", "P6", "S7", "M", "1950", "20100101", "UNK", "['normal']")]
    csv(root / "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv",
        [dict(zip(PADCHEST_COLUMNS, r, strict=True)) for r in rows])
    for r in rows:
        png(root / r[1] / r[0], bits=16)
    return root


def vindr(base: Path) -> Path:
    from raddino_lib.data.cards import load_card

    root = base / "vindr"
    classes = [k for k in load_card("vindr_cxr")["label_mapping"] if k != "Other disease"]

    def reader(image, rad, **pos):
        return {"image_id": image, "rad_id": rad, **{c: int(c in pos.values()) for c in classes}}

    train = [reader("img1", "R1", a="Cardiomegaly"), reader("img1", "R2", a="Cardiomegaly", b="Pneumothorax"),
             reader("img1", "R3", a="Pleural effusion"), reader("img2", "R1", a="No finding"),
             reader("img2", "R4", a="No finding"), reader("img2", "R5", a="No finding"),
             reader("img4", "R1", a="No finding"), reader("img5", "R1", a="No finding")]
    csv(root / "image_labels_train.csv", train)
    csv(root / "image_labels_test.csv", [{k: v for k, v in reader("img3", "", a="Nodule/Mass").items()
                                          if k != "rad_id"}])
    dicom(root / "train" / "img1.dicom", PatientAge="058Y", PatientSex="F")
    dicom(root / "train" / "img2.dicom")
    dicom(root / "test" / "img3.dicom", PatientAge="030Y", PatientSex="M", ViewPosition="PA")
    dicom(root / "train" / "img4.dicom", ViewPosition="LL")
    dicom(root / "train" / "img5.dicom", ViewPosition="LLD")
    return root


def rsna(base: Path) -> Path:
    root = base / "rsna"
    csv(root / "stage_2_train_labels.csv", [
        {"patientId": "a", "x": 1, "y": 2, "width": 3, "height": 4, "Target": 1},
        {"patientId": "a", "x": 6, "y": 0, "width": 2, "height": 2, "Target": 1},
        {"patientId": "b", "x": "", "y": "", "width": "", "height": "", "Target": 0}])
    csv(root / "stage_2_detailed_class_info.csv", [{"patientId": "a", "class": "Lung Opacity"},
                                                   {"patientId": "a", "class": "Lung Opacity"},
                                                   {"patientId": "b", "class": "Normal"}])
    dicom(root / "stage_2_train_images" / "a.dcm", PatientAge="51", PatientSex="F", ViewPosition="PA")
    dicom(root / "stage_2_train_images" / "b.dcm", PatientAge="48", PatientSex="M", ViewPosition="AP")
    return root


def siim(base: Path, encode: Callable[[np.ndarray], str]) -> Path:
    root = base / "siim"
    region = np.zeros((8, 10), dtype=bool)
    region[3:6, 2:5] = True
    other = np.zeros((8, 10), dtype=bool)
    other[0, 9] = True
    root.mkdir(parents=True)
    lines = ["ImageId, EncodedPixels", f"1.2.3, {encode(region)}", f"1.2.3, {encode(other)}", "1.2.4, -1"]
    (root / "train-rle.csv").write_text("\n".join(lines) + "\n")  # the original header has a leading space
    dicom(root / "dicom-images-train" / "s1" / "r1" / "1.2.3.dcm", PatientID="pat-a", PatientAge="38",
          PatientSex="M", ViewPosition="PA")
    dicom(root / "dicom-images-train" / "s2" / "r2" / "1.2.4.dcm", PatientID="pat-b")
    return root


def _siim(base: Path) -> Path:
    from raddino_lib.data.builders.siim_acr_pneumothorax import rle_encode

    return siim(base, rle_encode)


FIXTURES: dict[str, Callable[[Path], Path]] = {
    "brax": brax, "chexpert": chexpert, "mimic_cxr_jpg": mimic, "nih_cxr14": nih, "padchest": padchest,
    "rsna_pneumonia": rsna, "siim_acr_pneumothorax": _siim, "vindr_cxr": vindr,
}
METADATA_SUFFIXES = (".csv", ".txt")
