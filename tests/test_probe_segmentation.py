import numpy as np
import pytest
import torch

from raddino_lib.probe.segmentation import SegConfig, dice_per_image, segmentation_probe, soft_dice_loss


def _toy(n=48, h=4, d=8, up=4, seed=0):
    """Tokens whose channel 0 (structure a) and channel 1 (structure b) decide the mask: a linear target."""
    rng = np.random.default_rng(seed)
    grid = rng.normal(size=(n, h, h, d)).astype(np.float32)
    inside = np.stack([grid[..., 0] > 0.2, grid[..., 1] > -0.3], axis=1)  # (n, 2, h, h)
    grid[..., 0] += np.where(inside[:, 0], 1.5, -1.5)
    grid[..., 1] += np.where(inside[:, 1], 1.5, -1.5)
    masks = inside.repeat(up, axis=2).repeat(up, axis=3).astype(np.float32)  # nearest-upsampled target
    splits = np.array(["train", "train", "test"])[np.arange(n) % 3]
    return grid, masks, splits, np.arange(n)


def test_hard_dice_known_values():
    pred = np.zeros((3, 1, 4, 4), bool)
    target = np.zeros((3, 1, 4, 4), bool)
    pred[0, 0, :2] = True
    target[0, 0, :1] = True  # 4 overlap, 8 + 4 total → 2/3
    pred[1, 0] = target[1, 0] = True  # perfect
    d = dice_per_image(pred, target)  # image 2: both empty → undefined
    assert d[0, 0] == pytest.approx(2 / 3) and d[1, 0] == 1.0 and np.isnan(d[2, 0])


def test_soft_dice_loss_is_zero_for_confident_correct_logits():
    t = torch.zeros(1, 1, 4, 4)
    t[..., :2] = 1
    assert soft_dice_loss(torch.where(t > 0, 50.0, -50.0), t).item() == pytest.approx(0.0, abs=1e-6)
    assert soft_dice_loss(torch.where(t > 0, -50.0, 50.0), t).item() > 0.9


def test_linear_target_is_segmented_almost_perfectly():
    grid, masks, splits, pids = _toy()
    res = segmentation_probe(grid, masks, splits, pids, ["a", "b"], SegConfig(epochs=40, lr=0.05), n_boot=20)
    assert res.table["dice"].min() > 0.9
    assert res.dice_mean.value > 0.9 and res.dice_mean.ci_low <= res.dice_mean.value <= res.dice_mean.ci_high
    assert res.predictions.shape == (8, 2, 16, 16)


def test_noise_tokens_segment_worse():
    grid, masks, splits, pids = _toy()
    noise = np.random.default_rng(3).normal(size=grid.shape).astype(np.float32)
    cfg = SegConfig(epochs=40, lr=0.05)
    good = segmentation_probe(grid, masks, splits, pids, ["a", "b"], cfg, n_boot=5)
    bad = segmentation_probe(noise, masks, splits, pids, ["a", "b"], cfg, n_boot=5)
    assert bad.dice_mean.value < good.dice_mean.value - 0.2


def test_misaligned_inputs_are_rejected():
    grid, masks, splits, pids = _toy()
    with pytest.raises(ValueError, match="do not line up"):
        segmentation_probe(grid, masks[:, :1], splits, pids, ["a", "b"])
