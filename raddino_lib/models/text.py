"""A small text transformer for report embeddings (the text tower of the CLIP baseline).

Token + learned position embeddings -> ``nn.TransformerEncoder`` (pre-norm) ->
final LayerNorm -> the [CLS] token (position 0) as the report embedding.
Padding ([PAD] = id 0) is masked out of attention. A stand-in for CXR-BERT
(BioViL, COLIPRI): same role, trained from scratch on the report corpus.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass
class TextConfig:
    vocab_size: int = 5000  # set from the tokenizer
    max_length: int = 64  # tokens per report, [CLS] and [SEP] included; must match the tokenizer
    width: int = 128  # token width; 256+ for real report corpora
    depth: int = 2  # transformer blocks; CXR-BERT has 12
    heads: int = 4  # attention heads (width must divide)
    mlp_ratio: float = 4.0  # MLP hidden = mlp_ratio * width
    dropout: float = 0.0  # raise to ~0.1 on small real corpora to fight overfitting
    pad_id: int = 0  # [PAD]

    def __post_init__(self) -> None:
        if self.width % self.heads:
            raise ValueError(f"text width {self.width} must be divisible by heads {self.heads}")
        if self.vocab_size < 5 or self.max_length < 3 or self.depth < 1:
            raise ValueError(f"text config out of range: {asdict(self)}")


class TextTransformer(nn.Module):
    """ids (B, L) int64 -> report embeddings (B, width) from the [CLS] position."""

    def __init__(self, cfg: TextConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.token_embed = nn.Embedding(cfg.vocab_size, cfg.width, padding_idx=cfg.pad_id)
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.max_length, cfg.width))
        layer = nn.TransformerEncoderLayer(cfg.width, cfg.heads, int(cfg.mlp_ratio * cfg.width), cfg.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.width)
        nn.init.normal_(self.token_embed.weight, std=0.02)
        nn.init.normal_(self.pos_embed, std=0.01)

    @property
    def width(self) -> int:
        return self.cfg.width

    def forward_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, L) -> token features (B, L, width) after the final norm."""
        B, L = ids.shape
        if L > self.cfg.max_length:
            raise ValueError(f"sequence length {L} exceeds the text encoder's max_length {self.cfg.max_length}")
        x = self.token_embed(ids) + self.pos_embed[:, :L]  # (B, L, width)
        x = self.encoder(x, src_key_padding_mask=ids == self.cfg.pad_id)  # (B, L, width)
        return self.norm(x)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, L) -> (B, width): [CLS] pooling. Trailing all-padding columns are dropped first (same result,
        less compute: reports are much shorter than max_length)."""
        length = int((ids != self.cfg.pad_id).sum(dim=1).max().clamp(min=1))
        return self.forward_tokens(ids[:, :length])[:, 0]


# ===== BERT (CXR-BERT's architecture) =====

class BertTextEncoder(nn.Module):
    """A ``transformers`` ``BertModel`` as the text tower: ids (B, L) -> (B, width), its [CLS] token.

    :meth:`from_config` builds a small BERT from scratch (CXR-BERT's architecture at a CPU size);
    :meth:`from_pretrained` reads a local BERT folder (CXR-BERT or any ``BertModel``). Padding is masked out of
    attention, and trailing all-padding columns are dropped first (same result, less compute).
    """

    def __init__(self, bert: nn.Module, pad_id: int = 0) -> None:
        super().__init__()
        self.bert = bert
        self.pad_id = pad_id

    @classmethod
    def from_config(cls, vocab_size: int, max_length: int, width: int = 128, depth: int = 2, heads: int = 4,
                    mlp_ratio: float = 4.0, dropout: float = 0.0, pad_id: int = 0) -> BertTextEncoder:
        from transformers import BertConfig, BertModel

        if width % heads:
            raise ValueError(f"text width {width} must be divisible by heads {heads}")
        config = BertConfig(vocab_size=vocab_size, hidden_size=width, num_hidden_layers=depth,
                            num_attention_heads=heads, intermediate_size=int(mlp_ratio * width),
                            max_position_embeddings=max_length, hidden_dropout_prob=dropout,
                            attention_probs_dropout_prob=dropout, pad_token_id=pad_id)
        return cls(BertModel(config, add_pooling_layer=False), pad_id)

    @classmethod
    def from_pretrained(cls, folder: str, pad_id: int = 0) -> BertTextEncoder:
        """A local BERT folder (config.json + weights); a non-BERT model or a missing folder fails clearly."""
        from pathlib import Path

        from transformers import AutoConfig, BertModel

        if not (Path(folder) / "config.json").is_file():
            raise FileNotFoundError(f"text_init {folder}: no config.json (expected a BERT folder such as CXR-BERT's)")
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        if config.model_type != "bert":
            raise ValueError(f"text_init {folder}: model_type {config.model_type!r}, expected 'bert' (CXR-BERT, "
                             "BiomedBERT, any BertModel folder)")
        return cls(BertModel.from_pretrained(folder, local_files_only=True, add_pooling_layer=False), pad_id)

    @property
    def width(self) -> int:
        return int(self.bert.config.hidden_size)

    @property
    def max_length(self) -> int:
        return int(self.bert.config.max_position_embeddings)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        keep = ids != self.pad_id
        length = int(keep.sum(dim=1).max().clamp(min=1))
        out = self.bert(input_ids=ids[:, :length], attention_mask=keep[:, :length].long())
        return out.last_hidden_state[:, 0]

    def spec(self) -> dict:
        return {"kind": "bert", "config": self.bert.config.to_dict(), "pad_id": self.pad_id}


def text_tower_spec(tower: nn.Module) -> dict:
    """What rebuilds a text tower (saved in the CLIP model's metadata)."""
    return tower.spec() if isinstance(tower, BertTextEncoder) else asdict(tower.cfg)


def text_tower_from_spec(spec: dict) -> nn.Module:
    """A text tower from :func:`text_tower_spec` (untrained weights; load the state dict after)."""
    if spec.get("kind") == "bert":
        from transformers import BertConfig, BertModel

        config = BertConfig.from_dict(spec["config"])
        return BertTextEncoder(BertModel(config, add_pooling_layer=False), spec["pad_id"])
    return TextTransformer(TextConfig(**spec))
