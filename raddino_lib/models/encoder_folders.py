"""One resolver for the encoder folders the probes accept: it names the layout it detected and reads it.

Every layout becomes this package's backbone (:class:`~raddino_lib.models.backbone.DinoVisionTransformer`, a
timm ViT), so feature extraction, attention maps and the metadata probe treat them alike. Each layout's
preprocessing (mean / std / input size) is read from the folder itself:

* ``raddino`` — this package's backbone ``.safetensors`` (or a training checkpoint), spec in its metadata;
* ``hf_dinov2`` — a Hugging Face ``Dinov2Model`` folder (RAD-DINO, DINOv2): ``config.json`` with ``model_type``
  "dinov2" + ``model.safetensors`` (+ ``preprocessor_config.json``);
* ``timm`` — timm's hub layout: ``config.json`` with ``architecture`` and ``pretrained_cfg`` (mean, std,
  input_size) + ``model.safetensors``; the model must be a timm ``VisionTransformer`` with a class token;
* ``open_clip`` — ``open_clip_config.json`` (``model_cfg`` + ``preprocess_cfg``) + ``open_clip_model.safetensors``
  (BiomedCLIP's layout); the image tower only (a timm trunk as in BiomedCLIP, or open_clip's own ViT);
* ``hf_clip`` — a Hugging Face ``CLIPModel`` / ``CLIPVisionModel`` folder (``model_type`` "clip" or
  "clip_vision_model") + ``preprocessor_config.json``; the vision tower only.

Tokens are those before any projection head: ``forward_features`` returns the tower's final LayerNorm over all
tokens (CLIP's ``post_layernorm`` / ``ln_post``, which CLIP applies to the class token only, is applied to every
token, as timm's CLIP ViTs do). The class position embedding is folded into the class token (exact).
Only safetensors weights are read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from raddino_lib.models.backbone import IMAGENET_MEAN, IMAGENET_STD, BackboneSpec
from raddino_lib.models.weights import BackboneFormatError

StateDict = dict[str, torch.Tensor]

KINDS = ("raddino", "hf_dinov2", "timm", "open_clip", "hf_clip")
SUPPORTED_LAYOUTS = (
    "supported encoder layouts: "
    "raddino (a backbone .safetensors file or training checkpoint of this package); "
    "hf_dinov2 (folder: config.json with model_type 'dinov2' + model.safetensors [+ preprocessor_config.json]); "
    "timm (folder: config.json with 'architecture' and 'pretrained_cfg' + model.safetensors, timm's hub layout); "
    "open_clip (folder: open_clip_config.json + open_clip_model.safetensors, e.g. BiomedCLIP); "
    "hf_clip (folder: config.json with model_type 'clip' or 'clip_vision_model' + model.safetensors "
    "[+ preprocessor_config.json])"
)
FOREIGN_KINDS = ("timm", "open_clip", "hf_clip")  # read here; the others by raddino_lib.models.weights / hf


class EncoderLayoutError(BackboneFormatError):
    """A path that is none of the supported encoder layouts (the message lists them)."""


def detect_encoder(path: str | os.PathLike, strict: bool = True) -> str:
    """The layout of ``path``: one of :data:`KINDS`.

    strict: False = a folder in no known layout is "raddino" (left to ``weights.read_backbone`` to explain).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        EncoderLayoutError: a folder in none of the layouts (the message lists what was found and what is supported).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"encoder {path} does not exist; {SUPPORTED_LAYOUTS}")
    if path.is_file():
        if path.name in ("config.json", "model.safetensors", "open_clip_config.json", "open_clip_model.safetensors"):
            kind = _folder_kind(path.parent)
            if kind:
                return kind
        return "raddino"
    kind = _folder_kind(path)
    if kind:
        return kind
    if not strict or any(p.suffix == ".safetensors" for p in path.iterdir()):
        return "raddino"  # a folder holding one backbone file (weights._single_weights_file picks it)
    found = sorted(p.name for p in path.iterdir())[:12]
    raise EncoderLayoutError(f"{path}: not a recognised encoder folder (found {found}); {SUPPORTED_LAYOUTS}")


def _folder_kind(folder: Path) -> str:
    if (folder / "open_clip_config.json").is_file():
        return "open_clip"
    config = _json(folder / "config.json")
    if config is None:
        return ""
    model_type = config.get("model_type")
    if model_type in ("dinov2", "dinov2_with_registers"):
        return "hf_dinov2"
    if model_type in ("clip", "clip_vision_model"):
        return "hf_clip"
    if "architecture" in config and "pretrained_cfg" in config:
        return "timm"
    return ""


def _json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise EncoderLayoutError(f"{path} is not valid JSON ({err})") from err
    return value if isinstance(value, dict) else None


def read_encoder_folder(path: str | os.PathLike) -> tuple[StateDict, BackboneSpec]:
    """Weights (this package's layout) and spec of a timm, open_clip or Hugging Face CLIP folder."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    kind = detect_encoder(folder)
    if kind == "timm":
        return read_timm_folder(folder)
    if kind == "open_clip":
        return read_open_clip_folder(folder)
    if kind == "hf_clip":
        return read_hf_clip_folder(folder)
    raise EncoderLayoutError(f"{path}: layout {kind!r} is not read here; {SUPPORTED_LAYOUTS}")


def encoder_preprocessing(path: str | os.PathLike) -> dict[str, Any]:
    """``{"kind", "image_mean", "image_std", "size"}`` read from the encoder at ``path`` (any layout)."""
    from raddino_lib.models.weights import read_backbone_spec

    spec = read_backbone_spec(path)
    return {"kind": detect_encoder(path), "image_mean": list(spec["image_mean"]),
            "image_std": list(spec["image_std"]), "size": spec["img_size"]}


# --- timm ------------------------------------------------------------------------------------------------------------

def read_timm_folder(folder: Path) -> tuple[StateDict, BackboneSpec]:
    """timm hub layout: build ``architecture`` with its ``model_args`` (no download), load the weights."""
    import timm

    from raddino_lib.models.hf import _read_weights

    config = _json(folder / "config.json") or {}
    kwargs = dict(config.get("model_args") or {})
    kwargs.setdefault("num_classes", config.get("num_classes", 0))
    model = timm.create_model(config["architecture"], pretrained=False, **kwargs)
    missing, unexpected = model.load_state_dict(_read_weights(folder), strict=False)
    if missing or unexpected:
        raise EncoderLayoutError(f"{folder}: weights do not fit timm '{config['architecture']}' "
                                 f"(missing {missing[:6]}, unexpected {unexpected[:6]})")
    cfg = config.get("pretrained_cfg") or {}
    return timm_vit_to_backbone(model, cfg.get("mean", IMAGENET_MEAN), cfg.get("std", IMAGENET_STD), str(folder))


def timm_vit_to_backbone(model: torch.nn.Module, mean, std, where: str) -> tuple[StateDict, BackboneSpec]:
    """A timm ``VisionTransformer`` (class token, standard blocks) → weights and spec of this package's backbone."""
    from timm.layers import QuickGELU
    from timm.models.vision_transformer import VisionTransformer

    if not isinstance(model, VisionTransformer) or getattr(model, "cls_token", None) is None:
        raise EncoderLayoutError(f"{where}: only timm VisionTransformer models with a class token are supported "
                                 f"(got {type(model).__name__}); {SUPPORTED_LAYOUTS}")
    state = {k: v.detach().clone() for k, v in model.state_dict().items()
             if not k.startswith(("head", "fc_norm", "attn_pool"))}
    n_reg = int(getattr(model, "num_reg_tokens", 0))
    prefix = 1 + n_reg
    if not getattr(model, "no_embed_class", False):  # fold the prefix tokens' constant positions into them
        pos = state["pos_embed"]
        state["cls_token"] = state["cls_token"] + pos[:, :1]
        if n_reg:
            state["reg_token"] = state["reg_token"] + pos[:, 1:prefix]
        state["pos_embed"] = pos[:, prefix:]
    block = model.blocks[0]
    D = model.embed_dim
    act = block.mlp.act
    act_name = "quick_gelu" if isinstance(act, QuickGELU) else "gelu" if isinstance(act, torch.nn.GELU) and \
        getattr(act, "approximate", "none") == "none" else ""
    if not act_name:
        raise EncoderLayoutError(f"{where}: MLP activation {type(act).__name__} is not supported (GELU, QuickGELU)")
    for i, blk in enumerate(model.blocks):  # timm models without qkv bias: zeros are the same function
        if f"blocks.{i}.attn.qkv.bias" not in state and getattr(blk.attn, "qkv", None) is not None:
            state[f"blocks.{i}.attn.qkv.bias"] = torch.zeros(3 * D)
    pre_norm = not isinstance(model.norm_pre, torch.nn.Identity)
    layer_scale = "blocks.0.ls1.gamma" in state
    img = model.patch_embed.img_size
    patch = model.patch_embed.patch_size
    spec = BackboneSpec(
        arch="custom", patch_size=int(patch[0]), img_size=int(img[0]), depth=len(model.blocks), embed_dim=D,
        num_heads=block.attn.num_heads, mlp_ratio=block.mlp.fc1.out_features / D, num_register_tokens=n_reg,
        layer_scale_init=1e-5 if layer_scale else None, layer_norm_eps=float(getattr(model.norm, "eps", 1e-6)),
        pos_interp_antialias=False, pre_norm=pre_norm, act_layer=act_name, image_mean=tuple(mean),
        image_std=tuple(std))
    if pre_norm and "patch_embed.proj.bias" in state:
        raise EncoderLayoutError(f"{where}: a pre-norm timm ViT with a patch-embedding bias is not supported")
    return state, spec


# --- open_clip -------------------------------------------------------------------------------------------------------

def read_open_clip_folder(folder: Path) -> tuple[StateDict, BackboneSpec]:
    """open_clip hub layout (BiomedCLIP): the image tower of ``open_clip_config.json``'s model."""
    model = load_open_clip(folder)
    visual = model.visual
    pre = (_json(folder / "open_clip_config.json") or {}).get("preprocess_cfg") or {}
    mean = pre.get("mean") or getattr(visual, "image_mean", None) or IMAGENET_MEAN
    std = pre.get("std") or getattr(visual, "image_std", None) or IMAGENET_STD
    if hasattr(visual, "trunk"):  # open_clip's TimmModel (BiomedCLIP)
        return timm_vit_to_backbone(visual.trunk, mean, std, str(folder))
    return open_clip_vit_to_backbone(visual, mean, std, str(folder))


def load_open_clip(folder: str | os.PathLike) -> torch.nn.Module:
    """The whole open_clip model (both towers, eval mode) of a folder, weights from its safetensors file."""
    import open_clip

    folder = Path(folder)
    weights = folder / "open_clip_model.safetensors"
    if not weights.is_file():
        found = sorted(p.name for p in folder.iterdir())
        raise FileNotFoundError(f"{folder}: no open_clip_model.safetensors (found {found}); pickled "
                                "open_clip_pytorch_model.bin is not loaded")
    config = _json(folder / "open_clip_config.json") or {}
    model_cfg = dict(config.get("model_cfg", config))
    model_cfg.pop("custom_text", None)
    from safetensors.torch import load_file

    model = open_clip.CLIP(**model_cfg) if "hf_model_name" not in model_cfg.get("text_cfg", {}) \
        else open_clip.CustomTextCLIP(**model_cfg)
    missing, unexpected = model.load_state_dict(load_file(str(weights)), strict=False)
    if missing or unexpected:
        raise EncoderLayoutError(f"{folder}: weights do not fit open_clip_config.json "
                                 f"(missing {missing[:6]}, unexpected {unexpected[:6]})")
    return model.eval()


def _clip_stem(class_embedding: torch.Tensor, positional: torch.Tensor, conv: torch.Tensor,
               pre_norm: tuple[torch.Tensor, torch.Tensor], post_norm: tuple[torch.Tensor, torch.Tensor]) -> StateDict:
    """A CLIP ViT's stem in timm's names: the class embedding carries its position (timm adds none to it), the
    (1 + N, D) position table loses that row, the pre-norm and the final norm keep their weights and biases."""
    D = class_embedding.shape[0]
    return {"cls_token": (class_embedding + positional[0]).reshape(1, 1, D),
            "pos_embed": positional[1:].unsqueeze(0).clone(), "patch_embed.proj.weight": conv,
            "norm_pre.weight": pre_norm[0], "norm_pre.bias": pre_norm[1],
            "norm.weight": post_norm[0], "norm.bias": post_norm[1]}


def open_clip_vit_to_backbone(visual: torch.nn.Module, mean, std, where: str) -> tuple[StateDict, BackboneSpec]:
    """open_clip's own ``VisionTransformer`` (class-token pooling, no attentional pool) → weights and spec."""
    if getattr(visual, "attn_pool", None) is not None or getattr(visual, "pool_type", "tok") != "tok":
        raise EncoderLayoutError(f"{where}: open_clip image towers with attentional or average pooling are not "
                                 "supported (class-token ViTs only)")
    s = visual.state_dict()
    blocks = visual.transformer.resblocks
    D = s["class_embedding"].shape[0]
    out = _clip_stem(s["class_embedding"], s["positional_embedding"], s["conv1.weight"],
                     (s["ln_pre.weight"], s["ln_pre.bias"]), (s["ln_post.weight"], s["ln_post.bias"]))
    names = {"ln_1": "norm1", "ln_2": "norm2", "attn.in_proj": "attn.qkv", "attn.out_proj": "attn.proj",
             "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}
    for i in range(len(blocks)):
        for src, dst in names.items():
            for p in ("weight", "bias"):
                key = f"transformer.resblocks.{i}.{src}{'_' if src == 'attn.in_proj' else '.'}{p}"
                out[f"blocks.{i}.{dst}.{p}"] = s[key]
        for j in (1, 2):
            gamma = s.get(f"transformer.resblocks.{i}.ls_{j}.gamma")
            if gamma is not None:
                out[f"blocks.{i}.ls{j}.gamma"] = gamma
    act = blocks[0].mlp.gelu
    act_name = "gelu" if isinstance(act, torch.nn.GELU) else "quick_gelu" if type(act).__name__ == "QuickGELU" else ""
    if not act_name:
        raise EncoderLayoutError(f"{where}: MLP activation {type(act).__name__} is not supported")
    patch = visual.patch_size[0] if isinstance(visual.patch_size, tuple | list) else visual.patch_size
    size = visual.image_size[0] if isinstance(visual.image_size, tuple | list) else visual.image_size
    spec = BackboneSpec(
        arch="custom", patch_size=int(patch), img_size=int(size), depth=len(blocks), embed_dim=D,
        num_heads=blocks[0].attn.num_heads, mlp_ratio=blocks[0].mlp.c_fc.out_features / D,
        layer_scale_init=1e-5 if "blocks.0.ls1.gamma" in out else None, layer_norm_eps=float(visual.ln_post.eps),
        pos_interp_antialias=False, pre_norm=True, act_layer=act_name, image_mean=tuple(mean), image_std=tuple(std))
    return out, spec


# --- Hugging Face CLIP -----------------------------------------------------------------------------------------------

def read_hf_clip_folder(folder: Path) -> tuple[StateDict, BackboneSpec]:
    """Hugging Face ``CLIPModel`` / ``CLIPVisionModel`` folder → the vision tower as this package's backbone."""
    from raddino_lib.models.hf import _read_normalisation, _read_weights

    config = _json(folder / "config.json") or {}
    vision = config.get("vision_config", config) if config.get("model_type") == "clip" else config
    state = {k[len("vision_model."):]: v for k, v in _read_weights(folder).items() if k.startswith("vision_model.")}
    if not state:
        raise EncoderLayoutError(f"{folder}: model.safetensors holds no vision_model.* weights")
    D = state["embeddings.class_embedding"].shape[0]
    out = _clip_stem(state["embeddings.class_embedding"], state["embeddings.position_embedding.weight"],
                     state["embeddings.patch_embedding.weight"],
                     (state["pre_layrnorm.weight"], state["pre_layrnorm.bias"]),
                     (state["post_layernorm.weight"], state["post_layernorm.bias"]))
    depth = int(vision.get("num_hidden_layers", 12))
    for i in range(depth):
        src = f"encoder.layers.{i}."
        for p in ("weight", "bias"):
            out[f"blocks.{i}.attn.qkv.{p}"] = torch.cat([state[f"{src}self_attn.{q}_proj.{p}"] for q in "qkv"])
            for a, b in (("self_attn.out_proj", "attn.proj"), ("layer_norm1", "norm1"), ("layer_norm2", "norm2"),
                         ("mlp.fc1", "mlp.fc1"), ("mlp.fc2", "mlp.fc2")):
                out[f"blocks.{i}.{b}.{p}"] = state[f"{src}{a}.{p}"]
    act = vision.get("hidden_act", "quick_gelu")
    if act not in ("gelu", "quick_gelu"):
        raise EncoderLayoutError(f"{folder}: CLIP hidden_act {act!r} is not supported (gelu, quick_gelu)")
    heads = int(vision.get("num_attention_heads", 12))
    mean, std = _read_normalisation(folder)
    spec = BackboneSpec(
        arch="custom", patch_size=int(vision.get("patch_size", 32)), img_size=int(vision.get("image_size", 224)),
        depth=depth, embed_dim=D, num_heads=heads, mlp_ratio=out["blocks.0.mlp.fc1.weight"].shape[0] / D,
        layer_scale_init=None, layer_norm_eps=float(vision.get("layer_norm_eps", 1e-5)), pos_interp_antialias=False,
        pre_norm=True, act_layer=act, image_mean=tuple(mean), image_std=tuple(std))
    return out, spec
