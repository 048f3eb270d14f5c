"""Losses against hand-computed values and invariants."""

import math

import pytest
import torch
import torch.nn.functional as F

from raddino_lib.losses import DINOLoss, KoLeoLoss, iBOTPatchLoss
from raddino_lib.losses.dino import sinkhorn_knopp
from raddino_lib.losses.ibot import masks_weight_from_masks


def test_uniform_teacher_and_student_give_log_k():
    k, b = 7, 5
    loss = DINOLoss(k)
    teacher = loss.softmax_center_teacher(torch.zeros(b, k), teacher_temp=0.04)
    assert torch.allclose(teacher, torch.full((b, k), 1 / k))
    value = loss([torch.zeros(b, k)], [teacher])
    assert value.item() == pytest.approx(math.log(k), rel=1e-6)
    # sum over pairs: 2 students x 3 teachers -> 6 log K
    value = loss([torch.zeros(b, k)] * 2, [teacher] * 3)
    assert value.item() == pytest.approx(6 * math.log(k), rel=1e-6)


def test_dino_cross_entropy_by_hand():
    s = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    t = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    loss = DINOLoss(2, student_temp=0.5)
    # row 1: -log softmax([2, 0])[0] = log(1 + e^-2); row 2: log 2
    expected = 0.5 * (math.log(1 + math.exp(-2)) + math.log(2))
    assert loss([s], [t]).item() == pytest.approx(expected, rel=1e-6)


def test_forward_does_not_touch_center_and_update_is_ema():
    loss = DINOLoss(3, center_momentum=0.9)
    t = torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    loss([t], [loss.softmax_center_teacher(t, 0.1)])
    assert torch.equal(loss.center, torch.zeros(1, 3))
    loss.update_center(t)
    assert torch.allclose(loss.center, torch.tensor([[0.2, 0.2, 0.2]]))  # 0.1 * mean = 0.1 * 2
    loss.update_center(torch.tensor([[10.0, 0.0, 0.0]]))
    assert torch.allclose(loss.center, torch.tensor([[0.9 * 0.2 + 1.0, 0.18, 0.18]]))


def test_centering_shifts_teacher():
    loss = DINOLoss(2)
    loss.center.copy_(torch.tensor([[1.0, 0.0]]))
    p = loss.softmax_center_teacher(torch.tensor([[1.0, 0.0]]), teacher_temp=1.0)
    assert torch.allclose(p, torch.tensor([[0.5, 0.5]]))


def test_sinkhorn_marginals():
    g = torch.Generator().manual_seed(0)
    b, k = 12, 4
    logits = torch.randn(b, k, generator=g) * 3
    q = DINOLoss(k).sinkhorn_knopp_teacher(logits, teacher_temp=0.5, n_iterations=50)
    assert torch.allclose(q.sum(dim=1), torch.ones(b), atol=1e-4)  # each sample: a distribution
    assert torch.allclose(q.sum(dim=0), torch.full((k,), b / k), atol=1e-4)  # prototypes used equally
    q3 = sinkhorn_knopp(logits, 0.5, n_iterations=3)
    assert torch.allclose(q3.sum(dim=1), torch.ones(b), atol=1e-5)  # exact after the last column step
    assert (q3 >= 0).all()


def test_sinkhorn_is_stable_for_large_logits():
    q = sinkhorn_knopp(torch.tensor([[100.0, 0.0], [0.0, 100.0]]), teacher_temp=0.04)
    assert torch.isfinite(q).all()
    assert torch.allclose(q, torch.eye(2), atol=1e-5)


def test_ibot_weighting_by_hand():
    k = 3
    masks = torch.tensor([[True, False, False, False], [True, True, True, False]])  # 1 and 3 masked
    weights = masks_weight_from_masks(masks)
    assert torch.allclose(weights, torch.tensor([1.0, 1 / 3, 1 / 3, 1 / 3]))
    s = torch.zeros(4, k)
    s[0, 0] = 2.0  # first image's patch
    t = torch.tensor([[1.0, 0.0, 0.0]] * 4)
    ce0 = -F.log_softmax(torch.tensor([2.0, 0.0, 0.0]) / 0.1, dim=0)[0].item()
    expected = 0.5 * (ce0 + 3 * (1 / 3) * math.log(k))  # mean over 2 images
    loss = iBOTPatchLoss(k)
    assert loss.forward_masked(s, t, masks).item() == pytest.approx(expected, rel=1e-5)
    # padded to an upper bound: extra rows are ignored via n_masked_patches
    pad = torch.zeros(2, k)
    padded = loss.forward_masked(torch.cat([s, pad]), torch.cat([t, pad]), masks, n_masked_patches=4)
    assert padded.item() == pytest.approx(expected, rel=1e-5)
    # dense form agrees
    dense_s = torch.zeros(2, 4, k)
    dense_s[masks] = s
    dense_t = torch.zeros(2, 4, k)
    dense_t[masks] = t
    assert loss(dense_s, dense_t, masks).item() == pytest.approx(expected, rel=1e-5)


def test_ibot_center_and_teacher_shapes():
    loss = iBOTPatchLoss(2, center_momentum=0.5)
    tokens = torch.tensor([[2.0, 0.0], [0.0, 0.0]])  # (M, K)
    assert loss.softmax_center_teacher(tokens, 1.0).shape == (2, 2)
    loss.update_center(tokens)
    assert torch.allclose(loss.center, torch.tensor([[[0.5, 0.0]]]))
    q = loss.sinkhorn_knopp_teacher(tokens, 0.1, n_masked_patches_tensor=torch.tensor([2]))
    assert torch.allclose(q.sum(dim=1), torch.ones(2), atol=1e-5)


def test_koleo_square():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]]) * 3  # normalised inside
    value = KoLeoLoss()(x)
    assert value.item() == pytest.approx(-math.log(math.sqrt(2)), rel=1e-6)


def test_koleo_nearest_neighbour_and_gradient():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1]], requires_grad=True)
    n = F.normalize(x.detach(), dim=-1)
    d01, d02 = (n[0] - n[1]).norm().item(), (n[0] - n[2]).norm().item()
    expected = -(math.log(d02) + math.log(d02) + math.log((n[1] - n[2]).norm().item())) / 3
    assert d02 < d01
    value = KoLeoLoss()(x)
    assert value.item() == pytest.approx(expected, rel=1e-5)
    value.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def _reference_sinkhorn(logits, temp, n_iterations):
    """Textbook Sinkhorn-Knopp (SwAV / DINOv2), single process, no stabilisation."""
    q = torch.exp(logits / temp).t()
    k, b = q.shape
    q /= q.sum()
    for _ in range(n_iterations):
        q /= q.sum(dim=1, keepdim=True)
        q /= k
        q /= q.sum(dim=0, keepdim=True)
        q /= b
    return (q * b).t()


def test_sinkhorn_matches_reference():
    logits = torch.randn(6, 5, generator=torch.Generator().manual_seed(1))
    expected = _reference_sinkhorn(logits.double(), 0.3, 3).float()
    assert torch.allclose(sinkhorn_knopp(logits, 0.3, 3), expected, atol=1e-6)


def test_koleo_duplicates_stay_finite():
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    value = KoLeoLoss()(x, eps=1e-8)
    assert torch.isfinite(value)
    assert value.item() == pytest.approx(-(2 * math.log(1e-8) + math.log(math.sqrt(2))) / 3, rel=1e-4)
