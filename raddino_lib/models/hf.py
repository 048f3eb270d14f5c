"""Hugging Face ``Dinov2Model`` folders: read them (the public RAD-DINO release format) and write them.

A folder holds ``config.json`` (``model_type`` "dinov2" or "dinov2_with_registers"), ``model.safetensors``
(or shards listed in ``model.safetensors.index.json``) and optionally ``preprocessor_config.json``
(a ``BitImageProcessor``) whose ``image_mean`` / ``image_std`` become the backbone's normalisation.
Only safetensors weights are read; ``pytorch_model.bin`` pickles are refused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from raddino_lib.atomic import write_json
from raddino_lib.models.backbone import ARCHS, IMAGENET_MEAN, IMAGENET_STD, BackboneSpec
from raddino_lib.models.convert import StateDict, hf_to_timm, timm_to_hf

MODEL_TYPES = ("dinov2", "dinov2_with_registers")


def is_hf_folder(folder: Path) -> bool:
    """True when ``folder/config.json`` declares a Dinov2 model."""
    config = Path(folder) / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("model_type") in MODEL_TYPES
    except (json.JSONDecodeError, AttributeError):
        return False


def read_hf_folder(folder: str | os.PathLike) -> tuple[StateDict, BackboneSpec]:
    """Weights (this package's layout) and spec of a Hugging Face Dinov2 folder."""
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    if config.get("use_swiglu_ffn") or config.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"{folder}/config.json: only GELU-MLP Dinov2 models are supported "
                         f"(use_swiglu_ffn={config.get('use_swiglu_ffn')}, hidden_act={config.get('hidden_act')})")
    state = hf_to_timm(_read_weights(folder))
    return state, hf_config_to_spec(config, _read_normalisation(folder))


def hf_config_to_spec(config: dict[str, Any], normalisation: tuple[list[float], list[float]]) -> BackboneSpec:
    """Translate a Dinov2 ``config.json`` dict into a :class:`BackboneSpec`."""
    D, heads, patch = config["hidden_size"], config["num_attention_heads"], config["patch_size"]
    image_size = config.get("image_size", 518)
    image_size = image_size[0] if isinstance(image_size, list | tuple) else image_size
    arch = next((a for a, (d, h, _) in ARCHS.items() if (d, h) == (D, heads)), "custom")
    return BackboneSpec(
        arch=arch, patch_size=patch, img_size=(image_size // patch) * patch,
        depth=config["num_hidden_layers"], embed_dim=D, num_heads=heads, mlp_ratio=float(config.get("mlp_ratio", 4)),
        num_register_tokens=int(config.get("num_register_tokens", 0)),
        layer_scale_init=float(config.get("layerscale_value", 1.0)),
        layer_norm_eps=float(config.get("layer_norm_eps", 1e-6)),
        pos_interp_antialias=config.get("model_type") == "dinov2_with_registers",
        image_mean=normalisation[0], image_std=normalisation[1],
    )


def export_hf(model: nn.Module, out_dir: str | os.PathLike) -> Path:
    """Write ``model`` as a Hugging Face folder that ``transformers.AutoModel.from_pretrained`` loads.

    Writes config.json (``Dinov2Model``, or ``Dinov2WithRegistersModel`` with registers), model.safetensors
    (saved Hugging Face names) and preprocessor_config.json (a ``BitImageProcessor``: resize shortest edge,
    center crop to ``img_size``, rescale 1/255, normalise with the backbone's mean/std).
    """
    from transformers import Dinov2Config, Dinov2WithRegistersConfig  # heavy import, only here

    spec: BackboneSpec = model.spec
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mlp_ratio = int(spec.mlp_ratio) if float(spec.mlp_ratio).is_integer() else spec.mlp_ratio  # HF wants an int
    kwargs = dict(
        hidden_size=spec.embed_dim, num_hidden_layers=spec.depth, num_attention_heads=spec.num_heads,
        mlp_ratio=mlp_ratio, hidden_act="gelu", layer_norm_eps=spec.layer_norm_eps, image_size=spec.img_size,
        patch_size=spec.patch_size, qkv_bias=True, layerscale_value=spec.layer_scale_init or 1.0,
        drop_path_rate=0.0, use_swiglu_ffn=False,
    )
    if spec.num_register_tokens:
        config = Dinov2WithRegistersConfig(num_register_tokens=spec.num_register_tokens,
                                           architectures=["Dinov2WithRegistersModel"], **kwargs)
    else:
        config = Dinov2Config(architectures=["Dinov2Model"], **kwargs)
    config.save_pretrained(out)
    state = timm_to_hf({k: v.detach().cpu() for k, v in model.state_dict().items()})
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    write_json(out / "preprocessor_config.json", bit_image_processor_config(spec))
    return out


def bit_image_processor_config(spec: BackboneSpec) -> dict[str, Any]:
    """A ``BitImageProcessor`` dict like RAD-DINO's: shortest edge -> img_size, center crop, normalise."""
    return {
        "image_processor_type": "BitImageProcessor",
        "do_resize": True, "size": {"shortest_edge": spec.img_size}, "resample": 3,
        "do_center_crop": True, "crop_size": {"height": spec.img_size, "width": spec.img_size},
        "do_rescale": True, "rescale_factor": 1 / 255,
        "do_normalize": True, "image_mean": list(spec.image_mean), "image_std": list(spec.image_std),
        "do_convert_rgb": True,
    }


def _read_weights(folder: Path) -> StateDict:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (folder / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        found = sorted(p.name for p in folder.iterdir())
        raise FileNotFoundError(f"{folder}: no model.safetensors (found {found}); pickled pytorch_model.bin is not "
                                "loaded — save the model with save_pretrained(..., safe_serialization=True)")
    state: StateDict = {}
    for name in files:
        with safe_open(str(folder / name), framework="pt") as f:
            state.update({k: f.get_tensor(k) for k in f.keys()})
    return state


def _read_normalisation(folder: Path) -> tuple[list[float], list[float]]:
    """image_mean / image_std from preprocessor_config.json, else ImageNet's."""
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        return list(IMAGENET_MEAN), list(IMAGENET_STD)
    config = json.loads(path.read_text())
    return list(config.get("image_mean", IMAGENET_MEAN)), list(config.get("image_std", IMAGENET_STD))
