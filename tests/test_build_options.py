"""What every builder shares: gzipped metadata, metadata-only builds, membership-stable splits; the manifest CLI."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from official_fixtures import FIXTURES, METADATA_SUFFIXES, NIH_COLUMNS, csv

from raddino_lib.cli import COMMANDS, build_parser, main
from raddino_lib.data.builders import BuildError, build_frame, build_manifest
from raddino_lib.data.manifest import ManifestError, assign_splits, hash_splits, read_manifest

REPO = Path(__file__).resolve().parents[1]
HEADER_FIELDS = {"rsna_pneumonia": ("age", "sex", "view"), "vindr_cxr": ("age", "sex", "view")}  # DICOM headers


def _metadata_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix in METADATA_SUFFIXES and "files" not in p.parts)


# ----------------------------------------------------------------------------- gzipped metadata


@pytest.mark.parametrize("card", sorted(FIXTURES))
def test_gzipped_metadata_builds_the_same_manifest(card, tmp_path):
    root = FIXTURES[card](tmp_path)
    plain = build_frame(card, root)
    files = _metadata_files(root)
    assert files, "the fixture has metadata files"
    for path in files:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(path.read_bytes()))
        path.unlink()
    pd.testing.assert_frame_equal(build_frame(card, root), plain)


def test_truncated_gzip_names_the_file(tmp_path):
    root = FIXTURES["chexpert"](tmp_path)
    data = gzip.compress((root / "train.csv").read_bytes())
    (root / "train.csv").unlink()
    (root / "train.csv.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(BuildError, match=r"train\.csv\.gz: not a readable CSV"):
        build_frame("chexpert", root)


# ----------------------------------------------------------------------------- metadata-only builds


@pytest.mark.parametrize("card", sorted(set(FIXTURES) - {"siim_acr_pneumothorax"}))
def test_metadata_only_build_matches_the_full_build_then_validate_checks_files(card, tmp_path):
    root = FIXTURES[card](tmp_path)
    full = build_frame(card, root)
    images = [p for p in root.rglob("*") if p.is_file() and p.suffix in (".png", ".jpg", ".dcm", ".dicom")]
    for path in images:  # the images have not arrived
        path.unlink()
    with pytest.raises(BuildError, match="--no-files"):
        build_frame(card, root)
    meta = build_frame(card, root, check_files=False)
    unread = HEADER_FIELDS.get(card, ())
    same = [c for c in full.columns if c not in unread]
    pd.testing.assert_frame_equal(meta[same], full[same])  # paths included: the card's layout
    for column in unread:  # only in the DICOM headers: empty until built with the files
        assert meta[column].map(lambda v: v == "" or v != v).all()  # "" or NaN
    out = build_manifest(card, root, root / "manifest.csv", check_files=False)
    assert len(read_manifest(out, check_files=False)) == len(full)
    with pytest.raises(ManifestError, match=r"row 1, column 'path': file .* not found"):
        read_manifest(out)


def test_metadata_only_build_refused_where_patient_ids_are_in_the_images(tmp_path):
    root = FIXTURES["siim_acr_pneumothorax"](tmp_path)
    with pytest.raises(BuildError, match="DICOM headers.*drop --no-files"):
        build_frame("siim_acr_pneumothorax", root, check_files=False)
    with pytest.raises(BuildError, match="--masks needs the images"):
        build_frame("rsna_pneumonia", FIXTURES["rsna_pneumonia"](tmp_path), check_files=False, masks_dir=tmp_path)


# ----------------------------------------------------------------------------- splits


def _nih_many(root: Path, n_patients: int, official: bool) -> list[str]:
    """NIH-format metadata for n_patients patients with 1-3 images each; empty image files; the image names."""
    rng = np.random.default_rng(0)
    rows = [(f"{p:08d}_{k:03d}.png", "No Finding", k, p, 40, "MF"[p % 2], "PA")
            for p in range(1, n_patients + 1) for k in range(int(rng.integers(1, 4)))]
    csv(root / "Data_Entry_2017.csv", [dict(zip(NIH_COLUMNS, r, strict=True)) for r in rows])
    names = [r[0] for r in rows]
    if official:  # patients 1..n/5 are the official test set
        test = [r[0] for r in rows if r[3] <= n_patients // 5]
        (root / "test_list.txt").write_text("\n".join(test) + "\n")
        (root / "train_val_list.txt").write_text("\n".join(n for n in names if n not in set(test)) + "\n")
    (root / "images").mkdir()
    for name in names:
        (root / "images" / name).touch()
    return names


@pytest.mark.parametrize("official", [False, True], ids=["no official split", "official test list"])
def test_split_of_a_patient_does_not_depend_on_which_images_are_present(tmp_path, official):
    names = _nih_many(tmp_path, 600, official)
    full = build_frame("nih_cxr14", tmp_path, seed=3)
    for name in names[::10]:  # a partial download: every 10th image missing
        (tmp_path / "images" / name).unlink()
    partial = build_frame("nih_cxr14", tmp_path, seed=3, drop_missing=True)
    assert len(partial) == len(names) - len(names[::10])
    split_full = dict(zip(full["patient_id"], full["split"], strict=False))
    split_partial = dict(zip(partial["patient_id"], partial["split"], strict=False))
    assert {p: split_full[p] for p in split_partial} == split_partial
    # the test can fail: splits that rank the patients present (assign_splits) move patients here
    if not official:
        ranked_full = assign_splits(full["patient_id"], seed=3)
        ranked_partial = assign_splits(partial["patient_id"], seed=3)
        assert any(ranked_full[p] != s for p, s in ranked_partial.items())
    shares = full.drop_duplicates("patient_id")["split"].value_counts(normalize=True)
    if official:
        assert set(full.loc[full["patient_id"].astype(int) <= 120, "split"]) == {"test"}
        assert shares["train"] / (shares["train"] + shares["val"]) == pytest.approx(7 / 8, abs=0.06)
    else:
        assert shares.to_dict() == pytest.approx({"train": 0.7, "val": 0.1, "test": 0.2}, abs=0.06)


def test_hash_splits_per_patient_seeded_and_configurable():
    patients = [f"p{i}" for i in range(4000)]
    a = hash_splits(patients, seed=1)
    assert a == hash_splits(list(reversed(patients)) * 2, seed=1) and a != hash_splits(patients, seed=2)
    assert hash_splits(patients[:10], seed=1) == {p: a[p] for p in patients[:10]}  # membership-stable
    shares = pd.Series(a).value_counts(normalize=True)
    assert shares.to_dict() == pytest.approx({"train": 0.7, "val": 0.1, "test": 0.2}, abs=0.025)
    half = pd.Series(hash_splits(patients, fractions=(0.5, 0.0, 0.5), seed=1)).value_counts(normalize=True)
    assert set(half.index) == {"train", "test"} and half["train"] == pytest.approx(0.5, abs=0.03)
    assert set(hash_splits(patients, fractions=(1, 0, 0)).values()) == {"train"}
    with pytest.raises(ValueError, match="summing to 1"):
        hash_splits(patients, fractions=(0.5, 0.1, 0.1))


def test_hash_splits_golden_values():
    # fixed here so that a change of the hashing (which would reshuffle every published split) fails loudly
    got = hash_splits([f"p{i}" for i in range(12)], seed=0)
    assert [p for p, s in sorted(got.items()) if s == "val"] == ["p0", "p11", "p3"]
    assert [p for p, s in sorted(got.items()) if s == "test"] == ["p1", "p6", "p8", "p9"]
    # by hand: u = first 8 bytes of sha256("0:p0") / 2**64 = 0.7807 lies in [0.7, 0.8) → val
    u = int.from_bytes(hashlib.sha256(b"0:p0").digest()[:8], "big") / 2**64
    assert 0.7 <= u < 0.8 and got["p0"] == "val"


# ----------------------------------------------------------------------------- the manifest CLI


def test_cli_build_and_validate(tmp_path, capsys):
    root = FIXTURES["nih_cxr14"](tmp_path)
    out = tmp_path / "manifest.csv"
    assert main(["manifest", "build", "--card", "nih_cxr14", "--root", str(root), "--out", str(out),
                 "--seed", "1", "--fractions", "0.6,0.2,0.2"]) == 0
    printed = capsys.readouterr().out
    assert "images: 5  patients: 4" in printed and "views: PA 3  AP 2" in printed
    assert main(["manifest", "validate", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "valid" in printed and "Cardiomegaly" in printed
    broken = tmp_path / "broken.csv"
    broken.write_text(out.read_text().replace(",M,PA,", ",Male,PA,", 1))
    assert main(["manifest", "validate", str(broken)]) == 2
    assert "row 1, column 'sex': 'Male'" in capsys.readouterr().err
    assert main(["manifest", "build", "--card", "nih_cxr14", "--root", str(tmp_path / "none"), "--out",
                 str(out)]) == 2
    assert "not a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["manifest", "build", "--card", "nih_cxr14", "--root", str(root), "--out", str(out), "--fractions",
              "0.5,0.5,0.5"])
    assert "summing to 1" in capsys.readouterr().err


def test_cli_metadata_only_build_then_validate(tmp_path, capsys):
    root = FIXTURES["nih_cxr14"](tmp_path)
    for png in (root / "images").glob("*.png"):
        png.unlink()
    out = tmp_path / "manifest.csv"
    assert main(["manifest", "build", "--card", "nih_cxr14", "--root", str(root), "--out", str(out),
                 "--no-files"]) == 0
    assert "metadata only" in capsys.readouterr().out
    assert main(["manifest", "validate", str(out), "--no-files"]) == 0
    assert main(["manifest", "validate", str(out)]) == 2
    assert "file 'nih/images/00000001_000.png' not found" in capsys.readouterr().err


def _imported_after(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; which heavy packages it imported."""
    probe = (f"import sys, json\n{code}\n"
             "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & "
             "{'torch', 'timm', 'torchvision', 'transformers', 'scipy', 'matplotlib', 'pandas'})))")
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_manifest_commands_and_help_do_not_import_torch(tmp_path):
    root = FIXTURES["nih_cxr14"](tmp_path)
    out = tmp_path / "m.csv"
    build = (f"from raddino_lib.cli import main\nassert main(['manifest', 'build', '--card', 'nih_cxr14', '--root', "
             f"{str(root)!r}, '--out', {str(out)!r}, '--no-files']) == 0\n"
             f"assert main(['manifest', 'validate', {str(out)!r}, '--no-files']) == 0")
    assert _imported_after(build) <= {"pandas"}  # the builder needs pandas; nothing of the model stack
    for argv in (["--help"], ["manifest", "--help"], ["manifest", "build", "--help"], ["phantoms", "--help"]):
        helped = f"from raddino_lib.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass"
        imported = _imported_after(helped)
        assert not imported & {"torch", "timm", "torchvision", "transformers", "matplotlib"}, (argv, imported)
        if argv[0] != "phantoms":  # the phantoms package imports its numpy/scipy generator on import
            assert not imported, (argv, imported)


def test_command_table_matches_the_commands_the_modules_register():
    full = build_parser()  # imports every module
    sub = next(a for a in full._actions if a.__class__.__name__ == "_SubParsersAction")
    registered = {a.dest: a.help for a in sub._choices_actions}
    assert registered == {name: help_line for name, (_, help_line) in COMMANDS.items()}, \
        "add the command to raddino_lib.cli.COMMANDS with the help line its module registers"
