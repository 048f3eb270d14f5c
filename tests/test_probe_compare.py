"""The encoder comparison end to end on a tiny hand-made manifest (no phantoms needed)."""

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from raddino_lib.data.manifest import write_manifest
from raddino_lib.models.backbone import create_backbone
from raddino_lib.models.weights import save_backbone
from raddino_lib.probe.compare import compare_classification, compare_segmentation, manifest_findings
from raddino_lib.probe.encoders import make_random_encoder


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """24 images of 32 px: a bright square (finding 'Mass', mask_Mass) on half of them, a 'lung' mask on all."""
    root = tmp_path_factory.mktemp("toy")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(24):
        img = rng.integers(0, 60, size=(32, 32)).astype(np.uint8)
        lung = np.zeros((32, 32), np.uint8)
        lung[4:28, 2:14] = 255
        img[lung > 0] += 60
        has = i % 2 == 0
        mass = np.zeros((32, 32), np.uint8)
        if has:
            mass[16:26, 18:28] = 255
            img[mass > 0] = 250
        Image.fromarray(img).save(root / f"im{i}.png")
        Image.fromarray(lung).save(root / f"lung{i}.png")
        if has:
            Image.fromarray(mass).save(root / f"mass{i}.png")
        rows.append({"image_id": f"im{i}", "path": f"im{i}.png", "patient_id": f"p{i // 2}", "study_id": f"s{i}",
                     "split": ("train", "val", "test", "train")[i // 2 % 4], "age": 50, "sex": "F", "view": "PA",
                     "site": "toy", "label_Mass": float(has), "label_Nodule": 1.0,
                     "mask_left_lung": f"lung{i}.png", "mask_Mass": f"mass{i}.png" if has else ""})
    manifest = write_manifest(pd.DataFrame(rows), root / "manifest.csv")
    torch.manual_seed(0)
    a = save_backbone(create_backbone("vit_tiny", patch_size=8, img_size=32, depth=2), root / "a.safetensors")
    b = make_random_encoder(root / "b.safetensors", like=a, seed=1)
    return manifest, {"ssl": str(a), "random": str(b)}, root


def test_classification_table_has_every_probe_with_intervals_and_skips_all_one_labels(toy):
    manifest, encoders, root = toy
    res = compare_classification(encoders, manifest, root / "cache", 32, n_boot=10, log=lambda s: None)
    assert set(res.table) == {"ssl", "random"}
    for cells in res.table.values():
        for name in ("cls_macro_auroc", "clsmean_macro_auroc", "knn_macro_auroc", "cls_macro_auprc"):
            c = cells[name]
            assert 0 <= c["value"] <= 1 and c["ci_low"] <= c["value"] <= c["ci_high"]
    assert "Nodule" in res.skipped and "0 negatives" in res.skipped["Nodule"]
    assert list(res.per_label_of("knn")) == ["ssl", "random"]
    assert res.per_label_results()["ssl"]["cls"]["Mass"]["auroc"]["value"] == res.table["ssl"]["cls_macro_auroc"][
        "value"]


def test_findings_must_exist_in_the_manifest(toy):
    from raddino_lib.data.manifest import read_manifest

    df = read_manifest(toy[0])
    assert manifest_findings(df) == ["Mass", "Nodule"]
    with pytest.raises(KeyError, match="label_Edema"):
        manifest_findings(df, ["Edema"])


def test_segmentation_table_and_overlay_arrays(toy):
    manifest, encoders, root = toy
    res = compare_segmentation(encoders, manifest, root / "cache", 32, epochs=2, n_boot=10, keep_predictions=2,
                               log=lambda s: None)
    assert res.structures == ["left_lung", "Mass"]
    assert set(res.table["ssl"]) == {"dice_mean", "dice_anatomy_mean", "dice_findings_mean", "dice_left_lung",
                                     "dice_Mass"}
    assert res.table["ssl"]["dice_anatomy_mean"]["value"] == pytest.approx(res.table["ssl"]["dice_left_lung"]["value"])
    assert res.table["ssl"]["dice_findings_mean"]["value"] == pytest.approx(res.table["ssl"]["dice_Mass"]["value"])
    assert res.images.shape == (2, 32, 32) and res.truth.shape == (2, 2, 32, 32)
    assert res.predictions["linear"]["random"].shape == (2, 2, 32, 32)
    assert res.truth[:, 0].sum() > 0


def test_both_heads_and_the_pixel_floor_share_one_table(toy):
    from raddino_lib.probe.pixels import PIXELS_SOURCE

    manifest, encoders, root = toy
    rows = {"pixels": PIXELS_SOURCE, "ssl": encoders["ssl"]}
    res = compare_segmentation(rows, manifest, root / "cache2", 32, epochs=2, upernet_epochs=2, n_boot=5,
                               heads=("linear", "upernet"), log=lambda s: None)
    for row in rows:
        for name in ("dice_mean", "dice_mean_upernet", "dice_left_lung", "dice_left_lung_upernet"):
            cell = res.table[row][name]
            assert 0.0 <= cell["value"] <= 1.0 and cell["ci_low"] <= cell["value"] <= cell["ci_high"]
    assert set(res.per_structure) == {"linear", "upernet"} and set(res.predictions["upernet"]) == set(rows)
    assert list((root / "cache2").glob("pixels_*.npz"))  # the floor's features are cached like an encoder's
    cls = compare_classification(rows, manifest, root / "cache2", 32, n_boot=5, log=lambda s: None)
    assert list(cls.table) == ["pixels", "ssl"] and cls.table["pixels"]["cls_macro_auroc"]["value"] is not None


def test_segmentation_rows_side_by_side_equal_rows_in_turn(toy, monkeypatch):
    manifest, encoders, root = toy
    tables = {}
    for workers in ("1", "2"):
        monkeypatch.setenv("RADDINO_WORKERS", workers)
        res = compare_segmentation(encoders, manifest, root / "cache", 32, epochs=2, n_boot=5, keep_predictions=2,
                                   heads=("linear", "upernet"), upernet_epochs=1, log=lambda s: None)
        tables[workers] = res
    assert tables["1"].table == tables["2"].table  # every row on one thread either way: equal to the last bit
    for head in ("linear", "upernet"):
        for row in encoders:
            np.testing.assert_array_equal(tables["1"].predictions[head][row], tables["2"].predictions[head][row])


def test_classification_rows_side_by_side_equal_rows_in_turn(toy, monkeypatch):
    manifest, encoders, root = toy
    out = {}
    for workers in ("1", "2"):
        monkeypatch.setenv("RADDINO_WORKERS", workers)
        out[workers] = compare_classification(encoders, manifest, root / "cache", 32, n_boot=5, log=lambda s: None)
    assert out["1"].table == out["2"].table and out["1"].skipped == out["2"].skipped
    assert out["1"].per_label.equals(out["2"].per_label)


def test_the_reading_follows_the_intervals():
    from raddino_lib.probe.compare import describe

    def cell(v, lo, hi):
        return {"m": {"value": v, "ci_low": lo, "ci_high": hi}}

    apart = {"ssl": cell(0.8, 0.75, 0.85), "random": cell(0.5, 0.45, 0.55), "language": cell(0.9, 0.87, 0.93)}
    text = describe(apart, "m", chance=0.5)
    assert "**ssl** lies above **random**" in text and "**ssl** lies below **language**" in text
    assert "not reproduced" in text and "Above chance (0.5) with 95% confidence: ssl, language." in text
    close = {"ssl": cell(0.8, 0.7, 0.9), "language": cell(0.78, 0.69, 0.88)}
    text = describe(close, "m", chance=0.5)
    assert "overlap" in text and "neither supports nor contradicts" in text


def test_encoders_are_placed_between_floor_and_ceiling():
    from raddino_lib.probe.compare import place_between

    def cell(v, lo, hi):
        return {"m": {"value": v, "ci_low": lo, "ci_high": hi}}

    table = {"pixels": cell(0.6, 0.55, 0.65), "random": cell(0.7, 0.66, 0.74), "ssl": cell(0.72, 0.69, 0.75),
             "supervised": cell(0.9, 0.88, 0.92)}
    text = place_between(table, "m")
    assert text == "- m: ssl 0.720 is better than pixels 0.600, level with random 0.700, worse than supervised 0.900."
    saturated = {**table, "supervised": cell(0.62, 0.6, 0.64)}
    assert "cannot rank encoders" in place_between(saturated, "m")
    errors = {"pixels": cell(9.0, 8.5, 9.5), "ssl": cell(6.0, 5.5, 6.5), "supervised": cell(4.0, 3.5, 4.5)}
    assert place_between(errors, "m", lower_is_better=True) == \
        "- m: ssl 6.000 is better than pixels 9.000, worse than supervised 4.000."


def test_extract_all_side_by_side_equals_each_encoder_in_turn(toy, monkeypatch, tmp_path):
    from raddino_lib.probe.compare import encoder_features, extract_all
    from raddino_lib.probe.pixels import PIXELS_SOURCE, PixelFloorConfig

    manifest, encoders, _ = toy
    rows = {**encoders, "pixels": PIXELS_SOURCE}
    monkeypatch.setenv("RADDINO_WORKERS", "1")
    in_turn = {k: encoder_features(p, manifest, tmp_path / "turn", 32, progress=False, keep_grid=True,
                                   keep_layers=True, pixel_cfg=PixelFloorConfig(patch_size=8)) for k, p in rows.items()}
    monkeypatch.setenv("RADDINO_WORKERS", "2")
    cached = extract_all(rows, manifest, str(tmp_path / "side"), 32)  # workers write the cache; CLS and mean back
    uncached = extract_all(rows, manifest, None, 32)  # no cache: the whole feature sets come back
    for k in rows:
        assert cached[k].grid is None and cached[k].layers is None
        np.testing.assert_array_equal(cached[k].cls, in_turn[k].cls)
        np.testing.assert_array_equal(cached[k].mean_patch, in_turn[k].mean_patch)
        np.testing.assert_array_equal(uncached[k].cls, in_turn[k].cls)
        again = encoder_features(rows[k], manifest, tmp_path / "side", 32, keep_grid=True, keep_layers=True,
                                 pixel_cfg=PixelFloorConfig(patch_size=8))  # the grids the workers cached
        np.testing.assert_array_equal(again.grid, in_turn[k].grid)
    assert sorted(p.name for p in (tmp_path / "side").glob("*.npz")) == \
        sorted(p.name for p in (tmp_path / "turn").glob("*.npz"))
