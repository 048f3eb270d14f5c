"""The raw-pixel floor and the rows beside the encoders, on tiny hand-made sets."""

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from raddino_lib.data.manifest import read_manifest, write_manifest
from raddino_lib.probe import pixels as px
from raddino_lib.probe.classification import linear_probe
from raddino_lib.probe.encoders import make_random_encoder, table_order, with_floor_and_ceiling


def test_pixel_patches_are_the_image_cut_into_tiles():
    images = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(2, 4, 4)
    patches = px.pixel_patches(images, 2)  # (2, 2, 2, 4)
    assert patches.shape == (2, 2, 2, 4)
    assert patches[1, 0, 1].tolist() == images[1, 0:2, 2:4].flatten().tolist()
    assert patches[0, 1, 0].tolist() == images[0, 2:4, 0:2].flatten().tolist()
    with pytest.raises(ValueError, match="multiple of the pixel patch size"):
        px.pixel_patches(images, 3)


def test_pca_is_fitted_on_the_train_rows_only():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 10))
    train = np.arange(30) < 20
    a = px.pca_features(x, train, 3)
    x2 = x.copy()
    x2[~train] = rng.normal(size=(10, 10)) * 100  # wild test rows must not move the projection
    b = px.pca_features(x2, train, 3)
    np.testing.assert_allclose(a[train], b[train], atol=1e-6)
    assert a.shape == (30, 3)
    assert px.pca_features(x, train, 50).shape == (30, 10)  # capped by the pixel count
    with pytest.raises(ValueError, match="train"):
        px.pca_features(x, np.zeros(30, bool), 3)


def _manifest(root, label_from_pixels: bool, n=48, size=32):
    """Bright square = finding when ``label_from_pixels``; otherwise labels are a coin flip independent of pixels."""
    rng = np.random.default_rng(1)
    rows = []
    for i in range(n):
        img = rng.integers(0, 60, size=(size, size)).astype(np.uint8)
        square = i % 2 == 0
        if square:
            img[8:20, 8:20] = 230
        label = square if label_from_pixels else bool(rng.integers(0, 2))
        Image.fromarray(img).save(root / f"im{i}.png")
        rows.append({"image_id": f"im{i}", "path": f"im{i}.png", "patient_id": f"p{i}", "study_id": f"s{i}",
                     "split": ("train", "train", "val", "test")[i % 4] if i > 7 else ("train", "test")[(i // 2) % 2],
                     "age": 50, "sex": "F", "view": "PA", "site": "toy", "label_Mass": float(label)})
    return write_manifest(pd.DataFrame(rows), root / "manifest.csv")


@pytest.mark.parametrize("label_from_pixels, low, high", [(True, 0.95, 1.0), (False, 0.0, 0.8)])
def test_the_floor_reads_what_the_pixels_say_and_nothing_more(tmp_path, label_from_pixels, low, high):
    manifest = _manifest(tmp_path, label_from_pixels)
    fs = px.pixel_features(manifest, 32, px.PixelFloorConfig(side=8, n_components=12, patch_size=8),
                           cache_dir=tmp_path / "cache", keep_layers=True)
    assert fs.cls.shape == (48, 12) and fs.grid.shape == (48, 4, 4, 64) and fs.layers.shape == (48, 4, 4, 4, 64)
    df = read_manifest(manifest)
    res = linear_probe(fs.cls, df[["label_Mass"]].to_numpy(float), df["split"], df["patient_id"], ["Mass"], n_boot=5)
    assert low <= res.macro_auroc.value <= high


def test_pixel_features_are_cached_and_the_grid_is_the_normalized_image(tmp_path, monkeypatch):
    manifest = _manifest(tmp_path, True)
    cfg = px.PixelFloorConfig(side=8, n_components=4, patch_size=8)
    fs = px.pixel_features(manifest, 32, cfg, cache_dir=tmp_path / "c")
    _, images = px.load_eval_images(manifest, 32)
    assert fs.grid[0, 1, 2].astype(np.float32) == pytest.approx(images[0, 8:16, 16:24].flatten().numpy(), abs=1e-3)
    monkeypatch.setattr(px, "load_eval_images", lambda *a, **k: pytest.fail("the cache was not used"))
    again = px.pixel_features(manifest, 32, cfg, cache_dir=tmp_path / "c", keep_grid=False)
    np.testing.assert_array_equal(again.cls, fs.cls)
    assert again.grid is None


def test_rows_are_ordered_from_floor_to_ceiling(tmp_path):
    assert table_order(["ssl", "supervised", "rad-dino", "random", "language", "pixels"]) == \
        ["pixels", "random", "ssl", "language", "rad-dino", "supervised"]
    manifest = _manifest(tmp_path, True)
    rand = str(make_random_encoder(tmp_path / "r.safetensors", patch_size=8, img_size=32, depth=1))
    notes: list[str] = []
    rows = with_floor_and_ceiling({"random": rand}, str(manifest), tmp_path / "cache", 32, supervised_steps=3,
                                  notes=notes)
    assert list(rows) == ["pixels", "random", "supervised"] and rows["pixels"] == px.PIXELS_SOURCE
    assert "supervised ceiling: 3 steps" in notes[0]
    given = with_floor_and_ceiling({"random": rand}, str(manifest), tmp_path / "cache", 32,
                                   supervised=rows["supervised"])
    assert given["supervised"] == rows["supervised"]
    assert "supervised" not in with_floor_and_ceiling({"random": rand}, str(manifest), tmp_path, 32,
                                                      supervised_steps=0)


def test_cached_pixel_features_still_give_the_layers(tmp_path):
    manifest = _manifest(tmp_path, True)
    cfg = px.PixelFloorConfig(side=8, n_components=4, patch_size=8)
    px.pixel_features(manifest, 32, cfg, cache_dir=tmp_path / "c")  # cached without layers
    again = px.pixel_features(manifest, 32, cfg, cache_dir=tmp_path / "c", keep_layers=True)
    assert again.layers.shape == (48, 4, 4, 4, 64)
    np.testing.assert_array_equal(again.layers[:, 2], again.grid)
