"""The text tower of the CLIP baseline and of COLIPRI: a ``transformers`` BERT (CXR-BERT's architecture), its [CLS]
token (or the mean of its token outputs) the report embedding. Built small from a config (trained from scratch on
the report corpus) or read from a local BERT folder (CXR-BERT, BioViL's text model, any ``BertModel``).
"""

from __future__ import annotations

import torch
from torch import nn

# "cls": the [CLS] token's output (CXR-BERT's report embedding); "mean": the mean over the report's tokens. Trained
# from scratch, a small BERT's [CLS] output is the same for every report at initialisation (cosine 1.0000 between
# the phantoms' CT reports), while the token mean already differs between them (0.993).
POOLS = ("cls", "mean")


class BertTextEncoder(nn.Module):
    """A ``transformers`` ``BertModel`` as the text tower: ids (B, L) -> (B, width), its [CLS] token or, with
    ``pool="mean"``, the mean of the non-padding token outputs.

    :meth:`from_config` builds a small BERT from scratch (CXR-BERT's architecture at a CPU size);
    :meth:`from_pretrained` reads a local BERT folder (CXR-BERT or any ``BertModel``). Padding is masked out of
    attention, and trailing all-padding columns are dropped first (same result, less compute).
    """

    def __init__(self, bert: nn.Module, pad_id: int = 0, pool: str = "cls") -> None:
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"text pooling {pool!r}: choose one of {POOLS}")
        self.bert = bert
        self.pad_id = pad_id
        self.pool = pool

    @classmethod
    def from_config(cls, vocab_size: int, max_length: int, width: int = 128, depth: int = 2, heads: int = 4,
                    mlp_ratio: float = 4.0, dropout: float = 0.0, pad_id: int = 0, pool: str = "cls"
                    ) -> BertTextEncoder:
        from transformers import BertConfig, BertModel

        if width % heads:
            raise ValueError(f"text width {width} must be divisible by heads {heads}")
        config = BertConfig(vocab_size=vocab_size, hidden_size=width, num_hidden_layers=depth,
                            num_attention_heads=heads, intermediate_size=int(mlp_ratio * width),
                            max_position_embeddings=max_length, hidden_dropout_prob=dropout,
                            attention_probs_dropout_prob=dropout, pad_token_id=pad_id)
        return cls(BertModel(config, add_pooling_layer=False), pad_id, pool)

    @classmethod
    def from_pretrained(cls, folder: str, pad_id: int = 0, pool: str = "cls") -> BertTextEncoder:
        """A local BERT folder (config.json + weights); a non-BERT model or a missing folder fails clearly."""
        from pathlib import Path

        from transformers import AutoConfig, BertModel

        if not (Path(folder) / "config.json").is_file():
            raise FileNotFoundError(f"text_init {folder}: no config.json (expected a BERT folder such as CXR-BERT's)")
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        if config.model_type != "bert":
            raise ValueError(f"text_init {folder}: model_type {config.model_type!r}, expected 'bert' (CXR-BERT, "
                             "BiomedBERT, any BertModel folder)")
        return cls(BertModel.from_pretrained(folder, local_files_only=True, add_pooling_layer=False), pad_id, pool)

    @property
    def width(self) -> int:
        return int(self.bert.config.hidden_size)

    @property
    def max_length(self) -> int:
        return int(self.bert.config.max_position_embeddings)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        keep = ids != self.pad_id
        length = int(keep.sum(dim=1).max().clamp(min=1))
        keep = keep[:, :length]
        hidden = self.bert(input_ids=ids[:, :length], attention_mask=keep.long()).last_hidden_state
        if self.pool == "cls":
            return hidden[:, 0]
        weight = keep.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weight).sum(1) / weight.sum(1).clamp(min=1)

    def spec(self) -> dict:
        return {"kind": "bert", "config": self.bert.config.to_dict(), "pad_id": self.pad_id, "pool": self.pool}


def text_tower_from_spec(spec: dict) -> BertTextEncoder:
    """A text tower from its :meth:`BertTextEncoder.spec` (untrained weights; load the state dict after)."""
    if spec.get("kind") != "bert":
        raise ValueError("this CLIP model was saved with the word-level text transformer of an older version, which "
                         "is no longer built; retrain it with `raddino train-clip`")
    from transformers import BertConfig, BertModel

    return BertTextEncoder(BertModel(BertConfig.from_dict(spec["config"]), add_pooling_layer=False), spec["pad_id"],
                           spec.get("pool", "cls"))  # saved before pooling was a choice: [CLS]
