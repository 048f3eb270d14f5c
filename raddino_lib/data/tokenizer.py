"""A word-level tokenizer trained on the report corpus itself (nothing is downloaded).

Reports are lowercased and split into words and punctuation marks; the
vocabulary keeps the most frequent words (``min_freq`` and ``max_size``).
Every sequence is encoded as ``[CLS] w1 w2 ... [SEP] [PAD] ...`` of a fixed
length, so the text encoder reads its summary from position 0 ([CLS]).

Radiology vocabularies are small (a few thousand words cover MIMIC-CXR
impressions), so a word-level vocabulary is a fair stand-in for the WordPiece
vocabulary of CXR-BERT on phantom and small real corpora.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from raddino_lib import atomic

PAD, CLS, SEP, UNK = "[PAD]", "[CLS]", "[SEP]", "[UNK]"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, CLS, SEP, UNK)  # ids 0, 1, 2, 3 in this order
_WORD = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")


def split_words(text: str) -> list[str]:
    """Lowercase and split into words (letters/digits) and single punctuation marks."""
    return _WORD.findall(str(text).lower())


@dataclass
class WordTokenizer:
    vocab: list[str]  # id -> token; the first four are SPECIAL_TOKENS
    max_length: int = 64  # sequence length after [CLS]/[SEP]/padding; reports longer than this are truncated

    def __post_init__(self) -> None:
        if tuple(self.vocab[:4]) != SPECIAL_TOKENS:
            raise ValueError(f"vocabulary must start with {SPECIAL_TOKENS}, got {self.vocab[:4]}")
        if len(set(self.vocab)) != len(self.vocab):
            raise ValueError("vocabulary has duplicate tokens")
        if self.max_length < 3:
            raise ValueError(f"max_length must be >= 3 ([CLS], one word, [SEP]), got {self.max_length}")
        self.index = {tok: i for i, tok in enumerate(self.vocab)}

    @property
    def pad_id(self) -> int:
        return 0

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @classmethod
    def train(cls, texts: Iterable[str], max_size: int = 5000, min_freq: int = 1,
              max_length: int = 64) -> WordTokenizer:
        """Build the vocabulary: special tokens, then words by decreasing frequency (ties alphabetical)."""
        counts = Counter(w for t in texts for w in split_words(t))
        words = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
        return cls(list(SPECIAL_TOKENS) + words[: max(0, max_size - len(SPECIAL_TOKENS))], max_length)

    def encode(self, text: str) -> list[int]:
        """``[CLS] words [SEP]`` padded with [PAD] (truncated) to ``max_length`` ids."""
        ids = [self.index.get(w, 3) for w in split_words(text)][: self.max_length - 2]
        ids = [1, *ids, 2]
        return ids + [0] * (self.max_length - len(ids))

    def decode(self, ids: Sequence[int]) -> str:
        """Words of a sequence without special tokens (the inverse of encode up to case and spacing)."""
        return " ".join(self.vocab[i] for i in ids if i >= len(SPECIAL_TOKENS) or i == 3)

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        """Batch-encode: (B,) texts -> (B, max_length) int64 ids."""
        return torch.tensor([self.encode(t) for t in texts], dtype=torch.long)

    def save(self, path: str | Path) -> Path:
        payload = {"type": "word", "max_length": self.max_length, "vocab": self.vocab}
        return atomic.write_json(Path(path), payload)

    @classmethod
    def load(cls, path: str | Path) -> WordTokenizer:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer file {path} not found (train_clip writes tokenizer.json)")
        payload = json.loads(path.read_text())
        if payload.get("type") != "word" or "vocab" not in payload:
            raise ValueError(f"{path}: not a word tokenizer file (expected keys 'type': 'word', 'vocab')")
        return cls(list(payload["vocab"]), int(payload.get("max_length", 64)))
