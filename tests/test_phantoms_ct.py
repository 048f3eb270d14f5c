"""CT phantoms against their own ground truth and independent checks: HU per tissue, masks where the pixels
changed, reports read by an independent keyword labeller, CT-RATE statistics, determinism, bad output folders."""

from __future__ import annotations

import importlib
import json
import re

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.ndimage import binary_erosion

from raddino_lib.cli import main as cli_main
from raddino_lib.data.phantoms_ct import generate
from raddino_lib.data.phantoms_ct.anatomy import ANATOMY_LABELS
from raddino_lib.data.phantoms_ct.knobs import (
    CT_RATE_NO_FINDING,
    CT_RATE_PREVALENCE,
    LOCALIZED_FINDINGS,
    CTPhantomKnobs,
    lesion_label,
    parse_prevalence,
)
from raddino_lib.data.phantoms_ct.patients import sample_case
from raddino_lib.data.phantoms_ct.render import render_ct
from raddino_lib.data.schema import CT_FINDINGS, label_column, reported_column
from raddino_lib.data.volume_io import load_volume, read_nifti
from raddino_lib.data.volume_manifest import read_legend, read_volume_manifest

KNOBS = CTPhantomKnobs()


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("ct") / "ct"
    manifest = generate(out, n=24, size=32, seed=3, balanced=True)
    return manifest, read_volume_manifest(manifest)


# ----------------------------------------------------------------------------- HU per tissue


# Median HU inside each structure (eroded by a voxel against partial volume), noise and kernel included, at 96
# voxels. Reference values: air -1000, lung about -850, fat about -100, soft tissue and muscle about 40, blood
# 40-60 (non-contrast), liver 50-70, cortical bone to 1000; trabecular bone (vertebral bodies) is lower and
# falls with age; calcium above 130.
TISSUE_RANGES = {
    "background": (-1010, -980), "subcutaneous_fat": (-130, -70), "mediastinal_fat": (-130, -60),
    "muscle": (20, 70), "lung_right": (-920, -780), "lung_left": (-920, -780), "left_ventricle": (35, 65),
    "right_ventricle": (35, 65), "aorta": (35, 65), "heart_myocardium": (25, 55), "liver": (45, 70),
    "ribs": (300, 1000), "vertebrae": (120, 700), "sternum": (200, 1000),
}


def test_hounsfield_units_per_tissue_are_plausible():
    medians: dict[str, list[float]] = {k: [] for k in TISSUE_RANGES}
    calcium, metal = [], []
    for i in range(3):
        case = sample_case(np.random.default_rng(i), True, KNOBS)
        r = render_ct(case, 96, np.random.default_rng(100 + i), KNOBS)
        for name in TISSUE_RANGES:
            core = binary_erosion(r.anatomy == ANATOMY_LABELS.index(name))
            if core.sum() > 20:
                medians[name].append(float(np.median(r.hu[core])))
        for finding in ("Arterial wall calcification", "Coronary artery wall calcification"):
            if finding in case.findings:
                calcium.append(float(r.hu[r.lesions == lesion_label(finding)].max()))
        if "Medical material" in case.findings:  # metal, except a nasogastric tube (a radio-opaque stripe)
            metallic = bool(set(case.findings["Medical material"].where) - {"nasogastric tube"})
            metal.append((float(r.hu[r.lesions == lesion_label("Medical material")].max()), metallic))
        assert r.hu.dtype == np.int16 and r.hu.min() >= -1024 and r.hu.max() <= 3071
    for name, (lo, hi) in TISSUE_RANGES.items():
        assert medians[name], name
        assert lo <= np.median(medians[name]) <= hi, (name, medians[name])
    assert calcium and min(calcium) > 130, calcium
    # metal is 2800 HU; a few-mm clip spread over a 4 mm voxel by partial volume and the kernel keeps > 500
    assert all(m > (500 if metallic else 150) for m, metallic in metal), metal


# ----------------------------------------------------------------------------- masks and labels


def test_lesion_mask_agrees_with_labels_and_with_where_pixels_changed():
    """Each present localized finding has mask voxels and nothing else does; inside the mask the volume differs
    from the same case drawn with lesion_contrast 0 (independent truth: the pixels)."""
    faint = CTPhantomKnobs(lesion_contrast=0.0)
    checked = 0
    for i in range(6):
        case = sample_case(np.random.default_rng(i), True, KNOBS)
        with_lesions = render_ct(case, 48, np.random.default_rng(7 + i), KNOBS)
        without = render_ct(case, 48, np.random.default_rng(7 + i), faint)
        present = set(np.unique(with_lesions.lesions).tolist()) - {0}
        wanted = {lesion_label(f) for f in case.findings if f in LOCALIZED_FINDINGS}
        assert present == wanted, (i, sorted(case.findings))
        for finding in case.findings:
            if finding not in LOCALIZED_FINDINGS or finding in ("Pericardial effusion", "Bronchiectasis"):
                continue  # those two change pixels through the anatomy (fluid shell, dilated airways)
            mask = with_lesions.lesions == lesion_label(finding)
            diff = np.abs(with_lesions.clean[mask] - without.clean[mask])
            assert diff.mean() > 20.0, (finding, diff.mean())
            checked += 1
        assert np.array_equal(with_lesions.lesions, without.lesions)
    assert checked >= 10


def test_manifest_labels_masks_and_files_agree(small_set):
    manifest, df = small_set
    legend = read_legend(manifest)
    assert legend["anatomy"][0] == "background" and legend["lesions"][lesion_label("Lung nodule")] == "Lung nodule"
    for _, row in df.iterrows():
        vol = load_volume(row["abs_path"])
        assert tuple(vol.hu.shape) == row["shape_dhw"]
        assert vol.spacing == pytest.approx(row["spacing_zyx"], rel=1e-5)
        lesions, spacing = read_nifti(row["abs_mask_lesions"], labels=True)
        anatomy, _ = read_nifti(row["abs_mask_anatomy"], labels=True)
        assert lesions.shape == anatomy.shape == tuple(vol.hu.shape)
        values = set(np.unique(lesions).tolist()) - {0}
        for f in CT_FINDINGS:
            expected = row[label_column(f)] == 1 and f in LOCALIZED_FINDINGS
            assert (lesion_label(f) in values) == expected, (row["image_id"], f)
        details = json.loads(row["finding_details"])
        assert set(details) == {f for f in CT_FINDINGS if row[label_column(f)] == 1}


# An independent labeller: keywords per finding, in sentences that are not negations.
KEYWORDS = {
    "Medical material": r"pacemaker|port|sternotomy|nasogastric|clips",
    "Arterial wall calcification": r"aortic wall|thoracic aorta|aortic ather",
    "Cardiomegaly": r"cardiomegaly|heart is enlarged", "Pericardial effusion": r"pericardial effusion",
    "Coronary artery wall calcification": r"coronary", "Hiatal hernia": r"hiatal hernia",
    "Lymphadenopathy": r"lymph", "Emphysema": r"emphysem", "Atelectasis": r"atelecta", "Lung nodule": r"nodule",
    "Lung opacity": r"ground-glass", "Pulmonary fibrotic sequela": r"fibrotic", "Pleural effusion":
    r"pleural effusion", "Mosaic attenuation pattern": r"mosaic", "Peribronchial thickening":
    r"peribronchial|bronchial wall", "Consolidation": r"consolidation", "Bronchiectasis": r"bronchiectasis",
    "Interlobular septal thickening": r"septa",
}
NEGATION = re.compile(r"^(no |both lungs are clear)|normal|unremarkable|not seen|patent|clear\.", re.I)
HEDGE = re.compile(r"possible|cannot be excluded|suspicious|questionable", re.I)


def _findings_sentences(report: str) -> list[str]:
    findings = report.split("IMPRESSION:")[0].removeprefix("FINDINGS:")
    return [s.strip() for s in findings.split(". ") if s.strip() and not NEGATION.search(s.strip())]


def test_reports_agree_with_report_labels_and_truth():
    rows = []
    for i in range(400):
        case = sample_case(np.random.default_rng(i), False, KNOBS)
        from raddino_lib.data.phantoms_ct.reports import write_report

        text, reported = write_report(case, np.random.default_rng(10_000 + i), KNOBS)
        assert "\n" not in text and text.startswith("FINDINGS: ") and " IMPRESSION: " in text
        for word in ("year", "male", "female", "BMI", "site", "kernel"):
            assert word not in text  # patient and acquisition factors never enter the report
        sentences = _findings_sentences(text)
        for f in CT_FINDINGS:
            hits = [s for s in sentences if re.search(KEYWORDS[f], s, re.I)]
            said = reported[f]
            assert (said != 0) == bool(hits), (i, f, said, text)
            if said == -1:
                assert any(HEDGE.search(s) for s in hits), (f, hits)
            if said != 0:
                assert f in case.findings  # never reports an absent finding
            rows.append((f in case.findings, said))
    present = np.array([p for p, _ in rows])
    said = np.array([s for _, s in rows])
    unreported = float(np.mean(said[present] == 0))
    hedged = float(np.mean(said[present & (said != 0)] == -1))
    assert abs(unreported - KNOBS.unreported_fraction) < 0.04, unreported
    assert abs(hedged - KNOBS.hedged_fraction) < 0.04, hedged


# ----------------------------------------------------------------------------- statistics and patient factors


def test_prevalence_follows_ct_rate_and_age_acts_through_calcification():
    cases = [sample_case(np.random.default_rng(i), False, KNOBS) for i in range(3000)]
    labels = np.array([[c.labels()[f] for f in CT_FINDINGS] for c in cases])
    target = np.array([CT_RATE_PREVALENCE[f] for f in CT_FINDINGS])
    se = np.sqrt(target * (1 - target) / len(cases))
    assert np.all(np.abs(labels.mean(0) - target) < 4 * se + 0.005), labels.mean(0) - target
    assert abs(float((labels.sum(1) == 0).mean()) - CT_RATE_NO_FINDING) < 0.025
    age = np.array([c.age for c in cases])
    calc = labels[:, CT_FINDINGS.index("Arterial wall calcification")]
    assert calc[age >= 65].mean() > 2 * calc[age < 45].mean()
    severe = [c.findings["Emphysema"].severity for c in cases if "Emphysema" in c.findings]
    ages = [c.age for c in cases if "Emphysema" in c.findings]
    assert np.corrcoef(severe, ages)[0, 1] > 0.1  # emphysema more severe with age
    balanced = [sample_case(np.random.default_rng(i), True, KNOBS).labels() for i in range(1500)]
    assert all(abs(np.mean([b[f] for b in balanced]) - 0.30) < 0.05 for f in CT_FINDINGS)


def test_prevalence_override_and_its_parser():
    knobs = CTPhantomKnobs(prevalence=parse_prevalence("Lung nodule=0.8;Emphysema=0.05"))
    cases = [sample_case(np.random.default_rng(i), False, knobs).labels() for i in range(1500)]
    assert abs(np.mean([c["Lung nodule"] for c in cases]) - 0.8) < 0.04
    assert abs(np.mean([c["Emphysema"] for c in cases]) - 0.05) < 0.02
    with pytest.raises(ValueError, match="unknown finding"):
        CTPhantomKnobs(prevalence={"Pneumothorax": 0.1})
    with pytest.raises(ValueError, match="expected 'Finding name=probability'"):
        parse_prevalence("Lung nodule:0.5")


def test_sex_and_bmi_act_through_anatomy():
    def body_fat_and_width(sex: str, bmi: float) -> tuple[float, float]:
        case = sample_case(np.random.default_rng(0), False, KNOBS)
        case.sex, case.bmi, case.findings = sex, bmi, {}
        r = render_ct(case, 48, np.random.default_rng(1), KNOBS)
        fat = float((r.anatomy == ANATOMY_LABELS.index("subcutaneous_fat")).sum() * np.prod(r.spacing))
        return fat, float((r.anatomy == ANATOMY_LABELS.index("breast")).sum())

    lean, _ = body_fat_and_width("M", 20.0)
    obese, _ = body_fat_and_width("M", 38.0)
    _, breasts_m = body_fat_and_width("M", 26.0)
    _, breasts_f = body_fat_and_width("F", 26.0)
    assert obese > 1.5 * lean and breasts_m == 0 and breasts_f > 0


# ----------------------------------------------------------------------------- files: determinism, folders


def _tree(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_whatever_the_workers(tmp_path):
    a = generate(tmp_path / "a", n=5, size=24, seed=1)
    b = generate(tmp_path / "b", n=5, size=24, seed=1, workers=2)
    ta, tb = _tree(a.parent), _tree(b.parent)
    assert ta.keys() == tb.keys() and all(ta[k] == tb[k] for k in ta)
    assert len([k for k in ta if k.endswith(".nii.gz")]) == 15
    c = generate(tmp_path / "c", n=5, size=24, seed=2)
    assert _tree(c.parent)["manifest.csv"] != ta["manifest.csv"]


def test_existing_folders_are_reused_resumed_or_refused(tmp_path, monkeypatch):
    out = tmp_path / "ct"
    manifest = generate(out, n=3, size=20, seed=0)
    stamp = manifest.stat().st_mtime_ns
    assert generate(out, n=3, size=20, seed=0).stat().st_mtime_ns == stamp  # same request: reused
    with pytest.raises(FileExistsError, match="different parameters .*n: 3 there, 4 asked"):
        generate(out, n=4, size=20, seed=0)
    other = tmp_path / "cxr"
    other.mkdir()
    (other / "card.yaml").write_text(yaml.safe_dump({"name": "phantoms", "params": {}}))
    (other / "images").mkdir()
    for overwrite in (False, True):
        with pytest.raises(FileExistsError, match="another dataset \\('phantoms'"):
            generate(other, n=3, size=20, seed=0, overwrite=overwrite)
    assert (other / "images").is_dir()  # untouched
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not a CT phantom dataset"):
        generate(junk, n=3, size=20, seed=0)

    # interrupted before the manifest: nothing looks complete, and the next run resumes to the same bytes
    gen = importlib.import_module("raddino_lib.data.phantoms_ct.generate")  # the package exports generate()

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    cut = tmp_path / "cut"
    monkeypatch.setattr(gen, "write_manifest", boom)
    with pytest.raises(KeyboardInterrupt):
        generate(cut, n=3, size=20, seed=0)
    assert not (cut / "card.yaml").exists() and not (cut / "manifest.csv").exists()
    assert len(list((cut / "volumes").glob("*.nii.gz"))) == 3
    monkeypatch.undo()
    generate(cut, n=3, size=20, seed=0)
    assert _tree(cut) == _tree(out)


def test_cli_writes_the_dataset_and_a_summary(tmp_path, capsys):
    code = cli_main(["phantoms-ct", "--out", str(tmp_path / "ct"), "--n", "4", "--size", "20", "--seed", "0",
                     "--prevalence", "Lung nodule=0.9"])
    assert code == 0
    text = capsys.readouterr().out
    assert "4 volumes, 4 patients" in text and "no finding" in text
    df = pd.read_csv(tmp_path / "ct" / "manifest.csv")
    assert set(df["modality"]) == {"CT"} and set(df[reported_column("Lung nodule")]) <= {-1, 0, 1}
    assert cli_main(["phantoms-ct", "--out", str(tmp_path / "ct"), "--n", "5", "--size", "20"]) == 2
