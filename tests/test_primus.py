"""Primus (COLIPRI's 3D encoder) through dynamic-network-architectures: shapes, rotary cache, pooling, export."""

import pytest
import torch
from timm.layers.pos_embed_sincos import build_rotary_pos_embed

from raddino_lib.models.primus import (
    PRESETS,
    AttentionPool,
    ImageTower,
    PrimusConfig,
    PrimusEncoder,
    Rope3d,
    load_encoder,
    save_encoder,
)


def test_token_grid_and_embedding_shapes():
    torch.manual_seed(0)
    tower = ImageTower(PrimusConfig("tiny", (16, 24, 32), patch_size=8, proj_dim=20)).eval()
    emb, tokens = tower(torch.randn(3, 1, 16, 24, 32))
    assert tokens.shape == (3, 2 * 3 * 4, PRESETS["tiny"][0])
    assert emb.shape == (3, 20)
    assert torch.isfinite(emb).all()


def test_wrong_input_shape_and_unknown_preset_fail_clearly():
    encoder = PrimusEncoder(PrimusConfig("tiny", (16, 16, 16)))
    with pytest.raises(ValueError, match="expects"):
        encoder(torch.randn(1, 1, 16, 16, 24))
    with pytest.raises(ValueError, match="preset"):
        PrimusConfig("XL", (16, 16, 16))
    with pytest.raises(ValueError, match="multiples"):
        PrimusConfig("tiny", (20, 16, 16))


def test_rotary_cache_equals_timms_own_three_axis_embedding():
    """The cache holds exactly timm's sin|cos embedding of a 3D grid (the width recent timm sizes for 2D)."""
    rope = Rope3d(32, in_pixels=False, feat_shape=[2, 3, 4], ref_feat_shape=[2, 3, 4])
    sin, cos = build_rotary_pos_embed([2, 3, 4], dim=32, in_pixels=False, ref_feat_shape=[2, 3, 4])
    expected = torch.cat([sin, cos], -1)
    assert rope.get_embed().shape == (24, 96) == expected.shape
    torch.testing.assert_close(rope.get_embed(), expected)
    encoder = PrimusEncoder(PrimusConfig("tiny", (16, 16, 16)))
    width, _, heads = PRESETS["tiny"]
    assert isinstance(encoder.eva.rope, Rope3d)
    assert encoder.eva.rope.get_embed().shape == (8, 2 * width // heads)  # sin and cos over each head's width


def test_rotary_positions_make_tokens_position_aware():
    """Swapping two input patches does not just swap their output tokens (positions are encoded)."""
    torch.manual_seed(0)
    encoder = PrimusEncoder(PrimusConfig("tiny", (16, 16, 16))).eval()
    x = torch.randn(1, 1, 16, 16, 16)
    swapped = x.clone()
    swapped[..., :8, :8, :8], swapped[..., 8:, 8:, 8:] = x[..., 8:, 8:, 8:], x[..., :8, :8, :8]
    a, b = encoder(x), encoder(swapped)
    assert not torch.allclose(a[0, 0], b[0, -1], atol=1e-4)


def test_mask_token_replaces_every_masked_patch():
    torch.manual_seed(0)
    encoder = PrimusEncoder(PrimusConfig("tiny", (16, 16, 16))).eval()
    everything = torch.ones(2, 8, dtype=torch.bool)
    out = encoder(torch.randn(2, 1, 16, 16, 16), everything)
    torch.testing.assert_close(out[0], out[1])  # nothing of the input is left
    some = torch.zeros(2, 8, dtype=torch.bool)
    assert not torch.allclose(encoder(torch.randn(2, 1, 16, 16, 16), some)[0],
                              encoder(torch.randn(2, 1, 16, 16, 16), some)[1])


def test_attention_pooling_is_a_convex_combination_and_order_free():
    torch.manual_seed(0)
    pool = AttentionPool(12, heads=1).eval()
    tokens = torch.randn(2, 7, 12)
    pooled, weights = pool(tokens)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2))
    assert (weights >= 0).all()
    shuffled, _ = pool(tokens[:, torch.randperm(7)])
    torch.testing.assert_close(pooled, shuffled, atol=1e-5, rtol=1e-5)
    same = torch.randn(1, 1, 12).expand(1, 5, 12)  # identical tokens: the pool returns that token's value path
    single, _ = pool(same[:, :1])
    torch.testing.assert_close(pool(same)[0], single, atol=1e-5, rtol=1e-5)


def test_export_round_trip_and_bad_folders(tmp_path):
    torch.manual_seed(0)
    tower = ImageTower(PrimusConfig("tiny", (16, 16, 16), proj_dim=8)).eval()
    folder = save_encoder(tower, tmp_path / "enc")
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    loaded = load_encoder(folder).eval()
    x = torch.randn(2, 1, 16, 16, 16)
    torch.testing.assert_close(loaded(x)[0], tower(x)[0])
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_encoder(tmp_path)
