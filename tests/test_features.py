import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from raddino_lib.data.manifest import write_manifest
from raddino_lib.models.backbone import create_backbone, split_tokens
from raddino_lib.models.weights import save_backbone
from raddino_lib.probe import features as F
from raddino_lib.probe.features import FeatureSet, extract_features


def _manifest(tmp_path, n=10, size=32):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, size=(size, size), dtype=np.uint8)).save(tmp_path / f"im{i}.png")
        rows.append({"image_id": f"im{i}", "path": f"im{i}.png", "patient_id": f"p{i // 2}", "study_id": f"s{i}",
                     "split": ["train", "test"][i // 2 % 2], "age": 50, "sex": "M", "view": "PA", "site": "toy"})
    return write_manifest(pd.DataFrame(rows), tmp_path / "manifest.csv")


def _backbone(tmp_path, seed=0, name="b.safetensors"):
    torch.manual_seed(seed)
    return save_backbone(create_backbone("vit_tiny", patch_size=8, img_size=32, depth=2), tmp_path / name)


def test_features_match_the_bare_model_and_the_cache_is_reused(tmp_path, monkeypatch):
    manifest, backbone = _manifest(tmp_path), _backbone(tmp_path)
    fs = extract_features(backbone, manifest, tmp_path / "cache", 32, batch_size=4, keep_grid=True, progress=False)
    assert fs.cls.shape == (10, 192) and fs.grid.shape == (10, 4, 4, 192) and list(fs.image_ids[:2]) == ["im0", "im1"]
    assert fs.features("cls+mean_patch").shape == (10, 384)
    assert fs.mean_patch == pytest.approx(fs.grid.astype(np.float32).mean((1, 2)), abs=1e-2)

    from raddino_lib.data.io import load_image
    from raddino_lib.data.transforms import eval_transform_for
    from raddino_lib.models.weights import load_backbone

    model = load_backbone(backbone, img_size=32)
    x = eval_transform_for(backbone, 32)(load_image(tmp_path / "im3.png"))[None]
    with torch.no_grad():
        cls, _ = split_tokens(model, model.forward_features(x))
    assert fs.cls[3] == pytest.approx(cls[0].numpy(), abs=1e-4)

    monkeypatch.setattr(F, "encode", lambda *a: pytest.fail("cache not reused"))
    again = extract_features(backbone, manifest, tmp_path / "cache", 32, batch_size=4, progress=False)
    assert again.grid is None and np.array_equal(again.cls, fs.cls)  # the grid cache serves a CLS-only call


def test_a_changed_checkpoint_or_size_is_never_served_from_the_cache(tmp_path):
    manifest = _manifest(tmp_path)
    a = extract_features(_backbone(tmp_path, 0, "a.safetensors"), manifest, tmp_path / "c", 32, progress=False)
    b_path = _backbone(tmp_path, 1, "a.safetensors")  # same file name, new weights
    b = extract_features(b_path, manifest, tmp_path / "c", 32, progress=False)
    assert not np.allclose(a.cls, b.cls)
    c = extract_features(b_path, manifest, tmp_path / "c", 16, progress=False)
    assert len(list((tmp_path / "c").glob("*.npz"))) == 3 and not np.allclose(b.cls, c.cls)


def test_an_interrupted_extraction_resumes_from_finished_chunks(tmp_path, monkeypatch):
    manifest, backbone = _manifest(tmp_path), _backbone(tmp_path)
    reference = extract_features(backbone, manifest, None, 32, batch_size=2, progress=False)
    real, calls = F.encode, []

    def failing(model, images):
        calls.append(len(images))
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(model, images)

    monkeypatch.setattr(F, "encode", failing)
    with pytest.raises(KeyboardInterrupt):
        extract_features(backbone, manifest, tmp_path / "c", 32, batch_size=2, chunk_batches=1, progress=False)
    assert len(list((tmp_path / "c").glob("*.parts/*.npz"))) == 3
    calls.clear()
    monkeypatch.setattr(F, "encode", lambda m, x: calls.append(len(x)) or real(m, x))
    fs = extract_features(backbone, manifest, tmp_path / "c", 32, batch_size=2, chunk_batches=1, progress=False)
    assert sum(calls) == 4  # only the two unfinished chunks (2 rows each) ran again
    assert fs.cls == pytest.approx(reference.cls, abs=1e-5)
    assert not list((tmp_path / "c").glob("*.parts"))


def test_feature_set_rejects_unknown_kinds_and_missing_backbones(tmp_path):
    fs = FeatureSet(np.array(["a"]), np.zeros((1, 2), np.float32), np.ones((1, 2), np.float32))
    with pytest.raises(ValueError, match="unknown feature set 'patch'"):
        fs.features("patch")
    with pytest.raises(FileNotFoundError, match="nowhere.safetensors"):
        extract_features(tmp_path / "nowhere.safetensors", _manifest(tmp_path, n=2), None, 32)


def test_four_layer_grids_are_cached_and_serve_poorer_requests(tmp_path, monkeypatch):
    manifest, backbone = _manifest(tmp_path), _backbone(tmp_path)
    fs = extract_features(backbone, manifest, tmp_path / "c", 32, batch_size=4, keep_layers=True, progress=False)
    assert fs.layers.shape == (10, 4, 4, 4, 192) and fs.grid.shape == (10, 4, 4, 192)
    np.testing.assert_array_equal(fs.grid, fs.layers[:, -1])  # the last layer is the grid
    plain = extract_features(backbone, manifest, None, 32, batch_size=4, keep_grid=True, progress=False)
    np.testing.assert_allclose(fs.grid.astype(np.float32), plain.grid.astype(np.float32), atol=2e-3)
    np.testing.assert_allclose(fs.cls, plain.cls, atol=1e-5)
    monkeypatch.setattr(F, "encode", lambda *a: pytest.fail("cache not reused"))
    monkeypatch.setattr(F, "encode_layers", lambda *a: pytest.fail("cache not reused"))
    grid_only = extract_features(backbone, manifest, tmp_path / "c", 32, keep_grid=True, progress=False)
    assert grid_only.layers is None and np.array_equal(grid_only.grid, fs.grid)
    cls_only = extract_features(backbone, manifest, tmp_path / "c", 32, progress=False)
    assert cls_only.grid is None and np.array_equal(cls_only.cls, fs.cls)
    assert len(list((tmp_path / "c").glob("*.npz"))) == 1
