"""Schedules and layer-wise lr decay against hand-computed values."""

import math

import numpy as np
import pytest
import torch

from raddino_lib.train.schedules import Schedules, cosine_schedule, param_groups_lrd


def test_cosine_schedule_by_hand():
    s = cosine_schedule(1.0, 0.0, total_steps=6, warmup_steps=2, start_warmup_value=0.5)
    # warm-up: linspace(0.5, 1, 2); cosine over n=4 steps: (1 + cos(pi t / 4)) / 2
    expected = [0.5, 1.0] + [(1 + math.cos(math.pi * t / 4)) / 2 for t in range(4)]
    assert np.allclose(s, expected)
    assert s.shape == (6,)
    assert np.allclose(cosine_schedule(3.0, 3.0, 5), 3.0)
    with pytest.raises(ValueError, match="warmup_steps"):
        cosine_schedule(1.0, 0.0, total_steps=3, warmup_steps=4)


def test_schedules_dinov2_recipe():
    s = Schedules.build(10, base_lr=1e-3, min_lr=0.0, warmup_steps=2, teacher_temp_warmup_steps=3,
                        freeze_last_layer_steps=4)
    assert s.total_steps == 10
    assert s.lr[0] == 0.0 and s.lr[1] == pytest.approx(1e-3) and s.lr[2] == pytest.approx(1e-3)
    assert np.all(np.diff(s.lr[2:]) < 0)
    assert s.wd[0] == pytest.approx(0.04) and s.wd[-1] < 0.2 and s.wd[-1] > 0.19
    assert s.momentum[0] == pytest.approx(0.992) and 0.9995 < s.momentum[-1] < 1.0
    assert np.allclose(s.teacher_temp, [0.04, 0.055, 0.07] + [0.07] * 7)
    assert np.all(s.last_layer_lr[:4] == 0) and np.allclose(s.last_layer_lr[4:], s.lr[4:])
    assert s.at(1000) == s.at(9)  # past the end: last values
    with pytest.raises(ValueError, match="freeze_last_layer_steps"):
        Schedules.build(5, freeze_last_layer_steps=6)


class _TinyViT(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.cls_token = torch.nn.Parameter(torch.zeros(1, 1, 4))
        self.pos_embed = torch.nn.Parameter(torch.zeros(1, 5, 4))
        self.patch_embed = torch.nn.Conv2d(1, 4, 2)
        self.blocks = torch.nn.ModuleList(torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
                                          for _ in range(2))
        self.norm = torch.nn.LayerNorm(4)


def _by_name(groups):
    return {n: g for g in groups for n in g["param_names"]}


def test_layer_decay_groups_by_hand():
    model = torch.nn.ModuleDict({"backbone": _TinyViT(), "dino_head": torch.nn.Linear(4, 3)})
    model["dino_head"].register_module("last_layer", torch.nn.Linear(3, 3, bias=False))
    groups = _by_name(param_groups_lrd(model, weight_decay=0.05, layer_decay=0.5, patch_embed_lr_mult=0.2))
    # L = 2 blocks: embeddings 0.5^3, block 0 0.5^2, block 1 0.5^1, norm / heads 1
    assert groups["backbone.pos_embed"]["lr_multiplier"] == pytest.approx(0.125)
    assert groups["backbone.patch_embed.weight"]["lr_multiplier"] == pytest.approx(0.125 * 0.2)
    assert groups["backbone.blocks.0.0.weight"]["lr_multiplier"] == pytest.approx(0.25)
    assert groups["backbone.blocks.1.0.weight"]["lr_multiplier"] == pytest.approx(0.5)
    assert groups["backbone.norm.weight"]["lr_multiplier"] == 1.0
    assert groups["dino_head.weight"]["lr_multiplier"] == 1.0
    # no weight decay on biases, norms and tokens; decay on matrices
    for name in ("backbone.pos_embed", "backbone.cls_token", "backbone.blocks.0.0.bias", "backbone.blocks.0.1.weight",
                 "backbone.norm.weight", "dino_head.bias"):
        assert groups[name]["wd_multiplier"] == 0.0 and groups[name]["weight_decay"] == 0.0, name
    assert groups["backbone.blocks.1.0.weight"]["wd_multiplier"] == 1.0
    assert groups["backbone.blocks.1.0.weight"]["weight_decay"] == pytest.approx(0.05)
    assert groups["dino_head.last_layer.weight"]["is_last_layer"]
    assert not groups["dino_head.weight"]["is_last_layer"]


def test_apply_sets_lr_and_wd_per_group():
    model = torch.nn.ModuleDict({"blocks": torch.nn.ModuleList([torch.nn.Linear(2, 2)]),
                                 "last_layer": torch.nn.Linear(2, 2, bias=False)})
    groups = param_groups_lrd(model, weight_decay=0.04, layer_decay=0.5)
    opt = torch.optim.AdamW(groups)
    s = Schedules.build(4, base_lr=1.0, min_lr=1.0, freeze_last_layer_steps=2)
    s.apply(opt, 0)
    by_name = {g["param_names"][0]: g for g in opt.param_groups}
    assert by_name["blocks.0.weight"]["lr"] == pytest.approx(0.5)  # block 0 of 1: 0.5^1
    assert by_name["blocks.0.weight"]["weight_decay"] == pytest.approx(0.04)
    assert by_name["blocks.0.bias"]["weight_decay"] == 0.0
    assert by_name["last_layer.weight"]["lr"] == 0.0  # frozen
    s.apply(opt, 2)
    assert by_name["last_layer.weight"]["lr"] == pytest.approx(1.0)


def test_timm_vit_every_parameter_once():
    import timm

    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2,
                            init_values=1e-5, num_classes=0)
    groups = param_groups_lrd(vit, weight_decay=0.04, layer_decay=0.9)
    names = [n for g in groups for n in g["param_names"]]
    assert sorted(names) == sorted(n for n, _ in vit.named_parameters())
    by_name = _by_name(groups)
    assert by_name["blocks.0.ls1.gamma"]["wd_multiplier"] == 0.0
    assert by_name["blocks.0.attn.qkv.weight"]["lr_multiplier"] == pytest.approx(0.9**2)
    assert by_name["patch_embed.proj.weight"]["lr_multiplier"] == pytest.approx(0.9**3)
