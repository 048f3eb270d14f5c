"""Word tokenizer trained on a report corpus: vocabulary order, fixed-length encoding, JSON round trip."""

import pytest
import torch

from raddino_lib.data.tokenizer import SPECIAL_TOKENS, WordTokenizer, split_words

CORPUS = ["No pleural effusion.", "Small left pleural effusion.", "No pneumothorax; effusion is small."]


def test_split_words_lowercases_and_splits_punctuation():
    assert split_words("Small L-sided PTX, 1.5 cm.") == ["small", "l", "-", "sided", "ptx", ",", "1", ".", "5",
                                                        "cm", "."]


def test_vocabulary_is_special_tokens_then_words_by_frequency():
    tok = WordTokenizer.train(CORPUS)
    assert tuple(tok.vocab[:4]) == SPECIAL_TOKENS
    # counts: "." 3, effusion 3, no 2, pleural 2, small 2 -> ties broken alphabetically
    assert tok.vocab[4:9] == [".", "effusion", "no", "pleural", "small"]
    assert WordTokenizer.train(CORPUS, min_freq=2).vocab[4:] == [".", "effusion", "no", "pleural", "small"]
    assert WordTokenizer.train(CORPUS, max_size=6).vocab_size == 6


def test_encode_is_cls_words_sep_then_padding_and_truncates():
    tok = WordTokenizer.train(CORPUS, max_length=8)
    ids = tok.encode("No pleural effusion, really.")
    v = tok.index
    assert ids == [1, v["no"], v["pleural"], v["effusion"], 3, 3, v["."], 2]  # "," and "really" unknown
    assert tok.decode(ids) == "no pleural effusion [UNK] [UNK] ."
    short = WordTokenizer.train(CORPUS, max_length=4).encode("small left pleural effusion")
    assert len(short) == 4 and short[0] == 1 and short[-1] == 2
    batch = tok(["no effusion", ""])
    assert batch.shape == (2, 8) and batch.dtype == torch.long
    assert batch[1].tolist() == [1, 2, 0, 0, 0, 0, 0, 0]


def test_json_round_trip(tmp_path):
    tok = WordTokenizer.train(CORPUS, max_length=12)
    back = WordTokenizer.load(tok.save(tmp_path / "tokenizer.json"))
    assert back.vocab == tok.vocab and back.max_length == 12
    assert back.encode(CORPUS[1]) == tok.encode(CORPUS[1])


def test_bad_files_and_vocabularies_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer"):
        WordTokenizer.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"foo": 1}')
    with pytest.raises(ValueError, match="not a word tokenizer"):
        WordTokenizer.load(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="must start with"):
        WordTokenizer(["a", "b", "c", "d"])
