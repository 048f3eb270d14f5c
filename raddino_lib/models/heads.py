"""DINO projection head (DINOv2 ``DINOHead``) and loading of released head weights.

    x (B, in_dim) -> MLP -> (B, bottleneck_dim) -> L2-normalise -> weight-normalised linear -> (B, out_dim)

The last layer is weight-normalised (``W = g * V / ||V||`` row-wise) with ``g`` fixed to 1 and frozen, so every
prototype is a unit vector and the logits are cosine similarities; only the directions ``V`` learn. The
RAD-DINO release ships its head as ``dino_head.safetensors`` (in 768, out 65536, hidden 2048, bottleneck 256,
3 layers); ``load_dino_head`` reads it and files of this package alike.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

__all__ = ["DINOHead", "load_dino_head"]


def _build_mlp(
    nlayers: int, in_dim: int, bottleneck_dim: int, hidden_dim: int, use_bn: bool, bias: bool
) -> nn.Module:
    """Linear(-BN)-GELU blocks; ``nlayers`` Linear layers in total, the last one to ``bottleneck_dim``."""
    if nlayers == 1:
        return nn.Linear(in_dim, bottleneck_dim, bias=bias)
    layers: list[nn.Module] = []
    dims = [in_dim] + [hidden_dim] * (nlayers - 1)
    for d_in, d_out in zip(dims[:-1], dims[1:], strict=True):
        layers.append(nn.Linear(d_in, d_out, bias=bias))
        if use_bn:
            layers.append(nn.BatchNorm1d(d_out))
        layers.append(nn.GELU())
    layers.append(nn.Linear(hidden_dim, bottleneck_dim, bias=bias))
    return nn.Sequential(*layers)


class DINOHead(nn.Module):
    """DINO / iBOT head.

    Args:
        in_dim: backbone embedding size (768 for ViT-B).
        out_dim: number of prototypes K (65536 in DINOv2 / RAD-DINO; a few hundred for tiny runs).
        use_bn: BatchNorm after each hidden Linear (False in DINOv2).
        nlayers: number of Linear layers in the MLP (3 in DINOv2; 1 = a single projection).
        hidden_dim: MLP width (2048).
        bottleneck_dim: dimension of the L2-normalised embedding fed to the prototypes (256).
        mlp_bias: biases in the MLP's Linear layers.
        center_bottleneck: standardise the bottleneck over the batch (BatchNorm without affine) before the
            L2 normalisation, so that no direction shared by every image reaches the prototypes.
        train_prototype_norms: let the norms ``g`` of the prototypes learn (DINOv2's ``DINOHead`` does; DINO's
            ``norm_last_layer=True`` freezes them at 1, which bounds every logit to [-1, 1]).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int = 65536,
        use_bn: bool = False,
        nlayers: int = 3,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        mlp_bias: bool = True,
        train_prototype_norms: bool = False,
        center_bottleneck: bool = False,
    ) -> None:
        super().__init__()
        if min(in_dim, out_dim, hidden_dim, bottleneck_dim) < 1 or nlayers < 1:
            raise ValueError(
                f"DINOHead: dims and nlayers must be >= 1, got in_dim={in_dim} out_dim={out_dim} "
                f"hidden_dim={hidden_dim} bottleneck_dim={bottleneck_dim} nlayers={nlayers}"
            )
        self.in_dim, self.out_dim, self.nlayers = in_dim, out_dim, nlayers
        self.hidden_dim, self.bottleneck_dim, self.use_bn = hidden_dim, bottleneck_dim, use_bn
        self.mlp = _build_mlp(nlayers, in_dim, bottleneck_dim, hidden_dim, use_bn, mlp_bias)
        self.apply(self._init_weights)
        # batch-standardised bottleneck: what all images of the batch share is removed before the prototypes
        self.bottleneck_norm = nn.BatchNorm1d(bottleneck_dim, affine=False) if center_bottleneck else None
        self.uses_batch_stats = use_bn or center_bottleneck  # outputs depend on the batch (teacher: batch stats)
        self.last_layer = weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        g = self.last_layer.parametrizations.weight.original0  # (out_dim, 1): the norm of each prototype
        with torch.no_grad():
            g.fill_(1.0)
        g.requires_grad_(train_prototype_norms)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., in_dim) → logits (..., out_dim) (cosine similarities to the prototypes when g = 1)."""
        if self.uses_batch_stats and x.ndim != 2:
            return self.forward(x.flatten(0, -2)).unflatten(0, x.shape[:-1])  # BatchNorm1d needs (B*, C)
        x = self.mlp(x)  # (..., bottleneck_dim)
        if self.bottleneck_norm is not None:
            x = self.bottleneck_norm(x)
        eps = 1e-6 if x.dtype == torch.float16 else 1e-12
        x = nn.functional.normalize(x, dim=-1, p=2, eps=eps)  # (..., bottleneck_dim)
        return self.last_layer(x)  # (..., out_dim)


# ===== loading released weights =====

_PREFIXES = ("module.", "dino_head.", "ibot_head.", "head.", "student.", "teacher.")


def _strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for p in _PREFIXES:
                if key.startswith(p):
                    key, changed = key[len(p):], True
        out[key] = value
    return out


def _to_parametrized_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map old-style ``weight_g/weight_v`` (or a plain ``weight``) of the last layer to parametrization keys."""
    state = dict(state)
    g_key, v_key = "last_layer.parametrizations.weight.original0", "last_layer.parametrizations.weight.original1"
    if "last_layer.weight_v" in state:
        state[v_key] = state.pop("last_layer.weight_v")
        state[g_key] = state.pop("last_layer.weight_g")
    elif "last_layer.weight" in state:  # un-normalised weight W: V = W, g = ||W|| row-wise gives the same W
        w = state.pop("last_layer.weight")
        state[v_key], state[g_key] = w, w.norm(dim=1, keepdim=True)
    if g_key in state:
        state[g_key] = state[g_key].reshape(-1, 1)
    return state


def load_dino_head(
    path: str | Path,
    in_dim: int | None = None,
    out_dim: int | None = None,
    strict: bool = True,
    prefix: str = "",
) -> DINOHead:
    """Build a ``DINOHead`` from a safetensors state dict, its sizes read from the tensor shapes.

    Accepted keys (after stripping prefixes such as ``dino_head.`` / ``module.``): ``mlp.{i}.weight/bias`` and
    ``last_layer.weight_g/weight_v`` (DINOv2 / RAD-DINO release), ``last_layer.parametrizations.weight.
    original0/1`` (this package) or a plain ``last_layer.weight``. ``in_dim`` / ``out_dim``, when given, are
    checked against the file. ``prefix`` (e.g. ``"teacher.dino_head."``) selects one head from a file holding
    several (a training checkpoint). The norm ``g`` keeps the file's values and stays frozen.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"DINO head weights not found: {path} (expected e.g. dino_head.safetensors)")
    state = load_file(str(path))
    if prefix:
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not state:
            raise ValueError(f"{path}: no keys start with prefix {prefix!r}")
    state = _to_parametrized_keys(_strip_prefixes(state))
    linear_ids = sorted(
        int(m.group(1)) for k, v in state.items() if (m := re.fullmatch(r"mlp\.(\d+)\.weight", k)) and v.ndim == 2
    )
    if "mlp.weight" in state:
        linear_ids, first, last = [], state["mlp.weight"], state["mlp.weight"]
    elif linear_ids:
        first, last = state[f"mlp.{linear_ids[0]}.weight"], state[f"mlp.{linear_ids[-1]}.weight"]
    else:
        raise ValueError(f"{path}: no MLP weights found (keys like 'mlp.0.weight'); keys are {sorted(state)[:8]}")
    v_key = "last_layer.parametrizations.weight.original1"
    if v_key not in state:
        raise ValueError(f"{path}: no last layer found (expected 'last_layer.weight_v' or '{v_key}')")
    sizes = {
        "in_dim": first.shape[1],
        "out_dim": state[v_key].shape[0],
        "nlayers": max(len(linear_ids), 1),
        "hidden_dim": first.shape[0] if len(linear_ids) > 1 else 2048,
        "bottleneck_dim": last.shape[0],
        "use_bn": any(k.endswith("running_mean") for k in state),
        "mlp_bias": any(k.startswith("mlp.") and k.endswith(".bias") for k in state),
    }
    for name, expected in (("in_dim", in_dim), ("out_dim", out_dim)):
        if expected is not None and sizes[name] != expected:
            raise ValueError(f"{path}: head has {name}={sizes[name]} but {expected} was requested")
    head = DINOHead(**sizes)
    if len(linear_ids) == 1:  # a single-layer head stores its Linear as mlp.weight
        state = {k.replace(f"mlp.{linear_ids[0]}.", "mlp."): v for k, v in state.items()}
    missing, unexpected = head.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if strict and (missing or unexpected):
        raise ValueError(f"{path}: head keys do not match; missing {missing[:6]}, unexpected {unexpected[:6]}")
    head.last_layer.parametrizations.weight.original0.requires_grad_(False)
    return head
