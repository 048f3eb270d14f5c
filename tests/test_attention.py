"""CLS attention maps against an explicit softmax(QKᵀ/√d) and timm's own non-fused attention; metrics
of attention against masks on hand-built maps whose answer is known."""

import math

import numpy as np
import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

from raddino_lib.models.backbone import create_backbone
from raddino_lib.probe import attention_metrics as am
from raddino_lib.viz.attention import (
    block_attention_input,
    cls_attention,
    mean_heads,
    threshold_attention,
    upsample_maps,
)


def _tiny(registers: int = 0) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_backbone("vit_tiny", patch_size=8, img_size=32, depth=2, num_register_tokens=registers).eval()


def _qk_norm_vit() -> torch.nn.Module:
    torch.manual_seed(1)
    return VisionTransformer(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=4, num_classes=0,
                             qk_norm=True, reg_tokens=1, class_token=True).eval()


def _reference(model: torch.nn.Module, images: torch.Tensor, layer: int) -> torch.Tensor:
    """By hand: run the blocks, project with the qkv weights, softmax(q kᵀ / sqrt(d)), read the CLS row."""
    with torch.no_grad():
        x = model.norm_pre(model._pos_embed(model.patch_embed(images)))  # (B, N, D)
        for blk in model.blocks[:layer % len(model.blocks)]:
            x = blk(x)
        blk = model.blocks[layer]
        y = blk.norm1(x)
        B, N, D = y.shape
        H = blk.attn.num_heads
        d = D // H
        qkv = y @ blk.attn.qkv.weight.T + blk.attn.qkv.bias  # (B, N, 3D)
        q = blk.attn.q_norm(qkv[..., :D].reshape(B, N, H, d).transpose(1, 2))  # (B, H, N, d)
        k = blk.attn.k_norm(qkv[..., D:2 * D].reshape(B, N, H, d).transpose(1, 2))
        probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1)  # (B, H, N, N)
        side = int(math.isqrt(N - model.num_prefix_tokens))
        return probs[:, :, 0, model.num_prefix_tokens:].reshape(B, H, side, side)


@pytest.mark.parametrize("make", [_tiny, lambda: _tiny(registers=2), _qk_norm_vit], ids=["plain", "reg2", "qknorm"])
@pytest.mark.parametrize("layer", [0, -1])
def test_matches_explicit_softmax_reference(make, layer):
    model = make()
    images = torch.randn(2, 3, 32, 32)
    maps = cls_attention(model, images, layer=layer)
    assert maps.shape == (2, model.blocks[0].attn.num_heads, 4, 4)
    torch.testing.assert_close(maps, _reference(model, images, layer), atol=1e-5, rtol=1e-4)


def test_fused_model_agrees_with_timm_non_fused_attention_weights():
    model = _tiny(registers=1)
    images = torch.randn(2, 3, 32, 32)
    fused = cls_attention(model, images, layer=1)
    captured = []
    for blk in model.blocks:
        blk.attn.fused_attn = False  # timm then materializes softmax(q kᵀ) and passes it through attn_drop
    model.blocks[1].attn.attn_drop.register_forward_hook(lambda m, i, o: captured.append(o))
    with torch.no_grad():
        model.forward_features(images)
    n_prefix = model.num_prefix_tokens
    explicit = captured[0][:, :, 0, n_prefix:].reshape(2, -1, 4, 4)
    torch.testing.assert_close(fused, explicit, atol=1e-5, rtol=1e-4)


def test_block_input_is_timm_forward_intermediates_of_the_previous_block():
    model = _tiny(registers=2)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = model.forward_intermediates(images, indices=[0], return_prefix_tokens=True, norm=False,
                                          output_fmt="NLC", output_dict=True)
        tokens = torch.cat([out["image_intermediates_prefix"][0], out["image_intermediates"][0]], dim=1)
        expected = model.blocks[1].norm1(tokens)
        got = block_attention_input(model, images, layer=1)
    torch.testing.assert_close(got, expected)
    assert not model.blocks[1].attn._forward_pre_hooks, "hook left behind"


def test_maps_are_probabilities_that_lose_the_prefix_share():
    model = _tiny(registers=2)
    maps = cls_attention(model, torch.randn(3, 3, 32, 32))
    assert torch.all(maps >= 0) and torch.all(maps.sum((-1, -2)) < 1.0)
    assert mean_heads(maps).shape == (3, 4, 4)


def test_layer_out_of_range_is_a_clear_error():
    with pytest.raises(IndexError, match="layer 5"):
        cls_attention(_tiny(), torch.randn(1, 3, 32, 32), layer=5)


def test_threshold_keeps_the_smallest_set_holding_the_mass():
    m = torch.tensor([[0.1, 0.5], [0.3, 0.1]])
    assert threshold_attention(m, keep=0.5).tolist() == [[False, True], [False, False]]
    assert threshold_attention(m, keep=0.6).tolist() == [[False, True], [True, False]]
    assert threshold_attention(m, keep=1.0).all()
    batch = threshold_attention(torch.stack([m, m.T]), keep=0.8)  # 0.5 + 0.3 = 0.8 exactly
    assert batch.sum((-1, -2)).tolist() == [2, 2]


def test_upsample_repeats_each_patch():
    up = upsample_maps(torch.arange(4.0).reshape(1, 2, 2), 4)
    assert up.shape == (1, 4, 4) and up[0, :2, :2].eq(0).all() and up[0, 2:, 2:].eq(3).all()


# --- metrics of attention against masks -----------------------------------------------------------


def test_mass_in_mask_on_a_hand_built_map():
    attn = torch.tensor([[[0.4, 0.1], [0.1, 0.2]]])  # (1, 2, 2); total 0.8
    mask = torch.zeros(1, 4, 4)
    mask[0, :2, :2] = 1  # top-left patch (patch size 2)
    mask[0, 2:, 2] = 1  # half of the bottom-right patch
    mass = am.mass_in_mask(attn, mask)
    assert mass[0] == pytest.approx((0.4 + 0.5 * 0.2) / 0.8)
    assert am.mass_in_mask(torch.ones(1, 2, 2), mask)[0] == pytest.approx(mask.mean().item())  # uniform = chance


def test_pointing_game_on_a_known_argmax():
    attn = torch.zeros(3, 4, 4)
    attn[:, 0, 0] = 1.0  # argmax at patch (0, 0)
    mask = torch.zeros(3, 8, 8)  # patch size 2
    mask[0, 0, 0] = 1  # inside the argmax patch -> hit
    mask[1, 2:4, 2:4] = 1  # diagonal neighbour (1, 1) -> hit within one patch
    mask[2, 6:, 6:] = 1  # far corner -> miss
    np.testing.assert_array_equal(am.pointing_hits(attn, mask, tolerance=1), [True, True, False])
    np.testing.assert_array_equal(am.pointing_hits(attn, mask, tolerance=0), [True, False, False])
    chance = am.pointing_chance(mask[2:], attn.shape[-2:], tolerance=0)
    assert chance[0] == pytest.approx(1 / 16)


# --- figures, explorer and the end-to-end comparison ------------------------------------------------


def test_overlay_figures_have_a_panel_per_encoder_and_head():
    import matplotlib.pyplot as plt

    from raddino_lib.viz.overlays import plot_encoder_grid, plot_heads, plot_scores_vs_chance

    images, masks = np.random.default_rng(0).random((2, 32, 32)), np.zeros((2, 32, 32))
    masks[:, 8:16, 8:16] = 1
    fig = plot_encoder_grid(images, {"a": torch.rand(2, 4, 4), "b": torch.rand(2, 4, 4)}, masks, keep=0.6)
    assert len(fig.axes) == 2 * 3
    fig2 = plot_heads(images[0], torch.rand(3, 4, 4), masks[0])
    assert sum(ax.axison for ax in fig2.axes) == 4  # three heads + the mean
    cell = {"value": 0.4, "ci_low": 0.3, "ci_high": 0.5}
    fig3 = plot_scores_vs_chance({"a": {"attn_mass_small": cell, "attn_mass_small_chance": cell}},
                                 scores=("attn_mass_small",))
    assert len(fig3.axes) == 1
    plt.close("all")


def test_explorer_caches_maps_and_builds_its_widget():
    import matplotlib.pyplot as plt

    from raddino_lib.viz.widget import AttentionExplorer

    model, images = _tiny(), torch.randn(3, 3, 32, 32)
    explorer = AttentionExplorer({"tiny": model}, {"tiny": images})
    fig = explorer.figure(index=1, encoder="tiny", layer=0, head="2", keep=0.6, alpha=0.4)
    torch.testing.assert_close(explorer.maps("tiny", 0), cls_attention(model, images, 0))
    assert list(explorer._cache) == [("tiny", 0)] and len(fig.axes) == 2
    assert explorer.widget() is not None
    plt.close("all")


def test_explorer_controls_follow_the_encoders_depth_and_heads():
    # Encoders of different depths and head counts side by side (an extra encoder folder beside the package's
    # ViT): choosing one keeps the layer slider and the head list within that encoder's blocks and heads.
    import matplotlib.pyplot as plt

    from raddino_lib.viz.widget import AttentionExplorer

    images = torch.randn(2, 3, 32, 32)
    explorer = AttentionExplorer({"tiny": _tiny(), "qk": _qk_norm_vit()}, {"tiny": images, "qk": images})
    assert explorer.shape("tiny") == (2, 3) and explorer.shape("qk") == (2, 4)
    ui = explorer.widget()
    encoder, layer = ui.children[0].children[1:3]
    head = ui.children[1].children[0]
    head.value = "1"
    encoder.value = "qk"
    assert list(head.options) == ["mean", "0", "1", "2", "3"] and head.value == "1"
    head.value = "3"
    encoder.value = "tiny"
    assert list(head.options) == ["mean", "0", "1", "2"] and head.value == "mean" and layer.max == 1
    plt.close("all")


def test_random_init_encoder_attends_at_chance_on_phantoms(tmp_path):
    # A freshly initialised ViT has near-zero attention logits, so its attention is uniform and every
    # mass-in-region score must equal the region's area fraction: this checks mask/patch geometry end to end,
    # for every layer and head and for each finding size class.
    from raddino_lib.data.phantoms import generate
    from raddino_lib.probe.attention_compare import compare_attention
    from raddino_lib.probe.encoders import make_random_encoder
    from raddino_lib.probe.pixels import PIXELS_SOURCE

    manifest = generate(tmp_path / "ph", n=48, size=32, seed=0, balanced=True)
    enc = make_random_encoder(tmp_path / "rand.safetensors", patch_size=8, img_size=32, depth=2)
    result = compare_attention({"pixels": PIXELS_SOURCE, "random": str(enc)}, str(manifest), 32, n_images=2,
                               n_boot=10)
    row = result.table["random"]
    assert set(result.classes) == {"large", "small"}
    for region in ("lungs", "large", "small"):
        assert row[f"attn_mass_{region}"]["value"] == pytest.approx(row[f"attn_mass_{region}_chance"]["value"],
                                                                    abs=0.01)
        assert result.grids["random"][region] == pytest.approx(np.ones((2, 4)), abs=0.05)  # 2 layers x (3 heads+mean)
        assert result.counts["random"][region] > 0
    assert 0.1 < row["attn_mass_lungs"]["value"] < 0.6
    assert result.maps["random"].shape == (2, 3, 4, 4) and result.images.shape == (2, 32, 32)
    assert "pixels" in result.table and "pixels" not in result.maps  # the floor has scores, no attention maps


def test_brightness_floor_and_per_layer_head_scores_on_hand_built_maps():
    images = torch.zeros(1, 3, 4, 4)
    images[0, :, :2, :2] = 3.0  # a bright top-left patch (patch size 2)
    maps = am.brightness_maps(images, (2, 2))
    assert maps.shape == (1, 1, 1, 2, 2) and maps[0, 0, 0, 0, 0] == 3.0 and maps[0, 0, 0, 1, 1] == 0.0
    mask = torch.zeros(1, 4, 4)
    mask[0, :2, :2] = 1
    assert am.mass_in_mask(maps, mask)[0, 0, 0] == pytest.approx(1.0)
    per_head = torch.rand(1, 3, 2, 2, 2)  # (N, L, H, h, w)
    mass = am.mass_in_mask(per_head, mask)
    assert mass.shape == (1, 3, 2)
    assert mass[0, 1, 0] == pytest.approx((per_head[0, 1, 0, 0, 0] / per_head[0, 1, 0].sum()).item())
    hits = am.pointing_hits(per_head, mask, tolerance=0)
    assert hits.shape == (1, 3, 2) and hits[0, 2, 1] == (per_head[0, 2, 1].argmax() == 0)


def test_best_map_is_chosen_on_val_and_scored_on_test():
    scores = am.AttentionScores(image_ids=list("abcd"), patient_ids=list("abcd"), splits=["val", "val", "test",
                                                                                            "test"])
    mass = np.array([[[0.1, 0.9]], [[0.1, 0.8]], [[0.7, 0.2]], [[0.6, 0.3]]])  # (N, L=1, H+1=2)
    scores.mass["small"], scores.hits["small"] = [mass], [mass > 0.5]
    scores.chance["small"], scores.chance["pointing_small"] = [np.full(4, 0.1)], [np.full(4, 0.2)]
    assert am.best_map(scores, "small") == (0, 1)  # head 1 wins on val even though head 0 would win on test
    table, best = am.summarize_scores(scores, layer=0, n_boot=10)
    assert best == {"small": (0, 1)}
    assert table["attn_mass_small_best_excess"]["value"] == pytest.approx(0.25 - 0.1)
    # the headline reads the last head index (the head-mean slot): here the same column
    assert table["attn_mass_small_excess"]["value"] == pytest.approx(0.25 - 0.1)


def test_full_attention_matrix_rows_are_distributions_and_row_zero_is_the_cls_map():
    from raddino_lib.viz.attention import attention_probs

    model, images = _qk_norm_vit(), torch.randn(2, 3, 32, 32)
    x = block_attention_input(model, images, layer=1)
    full = attention_probs(model.blocks[1].attn, x)  # (B, H, N, N)
    torch.testing.assert_close(full.sum(-1), torch.ones(full.shape[:-1]))
    torch.testing.assert_close(attention_probs(model.blocks[1].attn, x, n_queries=1), full[:, :, :1])
