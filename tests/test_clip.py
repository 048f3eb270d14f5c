"""CLIP loss against hand-computed values and known invariants."""

import math

import pytest
import torch
import torch.nn.functional as F

from raddino_lib.losses.clip import MAX_LOGIT_SCALE, CLIPLoss, clip_logits, clip_loss


def test_two_by_two_hand_computed():
    # orthonormal pairs: cos = identity; scale 1 -> every row is softmax([1, 0]).
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    loss = clip_loss(img, img.clone(), logit_scale=0.0)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6)


def test_three_by_three_asymmetric_hand_computed():
    # images on axes; texts chosen so cos(image_i, text_j) is a known matrix; scale e^log(2) = 2.
    img = torch.eye(3)
    txt = torch.tensor([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.0, 0.0, 1.0]])
    cos = txt.t()  # cos[i, j] = img_i . txt_j
    logits = 2 * cos
    i2t = [-(logits[i, i] - torch.logsumexp(logits[i], 0)) for i in range(3)]
    t2i = [-(logits[j, j] - torch.logsumexp(logits[:, j], 0)) for j in range(3)]
    expected = 0.5 * (sum(i2t) / 3 + sum(t2i) / 3)
    # written out by hand for row 1 (image 1): logits [0, 1.6, 0] -> -log(e^1.6 / (e^1.6 + 2))
    assert i2t[1].item() == pytest.approx(-math.log(math.exp(1.6) / (math.exp(1.6) + 2)), abs=1e-6)
    assert clip_loss(img, txt, math.log(2)).item() == pytest.approx(expected.item(), abs=1e-6)
    # the two directions differ here, so the loss is not simply one cross-entropy
    assert sum(i2t).item() != pytest.approx(sum(t2i).item())


@pytest.mark.parametrize("batch", [2, 5, 16])
def test_identical_embeddings_give_log_batch(batch):
    same = torch.randn(1, 8).repeat(batch, 1)
    assert clip_loss(same, same, math.log(1 / 0.07)).item() == pytest.approx(math.log(batch), abs=1e-5)


def test_loss_is_invariant_to_norm_and_symmetric_in_swapping_modalities():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    base = clip_loss(a, b, 1.3)
    assert clip_loss(3 * a, 0.5 * b, 1.3).item() == pytest.approx(base.item(), abs=1e-5)
    assert clip_loss(b, a, 1.3).item() == pytest.approx(base.item(), abs=1e-5)
    perm = torch.randperm(6, generator=g)
    assert clip_loss(a[perm], b[perm], 1.3).item() == pytest.approx(base.item(), abs=1e-5)


def test_matching_pairs_drive_the_loss_towards_zero_and_mismatch_above_log_batch():
    x = F.normalize(torch.eye(4), dim=-1)
    assert clip_loss(x, x, math.log(100)).item() < 1e-6
    assert clip_loss(x, x.roll(1, 0), math.log(100)).item() > math.log(4)


def test_logit_scale_is_clamped_at_100_and_module_initializes_at_tau_007():
    x = torch.eye(3)
    assert clip_logits(x, x, 10.0).max().item() == pytest.approx(MAX_LOGIT_SCALE)
    module = CLIPLoss()
    assert module.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    assert module.temperature == pytest.approx(0.07)
    loss = module(torch.randn(4, 3), torch.randn(4, 3))
    loss.backward()
    assert module.logit_scale.grad is not None and torch.isfinite(module.logit_scale.grad)


def test_groups_of_distinct_ids_equal_the_plain_loss_and_duplicates_share_the_target():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    plain = clip_loss(a, b, 0.7)
    assert clip_loss(a, b, 0.7, groups=torch.tensor([5, 2, 9, 0])).item() == pytest.approx(plain.item(), abs=1e-6)
    # texts 0 and 1 identical: image 0's target is (1/2, 1/2, 0); hand-computed with orthonormal embeddings.
    img = torch.eye(2)
    txt = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    loss = clip_loss(img, txt, 0.0, groups=torch.tensor([3, 3]))
    # logits = [[1, 1], [0, 0]]: every row and column softmax is either uniform or (e/(e+1), 1/(e+1)).
    row = math.log(2)  # both rows are uniform -> CE with uniform target = log 2
    col = -0.5 * (math.log(math.e / (math.e + 1)) + math.log(1 / (math.e + 1)))  # columns [1, 0]
    assert loss.item() == pytest.approx(0.5 * (row + col), abs=1e-6)
    with pytest.raises(ValueError, match="groups"):
        clip_loss(img, txt, 0.0, groups=torch.tensor([1, 2, 3]))


def test_shape_mismatch_is_reported():
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        clip_loss(torch.zeros(2, 3), torch.zeros(3, 3), 0.0)
