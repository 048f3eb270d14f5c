"""Phantom anatomy: masks that a radiologist's atlas would agree with, patient factors acting through anatomy
only (no global shortcut), lesion sizes in millimetres of the film."""

import numpy as np
import pandas as pd
import pytest

from raddino_lib.data.phantoms import PhantomKnobs, generate
from raddino_lib.data.phantoms.body import sample_body
from raddino_lib.data.phantoms.knobs import LOCALIZED_FINDINGS
from raddino_lib.data.phantoms.leakage import global_statistics, leak_scores, manifest_statistics
from raddino_lib.data.phantoms.masks import lung_zones, patches_covered
from raddino_lib.data.phantoms.patients import Case, Lesion, sample_case
from raddino_lib.data.phantoms.render import DEVICE_MASK, render_phantom
from raddino_lib.data.schema import LUNG_ZONES


def _render(case, size, seed=0):
    return render_phantom(case, size, np.random.default_rng(seed), PhantomKnobs())


def _normal_cases(n, seed=0):
    out = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        out.append(Case(age=float(rng.uniform(20, 90)), sex="M" if i % 2 else "F", bmi=float(rng.uniform(19, 35)),
                        view="PA", site="site_a"))
    return out


@pytest.fixture(scope="module")
def normals():
    return [_render(c, 96, seed=i) for i, c in enumerate(_normal_cases(24))]


def test_lung_zones_are_disjoint_tile_each_lung_and_run_top_to_bottom(normals):
    for _, masks in normals:
        for side in ("right", "left"):
            lung = masks[f"{side}_lung"]
            zones = [masks[f"{side}_{z}_zone"] for z in ("upper", "middle", "lower")]
            assert np.array_equal(np.sum(zones, axis=0), lung.astype(int))  # disjoint, and their union is the lung
            rows = [np.flatnonzero(z.any(axis=1)) for z in zones]
            assert all(len(r) for r in rows)
            assert rows[0].max() < rows[1].min() and rows[1].max() < rows[2].min()
            heights = [len(r) for r in rows]
            assert max(heights) - min(heights) <= 1  # equal thirds of the lung's height
    empty = lung_zones(np.zeros((8, 8), bool), np.ones((8, 8), bool))
    assert set(empty) == set(LUNG_ZONES) and not any(empty[z].any() for z in LUNG_ZONES if z.startswith("right"))


def test_ribs_cross_the_lungs_as_separate_bands_inside_the_thorax(normals):
    for _, masks in normals:
        ribs, lungs = masks["ribs"], masks["left_lung"] | masks["right_lung"]
        cols = np.flatnonzero(lungs.any(axis=0))
        rows = np.flatnonzero(lungs.any(axis=1))
        width = cols[-1] - cols[0]
        # inside the thorax: within the lungs' extent widened by 12% of their width (the chest wall), below the neck
        r, c = np.nonzero(ribs)
        assert c.min() >= cols[0] - 0.12 * width and c.max() <= cols[-1] + 0.12 * width
        assert r.min() >= rows[0] - 0.1 * (rows[-1] - rows[0])
        assert 0.15 < (ribs & lungs).sum() / lungs.sum() < 0.75  # ribs overlie the lung fields, with gaps between
        for lung in (masks["right_lung"], masks["left_lung"]):  # count rib bands down each lung's middle column
            col = int(np.median(np.flatnonzero(lung.any(axis=0))))
            inside = ribs[:, col] & lung[:, col]
            bands = int(np.sum(np.diff(inside.astype(int)) == 1))
            assert bands >= 5, bands


def test_landmarks_right_dome_higher_apex_left_sharp_costophrenic_angles(normals):
    right_higher = 0
    for image, masks in normals:
        right, left, heart = masks["right_lung"], masks["left_lung"], masks["heart"]
        lung_cols = np.flatnonzero((right | left).any(axis=0))
        mid = (lung_cols[0] + lung_cols[-1]) / 2  # the thorax is symmetric about the midline
        # the cardiac apex points to the patient's left (image right): more heart right of the midline
        hc = np.flatnonzero(heart.any(axis=0))
        assert hc.max() - mid > 1.3 * (mid - hc.min())
        # the lowest point of each lung is its lateral costophrenic recess, not the middle of a round base
        for lung, lateral_is_left in ((right, True), (left, False)):
            r, c = np.nonzero(lung)
            lowest = c[r == r.max()].mean()
            centre = c.mean()
            assert (lowest < centre) if lateral_is_left else (lowest > centre)
        # right hemidiaphragm higher, and with it its costophrenic recess (the lowest point of each lung; the top
        # of the left dome is hidden by the heart)
        domes = [np.flatnonzero(lung.any(axis=1)).max() for lung in (right, left)]
        right_higher += domes[0] < domes[1]
        # air is dark, the heart soft tissue
        assert image[right | left].mean() < image[heart].mean()
    assert right_higher >= 0.9 * len(normals)


def test_patient_factors_are_graded_and_overlapping():
    rng = np.random.default_rng(0)
    men = [sample_body(Case(50.0, "M", 26.0, "PA", "site_a"), rng) for _ in range(400)]
    women = [sample_body(Case(50.0, "F", 26.0, "PA", "site_a"), rng) for _ in range(400)]
    w_m, w_f = np.array([b.thorax_w for b in men]), np.array([b.thorax_w for b in women])
    overlap = np.mean(w_f[:, None] > w_m[None, :])  # P(a woman's thorax is wider than a man's)
    assert 0.2 < overlap < 0.45  # smaller on average, overlapping
    # breast shadows grow with BMI and fade on AP films; fat chest walls give some men a faint shadow
    thin = np.mean([sample_body(Case(50.0, "F", 19.0, "PA", "site_a"), rng).breast for _ in range(200)])
    heavy = np.mean([sample_body(Case(50.0, "F", 38.0, "PA", "site_a"), rng).breast for _ in range(200)])
    assert heavy > 1.4 * thin > 0
    ap = np.mean([sample_body(Case(50.0, "F", 26.0, "AP", "site_a"), rng).breast_density for _ in range(200)])
    assert ap < 0.75 * np.mean([b.breast_density for b in women])
    assert np.mean([sample_body(Case(50.0, "M", 40.0, "PA", "site_a"), rng).breast > 0 for _ in range(50)]) > 0.9
    # age: graded and monotone on average, with individual spread
    ages = (25.0, 45.0, 65.0, 85.0)
    bodies = {a: [sample_body(Case(a, "M", 26.0, "PA", "site_a"), rng) for _ in range(200)] for a in ages}
    for field in ("cartilage_calcification", "knob_calcification", "kyphosis", "unfold", "knob_r"):
        means = [np.mean([getattr(b, field) for b in bodies[a]]) for a in ages]
        assert all(x <= y for x, y in zip(means, means[1:], strict=False)) and means[-1] > means[0], field
    density = [np.mean([b.bone_density for b in bodies[a]]) for a in ages]
    assert all(x > y for x, y in zip(density, density[1:], strict=False))
    spread = np.std([b.cartilage_calcification for b in bodies[65.0]])
    assert spread > 0.04  # individual variation: the same age does not give the same chest


def test_global_image_statistics_do_not_reveal_sex_or_age(tmp_path):
    """Patient factors must act through anatomy, not through a global image property.

    300 phantoms at the cpu profile's 96 px, one per patient; global statistics (moments, percentiles, a 16-bin
    histogram, a noise estimate, mean gradient) → patient-grouped 5-fold CV of logistic regression (sex) and
    ridge regression (age). Chance, measured by shuffling sex and age over the same statistics (30 shuffles on
    each of seeds 11 and 12): sex AUROC 0.49 ± 0.05, age R² -0.12 ± 0.04 (31 statistics overfit 240 training
    images, hence the negative R²). Thresholds: sex AUROC < 0.65 and age R² < 0.05, about 3 and 4 standard
    deviations above chance. The phantoms before exposure recognition scored sex AUROC 0.89 and age R² 0.42
    with these statistics (1,500 phantoms); now 0.42 / 0.01 here and 0.54 / 0.02 on 1,500 (seed 0), where a
    faint age trend remains in the edge energy (older ribs have less contrast).
    """
    manifest = generate(tmp_path / "leak", n=300, size=96, seed=11, workers=2)
    df = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    stats = manifest_statistics(manifest)
    assert stats.shape == (300, 31) and np.isfinite(stats).all()
    scores = leak_scores(stats, df["sex"], pd.to_numeric(df["age"]), df["patient_id"])
    assert scores["sex_auroc"] < 0.65 and scores["age_r2"] < 0.05, scores
    # the same probe finds a factor that does act globally: detector noise grows with BMI
    bmi = pd.to_numeric(df["bmi"]).to_numpy()
    noisy = np.where(bmi > np.median(bmi), "M", "F")
    assert leak_scores(stats, noisy, bmi, df["patient_id"])["sex_auroc"] > 0.7


def test_global_statistics_match_hand_computed_values():
    image = np.zeros((4, 4), np.uint8)
    image[:, 2:] = 255
    s = global_statistics(image)
    assert s[0] == pytest.approx(0.5) and s[1] == pytest.approx(0.5, abs=1e-6)  # mean, std
    assert s[2] == pytest.approx(0.0, abs=1e-6) and s[3] == pytest.approx(1.0, abs=1e-6)  # skew, kurtosis
    hist = s[13:29]
    assert hist[0] == pytest.approx(0.5) and hist[-1] == pytest.approx(0.5)


def test_lesions_keep_their_size_in_millimetres_at_any_image_size():
    for name, side in (("Mass", "right"), ("Effusion", "left"), ("Nodule", "left"), ("Pneumothorax", "right")):
        case = Case(55.0, "M", 26.0, "PA", "site_a", {name: Lesion(side, 2)})
        shares = [_render(case, size, seed=3)[1][name].mean() for size in (64, 128)]  # same seed: same lesion
        assert shares[0] > 0 and abs(shares[0] - shares[1]) < 0.2 * shares[1], (name, shares)


def test_every_localized_finding_covers_two_probe_patches_at_64_px():
    """cpu profile: probes at 64 px with 8 px patches (each 44 x 54 mm of film)."""
    knobs = PhantomKnobs()
    seen = dict.fromkeys(LOCALIZED_FINDINGS, 0)
    for i in range(160):
        case_rng, pixel_rng = np.random.default_rng([5, i, 0]), np.random.default_rng([5, i, 1])
        case = sample_case(case_rng, balanced=True, knobs=knobs)
        _, masks = render_phantom(case, 64, pixel_rng, knobs)
        for name in LOCALIZED_FINDINGS:
            if name in case.findings:
                assert patches_covered(masks[name], 8) >= 2, (i, name, case.findings[name])
                seen[name] += 1
    assert all(v >= 5 for k, v in seen.items() if k != "Hernia"), seen


def test_patches_covered_counts_cells_by_hand():
    mask = np.zeros((16, 16), bool)
    mask[7:9, 3] = True  # straddles two cells of a 8 px grid vertically
    assert patches_covered(mask, 8) == 2 and patches_covered(mask, 16) == 1
    with pytest.raises(ValueError, match="tile"):
        patches_covered(np.zeros((10, 10), bool), 8)


def test_support_devices_have_a_mask_and_a_chest_tube_drains_the_pneumothorax_side():
    case = Case(60.0, "M", 26.0, "AP", "site_b", {"Pneumothorax": Lesion("left", 3)}, ("chest_tube", "ett"))
    image, masks = _render(case, 96)
    device = masks[DEVICE_MASK]
    lung_left_cols = np.flatnonzero(masks["left_lung"].any(axis=0))
    assert device.any() and device[:, lung_left_cols.min():].sum() > device[:, :lung_left_cols.min()].sum()
    assert image[device].mean() > image[masks["left_lung"] & ~device].mean()  # metal is bright
    assert DEVICE_MASK not in _render(Case(60.0, "M", 26.0, "AP", "site_b"), 96)[1]


def test_atlas_landmarks_sit_on_the_structures_they_name():
    from raddino_lib.data.phantoms.atlas import anatomy_atlas

    for seed, case in enumerate((Case(62.0, "M", 26.0, "PA", "site_a"), Case(38.0, "F", 29.0, "AP", "site_c"))):
        _, masks, points = anatomy_atlas(case, 128, seed)

        def near(mask, name, tol=3, points=points):
            r, c = (int(round(v)) for v in points[name])
            return mask[max(r - tol, 0):r + tol + 1, max(c - tol, 0):c + tol + 1].any()

        lungs = masks["right_lung"] | masks["left_lung"]
        assert near(masks["heart"], "cardiac apex") and near(masks["heart"], "right atrial border")
        assert near(masks["right_lung"], "right hemidiaphragm") and near(masks["right_lung"], "costophrenic angle")
        assert near(masks["ribs"], "posterior rib", 1) and near(masks["ribs"], "anterior rib", 1)
        assert not lungs[tuple(int(round(v)) for v in points["trachea"])]  # mediastinum, not lung
        mid = np.flatnonzero(lungs.any(axis=0))[[0, -1]].mean()
        assert points["aortic knob"][1] > mid and points["gastric bubble"][1] > mid  # patient's left
        assert points["carina"][0] > points["trachea"][0] and points["right hemidiaphragm"][0] < points["spine"][0]
