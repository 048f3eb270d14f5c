"""The supervised ceiling: targets found from the manifest's columns, training that learns, cache and resume."""

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from raddino_lib.data.manifest import read_manifest, write_manifest
from raddino_lib.models.backbone import create_backbone
from raddino_lib.models.weights import load_backbone, read_backbone_spec, save_backbone
from raddino_lib.train import supervised as sup


@pytest.fixture(scope="module", autouse=True)
def a_structure_no_code_names():
    """Let the manifest validator accept a 'rib_7' mask column, as a dataset card adding ribs would."""
    import raddino_lib.data.manifest as manifest_module

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(manifest_module, "ANATOMY", (*manifest_module.ANATOMY, "rib_7"))
        yield


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """40 images of 32 px: a bright square on a third (label_Mass + mask_Mass), a lung mask on all, a made-up
    'rib' mask column on all (a structure the code knows nothing about), age that darkens the image."""
    root = tmp_path_factory.mktemp("sup")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(40):
        age = float(rng.uniform(20, 80))
        img = (rng.integers(0, 40, size=(32, 32)) + (100 - age)).astype(np.uint8)
        lung = np.zeros((32, 32), np.uint8)
        lung[4:28, 2:14] = 255
        rib = np.zeros((32, 32), np.uint8)
        rib[6 + i % 3::8, 2:30] = 255
        has = i % 3 == 0
        if has:
            img[16:26, 18:28] = 250
            mass = np.zeros((32, 32), np.uint8)
            mass[16:26, 18:28] = 255
            Image.fromarray(mass).save(root / f"mass{i}.png")
        Image.fromarray(img).save(root / f"im{i}.png")
        Image.fromarray(lung).save(root / f"lung{i}.png")
        Image.fromarray(rib).save(root / f"rib{i}.png")
        rows.append({"image_id": f"im{i}", "path": f"im{i}.png", "patient_id": f"p{i}", "study_id": f"s{i}",
                     "split": ("train", "train", "val", "test")[i % 4] if i > 3 else ("train", "test")[i % 2],
                     "age": age, "sex": "MF"[i % 2], "view": "PA", "site": "ab"[i % 5 == 0], "bmi": 25.0 + i % 5,
                     "label_Mass": float(has), "label_Nodule": 0.0,
                     "mask_left_lung": f"lung{i}.png", "mask_rib_7": f"rib{i}.png",
                     "mask_Mass": f"mass{i}.png" if has else ""})
    manifest = write_manifest(pd.DataFrame(rows), root / "manifest.csv")
    torch.manual_seed(0)
    like = save_backbone(create_backbone("vit_tiny", patch_size=8, img_size=32, depth=2), root / "like.safetensors")
    return str(manifest), str(like), root


def _cfg(toy, **kw):
    manifest, like, root = toy
    base = dict(manifest=manifest, cache_dir=str(root / kw.pop("cache", "cache")), like=like, image_size=32,
                batch_size=8, max_steps=12, lr=1e-3, checkpoint_every=0)
    return sup.SupervisedConfig(**{**base, **kw})


def test_targets_come_from_the_columns(toy):
    t = sup.discover_targets(read_manifest(toy[0]))
    assert t.findings == ["Mass"]  # Nodule has no positive in train
    assert t.regression == ["age", "bmi"] and list(t.classes) == ["sex", "site"]  # view has one value
    assert t.structures == ["left_lung", "rib_7", "Mass"]
    assert t.labels.shape == (40, 1) and t.values.shape == (40, 2) and t.codes.shape == (40, 2)
    train = read_manifest(toy[0])["split"].to_numpy() == "train"
    assert np.nanmean(t.values[train, 0]) == pytest.approx(0.0, abs=1e-9)  # standardized on train
    assert np.nanstd(t.values[train, 0]) == pytest.approx(1.0, abs=1e-9)


def test_shift_moves_image_and_mask_together():
    img = torch.zeros(1, 1, 8, 8)
    img[0, 0, 2, 3] = 1
    mask = img.clone()
    out_i, out_m = sup.shift_batch(img, mask, 2, torch.Generator().manual_seed(3))
    assert out_i.sum() == 1 and torch.equal(out_i, out_m)


def test_training_learns_is_cached_and_keeps_the_architecture(toy, monkeypatch):
    cfg = _cfg(toy, max_steps=40, cache="learn")
    path = sup.train_supervised(cfg, progress=False)
    curve = sup.read_metrics(path)
    assert len(curve) == 40 and {"findings", "metadata", "segmentation"} <= set(curve.columns)
    assert curve["loss"].tail(5).mean() < 0.7 * curve["loss"].head(5).mean()
    spec, like_spec = read_backbone_spec(path), read_backbone_spec(cfg.like)
    assert {k: spec[k] for k in ("embed_dim", "depth", "patch_size", "num_heads")} == \
        {k: like_spec[k] for k in ("embed_dim", "depth", "patch_size", "num_heads")}
    assert not torch.equal(load_backbone(path).pos_embed, load_backbone(cfg.like).pos_embed)  # it trained
    monkeypatch.setattr(sup, "load_split", lambda *a, **k: pytest.fail("a finished run was trained again"))
    assert sup.train_supervised(cfg, progress=False) == path
    assert sup.run_dir_of(_cfg(toy, max_steps=41, cache="learn")) != path.parent  # another config, another run


def test_an_interrupted_run_resumes_to_the_same_weights(toy, monkeypatch):
    whole = sup.train_supervised(_cfg(toy, cache="whole", checkpoint_every=5), progress=False)
    real_losses = sup.task_losses
    calls = {"n": 0}

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt
        return real_losses(*args, **kwargs)

    cfg = _cfg(toy, cache="broken", checkpoint_every=5)
    monkeypatch.setattr(sup, "task_losses", dying)
    with pytest.raises(KeyboardInterrupt):
        sup.train_supervised(cfg, progress=False)
    monkeypatch.setattr(sup, "task_losses", real_losses)
    resumed = sup.train_supervised(cfg, progress=False)
    a, b = load_backbone(whole).state_dict(), load_backbone(resumed).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert len(sup.read_metrics(resumed)) == 12


def test_bad_config_names_the_field():
    with pytest.raises(ValueError, match="manifest"):
        sup.SupervisedConfig()


def test_heads_read_pooled_features_standardised_over_the_batch(toy):
    """head_norm="batchnorm": whatever the backbone's pooled features, the heads see each one at mean 0, std 1
    over the batch (the fix for the ViT's findings plateau, experiments.ceiling_plateau); "" leaves them raw."""
    from raddino_lib.models.backbone import split_tokens

    targets = sup.discover_targets(read_manifest(toy[0]))
    torch.manual_seed(0)
    backbone = create_backbone("vit_tiny", patch_size=8, img_size=32, depth=2)
    images = torch.rand(16, 3, 32, 32)
    cls, grid = split_tokens(backbone, backbone.forward_features(images))
    raw = torch.cat([cls, grid.mean(dim=(1, 2))], dim=1)
    seen = {}
    for norm in ("batchnorm", ""):
        model = sup.MultiTaskModel(backbone, targets, head_norm=norm).train()
        model.findings.register_forward_hook(lambda m, inp, out, norm=norm: seen.__setitem__(norm, inp[0]))
        model(images)
    assert torch.allclose(seen[""], raw, atol=1e-5)
    by_hand = (raw - raw.mean(0)) / (raw.var(0, unbiased=False) + 1e-5).sqrt()  # BatchNorm1d's eps, at init
    assert torch.allclose(seen["batchnorm"], by_hand, atol=1e-3)
    assert raw.std(0).mean() < 0.5  # the backbone's own spread across images is far from 1
    with pytest.raises(ValueError, match="head_norm"):
        sup.SupervisedConfig(manifest="m.csv", head_norm="layernorm")


def test_a_single_train_image_is_refused_with_batchnorm_heads(toy, monkeypatch):
    """BatchNorm needs two images per batch: one train image gets a clear error, not a torch traceback."""
    real = sup.load_split
    monkeypatch.setattr(sup, "load_split", lambda *a, **k: {key: v[:1] for key, v in real(*a, **k).items()})
    with pytest.raises(ValueError, match="at least 2 train images"):
        sup.train_supervised(_cfg(toy, cache="one"), progress=False)
