"""A report decoder on a frozen encoder (LLaVA-style): image tokens → projector → prefix of a causal LM.

The frozen encoder's tokens, any grid flattened to (B, N, D) — CLS and ViT patches in 2D, volume tokens in 3D —
pass through a trainable 2-layer MLP projector into the language model's embedding space, where they stand in
front of the report as a *prefix*: ``[P_1 .. P_N, <bos>, t_1 .. t_k, <eos>]``. Training is teacher forcing (the
cross-entropy of each report token given the prefix and the true tokens before it); decoding is the language
model's own ``generate`` (greedy or beam search, batched, KV cache on by default) from ``[P, <bos>]``.

The language model is a ``transformers`` causal LM: by default a small GPT-2 configuration trained from scratch
together with a byte-level BPE tokenizer trained on the training reports (``train_tokenizer``); or any local
``AutoModelForCausalLM`` folder with its own tokenizer (``load_causal_lm``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

BOS, EOS, PAD = "<bos>", "<eos>", "<pad>"


def train_tokenizer(reports: Sequence[str], vocab_size: int = 512, min_frequency: int = 2):
    """A byte-level BPE tokenizer trained on ``reports``, as a ``PreTrainedTokenizerFast`` (save it with
    ``save_pretrained``). Empty reports are ignored."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = [r for r in reports if isinstance(r, str) and r.strip()]
    if not texts:
        raise ValueError("train_tokenizer: no non-empty report to train the tokenizer on")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[PAD, BOS, EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD)


def small_gpt2(vocab_size: int, n_positions: int, n_embd: int = 128, n_layer: int = 2, n_head: int = 4, seed: int = 0,
               bos_token_id: int = 1, eos_token_id: int = 2, pad_token_id: int = 0):
    """A GPT-2-family causal LM to train from scratch (``transformers.GPT2LMHeadModel``).

    GPT-2's tanh-approximated GELU runs as PyTorch's fused kernel (``gelu_pytorch_tanh``), the same function as
    GPT-2's own ``gelu_new`` written out in elementwise ops (equal to float rounding), which took a quarter of a
    cpu-profile decoder step.
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=vocab_size, n_positions=n_positions, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, activation_function="gelu_pytorch_tanh",
                     bos_token_id=bos_token_id, eos_token_id=eos_token_id, pad_token_id=pad_token_id)
    return GPT2LMHeadModel(cfg)


def load_causal_lm(folder: str | os.PathLike):
    """(model, tokenizer) from a local ``AutoModelForCausalLM`` folder.

    Raises:
        ValueError: the folder has no ``config.json``, its model type is not a causal language model, or the
            model reads later tokens (e.g. a BERT folder, which AutoModelForCausalLM loads as BertLMHeadModel).
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    path = Path(folder)
    if not (path / "config.json").is_file():
        raise ValueError(f"decoder folder {path}: no config.json (expected a transformers AutoModelForCausalLM "
                         "folder, e.g. one written by save_pretrained)")
    config = AutoConfig.from_pretrained(path)
    if type(config) not in MODEL_FOR_CAUSAL_LM_MAPPING:
        raise ValueError(f"decoder folder {path}: model type '{config.model_type}' is not a causal language model "
                         "(AutoModelForCausalLM cannot load it)")
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    if not attends_only_to_the_past(model):
        raise ValueError(f"decoder folder {path}: model type '{config.model_type}' loads as a causal LM but its "
                         "predictions depend on later tokens (an encoder such as BERT without is_decoder=true): "
                         "teacher forcing would let it read the answer. Use a decoder-only LM (GPT-2, Llama, ...)")
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.bos_token is None:
        tokenizer.bos_token = tokenizer.eos_token
    return model, tokenizer


@torch.no_grad()
def attends_only_to_the_past(lm, length: int = 6, seed: int = 0) -> bool:
    """Whether changing the last token leaves the logits of every earlier position unchanged (a causal LM)."""
    vocab = lm.get_input_embeddings().num_embeddings
    ids = torch.randint(0, vocab, (1, length), generator=torch.Generator().manual_seed(seed))
    changed = ids.clone()
    changed[0, -1] = (ids[0, -1] + 1) % vocab
    before, after = lm(input_ids=ids).logits[0, :-1], lm(input_ids=changed).logits[0, :-1]
    return torch.allclose(before, after, atol=1e-5)


def check_vocabulary(tokenizer, lm) -> None:
    """Raise ValueError when the tokenizer can emit ids the language model has no embedding for."""
    n_tok, n_lm = len(tokenizer), lm.get_input_embeddings().num_embeddings
    if n_tok > n_lm:
        raise ValueError(f"tokenizer/LM vocabulary mismatch: the tokenizer has {n_tok} tokens but the language "
                         f"model embeds only {n_lm} (use the LM folder's own tokenizer, or resize its embeddings)")


@dataclass(frozen=True)
class Encoded:
    input_ids: torch.Tensor  # (B, L) report tokens then <eos>, right-padded with <pad>
    attention_mask: torch.Tensor  # (B, L) 1 on real tokens
    n_truncated: int  # reports cut at max_len


def encode_reports(tokenizer, reports: Sequence[str], max_len: int) -> Encoded:
    """Token ids of ``reports`` + <eos>, cut to ``max_len`` tokens (the <eos> included), right-padded."""
    rows, truncated = [], 0
    for text in reports:
        ids = tokenizer(text if isinstance(text, str) else "", add_special_tokens=False)["input_ids"]
        if len(ids) + 1 > max_len:
            truncated += 1
            ids = ids[:max_len - 1]
        rows.append(ids + [tokenizer.eos_token_id])
    length = max(len(r) for r in rows)
    ids = torch.full((len(rows), length), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
        mask[i, :len(r)] = 1
    return Encoded(ids, mask, truncated)


class ReportDecoder(nn.Module):
    """Projector (LayerNorm → Linear → GELU → Linear) + causal LM; the image encoder stays outside, frozen."""

    def __init__(self, token_dim: int, lm: nn.Module, bos_token_id: int, eos_token_id: int, pad_token_id: int,
                 freeze_lm: bool = False):
        super().__init__()
        hidden = lm.get_input_embeddings().embedding_dim
        self.projector = nn.Sequential(nn.LayerNorm(token_dim), nn.Linear(token_dim, hidden), nn.GELU(),
                                       nn.Linear(hidden, hidden))
        self.lm = lm
        self.bos_token_id, self.eos_token_id, self.pad_token_id = bos_token_id, eos_token_id, pad_token_id
        if freeze_lm:
            for p in self.lm.parameters():
                p.requires_grad_(False)

    def prefix(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N, D) image tokens → (B, N + 1, H) prefix embeddings ending with <bos>."""
        if tokens.ndim != 3:
            raise ValueError(f"image tokens must be (B, N, D), got shape {tuple(tokens.shape)}")
        p = self.projector(tokens.float())
        bos = self.lm.get_input_embeddings()(torch.full((len(p), 1), self.bos_token_id, device=p.device))
        return torch.cat([p, bos], dim=1)

    def forward(self, tokens: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Teacher-forcing loss: mean cross-entropy of the report tokens (and <eos>) given the prefix."""
        prefix = self.prefix(tokens)
        b, n = prefix.shape[:2]
        embeds = torch.cat([prefix, self.lm.get_input_embeddings()(input_ids)], dim=1)
        mask = torch.cat([torch.ones((b, n), dtype=attention_mask.dtype, device=prefix.device), attention_mask], 1)
        labels = torch.cat([torch.full((b, n), -100, device=prefix.device),
                            input_ids.masked_fill(attention_mask == 0, -100)], dim=1)
        return self.lm(inputs_embeds=embeds, attention_mask=mask, labels=labels).loss

    @torch.no_grad()
    def generate(self, tokens: torch.Tensor, max_new_tokens: int = 64, num_beams: int = 1, use_cache: bool = True,
                 batch_size: int = 64) -> list[list[int]]:
        """Token ids of the generated reports (without <eos>), greedy (``num_beams=1``) or beam search."""
        was_training = self.training
        self.eval()
        out: list[list[int]] = []
        for start in range(0, len(tokens), batch_size):
            prefix = self.prefix(tokens[start:start + batch_size])
            mask = torch.ones(prefix.shape[:2], dtype=torch.long, device=prefix.device)
            ids = self.lm.generate(inputs_embeds=prefix, attention_mask=mask, max_new_tokens=max_new_tokens,
                                   num_beams=num_beams, do_sample=False, use_cache=use_cache,
                                   eos_token_id=self.eos_token_id, pad_token_id=self.pad_token_id,
                                   bos_token_id=self.bos_token_id)
            for row in ids.tolist():
                cut = row.index(self.eos_token_id) if self.eos_token_id in row else len(row)
                out.append([t for t in row[:cut] if t != self.pad_token_id])
        self.train(was_training)
        return out
