"""Encoder folders in each library's own layout, saved by that library, read through one resolver.

Each test builds a tiny randomly initialised model, saves it with the library's own save function, loads it with
``load_backbone`` and compares this package's ``forward_features`` with the library's own forward.
"""

from __future__ import annotations

import json

import pytest
import torch

from raddino_lib.data.transforms import eval_transform_for
from raddino_lib.models import create_backbone, load_backbone, save_backbone
from raddino_lib.models.encoder_folders import SUPPORTED_LAYOUTS, EncoderLayoutError, detect_encoder
from raddino_lib.models.hf import export_hf
from raddino_lib.probe.encoders import resolve_encoders

MEAN, STD = (0.3, 0.4, 0.5), (0.2, 0.25, 0.3)  # not ImageNet's: proves the folder's own values are read


def _image(size=32, seed=0):
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(seed))


def save_timm_folder(folder, size=32):
    import timm
    from timm.models import save_for_hf

    torch.manual_seed(0)
    args = {"img_size": size, "depth": 2, "num_classes": 0}
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, **args).eval()
    with torch.no_grad():  # non-trivial class position and norms
        model.pos_embed.normal_(0, 0.5)
        model.norm.weight.uniform_(0.5, 1.5)
    model.pretrained_cfg = {**model.pretrained_cfg, "mean": MEAN, "std": STD, "input_size": (3, size, size)}
    save_for_hf(model, folder, model_args=args, safe_serialization=True)
    return model


def save_hf_clip_folder(folder, size=32):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    torch.manual_seed(0)
    config = CLIPConfig(
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                       "image_size": size, "patch_size": 8, "hidden_act": "quick_gelu"},
        text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4,
                     "vocab_size": 100, "max_position_embeddings": 16}, projection_dim=16)
    model = CLIPModel(config).eval()
    with torch.no_grad():
        model.vision_model.embeddings.position_embedding.weight.normal_(0, 0.5)
        model.vision_model.post_layernorm.weight.uniform_(0.5, 1.5)
    model.save_pretrained(folder)
    CLIPImageProcessor(image_mean=list(MEAN), image_std=list(STD), size={"shortest_edge": size},
                       crop_size={"height": size, "width": size}).save_pretrained(folder)
    return model


OPEN_CLIP_OWN = {"embed_dim": 16, "quick_gelu": True,
                 "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 8, "patch_size": 8},
                 "text_cfg": {"context_length": 16, "vocab_size": 100, "width": 32, "heads": 4, "layers": 1}}
OPEN_CLIP_TIMM = {"embed_dim": 16,  # BiomedCLIP's layout: a timm trunk with a linear projection
                  "vision_cfg": {"timm_model_name": "vit_tiny_patch16_224", "timm_model_pretrained": False,
                                 "timm_pool": "", "timm_proj": "linear", "image_size": 224},
                  "text_cfg": {"context_length": 16, "vocab_size": 100, "width": 32, "heads": 4, "layers": 1}}


def save_open_clip_folder(folder, model_cfg):
    import open_clip
    from open_clip.push_to_hf_hub import save_config_for_hf
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = open_clip.CLIP(**model_cfg).eval()
    model.visual.image_mean, model.visual.image_std = MEAN, STD
    folder.mkdir(parents=True, exist_ok=True)
    # open_clip's save_for_hf = these two steps + tokenizer.save_pretrained (a tokenizer needs a download)
    save_file(model.state_dict(), str(folder / "open_clip_model.safetensors"))
    save_config_for_hf(model, folder / "open_clip_config.json", model_config=model_cfg)
    return model


def _assert_close(ours, ref):
    torch.testing.assert_close(ours, ref, atol=2e-5, rtol=1e-4)


def test_timm_folder_matches_timm_forward(tmp_path):
    ref = save_timm_folder(tmp_path / "timm")
    assert detect_encoder(tmp_path / "timm") == "timm"
    model = load_backbone(tmp_path / "timm")
    x = _image()
    with torch.no_grad():
        _assert_close(model.forward_features(x), ref.forward_features(x))
    t = eval_transform_for(str(tmp_path / "timm"), 32)
    assert tuple(t.mean) == pytest.approx(MEAN) and tuple(t.std) == pytest.approx(STD)
    assert model.spec.img_size == 32 and model.spec.layer_scale_init is None and not model.spec.pre_norm


def test_hf_clip_folder_matches_transformers_forward(tmp_path):
    ref = save_hf_clip_folder(tmp_path / "clip")
    assert detect_encoder(tmp_path / "clip") == "hf_clip"
    model = load_backbone(tmp_path / "clip")
    x = _image()
    with torch.no_grad():
        out = ref.vision_model(pixel_values=x)
        ours = model.forward_features(x)
    _assert_close(ours[:, 0], out.pooler_output)  # post_layernorm(class token)
    _assert_close(ours[:, 1:], ref.vision_model.post_layernorm(out.last_hidden_state[:, 1:]))
    t = eval_transform_for(str(tmp_path / "clip"), 32)
    assert tuple(t.mean) == pytest.approx(MEAN) and tuple(t.std) == pytest.approx(STD)
    assert model.spec.act_layer == "quick_gelu" and model.spec.pre_norm


@pytest.mark.parametrize("cfg", [OPEN_CLIP_OWN, OPEN_CLIP_TIMM], ids=["open_clip_vit", "timm_trunk"])
def test_open_clip_folder_matches_open_clip_forward(tmp_path, cfg):
    ref = save_open_clip_folder(tmp_path / "oc", cfg)
    assert detect_encoder(tmp_path / "oc") == "open_clip"
    model = load_backbone(tmp_path / "oc")
    x = _image(cfg["vision_cfg"]["image_size"])
    with torch.no_grad():
        if "timm_model_name" in cfg["vision_cfg"]:
            expected = ref.visual.trunk.forward_features(x)
        else:
            seen = {}
            hook = ref.visual.ln_post.register_forward_hook(lambda m, i, o: seen.update(tokens=o))
            pooled = ref.encode_image(x)
            hook.remove()
            expected = seen["tokens"]
            _assert_close(model.forward_features(x)[:, 0] @ ref.visual.proj, pooled)  # the image embedding
        _assert_close(model.forward_features(x), expected)
    t = eval_transform_for(str(tmp_path / "oc"))
    assert t.size == cfg["vision_cfg"]["image_size"]
    assert tuple(t.mean) == pytest.approx(MEAN) and tuple(t.std) == pytest.approx(STD)


def test_own_and_dinov2_layouts_are_named(tmp_path):
    model = create_backbone("vit_tiny", patch_size=8, img_size=32, depth=1)
    save_backbone(model, tmp_path / "own.safetensors")
    export_hf(model, tmp_path / "hf")
    assert detect_encoder(tmp_path / "own.safetensors") == "raddino"
    assert detect_encoder(tmp_path / "hf") == "hf_dinov2"


def test_unknown_folder_fails_listing_layouts(tmp_path):
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(EncoderLayoutError, match="supported encoder layouts: raddino .*timm.*open_clip.*hf_clip"):
        detect_encoder(tmp_path / "odd")
    assert "hf_dinov2" in SUPPORTED_LAYOUTS
    with pytest.raises(FileNotFoundError, match="supported encoder layouts"):
        detect_encoder(tmp_path / "missing")


def test_resolve_encoders_accepts_every_layout(tmp_path):
    save_timm_folder(tmp_path / "timm")
    save_hf_clip_folder(tmp_path / "clip")
    save_open_clip_folder(tmp_path / "oc", OPEN_CLIP_OWN)
    encoders = resolve_encoders(extra=f"t={tmp_path / 'timm'},c={tmp_path / 'clip'},o={tmp_path / 'oc'}")
    assert list(encoders) == ["t", "c", "o"]
