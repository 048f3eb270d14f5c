"""Backbones (timm ViTs with DINOv2 semantics), weight formats and conversion."""

from raddino_lib.models.backbone import (
    ARCHS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    PRESETS,
    BackboneSpec,
    DinoVisionTransformer,
    backbone_from_spec,
    backbone_spec,
    create_backbone,
    pool_tokens,
    split_tokens,
)
from raddino_lib.models.hf import export_hf
from raddino_lib.models.weights import (
    ACCEPTED_FORMATS,
    BackboneFormatError,
    file_digest,
    load_backbone,
    read_backbone_meta,
    read_backbone_spec,
    save_backbone,
)

__all__ = [
    "ACCEPTED_FORMATS",
    "ARCHS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PRESETS",
    "BackboneFormatError",
    "BackboneSpec",
    "DinoVisionTransformer",
    "backbone_from_spec",
    "backbone_spec",
    "create_backbone",
    "export_hf",
    "file_digest",
    "load_backbone",
    "pool_tokens",
    "read_backbone_meta",
    "read_backbone_spec",
    "save_backbone",
    "split_tokens",
]
