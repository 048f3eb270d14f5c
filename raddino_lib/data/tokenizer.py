"""The report tokenizer of the language-supervised baseline: BERT's WordPiece, learned from the reports themselves.

Nothing is downloaded: :meth:`WordPieceTokenizer.train` builds the vocabulary from the training reports, and
:meth:`WordPieceTokenizer.from_pretrained` reads a local BERT tokenizer folder (CXR-BERT's). Every sequence is
``[CLS] pieces ... [SEP] [PAD] ...`` of a fixed length, so the text encoder reads its summary from position 0.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from raddino_lib import atomic

PAD, CLS, SEP, UNK = "[PAD]", "[CLS]", "[SEP]", "[UNK]"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, CLS, SEP, UNK)  # ids 0, 1, 2, 3 in this order

MASK = "[MASK]"
WORDPIECE_META = "raddino_tokenizer.json"  # written beside the Hugging Face files: max_length


class WordPieceTokenizer:
    """A BERT WordPiece tokenizer (Hugging Face) that pads and truncates to ``max_length`` ids.

    Either learned here from the training reports (:meth:`train`: BERT's normaliser with lowercasing and accent
    stripping, BERT's pre-tokeniser, a WordPiece vocabulary with ``##`` continuations, ``[CLS] text [SEP]``), or
    read from a local folder with a BERT tokenizer (CXR-BERT's, :meth:`from_pretrained`). Sequences are padded or
    truncated to ``max_length`` ids; ``[CLS]`` is at position 0.
    """

    def __init__(self, fast, max_length: int = 64) -> None:
        if fast.pad_token_id is None or fast.cls_token_id is None:
            raise ValueError("WordPieceTokenizer needs a tokenizer with [PAD] and [CLS] tokens (a BERT tokenizer)")
        if max_length < 3:
            raise ValueError(f"max_length must be >= 3 ([CLS], one token, [SEP]), got {max_length}")
        self.fast, self.max_length = fast, max_length

    @property
    def pad_id(self) -> int:
        return int(self.fast.pad_token_id)

    @property
    def vocab_size(self) -> int:
        return len(self.fast)

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 5000, max_length: int = 64,
              min_frequency: int = 1) -> WordPieceTokenizer:
        """A WordPiece vocabulary of at most ``vocab_size`` tokens learned from ``texts``, the same for the same texts.

        The vocabulary holds the special tokens, every character of the corpus and its ``##`` continuation (so
        that any word splits into known pieces), then whole words by decreasing frequency (ties alphabetical).
        Radiology corpora use a few thousand words, so most words stay whole, as in CXR-BERT's domain vocabulary.
        (``tokenizers``' WordPiece trainer breaks ties between merges differently from run to run, which would
        give two runs with the same seed different token ids.)
        """
        from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
        from transformers import BertTokenizerFast

        normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True, clean_text=True)
        splitter = pre_tokenizers.BertPreTokenizer()
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(w for w, _ in splitter.pre_tokenize_str(normalizer.normalize_str(str(text))))
        chars = sorted({c for w in counts for c in w})
        specials = [*SPECIAL_TOKENS, MASK]  # [PAD] = 0, [CLS] = 1, [SEP] = 2, [UNK] = 3, [MASK] = 4
        vocab = specials + chars + ["##" + c for c in chars]
        if len(vocab) > vocab_size:
            raise ValueError(f"vocab_size {vocab_size} is below the {len(vocab)} special tokens and characters of "
                             "the reports; raise it")
        words = sorted((w for w, n in counts.items() if n >= min_frequency and len(w) > 1),
                       key=lambda w: (-counts[w], w))
        vocab += words[: vocab_size - len(vocab)]
        tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token=UNK,
                                         max_input_chars_per_word=100))
        tok.normalizer, tok.pre_tokenizer = normalizer, splitter
        tok.post_processor = processors.TemplateProcessing(
            single=f"{CLS} $A {SEP}", pair=f"{CLS} $A {SEP} $B:1 {SEP}:1",
            special_tokens=[(CLS, vocab.index(CLS)), (SEP, vocab.index(SEP))])
        tok.decoder = decoders.WordPiece(prefix="##")
        fast = BertTokenizerFast(tokenizer_object=tok, unk_token=UNK, sep_token=SEP, pad_token=PAD, cls_token=CLS,
                                 mask_token=MASK, do_lower_case=True, model_max_length=max_length)
        return cls(fast, max_length)

    @classmethod
    def from_pretrained(cls, folder: str | Path, max_length: int = 64) -> WordPieceTokenizer:
        """A local tokenizer folder (e.g. CXR-BERT's); nothing is downloaded."""
        from transformers import AutoTokenizer

        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"tokenizer folder {folder} not found (a folder with tokenizer.json or vocab.txt)")
        return cls(AutoTokenizer.from_pretrained(str(folder), local_files_only=True), max_length)

    def encode(self, text: str) -> list[int]:
        return self([text])[0].tolist()

    def decode(self, ids: Sequence[int]) -> str:
        return self.fast.decode(list(ids), skip_special_tokens=True)

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        """Batch-encode: (B,) texts -> (B, max_length) int64 ids."""
        out = self.fast([str(t) for t in texts], padding="max_length", truncation=True, max_length=self.max_length,
                        return_tensors="pt")
        return out["input_ids"].long()

    def save(self, folder: str | Path) -> Path:
        """The Hugging Face files (``AutoTokenizer.from_pretrained`` reads them) and ``max_length``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.fast.save_pretrained(str(folder))
        atomic.write_json(folder / WORDPIECE_META, {"type": "wordpiece", "max_length": self.max_length})
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> WordPieceTokenizer:
        meta = Path(folder) / WORDPIECE_META
        max_length = json.loads(meta.read_text())["max_length"] if meta.is_file() else 64
        return cls.from_pretrained(folder, max_length)


def load_tokenizer(path: str | Path) -> WordPieceTokenizer:
    """A saved tokenizer folder (``train_clip`` writes ``tokenizer/`` into its run folder)."""
    path = Path(path)
    if path.is_file() and path.suffix == ".json":
        payload = json.loads(path.read_text())
        if payload.get("type") == "word":
            raise ValueError(f"{path}: a word-level tokenizer of an older CLIP run; this version reads WordPiece "
                             "tokenizer folders only (retrain with `raddino train-clip`)")
    if not path.is_dir():
        raise FileNotFoundError(f"tokenizer folder {path} not found (train_clip writes <run>/tokenizer/)")
    return WordPieceTokenizer.load(path)
