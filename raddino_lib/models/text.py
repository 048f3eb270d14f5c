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
