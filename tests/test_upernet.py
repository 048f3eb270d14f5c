"""The UPerNet head: shapes, the ViT's intermediate layers it reads, and that it learns a toy mask task."""

import numpy as np
import pytest
import torch

from raddino_lib.models.backbone import create_backbone, split_tokens
from raddino_lib.models.upernet import UPerNetHead
from raddino_lib.probe.features import encode_layers, layer_indices
from raddino_lib.probe.segmentation import SegConfig, segmentation_probe


def _head(dim=16, s=3, layers=4, channels=8):
    return UPerNetHead(dim, s, torch.zeros(layers, dim), torch.ones(layers, dim), n_layers=layers,
                       channels=channels)


@pytest.mark.parametrize("grid, size", [(8, (64, 64)), (5, (70, 70)), (16, (32, 48))])
def test_output_shape_for_any_grid_and_mask_size(grid, size):
    head = _head().eval()
    out = head(torch.randn(2, 4, grid, grid, 16), size)
    assert out.shape == (2, 3, *size) and torch.isfinite(out).all()
    levels = head.pyramid(torch.randn(2, 4, grid, grid, 16))
    assert [p.shape[-1] for p in levels] == [max(1, round(grid * s)) for s in (2, 1, 1, 0.5)]


def test_mismatched_statistics_or_scales_are_rejected():
    with pytest.raises(ValueError, match="one scale per layer"):
        UPerNetHead(16, 2, torch.zeros(4, 16), torch.ones(4, 16), n_layers=4, scales=(1.0, 0.5))
    with pytest.raises(ValueError, match="mean/std"):
        UPerNetHead(16, 2, torch.zeros(3, 16), torch.ones(3, 16), n_layers=4)


def test_layer_indices_spread_over_the_depth():
    assert layer_indices(12) == [2, 5, 8, 11]
    assert layer_indices(4) == [0, 1, 2, 3]
    assert layer_indices(2) == [0, 0, 1, 1]


def test_the_last_intermediate_layer_is_forward_features():
    torch.manual_seed(0)
    model = create_backbone("vit_tiny", patch_size=8, img_size=32, depth=4).eval()
    x = torch.randn(3, 3, 32, 32)
    cls, mean, grid, layers = encode_layers(model, x)
    with torch.no_grad():
        ref_cls, ref_grid = split_tokens(model, model.forward_features(x))
        # an independent pass: the blocks one by one, each layer's patch tokens after the final norm
        t = model.norm_pre(model._pos_embed(model.patch_embed(x)))
        by_block = []
        for blk in model.blocks:
            t = blk(t)
            by_block.append(model.norm(t)[:, 1:].reshape(3, 4, 4, -1))
    assert layers.shape == (3, 4, 4, 4, 192)
    torch.testing.assert_close(layers[:, -1], ref_grid, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grid, ref_grid, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cls, ref_cls, atol=1e-5, rtol=1e-5)
    for i, block_grid in enumerate(by_block):
        torch.testing.assert_close(layers[:, i], block_grid, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(layers[:, 0], layers[:, -1])  # the layers differ


def _toy(n=96, h=4, d=8, up=8, seed=0):
    """Four layers of tokens; the mask of structure a is coded in layer 0, of structure b in layer 2."""
    rng = np.random.default_rng(seed)
    tokens = rng.normal(size=(n, 4, h, h, d)).astype(np.float32)
    inside = np.stack([tokens[:, 0, ..., 0] > 0.3, tokens[:, 2, ..., 2] > -0.2], axis=1)  # (n, 2, h, h)
    tokens[:, 0, ..., 0] += np.where(inside[:, 0], 1.5, -1.5)
    tokens[:, 2, ..., 2] += np.where(inside[:, 1], 1.5, -1.5)
    masks = inside.repeat(up, axis=2).repeat(up, axis=3).astype(np.uint8)  # (n, 2, 32, 32)
    splits = np.array(["train", "train", "test"])[np.arange(n) % 3]
    return tokens.astype(np.float16), masks, splits, np.arange(n)


def test_upernet_learns_a_toy_mask_task_from_several_layers():
    tokens, masks, splits, pids = _toy()
    cfg = SegConfig(epochs=30, head="upernet", channels=16, batch_size=16)
    res = segmentation_probe(tokens, masks, splits, pids, ["a", "b"], cfg, n_boot=10)
    assert res.table["dice"].min() > 0.8, res.table
    noise = np.random.default_rng(5).normal(size=tokens.shape).astype(np.float16)
    bad = segmentation_probe(noise, masks, splits, pids, ["a", "b"], cfg, n_boot=5)
    assert bad.dice_mean.value < res.dice_mean.value - 0.2
