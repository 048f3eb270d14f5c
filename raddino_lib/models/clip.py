"""CLIP-style image–report model: a timm ViT image tower, a BERT text tower (``models.text``), linear projections
and the loss.

``encode_image`` / ``encode_text`` return L2-normalized (B, proj_dim)
embeddings, so ``image @ text.T`` is the cosine-similarity matrix. The image
tower is a backbone from :func:`raddino_lib.models.create_backbone` (its [CLS]
token is the image embedding), saved on its own with ``save_backbone`` so the
probes read it like any other encoder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from raddino_lib.atomic import atomic_path
from raddino_lib.losses.clip import CLIPLoss
from raddino_lib.models.backbone import backbone_from_spec, backbone_spec
from raddino_lib.models.text import BertTextEncoder, text_tower_from_spec

META_KEY = "raddino_clip"


class CLIPModel(nn.Module):
    """Two towers + projections; ``criterion`` owns the learnable temperature (``logit_scale``)."""

    def __init__(self, image_encoder: nn.Module, text_encoder: BertTextEncoder, proj_dim: int = 128,
                 init_temperature: float = 0.07) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self.image_proj = nn.Linear(image_encoder.embed_dim, proj_dim, bias=False)
        self.text_proj = nn.Linear(text_encoder.width, proj_dim, bias=False)
        self.criterion = CLIPLoss(init_temperature)
        self.proj_dim = proj_dim

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, S, S) -> (B, proj_dim), unit norm, from the ViT's [CLS] token."""
        cls = self.image_encoder.forward_features(images)[:, 0]  # (B, D)
        return F.normalize(self.image_proj(cls), dim=-1)

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, L) -> (B, proj_dim), unit norm."""
        return F.normalize(self.text_proj(self.text_encoder(ids)), dim=-1)

    def forward(self, images: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """The symmetric InfoNCE loss of a batch of B image–report pairs (scalar)."""
        return self.criterion(self.encode_image(images), self.encode_text(ids))

    def spec(self) -> dict[str, Any]:
        return {"image": backbone_spec(self.image_encoder), "text": self.text_encoder.spec(),
                "proj_dim": self.proj_dim}


def save_clip(model: CLIPModel, path: str | os.PathLike) -> Path:
    """Both towers, projections and temperature in one safetensors file with the spec in its metadata."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={META_KEY: json.dumps(model.spec(), sort_keys=True)})
    return Path(path)


def load_clip(path: str | os.PathLike) -> CLIPModel:
    """Rebuild a :class:`CLIPModel` written by :func:`save_clip` (eval mode)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CLIP model {path} not found (train_clip writes clip_model.safetensors)")
    with safe_open(str(path), framework="pt") as f:
        raw = (f.metadata() or {}).get(META_KEY)
    if raw is None:
        raise ValueError(f"{path}: no '{META_KEY}' metadata; not a CLIP model saved by save_clip")
    spec = json.loads(raw)
    model = CLIPModel(backbone_from_spec(spec["image"]), text_tower_from_spec(spec["text"]), spec["proj_dim"])
    model.load_state_dict(load_file(str(path)))
    return model.eval()
