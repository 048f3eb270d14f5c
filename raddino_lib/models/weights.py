"""Backbone files: save, load (any supported format), digest.

``save_backbone`` writes one safetensors file whose metadata key ``"raddino"`` holds the JSON
:class:`~raddino_lib.models.backbone.BackboneSpec` (and ``"raddino_meta"`` any caller metadata).
``load_backbone`` reads, without ever unpickling:

1. a file written by ``save_backbone``;
2. a Hugging Face ``Dinov2Model`` folder (config.json + model.safetensors; the public RAD-DINO release);
3. an original DINOv2 state dict (``backbone_compatible.safetensors``; the spec is inferred from shapes);
4. a training checkpoint whose keys start with ``teacher.backbone.`` (spec from its ``"raddino"`` metadata,
   else inferred from shapes).

A folder that is not a Hugging Face one may hold ``backbone.safetensors`` (a pretraining run dir) or a
single ``.safetensors`` file (a checkpoint dir ``step_*/``); that file is read.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from raddino_lib.atomic import atomic_path
from raddino_lib.models.backbone import BackboneSpec, DinoVisionTransformer, backbone_from_spec, backbone_spec
from raddino_lib.models.convert import StateDict, dinov2_to_timm, infer_spec, is_dinov2_layout
from raddino_lib.models.hf import is_hf_folder, read_hf_folder

META_KEY = "raddino"  # safetensors metadata entry holding the JSON spec
USER_META_KEY = "raddino_meta"  # caller metadata passed to save_backbone(meta=...)
TEACHER_PREFIX = "teacher.backbone."
ACCEPTED_FORMATS = (
    "accepted backbone formats: (1) a .safetensors file written by raddino save_backbone; "
    "(2) a Hugging Face Dinov2Model folder with config.json + model.safetensors (e.g. microsoft/rad-dino); "
    "(3) an original DINOv2 state dict in safetensors (backbone_compatible.safetensors); "
    "(4) a raddino training checkpoint (.safetensors with 'teacher.backbone.*' keys); "
    "(5) a timm, open_clip or Hugging Face CLIP folder (raddino_lib.models.encoder_folders)"
)


class BackboneFormatError(ValueError):
    """A path that is not one of the accepted backbone formats."""


def save_backbone(model: nn.Module, path: str | os.PathLike, meta: dict[str, Any] | None = None) -> Path:
    """Write ``model``'s weights + spec (+ ``meta``, JSON-serialisable) to one safetensors file, atomically."""
    model = _unwrap(model)
    metadata = {META_KEY: json.dumps(backbone_spec(model), sort_keys=True)}
    if meta is not None:
        metadata[USER_META_KEY] = json.dumps(meta, sort_keys=True, default=str)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)
    return Path(path)


def load_backbone(
    path: str | os.PathLike, img_size: int | None = None, num_heads: int | None = None
) -> DinoVisionTransformer:
    """Load a backbone (eval mode) from any accepted format.

    img_size: store the position embedding at this size (resampled like ``Dinov2Model``); None keeps the file's.
    num_heads: only for formats without a spec (DINOv2 state dicts) whose width is not a standard ViT width.
    """
    state, spec = read_backbone(path, num_heads=num_heads)
    model = backbone_from_spec(spec)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise BackboneFormatError(f"{path}: weights do not fit the backbone spec {spec.to_dict()}: {err}") from err
    missing = [k for k in missing if k != "mask_token"]  # absent from some releases; zeros as in DINOv2
    if missing or unexpected:
        raise BackboneFormatError(f"{path}: weights do not fit the backbone spec {spec.to_dict()}: "
                                  f"missing {missing[:8]}, unexpected {unexpected[:8]}")
    if img_size and img_size != spec.img_size:
        model.set_img_size(img_size)
    return model.eval()


def read_backbone_spec(path: str | os.PathLike, num_heads: int | None = None) -> dict[str, Any]:
    """The spec dict (arch, patch_size, img_size, ..., image_mean, image_std) of any accepted backbone path."""
    return read_backbone(path, num_heads=num_heads)[1].to_dict()


def read_backbone_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The ``meta`` dict given to :func:`save_backbone` ({} when there is none)."""
    raw = _safetensors_metadata(Path(path)).get(USER_META_KEY)
    return json.loads(raw) if raw else {}


def read_backbone(path: str | os.PathLike, num_heads: int | None = None) -> tuple[StateDict, BackboneSpec]:
    """Weights in this package's layout and the spec, from any accepted backbone path."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"backbone {path} does not exist; {ACCEPTED_FORMATS}")
    if path.is_file() and path.name in ("config.json", "model.safetensors") and is_hf_folder(path.parent):
        path = path.parent
    from raddino_lib.models.encoder_folders import FOREIGN_KINDS, detect_encoder, read_encoder_folder

    if detect_encoder(path, strict=False) in FOREIGN_KINDS:  # timm, open_clip, Hugging Face CLIP folders
        return read_encoder_folder(path)
    if path.is_dir():
        if is_hf_folder(path):
            return read_hf_folder(path)
        path = _single_weights_file(path)
    metadata = _safetensors_metadata(path)
    state = _read_tensors(path)
    spec_fields = _spec_from_metadata(metadata.get(META_KEY))
    state = {_strip_wrappers(k): v for k, v in state.items()}
    if any(k.startswith(TEACHER_PREFIX) for k in state):
        state = {k[len(TEACHER_PREFIX):]: v for k, v in state.items() if k.startswith(TEACHER_PREFIX)}
    if not {"cls_token", "pos_embed", "patch_embed.proj.weight"} <= state.keys():
        raise BackboneFormatError(f"{path}: no ViT backbone weights found (keys start {sorted(state)[:5]}); "
                                  f"{ACCEPTED_FORMATS}")
    if is_dinov2_layout(state):
        state = dinov2_to_timm(state)
    if spec_fields is not None:
        return state, BackboneSpec.from_dict(spec_fields)
    return state, infer_spec(state, num_heads=num_heads)


def file_digest(path: str | os.PathLike, length: int = 16) -> str:
    """Short sha256 of a file's bytes, or of a folder's files (sorted relative names + bytes; hidden skipped)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"cannot digest {path}: it does not exist")
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.is_file() and not any(s.startswith(".") for s in p.relative_to(path).parts)
    )
    for f in files:
        if f != path:
            h.update(f.relative_to(path).as_posix().encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:length]


def _single_weights_file(folder: Path) -> Path:
    """A pretraining run dir (backbone.safetensors) or checkpoint dir (one .safetensors) -> that file."""
    if (folder / "backbone.safetensors").is_file():
        return folder / "backbone.safetensors"
    files = sorted(folder.glob("*.safetensors"))
    if len(files) != 1:
        raise BackboneFormatError(f"{folder} is a folder without a Dinov2 config.json + model.safetensors, "
                                  f"backbone.safetensors or a single .safetensors file (found {[f.name for f in files]}"
                                  f"); {ACCEPTED_FORMATS}")
    return files[0]


def _strip_wrappers(key: str) -> str:
    """Drop DDP ``module.`` and ``torch.compile`` ``_orig_mod.`` segments from a state-dict key."""
    return ".".join(part for part in key.split(".") if part not in ("module", "_orig_mod"))


def _unwrap(model: nn.Module) -> nn.Module:
    """Strip DDP (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "_orig_mod", None) or model.module
    return model


def _safetensors_metadata(path: Path) -> dict[str, str]:
    _refuse_non_safetensors(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError) as err:
        raise BackboneFormatError(f"{path} is not a readable safetensors file ({err}); {ACCEPTED_FORMATS}") from err


def _read_tensors(path: Path) -> StateDict:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def _refuse_non_safetensors(path: Path) -> None:
    """Recognise pickles / zip archives by their first bytes and refuse them with advice."""
    with open(path, "rb") as fh:
        head = fh.read(9)
    # A safetensors file is an 8-byte little-endian header length and a JSON header: "{" at byte 8. That
    # structure is checked first, because a header length whose low byte is 0x80 (or 0x50 0x4B) would
    # otherwise read as a pickle's (or a zip archive's) magic bytes.
    if len(head) == 9 and head[8:9] == b"{":
        return
    if head[:2] == b"PK" or head[:1] == b"\x80":
        raise BackboneFormatError(
            f"{path} is a PyTorch pickle (.pt/.pth/.bin); pickles can execute code and are never loaded here. "
            "Convert it once, in an environment you trust, with safetensors.torch.save_file(state_dict, "
            f"'backbone.safetensors'); {ACCEPTED_FORMATS}")
    raise BackboneFormatError(f"{path} is not a safetensors file; {ACCEPTED_FORMATS}")


def _spec_from_metadata(raw: str | None) -> dict[str, Any] | None:
    """The spec inside a ``"raddino"`` metadata entry: the spec itself, or nested under "backbone"/"spec"."""
    if not raw:
        return None
    value = json.loads(raw)
    for candidate in (value, value.get("backbone"), value.get("spec")):
        if isinstance(candidate, dict) and "patch_size" in candidate and "embed_dim" in candidate:
            return candidate
    return None

