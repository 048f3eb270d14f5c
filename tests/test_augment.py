"""Multi-crop augmentation, iBOT block masking and the multi-crop collate."""

import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from raddino_lib.data.augment import (
    PHOTOMETRIC_LEVELS,
    MultiCropAugmentation,
    _gaussian_blur,
    collate_multicrop,
    rad_dino_augmentation,
)
from raddino_lib.data.masking import MaskingGenerator
from raddino_lib.train.pretrain_config import PHOTOMETRIC_NAMES


def _image(h=48, w=40):
    y, x = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    return (0.3 * x + 0.7 * y).unsqueeze(0)  # (1, H, W) in [0, 1], no symmetry


def _aug(**kw):
    return MultiCropAugmentation(global_crop_size=32, local_crop_size=16, n_local_crops=3, **kw)


def test_shapes_and_grayscale_channels():
    out = _aug()(_image(), seed=0)
    assert [c.shape for c in out["global_crops"]] == [(3, 32, 32)] * 2
    assert [c.shape for c in out["local_crops"]] == [(3, 16, 16)] * 3
    for crop in out["global_crops"] + out["local_crops"]:
        assert torch.isfinite(crop).all()
        # one gray image replicated: undoing the normalisation gives equal channels
        std, mean = torch.tensor([0.229, 0.224, 0.225]), torch.tensor([0.485, 0.456, 0.406])
        raw = crop * std.view(3, 1, 1) + mean.view(3, 1, 1)
        assert torch.allclose(raw[0], raw[1], atol=1e-5) and torch.allclose(raw[0], raw[2], atol=1e-5)
        assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5


def test_deterministic_given_seed_or_generator():
    aug, img = _aug(), _image()
    a, b, c = aug(img, seed=3), aug(img, seed=3), aug(img, seed=4)
    assert all(torch.equal(x, y) for x, y in zip(a["local_crops"], b["local_crops"], strict=True))
    assert torch.equal(a["global_crops"][0], b["global_crops"][0])
    assert not torch.equal(a["global_crops"][0], c["global_crops"][0])
    d = aug(img, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a["global_crops"][1], d["global_crops"][1])


def test_geometry_only_is_a_resized_crop():
    """With every photometric change off and scale 1, a square image's crop is the resized image (maybe flipped)."""
    aug = MultiCropAugmentation(global_crops_scale=(1.0, 1.0), n_local_crops=0, global_crop_size=16,
                                local_crop_size=8, mean=(0.0,), std=(1.0,), jitter_prob=0, gamma_prob=0,
                                blur_sigma=(0.0, 0.0), sharpness_prob=0, noise_prob=0)
    img = _image(16, 16)
    out = aug(img, seed=0)
    assert out["local_crops"] == []
    for crop in out["global_crops"]:
        gray = crop[0]
        assert torch.allclose(gray, img[0], atol=1e-5) or torch.allclose(gray, img[0].flip(-1), atol=1e-5)


def test_photometric_levels_none_keeps_geometry_and_lite_jitters_less_than_full():
    img = _image(16, 16)
    none = MultiCropAugmentation(global_crops_scale=(1.0, 1.0), n_local_crops=0, global_crop_size=16,
                                 local_crop_size=8, mean=(0.0,), std=(1.0,), **PHOTOMETRIC_LEVELS["none"])
    for seed in range(5):
        for crop in none(img, seed=seed)["global_crops"]:
            assert torch.allclose(crop[0], img[0], atol=1e-5) or torch.allclose(crop[0], img[0].flip(-1), atol=1e-5)

    def brightness_spread(level):
        aug = MultiCropAugmentation(global_crops_scale=(1.0, 1.0), n_local_crops=0, global_crop_size=16,
                                    local_crop_size=8, mean=(0.0,), std=(1.0,), **PHOTOMETRIC_LEVELS[level])
        return torch.stack([aug(img, seed=s)["global_crops"][1][0].mean() for s in range(200)]).std().item()

    assert brightness_spread("lite") < 0.5 * brightness_spread("full")
    assert tuple(PHOTOMETRIC_LEVELS) == PHOTOMETRIC_NAMES  # the names PretrainConfig accepts


@pytest.mark.parametrize("sigma", [0.6, 2.5])
def test_separable_blur_matches_torchvision(sigma):
    x = torch.rand(1, 20, 20, generator=torch.Generator().manual_seed(0))
    k = 2 * int(np.ceil(3 * sigma)) + 1
    assert torch.allclose(_gaussian_blur(x, sigma), TF.gaussian_blur(x, [k, k], [sigma, sigma]), atol=1e-5)


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="grayscale"):
        _aug()(torch.rand(2, 8, 8))
    with pytest.raises(TypeError, match="float"):
        _aug()(torch.zeros(1, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="global_crops_scale"):
        MultiCropAugmentation(global_crops_scale=(0.5, 0.2))


def test_rad_dino_preset_is_documented_defaults():
    aug = rad_dino_augmentation()
    assert (aug.global_crop_size, aug.local_crop_size, aug.n_local_crops) == (518, 224, 8)
    assert aug.global_crops_scale == (0.32, 1.0) and aug.local_crops_scale == (0.05, 0.32)


# ----- masking -----


@pytest.mark.parametrize("n", [0, 1, 5, 13, 30, 49])
def test_masking_exact_counts(n):
    gen = MaskingGenerator((7, 7), max_num_patches=0.5 * 49)
    mask = gen(n, generator=torch.Generator().manual_seed(n))
    assert mask.shape == (7, 7) and mask.dtype == bool
    assert mask.sum() == n


def _masked_neighbour_fraction(mask):
    m = np.pad(mask, 1)
    neigh = m[:-2, 1:-1] | m[2:, 1:-1] | m[1:-1, :-2] | m[1:-1, 2:]
    return (neigh & mask).sum() / mask.sum()


def test_masks_are_blocky():
    gen = MaskingGenerator((14, 14), max_num_patches=98)
    g = torch.Generator().manual_seed(0)
    block = np.mean([_masked_neighbour_fraction(gen(50, generator=g)) for _ in range(20)])
    rng = np.random.default_rng(0)
    scattered = []
    for _ in range(20):
        m = np.zeros(196, dtype=bool)
        m[rng.choice(196, 50, replace=False)] = True
        scattered.append(_masked_neighbour_fraction(m.reshape(14, 14)))
    assert block > 0.95 > np.mean(scattered) + 0.15  # random: about 1 - 0.75^4 = 0.68


# ----- collate -----


def test_collate_dinov2_semantics():
    aug, batch = _aug(), 4
    samples = [aug(_image(), seed=i) for i in range(batch)]
    gen = MaskingGenerator((4, 4), max_num_patches=8)
    out = collate_multicrop(samples, gen, mask_ratio_min_max=(0.1, 0.5), mask_probability=0.5, patch_size=8,
                            generator=torch.Generator().manual_seed(0))
    assert out["collated_global_crops"].shape == (2 * batch, 3, 32, 32)
    assert out["collated_local_crops"].shape == (3 * batch, 3, 16, 16)
    assert torch.equal(out["collated_global_crops"][1], samples[1]["global_crops"][0])  # crop-major
    assert torch.equal(out["collated_global_crops"][batch + 1], samples[1]["global_crops"][1])
    masks = out["collated_masks"]
    assert masks.shape == (2 * batch, 16) and masks.dtype == torch.bool
    per_crop = masks.sum(1)
    assert (per_crop > 0).sum() == 4  # int(8 * 0.5) crops masked
    assert per_crop.max() <= 8  # ratio <= 0.5
    m = int(masks.sum())
    assert out["n_masked_patches"].tolist() == [m] and out["mask_indices_list"].shape == (m,)
    assert torch.equal(masks.flatten()[out["mask_indices_list"]], torch.ones(m, dtype=torch.bool))
    expected_w = torch.cat([torch.full((int(k),), 1.0 / int(k)) for k in per_crop if k > 0])
    assert torch.allclose(out["masks_weight"], expected_w)
    assert out["upperbound"] >= m
    # ratios come from consecutive slices of linspace(0.1, 0.5, 5): counts int(16 * r) within each slice's bounds
    bounds = [(1, 3), (3, 4), (4, 6), (6, 8)]
    for k, (lo, hi) in zip(sorted(per_crop[per_crop > 0].tolist()), bounds, strict=True):
        assert lo <= k <= hi
    again = collate_multicrop(samples, gen, patch_size=8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again["collated_masks"], masks)
