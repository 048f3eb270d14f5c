"""Phantom generator: determinism, manifest contract, ground-truth geometry, label statistics, reports."""

import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from raddino_lib.data.manifest import read_manifest
from raddino_lib.data.phantoms import PhantomKnobs, generate
from raddino_lib.data.phantoms.knobs import CXR14_NO_FINDING, CXR14_PREVALENCE, LOCALIZED_FINDINGS
from raddino_lib.data.phantoms.patients import sample_case
from raddino_lib.data.phantoms.png import encode_gray8
from raddino_lib.data.phantoms.reports import write_report
from raddino_lib.data.schema import ANATOMY, CXR14_FINDINGS, FINDINGS, label_column, mask_column, reported_column


def _cases(n, balanced=False, seed=0, **knobs):
    k = PhantomKnobs(**knobs)
    out = []
    for i in range(n):
        case_rng, _, report_rng = (np.random.default_rng(s) for s in np.random.SeedSequence([seed, i]).spawn(3))
        case = sample_case(case_rng, balanced, k)
        out.append((case, *write_report(case, report_rng, k)))
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("ph")
    manifest = generate(root / "w1", n=24, size=48, seed=3, balanced=True, workers=1)
    return manifest


def test_images_are_identical_across_worker_counts_and_runs(dataset, tmp_path):
    other = generate(tmp_path / "w2", n=24, size=48, seed=3, balanced=True, workers=2)
    assert other.read_bytes() == dataset.read_bytes()
    for name in ("ph000000.png", "ph000017.png", "ph000023.png"):
        assert (other.parent / "images" / name).read_bytes() == (dataset.parent / "images" / name).read_bytes()
    fewer = generate(tmp_path / "n5", n=5, size=48, seed=3, balanced=True)  # image i does not depend on n
    assert (fewer.parent / "images/ph000004.png").read_bytes() == (dataset.parent / "images/ph000004.png").read_bytes()
    different = generate(tmp_path / "s4", n=5, size=48, seed=4, balanced=True)
    other_seed = (different.parent / "images/ph000004.png").read_bytes()
    assert other_seed != (fewer.parent / "images/ph000004.png").read_bytes()


def test_manifest_passes_validation_and_files_match_the_contract(dataset):
    df = read_manifest(dataset)  # validates columns, vocabularies, patient-level splits, files
    assert len(df) == 24 and set(df["dataset"]) == {"phantoms"} and df["site"].nunique() >= 2
    assert all(c in df.columns for c in map(reported_column, FINDINGS))
    img = np.asarray(Image.open(df["abs_path"].iloc[0]))
    assert img.dtype == np.uint8 and img.shape == (48, 48)
    for s in ANATOMY:  # organs, ribs and the six lung zones on every image
        for path in df[f"abs_mask_{s}"]:
            mask = np.asarray(Image.open(path))
            assert mask.shape == (48, 48) and set(np.unique(mask)) <= {0, 255} and mask.any(), (s, path)
    devices = df[label_column("Support Devices")] == 1
    assert devices.any() and (df.loc[devices, mask_column("Support Devices")] != "").all()
    assert (df.loc[~devices, mask_column("Support Devices")] == "").all()
    assert "\n" not in "".join(df["report"]) and dataset.read_text().count("\n") == 25


def test_lungs_are_dark_and_finding_masks_lie_inside_the_lungs(dataset):
    df = read_manifest(dataset)
    seen = 0
    for _, row in df.iterrows():
        img = np.asarray(Image.open(row["abs_path"])).astype(float)
        lungs = (np.asarray(Image.open(row["abs_mask_left_lung"])) > 0) | (
            np.asarray(Image.open(row["abs_mask_right_lung"])) > 0)
        heart = np.asarray(Image.open(row["abs_mask_heart"])) > 0
        assert img[lungs].mean() < img[heart].mean()  # air is dark, the heart is soft tissue
        left = np.asarray(Image.open(row["abs_mask_left_lung"])) > 0
        assert np.argwhere(left)[:, 1].mean() > 24  # the patient's left lung is on the image right
        for f in CXR14_FINDINGS:
            path = row.get(f"abs_mask_{f}", "")
            assert bool(path) == (row[label_column(f)] == 1 and f in LOCALIZED_FINDINGS), (row["image_id"], f)
            if path and f != "Hernia":
                mask = np.asarray(Image.open(path)) > 0
                assert (mask & ~lungs).sum() <= 0.02 * max(mask.sum(), 1), f"{row['image_id']} {f}"
                seen += 1
    assert seen >= 5


def test_prevalence_follows_chestxray14_and_balanced_mode_raises_rare_findings():
    cases = [c for c, _, _ in _cases(3000)]
    for f, p in CXR14_PREVALENCE.items():
        got = np.mean([f in c.findings for c in cases])
        assert abs(got - p) < max(0.012, 0.35 * p), (f, got, p)
    assert abs(np.mean([not c.findings for c in cases]) - CXR14_NO_FINDING) < 0.03
    assert abs(np.mean([c.sex == "M" for c in cases]) - 0.565) < 0.03
    assert abs(np.mean([c.view == "AP" for c in cases]) - 0.40) < 0.03
    balanced = [c for c, _, _ in _cases(600, balanced=True)]
    assert min(np.mean([f in c.findings for c in balanced]) for f in CXR14_FINDINGS) > 0.11


FORBIDDEN = re.compile(r"\b(years?|old|aged?|elderly|young|male|female|man|woman|men|women|sex|gender|breasts?|"
                       r"site|portable|bmi|obese)\b", re.IGNORECASE)


def test_reports_describe_findings_never_patient_factors():
    for case, text, reported in _cases(600, balanced=True):
        assert not FORBIDDEN.search(text), text
        assert not re.search(r"\b(AP|PA)\b", text), text
        assert text.startswith("FINDINGS: ") and " IMPRESSION: " in text and "\n" not in text
        for f in CXR14_FINDINGS:
            if f not in case.findings:
                assert reported[f] == 0, (f, text)


def test_hedges_are_standard_uncertainty_phrases_and_stay_hedged_in_the_impression():
    from raddino_lib.data.phantoms.reports import HEDGES, UNCERTAIN_WORDS

    uncertain = re.compile("|".join(UNCERTAIN_WORDS))
    assert all(uncertain.search(h.format("x")) for h in HEDGES) and any("likely" in h for h in HEDGES)
    for _, text, reported in _cases(400, balanced=True, hedged_fraction=0.0):  # stated findings: no hedge word
        assert not uncertain.search(text.lower()), text
        assert -1 not in reported.values()
    for _, text, reported in _cases(400, balanced=True, hedged_fraction=1.0):  # everything hedged, everywhere
        assert all(reported[f] in (0, -1) for f in CXR14_FINDINGS), (text, reported)
        n_hedged = sum(reported[f] == -1 for f in CXR14_FINDINGS)
        if n_hedged:
            impression = [s for s in text.split(" IMPRESSION: ")[1].split(". ") if s]
            assert len(impression) == n_hedged, text  # one sentence per reported finding
            assert all(uncertain.search(s.lower()) for s in impression), text


def test_reported_labels_differ_from_truth_at_the_unreported_fraction():
    rows = _cases(1500, balanced=True)
    said = np.array([r[f] for c, _, r in rows for f in c.findings])
    assert abs(np.mean(said == 0) - 0.15) < 0.03  # unreported
    assert abs(np.mean(said == -1) - 0.85 * 0.10) < 0.025  # hedged
    exact = _cases(200, balanced=True, unreported_fraction=0.0, hedged_fraction=0.0)
    for case, _, reported in exact:
        labels = case.labels()
        assert all(reported[f] == labels[f] for f in CXR14_FINDINGS + ("No Finding",))


def test_conflicting_output_folder_is_refused_with_advice(tmp_path):
    manifest = generate(tmp_path / "d", n=4, size=32, seed=0)
    stamp = manifest.stat().st_mtime_ns
    assert generate(tmp_path / "d", n=4, size=32, seed=0) == manifest and manifest.stat().st_mtime_ns == stamp
    with pytest.raises(FileExistsError, match="--overwrite"):
        generate(tmp_path / "d", n=5, size=32, seed=0)
    with pytest.raises(FileExistsError, match="lesion_contrast"):
        generate(tmp_path / "d", n=4, size=32, seed=0, lesion_contrast=0.5)
    manifest = generate(tmp_path / "d", n=5, size=32, seed=0, overwrite=True)
    assert len(pd.read_csv(manifest)) == 5 and len(list((tmp_path / "d/images").iterdir())) == 5
    (tmp_path / "d/manifest.csv").unlink()  # an interrupted run is regenerated without asking
    assert generate(tmp_path / "d", n=5, size=32, seed=0, overwrite=False).is_file()
    (tmp_path / "other").mkdir()
    (tmp_path / "other/notes.txt").write_text("x")
    with pytest.raises(FileExistsError, match="choose another folder"):
        generate(tmp_path / "other", n=2, size=32, seed=0)
    with pytest.raises(TypeError, match="unknown phantom knob"):
        generate(tmp_path / "k", n=2, size=32, seed=0, lesion_size=2.0)


def test_png_encoder_round_trips_through_pillow(tmp_path):
    array = np.random.default_rng(0).integers(0, 256, (17, 23), dtype=np.uint8)
    for level in (0, 6):
        path = tmp_path / f"x{level}.png"
        path.write_bytes(encode_gray8(array, level))
        assert np.array_equal(np.asarray(Image.open(path)), array)


def test_lesion_contrast_zero_draws_labels_without_pixels(tmp_path):
    with_lesions = generate(tmp_path / "a", n=6, size=32, seed=5, balanced=True)
    without = generate(tmp_path / "b", n=6, size=32, seed=5, balanced=True, lesion_contrast=0.0)
    a, b = pd.read_csv(with_lesions), pd.read_csv(without)
    assert (a[[label_column(f) for f in FINDINGS]] == b[[label_column(f) for f in FINDINGS]]).all().all()
    differ = [(tmp_path / "a" / p).read_bytes() != (tmp_path / "b" / p).read_bytes()
              for p, has in zip(a["path"], a[label_column("No Finding")] == 0, strict=True) if has]
    assert any(differ)
    assert mask_column("Nodule") in a.columns


def test_cli_generates_and_prints_a_summary(tmp_path, capsys):
    import argparse

    from raddino_lib.data.phantoms import cli

    parser = argparse.ArgumentParser(prog="raddino")
    cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["phantoms", "--out", str(tmp_path / "c"), "--n", "6", "--size", "32", "--seed", "1"])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "6 images, 6 patients" in text and "prevalence:" in text and "sex:" in text
    assert (tmp_path / "c/card.yaml").is_file()
    args = parser.parse_args(["phantoms", "--out", str(tmp_path / "c"), "--n", "7", "--size", "32"])
    with pytest.raises(FileExistsError, match="--overwrite"):
        args.func(args)


def test_plots_return_figures(dataset):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    from raddino_lib.viz import phantoms as viz

    df = pd.read_csv(dataset)
    present = tuple(f for f in LOCALIZED_FINDINGS if (df[label_column(f)] == 1).any())[:2]
    figures = [viz.gallery_by_finding(dataset, findings=present, per_finding=1, anatomy=True),
               viz.gallery_by_factor(dataset), viz.image_with_report(dataset), viz.prevalence_chart(dataset),
               viz.patient_factors(dataset), viz.mask_figure(dataset, n=2), viz.factor_effects(size=64),
               viz.lesion_sizes(sizes=(64, 96))]
    assert all(isinstance(f, Figure) for f in figures)
    atlas = viz.anatomy_figure(size=128)
    labels = {t.get_text() for ax in atlas.axes for t in ax.texts}
    assert {"aortic knob", "carina", "cardiac apex", "right atrial border", "costophrenic angle",
            "posterior rib", "anterior rib", "clavicle", "scapula", "breast shadow"} <= labels
    axes = figures[0].axes
    assert len(present) == 2 and len(axes) == 2 and all(len(ax.collections) == 4 for ax in axes)  # 3 anatomy + lesion
    plt.close("all")


def test_difficulty_floor_and_ceiling_do_not_depend_on_how_many_jobs_run_at_once(dataset, monkeypatch):
    import json

    from raddino_lib.data.phantoms.difficulty import measure_difficulty

    results = {}
    for workers in ("1", "2"):
        monkeypatch.setenv("RADDINO_WORKERS", workers)
        results[workers] = measure_difficulty(dataset, image_size=32, epochs=1, seed=0)
    assert results["1"]["n_test"] > 0 and set(results["1"]) >= {"random_linear", "supervised_cnn"}
    assert json.dumps(results["1"], sort_keys=True) == json.dumps(results["2"], sort_keys=True)
