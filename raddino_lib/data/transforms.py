"""Evaluation preprocessing: the deterministic transform every frozen-encoder probe uses.

RAD-DINO (PAPERS.md, model card of ``microsoft/rad-dino``): resize so the
shorter side is 518 (bicubic), center-crop 518 × 518, min–max scale, then
normalize with the checkpoint's mean / std (read from the HF folder's
``preprocessor_config.json`` — never hard-coded). Small profiles use the same
steps at 32–224 px.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
RAD_DINO_SIZE = 518  # shorter side and crop of the public RAD-DINO checkpoint


@dataclass(frozen=True)
class EvalTransform:
    """(1, H, W) in [0, 1] → (3, size, size) normalized; ``.mask`` applies the same geometry to (H, W)."""

    size: int = 224  # output side; 518 for the public RAD-DINO checkpoint, 32–96 for smoke / cpu profiles
    mean: Sequence[float] = IMAGENET_MEAN  # per-channel mean of the backbone's pretraining (3 values or 1)
    std: Sequence[float] = IMAGENET_STD  # per-channel std of the backbone's pretraining (3 values or 1)

    def __post_init__(self) -> None:
        if int(self.size) <= 0:
            raise ValueError(f"EvalTransform size must be a positive integer, got {self.size}")
        for name in ("mean", "std"):
            values = tuple(float(v) for v in getattr(self, name))
            if len(values) == 1:
                values = values * 3
            if len(values) != 3:
                raise ValueError(f"EvalTransform {name} needs 1 or 3 values, got {values}")
            object.__setattr__(self, name, values)
        if min(self.std) <= 0:
            raise ValueError(f"EvalTransform std must be positive, got {self.std}")

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """(1, H, W) or (H, W) → (3, size, size)."""
        x = _as_chw(image).float()[None]  # (1, 1, H, W)
        x = F.interpolate(x, size=self._resized(x.shape[-2:]), mode="bicubic", align_corners=False, antialias=True)
        x = self._crop(x)[0]  # (1, S, S)
        lo, hi = x.amin(), x.amax()
        x = (x - lo) / (hi - lo) if hi > lo else torch.zeros_like(x)  # per-image min–max to [0, 1]
        x = x.expand(3, -1, -1)  # (3, S, S)
        mean = torch.tensor(self.mean, dtype=x.dtype).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype).view(3, 1, 1)
        return (x - mean) / std

    def mask(self, mask: torch.Tensor) -> torch.Tensor:
        """(H, W) or (1, H, W) mask → (size, size) float, nearest-neighbour, same resize and crop as the image."""
        return self.masks(_as_chw(mask))[0]

    def masks(self, masks: torch.Tensor) -> torch.Tensor:
        """(K, H, W) masks of one image → (K, size, size) float, as ``mask`` on each (nearest neighbour works
        channel by channel)."""
        if masks.ndim != 3:
            raise ValueError(f"expected a (K, H, W) stack of masks, got shape {tuple(masks.shape)}")
        if len(masks) == 0:
            return torch.zeros((0, self.size, self.size))
        m = masks.float()[None]  # (1, K, H, W)
        m = F.interpolate(m, size=self._resized(m.shape[-2:]), mode="nearest-exact")
        return self._crop(m)[0]  # (K, S, S)

    def _resized(self, hw: Sequence[int]) -> tuple[int, int]:
        """Shorter side → size, aspect ratio kept (the longer side rounded)."""
        h, w = int(hw[0]), int(hw[1])
        if h <= w:
            return self.size, max(self.size, round(w * self.size / h))
        return max(self.size, round(h * self.size / w)), self.size

    def _crop(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        top, left = (h - self.size) // 2, (w - self.size) // 2
        return x[..., top:top + self.size, left:left + self.size]


def _as_chw(image: torch.Tensor) -> torch.Tensor:
    if image.ndim == 2:
        return image[None]
    if image.ndim == 3 and image.shape[0] == 1:
        return image
    raise ValueError(f"expected a (1, H, W) or (H, W) tensor, got shape {tuple(image.shape)}")


def rad_dino_transform(size: int = RAD_DINO_SIZE, mean: Sequence[float] = IMAGENET_MEAN,
                       std: Sequence[float] = IMAGENET_STD) -> EvalTransform:
    """The RAD-DINO evaluation preset (518 px); pass the checkpoint's mean / std, or use ``eval_transform_for``."""
    return EvalTransform(size=size, mean=mean, std=std)


def eval_transform_for(backbone: Any, size: int | None = None) -> EvalTransform:
    """EvalTransform with the backbone's normalization.

    ``backbone`` is a model object, a folder (HF, with ``preprocessor_config.json``)
    or a ``.safetensors`` file written by ``save_backbone`` (JSON spec in the
    metadata key "raddino"). Missing metadata → ImageNet mean / std. ``size``
    None → the backbone's own crop / img_size, else 224.
    """
    meta = _metadata(backbone)
    mean = meta.get("image_mean") or IMAGENET_MEAN
    std = meta.get("image_std") or IMAGENET_STD
    if size is None:
        size = int(meta.get("size") or 224)
    return EvalTransform(size=int(size), mean=mean, std=std)


def _metadata(backbone: Any) -> dict[str, Any]:
    """image_mean / image_std / size from whatever describes the backbone ({} if nothing does)."""
    if isinstance(backbone, str | os.PathLike):
        path = Path(backbone)
        if path.is_dir():
            from raddino_lib.models.encoder_folders import FOREIGN_KINDS, detect_encoder, encoder_preprocessing

            if detect_encoder(path, strict=False) in FOREIGN_KINDS:  # timm / open_clip / CLIP folder configs
                return encoder_preprocessing(path)
            return _hf_folder_meta(path)
        if path.suffix == ".safetensors" and path.is_file():  # own file, else the HF folder it sits in
            return _safetensors_meta(path) or _hf_folder_meta(path.parent)
        if not path.exists():
            raise FileNotFoundError(f"backbone '{path}' not found (expected a .safetensors file or an HF folder)")
        return {}
    return _model_meta(backbone)


def _hf_folder_meta(folder: Path) -> dict[str, Any]:
    config = folder / "preprocessor_config.json"
    if not config.is_file():
        return {}
    try:
        cfg = json.loads(config.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{config} is not valid JSON ({err}); re-download the checkpoint folder") from err
    crop = cfg.get("crop_size") or cfg.get("size") or {}
    size = crop.get("height") or crop.get("shortest_edge") if isinstance(crop, dict) else crop
    return {"image_mean": cfg.get("image_mean"), "image_std": cfg.get("image_std"), "size": size}


def _safetensors_meta(path: Path) -> dict[str, Any]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
    if "raddino" not in metadata:
        return {}
    value = json.loads(metadata["raddino"])
    for spec in (value, value.get("backbone"), value.get("spec")):  # the spec itself, or nested (checkpoints)
        if isinstance(spec, dict) and spec.get("image_mean") and spec.get("image_std"):
            return {"image_mean": spec["image_mean"], "image_std": spec["image_std"], "size": spec.get("img_size")}
    return {}


def _model_meta(model: Any) -> dict[str, Any]:
    if hasattr(model, "spec"):  # the package's own backbones (their module is loaded already: no import cost)
        try:
            from raddino_lib.models.backbone import backbone_spec

            spec = backbone_spec(model)
            if spec.get("image_mean") and spec.get("image_std"):
                return {"image_mean": spec["image_mean"], "image_std": spec["image_std"], "size": spec.get("img_size")}
        except (ImportError, AttributeError, KeyError, TypeError, ValueError):
            pass
    cfg = getattr(model, "pretrained_cfg", None) or {}  # timm models
    img_size = getattr(getattr(model, "patch_embed", None), "img_size", None)  # timm: (H, W) the model was built for
    size = img_size[0] if isinstance(img_size, tuple | list) else img_size
    return {"image_mean": cfg.get("mean"), "image_std": cfg.get("std"), "size": size}
