"""The CT-RATE builder on fixtures written in CT-RATE's official file format (column names and volume layout)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from raddino_lib.data.builders import BuildError, build_manifest
from raddino_lib.data.manifest import label_matrix
from raddino_lib.data.schema import CT_FINDINGS
from raddino_lib.data.volume_io import load_volume, write_nifti
from raddino_lib.data.volume_manifest import read_volume_manifest

METADATA_COLUMNS = (
    "VolumeName,Manufacturer,SeriesDescription,ManufacturerModelName,PatientSex,PatientAge,ReconstructionDiameter,"
    "DistanceSourceToDetector,DistanceSourceToPatient,GantryDetectorTilt,TableHeight,RotationDirection,ExposureTime,"
    "XRayTubeCurrent,Exposure,FilterType,GeneratorPower,FocalSpots,ConvolutionKernel,PatientPosition,RevolutionTime,"
    "SingleCollimationWidth,TotalCollimationWidth,TableSpeed,TableFeedPerRotation,SpiralPitchFactor,"
    "DataCollectionCenterPatient,ReconstructionTargetCenterPatient,ExposureModulationType,CTDIvol,"
    "ImagePositionPatient,ImageOrientationPatient,SliceLocation,SamplesPerPixel,PhotometricInterpretation,Rows,"
    "Columns,XYSpacing,RescaleIntercept,RescaleSlope,RescaleType,NumberofSlices,ZSpacing,StudyDate").split(",")
# (volume, sex, age, manufacturer, kernel, (D, H, W), (z, y, x) spacing, positive findings)
VOLUMES = [
    ("train_1_a_1.nii.gz", "M", "062Y", "PHILIPS", "B", (6, 8, 8), (1.5, 0.75, 0.75), ("Lung nodule", "Emphysema")),
    ("train_1_a_2.nii.gz", "M", "062Y", "PHILIPS", "YA", (6, 8, 8), (1.5, 0.75, 0.75), ("Lung nodule", "Emphysema")),
    ("train_1_b_1.nii.gz", "M", "063Y", "PHILIPS", "B", (5, 8, 8), (2.0, 0.7, 0.7), ()),
    ("train_2_a_1.nii.gz", "F", "045Y", "SIEMENS", "Br40d", (7, 6, 6), (1.0, 0.8, 0.8), ("Cardiomegaly",)),
    ("valid_1_a_1.nii.gz", "F", "071Y", "PNMS", "LUNG", (6, 6, 6), (1.25, 0.6, 0.6), ("Pleural effusion",)),
]


def _folder(name: str) -> str:
    split, pid, scan, _ = name[: -len(".nii.gz")].split("_")
    return f"{split}/{split}_{pid}/{split}_{pid}_{scan}"


def _fixture(root, volumes=VOLUMES, write_volumes=True, bad_label=None):
    base = root / "dataset"
    for split, labels_prefix, text_prefix in (("train", "train", "train"), ("valid", "valid", "validation")):
        rows = [v for v in volumes if v[0].startswith(split)]
        labels = pd.DataFrame([{"VolumeName": v[0], **{f: int(f in v[7]) for f in CT_FINDINGS}} for v in rows])
        if bad_label and split == "train":
            labels = labels.astype(object)
            labels.loc[0, "Emphysema"] = bad_label
        (base / "multi_abnormality_labels").mkdir(parents=True, exist_ok=True)
        labels.to_csv(base / "multi_abnormality_labels" / f"{labels_prefix}_predicted_labels.csv", index=False)
        reports = pd.DataFrame([{"VolumeName": v[0], "ClinicalInformation_EN": "Cough.",
                                 "Technique_EN": "Non-contrast.", "Findings_EN": f"Findings of {v[0]}.\n Second line.",
                                 "Impressions_EN": "Nodule." if v[7] else ""} for v in rows])
        (base / "radiology_text_reports").mkdir(parents=True, exist_ok=True)
        reports.to_csv(base / "radiology_text_reports" / f"{text_prefix}_reports.csv", index=False)
        meta = []
        for v in rows:
            row = dict.fromkeys(METADATA_COLUMNS, "")
            row.update({"VolumeName": v[0], "Manufacturer": v[3], "PatientSex": v[1], "PatientAge": v[2],
                        "ConvolutionKernel": v[4], "Rows": v[5][1], "Columns": v[5][2], "NumberofSlices": v[5][0],
                        "XYSpacing": f"[{v[6][1]}, {v[6][2]}]", "ZSpacing": v[6][0], "RescaleIntercept": -1024,
                        "RescaleSlope": 1, "ImageOrientationPatient": "[1, 0, 0, 0, 1, 0]"})
            meta.append(row)
        (base / "metadata").mkdir(parents=True, exist_ok=True)
        pd.DataFrame(meta, columns=METADATA_COLUMNS).to_csv(base / "metadata" / f"{text_prefix}_metadata.csv",
                                                            index=False)
        if write_volumes:
            for v in rows:
                hu = np.full(v[5], -1000.0, dtype=np.float32)
                hu[:, 2:4, 2:4] = 40.0
                write_nifti(base / _folder(v[0]) / v[0], hu, v[6])


def test_ct_rate_builder_on_official_files(tmp_path):
    root = tmp_path / "CT-RATE"
    _fixture(root)
    manifest = build_manifest("ct_rate", root, tmp_path / "out" / "manifest.csv")
    df = read_volume_manifest(manifest)
    assert list(df["image_id"]) == [v[0][: -len(".nii.gz")] for v in VOLUMES]
    row = df.set_index("image_id").loc["train_1_a_2"]
    assert row["patient_id"] == "train_1" and row["study_id"] == "train_1_a" and row["sex"] == "M"
    assert row["age"] == 62 and row["site"] == "philips" and row["kernel"] == "YA"
    assert row["spacing_zyx"] == (1.5, 0.75, 0.75) and row["shape_dhw"] == (6, 8, 8)
    assert row["report"] == "FINDINGS: Findings of train_1_a_2.nii.gz. Second line. IMPRESSION: Nodule."
    assert df.set_index("image_id").loc["train_1_b_1", "report"] == "FINDINGS: Findings of train_1_b_1.nii.gz. " \
                                                                    "Second line. IMPRESSION:"
    y = label_matrix(df, CT_FINDINGS)
    for i, v in enumerate(VOLUMES):
        assert {f for f, value in zip(CT_FINDINGS, y[i], strict=True) if value == 1} == set(v[7])
    assert "label_Edema" not in manifest.read_text().splitlines()[0]  # radiograph-only findings are not written
    splits = df.groupby("patient_id")["split"].nunique()
    assert (splits == 1).all()  # patient-level
    assert df.set_index("image_id").loc["valid_1_a_1", "split"] == "test"
    assert set(df.loc[df["patient_id"].str.startswith("train"), "split"]) <= {"train", "val"}
    vol = load_volume(row["abs_path"])  # the manifest's path and spacing agree with the file
    assert tuple(vol.hu.shape) == row["shape_dhw"] and vol.spacing == pytest.approx(row["spacing_zyx"])


def test_ct_rate_without_metadata_reads_spacing_from_the_headers(tmp_path):
    root = tmp_path / "CT-RATE"
    _fixture(root)
    for name in ("train_metadata.csv", "validation_metadata.csv"):
        (root / "dataset" / "metadata" / name).unlink()
    df = read_volume_manifest(build_manifest("ct_rate", root / "dataset", tmp_path / "manifest.csv"))
    row = df.set_index("image_id").loc["train_2_a_1"]
    assert row["spacing_zyx"] == pytest.approx((1.0, 0.8, 0.8)) and row["shape_dhw"] == (7, 6, 6)
    assert row["site"] == "ct_rate" and math.isnan(row["age"])


def test_ct_rate_bad_inputs_name_the_file_and_row(tmp_path):
    root = tmp_path / "a"
    _fixture(root, bad_label="2")
    with pytest.raises(BuildError, match=r"train_predicted_labels.csv row 1, column 'Emphysema': '2' is not 0 or 1"):
        build_manifest("ct_rate", root, tmp_path / "a.csv")
    root = tmp_path / "b"
    odd = [("train_x_a_1.nii.gz", *VOLUMES[0][1:])]
    _fixture(root, volumes=odd, write_volumes=False)
    with pytest.raises(BuildError, match="'train_x_a_1.nii.gz' is not a CT-RATE volume name"):
        build_manifest("ct_rate", root, tmp_path / "b.csv")
    root = tmp_path / "c"
    _fixture(root, write_volumes=False)
    with pytest.raises(BuildError, match="5 image\\(s\\) listed in the metadata are not under"):
        build_manifest("ct_rate", root, tmp_path / "c.csv")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BuildError, match="no multi_abnormality_labels"):
        build_manifest("ct_rate", empty, tmp_path / "d.csv")
