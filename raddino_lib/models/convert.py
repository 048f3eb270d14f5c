"""State-dict conversion between the three ViT weight layouts this package meets.

* **timm** (this package's own layout, :class:`~raddino_lib.models.backbone.DinoVisionTransformer`):
  ``cls_token (1,1,D)``, ``reg_token (1,R,D)``, ``pos_embed (1,N,D)`` (patches only; the CLS position is
  folded into ``cls_token``), ``mask_token (1,D)``, ``blocks.i.{norm1,attn.qkv,attn.proj,ls1.gamma,norm2,
  mlp.fc1,mlp.fc2,ls2.gamma}``, ``norm``.
* **DINOv2 original** (``backbone_compatible.safetensors``): like timm but ``pos_embed (1,1+N,D)`` includes
  the CLS position, ``register_tokens`` instead of ``reg_token``, and FSDP-chunked names ``blocks.c.i.*``.
* **Hugging Face** ``Dinov2Model``: ``embeddings.*``, ``encoder.layer.i.*`` with separate query/key/value
  (saved names ``attention.attention.query``; in-memory names ``attention.q_proj`` also accepted),
  ``layer_scale{1,2}.lambda1``, ``layernorm``.

All functions are pure: dict of tensors in, dict of tensors out.
"""

from __future__ import annotations

import math
import re

import torch

from raddino_lib.models.backbone import ARCHS, BackboneSpec

StateDict = dict[str, torch.Tensor]

_CHUNKED = re.compile(r"^blocks\.\d+\.(\d+)\.(.*)$")


def is_dinov2_layout(sd: StateDict) -> bool:
    """True for DINOv2-original names (CLS position inside ``pos_embed``), False for the timm layout."""
    if "register_tokens" in sd or any(_CHUNKED.match(k) for k in sd):
        return True
    n = sd["pos_embed"].shape[1]
    return math.isqrt(n) ** 2 != n and math.isqrt(n - 1) ** 2 == n - 1


def dinov2_to_timm(sd: StateDict) -> StateDict:
    """DINOv2-original names -> this package's layout (exact in the forward pass)."""
    out: StateDict = {}
    for key, value in sd.items():
        chunked = _CHUNKED.match(key)
        if chunked:  # FSDP block chunks: blocks.<chunk>.<i>.* -> blocks.<i>.*
            key = f"blocks.{chunked.group(1)}.{chunked.group(2)}"
        out["reg_token" if key == "register_tokens" else key] = value
    pos = out["pos_embed"]  # (1, 1+N, D)
    out["cls_token"] = out["cls_token"] + pos[:, :1]  # the CLS position is a constant: fold it in
    out["pos_embed"] = pos[:, 1:].contiguous()  # (1, N, D)
    if "mask_token" in out:
        out["mask_token"] = out["mask_token"].reshape(1, -1)
    return out


def timm_to_dinov2(sd: StateDict) -> StateDict:
    """This package's layout -> DINOv2-original names (CLS position set to zero)."""
    out = {("register_tokens" if k == "reg_token" else k): v for k, v in sd.items()}
    pos = sd["pos_embed"]
    out["pos_embed"] = torch.cat([torch.zeros_like(pos[:, :1]), pos], dim=1)  # (1, 1+N, D)
    return out


_HF_BLOCK = {  # HF per-layer suffix -> timm per-block suffix (q/k/v handled apart)
    "norm1": "norm1", "norm2": "norm2", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2",
    "attention.output.dense": "attn.proj", "attention.o_proj": "attn.proj",
    "layer_scale1.lambda1": "ls1.gamma", "layer_scale2.lambda1": "ls2.gamma",
}
_HF_QKV = {  # saved names, in-memory names (transformers >= 5)
    "attention.attention.query": 0, "attention.attention.key": 1, "attention.attention.value": 2,
    "attention.q_proj": 0, "attention.k_proj": 1, "attention.v_proj": 2,
}
_HF_LAYER = re.compile(r"^encoder\.layer\.(\d+)\.(.+)\.(weight|bias|lambda1)$")


def hf_to_timm(sd: StateDict) -> StateDict:
    """Hugging Face ``Dinov2Model`` / ``Dinov2WithRegistersModel`` weights -> this package's layout."""
    sd = {k.removeprefix("dinov2."): v for k, v in sd.items()}
    pos = sd["embeddings.position_embeddings"]  # (1, 1+N, D)
    out: StateDict = {
        "cls_token": sd["embeddings.cls_token"] + pos[:, :1],
        "pos_embed": pos[:, 1:].contiguous(),
        "patch_embed.proj.weight": sd["embeddings.patch_embeddings.projection.weight"],
        "patch_embed.proj.bias": sd["embeddings.patch_embeddings.projection.bias"],
        "norm.weight": sd["layernorm.weight"],
        "norm.bias": sd["layernorm.bias"],
    }
    if "embeddings.mask_token" in sd:
        out["mask_token"] = sd["embeddings.mask_token"].reshape(1, -1)
    if "embeddings.register_tokens" in sd:
        out["reg_token"] = sd["embeddings.register_tokens"]
    qkv: dict[tuple[int, str], list[torch.Tensor | None]] = {}
    for key, value in sd.items():
        m = _HF_LAYER.match(key)
        if not m:
            continue
        i, name, kind = int(m.group(1)), m.group(2), m.group(3)
        if name in _HF_QKV:
            qkv.setdefault((i, kind), [None, None, None])[_HF_QKV[name]] = value
        elif kind == "lambda1":
            out[f"blocks.{i}.{_HF_BLOCK[f'{name}.lambda1']}"] = value
        elif name in _HF_BLOCK:
            out[f"blocks.{i}.{_HF_BLOCK[name]}.{kind}"] = value
        else:
            raise KeyError(f"unexpected Hugging Face Dinov2 weight {key!r} (SwiGLU / giant models are not supported)")
    for (i, kind), parts in qkv.items():
        if any(p is None for p in parts):
            raise KeyError(f"layer {i}: query/key/value {kind} incomplete in the Hugging Face weights")
        out[f"blocks.{i}.attn.qkv.{kind}"] = torch.cat(parts, dim=0)  # (3D, D) or (3D,)
    return out


def timm_to_hf(sd: StateDict) -> StateDict:
    """This package's layout -> Hugging Face ``Dinov2Model`` saved names (``attention.attention.query`` ...)."""
    pos = sd["pos_embed"]
    D = pos.shape[-1]
    out: StateDict = {
        "embeddings.cls_token": sd["cls_token"],
        "embeddings.position_embeddings": torch.cat([torch.zeros_like(pos[:, :1]), pos], dim=1),
        "embeddings.mask_token": sd.get("mask_token", torch.zeros(1, D)).reshape(1, D),
        "embeddings.patch_embeddings.projection.weight": sd["patch_embed.proj.weight"],
        "embeddings.patch_embeddings.projection.bias": sd["patch_embed.proj.bias"],
        "layernorm.weight": sd["norm.weight"],
        "layernorm.bias": sd["norm.bias"],
    }
    if "reg_token" in sd:
        out["embeddings.register_tokens"] = sd["reg_token"]
    for i in range(block_count(sd)):
        p, q = f"blocks.{i}.", f"encoder.layer.{i}."
        for kind in ("weight", "bias"):
            for j, name in enumerate(("query", "key", "value")):
                out[f"{q}attention.attention.{name}.{kind}"] = sd[f"{p}attn.qkv.{kind}"][j * D:(j + 1) * D]
            out[f"{q}attention.output.dense.{kind}"] = sd[f"{p}attn.proj.{kind}"]
            for name in ("norm1", "norm2", "mlp.fc1", "mlp.fc2"):
                out[f"{q}{name}.{kind}"] = sd[f"{p}{name}.{kind}"]
        for n in (1, 2):  # no LayerScale -> identity scale
            out[f"{q}layer_scale{n}.lambda1"] = sd.get(f"{p}ls{n}.gamma", torch.ones(D))
    return {k: v.contiguous() for k, v in out.items()}


def block_count(sd: StateDict) -> int:
    """Number of transformer blocks in a timm-layout state dict."""
    return len({k.split(".")[1] for k in sd if k.startswith("blocks.") and k.endswith("norm1.weight")})


def infer_spec(sd: StateDict, num_heads: int | None = None, **fields: object) -> BackboneSpec:
    """Guess a :class:`BackboneSpec` from timm-layout shapes.

    Heads cannot be read from shapes: they come from ``num_heads``, else the width of a known arch
    (192 -> 3, 384 -> 6, 768 -> 12, 1024 -> 16, 1536 -> 24), else head width 64 (every DINOv2 model).
    """
    D = sd["cls_token"].shape[-1]
    patch = sd["patch_embed.proj.weight"].shape[-1]
    n = sd["pos_embed"].shape[1]
    grid = math.isqrt(n)
    if grid * grid != n:
        raise ValueError(f"position embedding of {n} patches is not a square grid")
    arch = next((a for a, (d, _, _) in ARCHS.items() if d == D), "custom")
    if num_heads is None:
        num_heads = {d: h for d, h, _ in ARCHS.values()} | {1536: 24}
        num_heads = num_heads.get(D, max(1, D // 64))
    if arch != "custom" and ARCHS[arch][1] != num_heads:
        arch = "custom"
    values: dict[str, object] = {
        "arch": arch, "patch_size": patch, "img_size": grid * patch, "depth": block_count(sd), "embed_dim": D,
        "num_heads": num_heads, "mlp_ratio": sd["blocks.0.mlp.fc1.weight"].shape[0] / D,
        "num_register_tokens": sd["reg_token"].shape[1] if "reg_token" in sd else 0,
        "layer_scale_init": 1e-5 if "blocks.0.ls1.gamma" in sd else None,
    }
    values.update(fields)
    return BackboneSpec.from_dict(values)
