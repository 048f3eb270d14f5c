"""Image–text (two-tower) models for zero-shot classification and retrieval, whatever library wrote them.

One interface, :class:`TwoTower`: ``encode_image(images)`` and ``encode_text(texts)`` give unit-norm embeddings
in the shared space, and ``image_mean`` / ``image_std`` / ``image_size`` say how the images must be prepared (read
from the folder, never assumed). :func:`load_two_tower` detects the layout:

* ``raddino_clip`` — this package's CLIP baseline: ``clip_model.safetensors`` (the file, or the run folder of
  ``train_clip``) with its tokenizer (``tokenizer/`` beside it);
* ``open_clip`` — ``open_clip_config.json`` + ``open_clip_model.safetensors`` (BiomedCLIP's layout); the text is
  tokenised by the folder's own Hugging Face tokenizer files when the text tower is a Hugging Face model, else by
  open_clip's bundled BPE tokenizer;
* ``hf_clip`` — a Hugging Face ``CLIPModel`` folder (``model_type`` "clip") with its tokenizer files.

Nothing is downloaded: every file comes from the folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

KINDS = ("raddino_clip", "open_clip", "hf_clip")
LAYOUTS = ("supported two-tower layouts: raddino_clip (clip_model.safetensors of `raddino train-clip` with its "
           "tokenizer beside it, or its run folder); open_clip (open_clip_config.json + open_clip_model.safetensors, "
           "e.g. BiomedCLIP); hf_clip (a Hugging Face CLIPModel folder: config.json with model_type 'clip', "
           "model.safetensors and tokenizer files)")


class TwoTower(nn.Module):
    """Unit-norm image and text embeddings of one model; subclasses wrap each library."""

    kind = ""
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_size: int = 224

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:  # (B, 3, S, S) -> (B, P)
        raise NotImplementedError

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:  # B texts -> (B, P)
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


class RaddinoCLIP(TwoTower):
    """This package's :class:`~raddino_lib.models.clip.CLIPModel` and the tokenizer it was trained with."""

    kind = "raddino_clip"

    def __init__(self, model: nn.Module, tokenizer) -> None:
        super().__init__()
        self.model, self.tokenizer = model, tokenizer
        spec = model.image_encoder.spec
        self.image_mean, self.image_std, self.image_size = tuple(spec.image_mean), tuple(spec.image_std), spec.img_size

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(images)

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        return self.model.encode_text(self.tokenizer(list(texts)).to(self.device))


class OpenCLIP(TwoTower):
    """An open_clip model (both towers) with its tokenizer."""

    kind = "open_clip"

    def __init__(self, model: nn.Module, tokenize, mean, std, size: int) -> None:
        super().__init__()
        self.model, self.tokenize = model, tokenize
        self.image_mean, self.image_std, self.image_size = tuple(mean), tuple(std), int(size)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.model.encode_image(images), dim=-1)

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        return F.normalize(self.model.encode_text(self.tokenize(list(texts)).to(self.device)), dim=-1)


class HFCLIP(TwoTower):
    """A Hugging Face ``CLIPModel`` and its tokenizer; images of another size interpolate the position table."""

    kind = "hf_clip"

    def __init__(self, model: nn.Module, tokenizer, mean, std, size: int) -> None:
        super().__init__()
        self.model, self.tokenizer = model, tokenizer
        self.image_mean, self.image_std, self.image_size = tuple(mean), tuple(std), int(size)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        out = self.model.get_image_features(pixel_values=images, interpolate_pos_encoding=True)
        return F.normalize(_features(out), dim=-1)

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        limit = int(self.model.config.text_config.max_position_embeddings)
        batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=limit, return_tensors="pt")
        out = self.model.get_text_features(input_ids=batch["input_ids"].to(self.device),
                                           attention_mask=batch["attention_mask"].to(self.device))
        return F.normalize(_features(out), dim=-1)


def _features(out) -> torch.Tensor:
    """transformers returns the projected features as a tensor (v4) or as ``pooler_output`` (v5)."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


# ===== detection and loading =====

def detect_two_tower(path: str | os.PathLike) -> str:
    """The layout of ``path`` (one of :data:`KINDS`); a path in none of them fails listing the supported ones."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"two-tower model {path} does not exist; {LAYOUTS}")
    if path.is_file():
        if path.name == "clip_model.safetensors" or path.suffix == ".safetensors" and _has_clip_meta(path):
            return "raddino_clip"
        path = path.parent
    if (path / "clip_model.safetensors").is_file():
        return "raddino_clip"
    if (path / "open_clip_config.json").is_file():
        return "open_clip"
    config = path / "config.json"
    if config.is_file() and json.loads(config.read_text()).get("model_type") == "clip":
        return "hf_clip"
    found = sorted(p.name for p in path.iterdir())[:12] if path.is_dir() else [path.name]
    raise ValueError(f"{path}: not a two-tower model (found {found}); {LAYOUTS}")


def _has_clip_meta(path: Path) -> bool:
    from safetensors import safe_open

    from raddino_lib.models.clip import META_KEY

    with safe_open(str(path), framework="pt") as f:
        return META_KEY in (f.metadata() or {})


def load_two_tower(path: str | os.PathLike) -> TwoTower:
    """Both towers of ``path`` in eval mode, behind the :class:`TwoTower` interface."""
    kind = detect_two_tower(path)
    path = Path(path)
    if kind == "raddino_clip":
        return _load_raddino(path if path.is_file() else path / "clip_model.safetensors").eval()
    folder = path if path.is_dir() else path.parent
    return (_load_open_clip(folder) if kind == "open_clip" else _load_hf_clip(folder)).eval()


def _load_raddino(weights: Path) -> RaddinoCLIP:
    from raddino_lib.data.tokenizer import load_tokenizer
    from raddino_lib.models.clip import load_clip

    if (weights.parent / "tokenizer").is_dir():
        return RaddinoCLIP(load_clip(weights), load_tokenizer(weights.parent / "tokenizer"))
    raise FileNotFoundError(f"{weights}: no tokenizer/ beside it (train_clip writes one into the run folder; keep "
                            "the model and its tokenizer together)")


def _load_open_clip(folder: Path) -> OpenCLIP:
    from open_clip.tokenizer import HFTokenizer, SimpleTokenizer

    from raddino_lib.models.backbone import IMAGENET_MEAN, IMAGENET_STD
    from raddino_lib.models.encoder_folders import load_open_clip

    model = load_open_clip(folder)
    config = json.loads((folder / "open_clip_config.json").read_text())
    model_cfg, pre = config.get("model_cfg", config), config.get("preprocess_cfg") or {}
    text_cfg = model_cfg.get("text_cfg", {})
    context = int(text_cfg.get("context_length", 77))
    if "hf_tokenizer_name" in text_cfg or "hf_model_name" in text_cfg:
        if not any((folder / f).is_file() for f in ("tokenizer.json", "vocab.txt", "tokenizer_config.json")):
            raise FileNotFoundError(f"{folder}: the text tower is a Hugging Face model but the folder holds no "
                                    "tokenizer files (tokenizer.json / vocab.txt); save the tokenizer beside it")
        tokenize = HFTokenizer(str(folder), context_length=context)
    else:
        tokenize = SimpleTokenizer(context_length=context)  # bundled with open_clip: no download
    size = model_cfg.get("vision_cfg", {}).get("image_size", 224)
    size = size[0] if isinstance(size, list | tuple) else size
    return OpenCLIP(model, tokenize, pre.get("mean") or IMAGENET_MEAN, pre.get("std") or IMAGENET_STD, size)


def _load_hf_clip(folder: Path) -> HFCLIP:
    from transformers import AutoTokenizer, CLIPModel

    from raddino_lib.models.hf import _read_normalisation

    model = CLIPModel.from_pretrained(str(folder), local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    mean, std = _read_normalisation(folder)
    return HFCLIP(model, tokenizer, mean, std, model.config.vision_config.image_size)
