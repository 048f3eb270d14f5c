"""CLS → patch self-attention of a timm ViT, the maps of DINO's Fig. 1.

DINO showed that the last-layer attention of the CLS token of a
self-supervised ViT segments the salient object without any labels; RAD-DINO
shows the same kind of maps for chest X-rays. Reading those maps off a model
that uses fused attention (``F.scaled_dot_product_attention``) is not
possible from the module's outputs, so we recompute them:

1. a forward pre-hook on ``blocks[layer].attn`` captures the attention's input
   ``norm1(x)`` (B, N, D) and stops the forward pass right there;
2. ``q, k`` come from the block's own ``qkv`` weights (and ``q_norm``/``k_norm``
   when the model has QK-norm), ``A = softmax(q kᵀ · scale)`` (B, heads, N, N);
3. the CLS row is read against the patch tokens only, skipping the CLS and any
   register tokens: (B, heads, h, w).

The maps are the raw attention probabilities: each CLS row sums to 1 over
*all* tokens, so a map sums to less than 1 when CLS or registers attract
attention. Metrics that want a distribution over patches renormalize.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _Captured(Exception):
    """Raised by the hook to stop the forward pass once the block input is known."""


def _grid_size(model: nn.Module, images: torch.Tensor) -> tuple[int, int]:
    height, width = images.shape[-2:]
    patch_embed = model.patch_embed
    if hasattr(patch_embed, "dynamic_feat_size"):
        return tuple(patch_embed.dynamic_feat_size((height, width)))
    p = patch_embed.patch_size
    return height // p[0], width // p[1]


def _block(model: nn.Module, layer: int) -> nn.Module:
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        raise TypeError(f"cls_attention: {type(model).__name__} has no 'blocks' (expected a timm VisionTransformer)")
    if not -len(blocks) <= layer < len(blocks):
        raise IndexError(f"cls_attention: layer {layer} out of range for a ViT with {len(blocks)} blocks")
    attn = getattr(blocks[layer], "attn", None)
    if attn is None or not isinstance(getattr(attn, "qkv", None), nn.Linear):
        raise TypeError(f"cls_attention: block {layer} has no attn.qkv Linear (timm Attention expected); "
                        "rotary or separate-projection attention is not supported")
    return attn


def block_attention_input(model: nn.Module, images: torch.Tensor, layer: int = -1) -> torch.Tensor:
    """Tokens (B, N, D) entering ``blocks[layer].attn`` (i.e. after ``norm1``), N = prefix + h*w."""
    attn = _block(model, layer)
    captured: list[torch.Tensor] = []

    def hook(_module: nn.Module, args: tuple, kwargs: dict) -> None:
        captured.append(args[0] if args else kwargs["x"])
        raise _Captured

    handle = attn.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        model.forward_features(images)
    except _Captured:
        pass
    finally:
        handle.remove()
    if not captured:
        raise RuntimeError(f"cls_attention: blocks[{layer}].attn was never called by forward_features")
    return captured[0]


def attention_probs(attn: nn.Module, x: torch.Tensor, n_queries: int | None = None) -> torch.Tensor:
    """Explicit ``softmax(q kᵀ · scale)`` of a timm ``Attention`` on its input x (B, N, D).

    Returns (B, heads, Q, N) for the first ``n_queries`` query tokens (None = all N); ``n_queries=1`` gives
    the CLS row without building the N x N matrix (1370 tokens at 518 px).
    """
    B, N, _ = x.shape
    qkv = attn.qkv(x).reshape(B, N, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)  # (3, B, H, N, hd)
    q, k = qkv[0][:, :, :n_queries], qkv[1]  # (B, H, Q, hd), (B, H, N, hd)
    q, k = attn.q_norm(q), attn.k_norm(k)  # per-token norms: slicing the queries first is exact
    logits = (q * attn.scale) @ k.transpose(-2, -1)  # (B, H, Q, N)
    return logits.float().softmax(dim=-1)


@torch.no_grad()
def cls_attention(model: nn.Module, images: torch.Tensor, layer: int = -1) -> torch.Tensor:
    """CLS → patch attention per head of ``model.blocks[layer]``.

    Args:
        model: a timm ``VisionTransformer`` with a class token (registers allowed).
        images: (B, 3, H, W) normalized like the model's inputs.
        layer: block index; negative counts from the end (-1 = last block).
    Returns:
        (B, heads, h, w) attention probabilities of the CLS query over the patch
        keys, h = H / patch_size, w = W / patch_size.
    """
    if getattr(model, "cls_token", None) is None:
        raise ValueError("cls_attention: the model has no class token (global_pool without CLS); nothing to read")
    attn = _block(model, layer)
    x = block_attention_input(model, images, layer)  # (B, N, D)
    probs = attention_probs(attn, x, n_queries=1)  # (B, H, 1, N): the CLS query (token 0) only
    h, w = _grid_size(model, images)
    n_prefix = model.num_prefix_tokens  # CLS + registers
    if probs.shape[-1] != n_prefix + h * w:
        raise RuntimeError(f"cls_attention: {probs.shape[-1]} tokens, expected {n_prefix} prefix + {h}x{w} patches")
    cls_row = probs[:, :, 0, n_prefix:]  # (B, H, h*w)
    return cls_row.reshape(images.shape[0], -1, h, w)


def cls_attention_batched(model: nn.Module, images: torch.Tensor, layer: int = -1, batch_size: int = 32,
                          device: str = "cpu") -> torch.Tensor:
    """:func:`cls_attention` in batches on ``device``; returns (B, heads, h, w) on the CPU."""
    model = model.to(device).eval()
    chunks = [cls_attention(model, images[i:i + batch_size].to(device), layer).cpu()
              for i in range(0, len(images), batch_size)]
    return torch.cat(chunks)


@torch.no_grad()
def all_layers_cls_attention(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """CLS → patch attention of every block and head in one forward pass: (B, L, heads, h, w).

    Pre-hooks on every block's ``attn`` record its input (the pass is not stopped), then each block's CLS row
    is recomputed as in :func:`cls_attention` (equal to it layer by layer).
    """
    if getattr(model, "cls_token", None) is None:
        raise ValueError("all_layers_cls_attention: the model has no class token; nothing to read")
    inputs: list[torch.Tensor] = []
    handles = [_block(model, i).register_forward_pre_hook(
        lambda _m, args, kwargs: inputs.append(args[0] if args else kwargs["x"]), with_kwargs=True)
        for i in range(len(model.blocks))]
    try:
        model.forward_features(images)
    finally:
        for handle in handles:
            handle.remove()
    h, w = _grid_size(model, images)
    n_prefix = model.num_prefix_tokens
    maps = [attention_probs(_block(model, i), x, n_queries=1)[:, :, 0, n_prefix:] for i, x in enumerate(inputs)]
    return torch.stack(maps, dim=1).reshape(images.shape[0], len(maps), -1, h, w)  # (B, L, heads, h, w)


def layer_maps(model: nn.Module, images: torch.Tensor, layers: list[int] | None = None) -> dict[int, torch.Tensor]:
    """Head-averaged maps at several depths: layer -> (B, h, w); ``layers`` None = every block."""
    layers = list(range(len(model.blocks))) if layers is None else layers
    return {layer: cls_attention(model, images, layer).mean(dim=1) for layer in layers}


def mean_heads(maps: torch.Tensor) -> torch.Tensor:
    """Average over heads: (B, heads, h, w) → (B, h, w)."""
    return maps.mean(dim=1)


def threshold_attention(maps: torch.Tensor, keep: float = 0.6) -> torch.Tensor:
    """DINO-style masks: the smallest set of patches holding a fraction ``keep`` of each map's mass.

    Args:
        maps: (..., h, w) non-negative maps (one per leading index).
        keep: fraction of the mass to keep, in (0, 1]; DINO's figures use 0.6.
    Returns:
        bool tensor of the same shape; True where the patch is kept.
    """
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"threshold_attention: keep must be in (0, 1], got {keep}")
    flat = maps.flatten(-2)  # (..., h*w)
    values, order = flat.sort(dim=-1, descending=True)
    mass = values.cumsum(-1) / values.sum(-1, keepdim=True).clamp_min(1e-12)
    before = mass - values / values.sum(-1, keepdim=True).clamp_min(1e-12)  # mass of the strictly larger patches
    kept_sorted = before < keep - 1e-9  # keep a patch while the mass so far is short of ``keep``
    kept = torch.zeros_like(kept_sorted).scatter(-1, order, kept_sorted)
    return kept.reshape(maps.shape)


def upsample_maps(maps: torch.Tensor, size: int | tuple[int, int], mode: str = "nearest") -> torch.Tensor:
    """Resize patch-level maps (..., h, w) to image size (..., H, W); "nearest" shows the patches as DINO does."""
    shape = maps.shape
    x = maps.reshape(-1, 1, *shape[-2:]).float()
    kwargs = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
    out = F.interpolate(x, size=size, mode=mode, **kwargs)
    return out.reshape(*shape[:-2], *out.shape[-2:])
