"""Manifest reading, validation, byte-stable writing, patient-level splits and label matrices."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from raddino_lib.data.manifest import (
    ManifestError,
    assign_splits,
    label_matrix,
    manifest_digest,
    read_manifest,
    validate_manifest,
    write_manifest,
)
from raddino_lib.data.schema import FINDINGS, LABEL_COLUMNS, REQUIRED_COLUMNS


def _rows(n: int = 4) -> pd.DataFrame:
    rows = []
    for i in range(n):
        row = {"image_id": f"im{i}", "path": f"images/{i}.png", "patient_id": f"p{i // 2}", "study_id": f"s{i}",
               "split": "train" if i < 2 else "test", "age": 40.5 + i, "sex": "MF"[i % 2], "view": "PA",
               "site": "fixture"}
        row.update({c: np.nan for c in LABEL_COLUMNS})
        row["label_Effusion"] = [1, 0, -1, np.nan][i % 4]
        row["mask_heart"] = f"masks/{i}.png" if i == 0 else ""
        rows.append(row)
    return pd.DataFrame(rows)


def _images(root, df):
    for col in ("path", "mask_heart"):
        for rel in df[col]:
            if rel:
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.zeros((4, 4), np.uint8)).save(root / rel)


def test_round_trip_types_paths_and_bytes(tmp_path):
    df = _rows()
    _images(tmp_path, df)
    path = write_manifest(df.iloc[:, ::-1], tmp_path / "manifest.csv")  # column order must not matter
    text = path.read_text()
    assert text.splitlines()[0].split(",")[: len(REQUIRED_COLUMNS)] == list(REQUIRED_COLUMNS)
    assert "\n" + "im0,images/0.png,p0,s0,train,40.5,M,PA,fixture," in text
    back = read_manifest(path)
    assert back["age"].tolist() == [40.5, 41.5, 42.5, 43.5]
    assert back["abs_path"][0] == str((tmp_path / "images/0.png").resolve())
    assert back["abs_mask_heart"].tolist() == [str((tmp_path / "masks/0.png").resolve()), "", "", ""]
    digest = manifest_digest(path)
    write_manifest(back, tmp_path / "again.csv")  # abs_ columns dropped, numbers canonical
    assert (tmp_path / "again.csv").read_bytes() == path.read_bytes()
    assert manifest_digest(tmp_path / "again.csv") == digest and len(digest) == 16


def test_missing_files_name_row_path_and_root(tmp_path):
    df = _rows()
    write_manifest(df, tmp_path / "manifest.csv")
    with pytest.raises(ManifestError, match=r"row 1, column 'path': file 'images/0.png' not found under .*root"):
        read_manifest(tmp_path / "manifest.csv")
    assert len(read_manifest(tmp_path / "manifest.csv", check_files=False)) == 4
    other = tmp_path / "elsewhere"
    _images(other, df)
    assert read_manifest(tmp_path / "manifest.csv", root=other)["abs_path"][3] == str(other / "images/3.png")


@pytest.mark.parametrize(
    "column, value, message",
    [
        ("split", "holdout", r"row 2, column 'split': 'holdout' is not one of"),
        ("sex", "Male", r"row 2, column 'sex': 'Male'"),
        ("view", "LL", r"row 2, column 'view'"),
        ("age", "250", r"row 2, column 'age': '250' is not a number in \[0.0, 120.0\]"),
        ("age", "old", r"row 2, column 'age': 'old'"),
        ("label_Effusion", "2", r"row 2, column 'label_Effusion': '2' is not one of 1, 0, -1 or empty"),
        ("image_id", "im0", r"row 2, column 'image_id': duplicate 'im0' \(first at row 1\)"),
        ("patient_id", "", r"row 2, column 'patient_id': empty"),
        ("split", "test", r"row 2, column 'split': patient 'p0' is in 'test' here and in 'train' at row 1"),
    ],
)
def test_validation_names_row_and_column(column, value, message):
    df = _rows().astype(object)
    df.loc[1, column] = value
    with pytest.raises(ManifestError, match=message):
        validate_manifest(df, source="m.csv")


def test_validation_of_columns_and_all_problems_listed():
    with pytest.raises(ManifestError, match=r"missing required column\(s\) \['site'\]"):
        validate_manifest(_rows().drop(columns=["site"]))
    df = _rows().astype(object)
    df["label_Tuberculosis"] = ""
    df.loc[0, "sex"] = "X"
    df.loc[3, "view"] = "oblique"
    with pytest.raises(ManifestError) as err:
        validate_manifest(df, source="m.csv")
    text = str(err.value)
    assert "3 problem(s)" in text and "label_Tuberculosis" in text and "original_labels" in text
    assert "row 1, column 'sex'" in text and "row 4, column 'view'" in text


def test_unreadable_or_absent_manifest(tmp_path):
    with pytest.raises(ManifestError, match="not found"):
        read_manifest(tmp_path / "none.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ManifestError, match="empty.csv"):
        read_manifest(tmp_path / "empty.csv")


def test_absent_label_columns_read_as_unknown(tmp_path):
    df = _rows().drop(columns=[c for c in LABEL_COLUMNS if c != "label_Effusion"])
    write_manifest(df, tmp_path / "m.csv")
    back = read_manifest(tmp_path / "m.csv", check_files=False)
    assert set(LABEL_COLUMNS) <= set(back.columns) and back["label_Mass"].isna().all()


def test_assign_splits_patient_level_deterministic_and_sized():
    patients = [f"p{i}" for i in range(1000)]
    a = assign_splits(patients, seed=3)
    assert a == assign_splits(list(reversed(patients)) * 2, seed=3)  # order and repeats do not matter
    assert a != assign_splits(patients, seed=4)
    counts = pd.Series(a).value_counts()
    assert (counts["train"], counts["val"], counts["test"]) == (700, 100, 200)
    with pytest.raises(ValueError, match="summing to 1"):
        assign_splits(patients, fractions=(0.5, 0.1, 0.1))


def test_no_patient_leaks_across_splits_at_image_level():
    rng = np.random.default_rng(0)
    image_patients = [f"p{k}" for k in rng.integers(0, 60, size=400)]  # many images per patient
    split_of = assign_splits(image_patients, fractions=(0.6, 0.2, 0.2), seed=1)
    df = pd.DataFrame({"patient_id": image_patients, "split": [split_of[p] for p in image_patients]})
    assert (df.groupby("patient_id")["split"].nunique() == 1).all()
    assert set(df["split"]) == {"train", "val", "test"}
    sets = [set(df.loc[df["split"] == s, "patient_id"]) for s in ("train", "val", "test")]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])


def test_label_matrix_uncertainty_policies():
    df = _rows()
    col = FINDINGS.index("Effusion")
    zero = label_matrix(df)
    assert zero.shape == (4, len(FINDINGS))
    np.testing.assert_array_equal(zero[:, col], [1, 0, 0, np.nan])
    np.testing.assert_array_equal(label_matrix(df, uncertain="ones")[:, col], [1, 0, 1, np.nan])
    np.testing.assert_array_equal(label_matrix(df, uncertain="ignore")[:, col], [1, 0, np.nan, np.nan])
    np.testing.assert_array_equal(label_matrix(df, findings=("Effusion",), uncertain="ones")[:, 0], [1, 0, 1, np.nan])
    assert np.isnan(zero[:, FINDINGS.index("Mass")]).all()
    with pytest.raises(ValueError, match="uncertain="):
        label_matrix(df, uncertain="maybe")


def test_assign_splits_golden_values():
    # fixed here so that a change of the hashing (which would reshuffle every published split) fails loudly
    got = assign_splits([f"p{i}" for i in range(10)], seed=0)
    assert [p for p, s in sorted(got.items()) if s == "val"] == ["p6"]
    assert [p for p, s in sorted(got.items()) if s == "test"] == ["p1", "p9"]
