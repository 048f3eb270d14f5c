"""Backbone construction contracts: shapes, presets, token split, masking, position interpolation."""

from __future__ import annotations

import pytest
import torch

from raddino_lib.models import ARCHS, backbone_spec, create_backbone, pool_tokens, split_tokens
from raddino_lib.models.backbone import interpolate_pos_embed


def tiny(**kwargs):
    torch.manual_seed(0)
    return create_backbone("vit_tiny", patch_size=8, img_size=32, depth=2, **kwargs).eval()


def test_tiny_shapes_and_split():
    model = tiny()
    tokens = model.forward_features(torch.randn(2, 3, 32, 32))
    assert tokens.shape == (2, 1 + 16, 192)
    cls, patches = split_tokens(model, tokens)
    assert cls.shape == (2, 192) and patches.shape == (2, 4, 4, 192)
    assert torch.equal(cls, tokens[:, 0]) and torch.equal(patches[:, 0, 1], tokens[:, 2])
    assert torch.isfinite(tokens).all()


def test_registers_are_skipped_by_split_tokens():
    model = tiny(num_register_tokens=4)
    tokens = model.forward_features(torch.randn(1, 3, 32, 32))
    assert tokens.shape == (1, 1 + 4 + 16, 192)
    cls, patches = split_tokens(model, tokens)
    assert torch.equal(patches.reshape(1, 16, 192), tokens[:, 5:])


def test_pool_tokens_averages_the_patch_tokens_alone_and_passes_gradients():
    model = tiny(num_register_tokens=4)
    tokens = torch.zeros(2, 1 + 4 + 16, 192, requires_grad=True)
    with torch.no_grad():
        tokens[:, 0] = 7.0  # [CLS]
        tokens[:, 1:5] = 100.0  # registers: never pooled
        tokens[:, 5:] = torch.arange(16.0).view(1, 16, 1)  # patches 0..15: mean 7.5
    cls, mean_patch, grid = pool_tokens(model, tokens)
    assert torch.equal(cls, torch.full((2, 192), 7.0)) and torch.equal(mean_patch, torch.full((2, 192), 7.5))
    assert grid.shape == (2, 4, 4, 192) and grid[0, 1, 2, 0] == 6.0  # row-major patch order
    mean_patch.sum().backward()  # each patch token gets 1/16 of the gradient, the prefix tokens none from it
    assert torch.allclose(tokens.grad[:, 5:], torch.full((2, 16, 192), 1 / 16)) and (tokens.grad[:, :5] == 0).all()


def test_dynamic_size_and_intermediates_agree():
    model = tiny()
    x = torch.randn(1, 3, 48, 48)
    tokens = model.forward_features(x)
    assert tokens.shape == (1, 1 + 36, 192)
    final = model.forward_intermediates(x, indices=1, norm=True, output_fmt="NLC", intermediates_only=True)[-1]
    assert torch.allclose(final, tokens[:, 1:], atol=1e-5)


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_arch_table(arch):
    model = create_backbone(arch, patch_size=16, img_size=32, depth=1)
    spec = backbone_spec(model)
    assert (spec["embed_dim"], spec["num_heads"]) == ARCHS[arch][:2]
    assert model.blocks[0].attn.fused_attn  # timm's fused (SDPA) attention


def test_dinov2_preset_and_defaults():
    spec = backbone_spec(create_backbone("vit_small_patch14_dinov2", depth=1))
    assert (spec["arch"], spec["patch_size"], spec["img_size"], spec["mlp_ratio"]) == ("vit_small", 14, 518, 4.0)
    assert spec["layer_scale_init"] == 1e-5 and spec["image_mean"] == [0.485, 0.456, 0.406]
    model = create_backbone("vit_base", depth=0, img_size=28)
    assert backbone_spec(model)["depth"] == 12 and model.pos_embed.shape == (1, 4, 768)
    assert torch.allclose(model.blocks[0].ls1.gamma, torch.full((768,), 1e-5))
    with pytest.raises(ValueError, match="unknown backbone arch"):
        create_backbone("resnet50")


def test_mask_token_replaces_masked_patches():
    model = tiny()
    with torch.no_grad():
        model.mask_token.normal_()
    x = torch.randn(2, 3, 32, 32)
    masks = torch.zeros(2, 16, dtype=torch.bool)
    assert torch.equal(model.forward_features(x, masks=masks), model.forward_features(x))
    masks[:, :8] = True
    out_a = model.forward_features(x, masks=masks)
    out_b = model.forward_features(x + torch.randn_like(x) * (torch.arange(32) < 16).float().view(1, 1, 32, 1), masks)
    assert torch.allclose(out_a, out_b, atol=1e-5), "masked patches must not see their pixels"


def test_drop_path_zero_is_identity_and_uniform_rate():
    model = tiny(drop_path_rate=0.2, drop_path_uniform=True)
    assert all(blk.drop_path1.drop_prob == 0.2 for blk in model.blocks)
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(model.forward_features(x), model.forward_features(x))  # eval: no drop


def test_pos_interpolation_matches_reference_bicubic():
    pos = torch.randn(1, 16, 8)
    out = interpolate_pos_embed(pos, (4, 4), (6, 6))
    ref = torch.nn.functional.interpolate(pos.reshape(1, 4, 4, 8).permute(0, 3, 1, 2), size=(6, 6), mode="bicubic",
                                          align_corners=False)
    assert torch.allclose(out, ref.permute(0, 2, 3, 1).reshape(1, 36, 8))
    assert interpolate_pos_embed(pos, (4, 4), (4, 4)) is pos


def test_set_img_size_keeps_outputs():
    model = tiny()
    x = torch.randn(1, 3, 48, 48)
    before = model.forward_features(x)
    model.set_img_size(48)
    assert model.pos_embed.shape == (1, 36, 192) and backbone_spec(model)["img_size"] == 48
    assert torch.allclose(model.forward_features(x), before, atol=1e-5)


def test_grad_checkpointing_gives_same_gradients():
    x = torch.randn(2, 3, 32, 32)
    grads = []
    for checkpointing in (False, True):
        model = tiny().train()
        model.set_grad_checkpointing(checkpointing)
        model.forward_features(x).square().mean().backward()
        grads.append(model.patch_embed.proj.weight.grad)
    assert torch.allclose(grads[0], grads[1], atol=1e-6)
