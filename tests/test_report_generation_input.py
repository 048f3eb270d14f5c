"""Report generation's bad input: each case stops or warns with a message naming what to fix."""

import pandas as pd
import pytest

from raddino_lib.models.report_decoder import (
    attends_only_to_the_past,
    check_vocabulary,
    encode_reports,
    load_causal_lm,
    small_gpt2,
    train_tokenizer,
)
from raddino_lib.probe.report_generation import drop_empty, read_reports

REPORTS = ["no acute abnormality", "small left pleural effusion", "cardiomegaly without edema"] * 4


def test_a_manifest_without_a_report_column_names_the_manifest_and_the_column(tmp_path):
    path = tmp_path / "manifest.csv"
    pd.DataFrame({"image_id": ["a"], "path": ["a.png"], "split": ["train"]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"manifest .*manifest\.csv has no 'report' column.*image_id, path, split"):
        read_reports(path)


def test_empty_reports_are_dropped_and_counted_per_split(tmp_path):
    path = tmp_path / "manifest.csv"
    pd.DataFrame({"image_id": list("abcd"), "split": ["train", "train", "test", "test"],
                  "report": ["effusion", "  ", "", "no finding"]}).to_csv(path, index=False)
    said = []
    kept = drop_empty(read_reports(path), log=said.append)
    assert kept["image_id"].tolist() == ["a", "d"]
    assert said == ["dropped 2 rows with an empty report {'train': 1, 'test': 1}"]


def test_reports_longer_than_the_maximum_are_cut_counted_and_end_with_eos():
    tok = train_tokenizer(REPORTS, vocab_size=64, min_frequency=1)
    short = len(tok("no acute abnormality", add_special_tokens=False)["input_ids"])
    enc = encode_reports(tok, ["no acute abnormality", " ".join(REPORTS)], max_len=short + 1)  # the short one fits
    assert enc.n_truncated == 1
    assert enc.input_ids.shape == (2, short + 1) and enc.attention_mask.sum(1).tolist() == [short + 1] * 2
    assert enc.input_ids[:, -1].tolist() == [tok.eos_token_id] * 2


def test_a_folder_that_is_not_a_causal_lm_is_refused(tmp_path):
    from transformers import BertConfig, BertModel, Dinov2Config, Dinov2Model

    with pytest.raises(ValueError, match="no config.json"):
        load_causal_lm(tmp_path)
    # an image encoder folder given by mistake: no causal-LM class exists for it
    Dinov2Model(Dinov2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                             image_size=28, patch_size=14)).save_pretrained(tmp_path / "dinov2")
    with pytest.raises(ValueError, match="model type 'dinov2' is not a causal language model"):
        load_causal_lm(tmp_path / "dinov2")
    # BERT loads as BertLMHeadModel, but attends both ways: teacher forcing would read the next token
    BertModel(BertConfig(vocab_size=32, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(tmp_path / "bert")
    with pytest.raises(ValueError, match="model type 'bert' .* depend on later tokens"):
        load_causal_lm(tmp_path / "bert")


def test_the_causality_check_passes_gpt2_and_fails_bidirectional_bert():
    from transformers import BertConfig, BertLMHeadModel

    assert attends_only_to_the_past(small_gpt2(32, 16, n_embd=16, n_layer=1, n_head=2).eval())
    bert = BertLMHeadModel(BertConfig(vocab_size=32, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                      intermediate_size=32)).eval()
    assert not attends_only_to_the_past(bert)


def test_a_tokenizer_larger_than_the_lms_vocabulary_is_refused():
    tok = train_tokenizer(REPORTS, vocab_size=64, min_frequency=1)
    check_vocabulary(tok, small_gpt2(len(tok), 32, n_embd=16, n_layer=1, n_head=2))  # fits: no error
    with pytest.raises(ValueError, match=rf"vocabulary mismatch: the tokenizer has {len(tok)} tokens but the "
                                         rf"language model embeds only {len(tok) - 1}"):
        check_vocabulary(tok, small_gpt2(len(tok) - 1, 32, n_embd=16, n_layer=1, n_head=2))


def test_a_local_gpt2_folder_loads_with_its_tokenizer_and_freeze_lm_trains_the_projector_only(tmp_path):
    import numpy as np
    import torch

    from raddino_lib.probe.report_generation import DecoderConfig, train_report_decoder

    tok = train_tokenizer(REPORTS, vocab_size=64, min_frequency=1)
    lm = small_gpt2(len(tok), 48, n_embd=16, n_layer=1, n_head=2, bos_token_id=tok.bos_token_id,
                    eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    lm.save_pretrained(tmp_path / "lm")
    tok.save_pretrained(tmp_path / "lm")
    loaded, loaded_tok = load_causal_lm(tmp_path / "lm")
    text = "small effusion"
    assert len(loaded_tok) == len(tok) and loaded_tok(text)["input_ids"] == tok(text)["input_ids"]
    tokens = np.random.default_rng(0).normal(size=(len(REPORTS), 3, 8)).astype(np.float32)
    cfg = DecoderConfig(lm_path=str(tmp_path / "lm"), freeze_lm=True, steps=3, batch_size=4, max_len=16)
    decoder, _, log = train_report_decoder(tokens, REPORTS, cfg, log=lambda _: None)
    for name, p in decoder.lm.state_dict().items():
        torch.testing.assert_close(p, loaded.state_dict()[name], msg=f"frozen LM weight {name} changed")
    assert len(log.losses) == 3
