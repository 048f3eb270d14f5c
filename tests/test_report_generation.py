"""Report generation: metrics against hand-computed values, and a decoder that learns a toy task exactly."""

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from raddino_lib.probe.report_generation import (
    DecoderConfig,
    bleu4,
    clinical_f1,
    generate_reports,
    label_tokens,
    most_frequent_report,
    positive_findings,
    retrieve_reports,
    rouge_l,
    train_report_decoder,
)

REF = "the cat sat on the mat"
HYP = "the cat sat on the red mat"


def test_bleu4_identical_is_one_and_a_hand_computed_pair():
    assert bleu4([REF], [REF]) == pytest.approx(1.0)
    # modified n-gram precisions of HYP against REF: 6/7, 4/6, 3/5, 2/4; HYP is longer, so no brevity penalty
    expected = math.exp(sum(math.log(p) for p in (6 / 7, 4 / 6, 3 / 5, 2 / 4)) / 4)
    assert bleu4([HYP], [REF]) == pytest.approx(expected, abs=1e-4)


def test_bleu4_brevity_penalty_by_hand():
    # "the cat sat on the" against REF: every n-gram matches, c = 5 < r = 6 → BP = exp(1 - 6/5)
    assert bleu4(["the cat sat on the"], [REF]) == pytest.approx(math.exp(1 - 6 / 5), abs=1e-4)


def test_rouge_l_is_the_lcs_f_measure():
    # LCS(HYP, REF) = 6 tokens: precision 6/7, recall 6/6
    p, r = 6 / 7, 1.0
    np.testing.assert_allclose(rouge_l([HYP, REF], [REF, REF]), [2 * p * r / (p + r), 1.0], atol=1e-9)
    assert rouge_l(["no overlap here"], [REF])[0] == 0.0


def test_clinical_f1_micro_and_macro_by_hand():
    truth = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0]], dtype=bool)
    pred = np.array([[1, 0, 1], [0, 1, 0], [0, 1, 0], [1, 0, 0]], dtype=bool)
    # finding 0: tp 1, fp 1, fn 1 → F1 1/2; finding 1: tp 2 → 1; finding 2: no positive case, left out
    micro, macro = clinical_f1(truth, pred)
    assert macro == pytest.approx((0.5 + 1.0) / 2)
    assert micro == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))  # pooled over findings 0 and 1: tp 3, fp 1, fn 1
    with pytest.raises(ValueError, match="no finding has a positive case"):
        clinical_f1(np.zeros((3, 2), bool), pred[:3, :2])


def test_positive_findings_reads_stated_findings_only():
    # Stated present counts; negated, hedged and unmentioned findings do not; an empty text states nothing.
    texts = ["FINDINGS: Small left pleural effusion. No pneumothorax. IMPRESSION: Effusion.",
             "FINDINGS: Cardiomegaly. Possible nodule in the right upper lobe.",
             ""]
    got = positive_findings(texts, ["Effusion", "Pneumothorax", "Cardiomegaly", "Nodule"])
    assert got.shape == (3, 4) and got.dtype == bool
    assert got.tolist() == [[True, False, False, False], [False, False, True, False], [False, False, False, False]]


def test_floors_most_frequent_and_retrieval():
    assert most_frequent_report(["a", "b", "b", "", "a", "b"]) == "b"
    train = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert retrieve_reports(train, ["left", "up"], np.array([[0.1, 2.0], [3.0, 0.2]])) == ["up", "left"]


def test_oracle_label_tokens_one_hot_finding_and_state_by_hand():
    df = pd.DataFrame({"reported_A": ["1", "-1"], "reported_B": ["0", ""]})  # "" (unknown) counts as 0
    tokens = label_tokens(df, findings=("A", "B", "C"), prefix="reported_")  # C: no column, counts as 0
    assert tokens.shape == (2, 3, 6)
    present, absent, hedged = [1, 0, 0], [0, 1, 0], [0, 0, 1]
    assert tokens[0].tolist() == [[1, 0, 0, *present], [0, 1, 0, *absent], [0, 0, 1, *absent]]
    assert tokens[1].tolist() == [[1, 0, 0, *hedged], [0, 1, 0, *absent], [0, 0, 1, *absent]]


def test_decoder_config_refuses_a_step_count_below_one():
    with pytest.raises(ValueError, match="steps"):
        DecoderConfig(steps=0)


@pytest.mark.slow
def test_decoder_learns_one_report_per_class_exactly():
    """Four classes, each image one token (its one-hot class): greedy decoding must write each class's report."""
    reports = ["no acute cardiopulmonary process.", "small left pleural effusion.",
               "the heart is enlarged. no effusion.", "right upper lobe nodule, 8 mm."]
    classes = np.arange(64) % 4
    tokens = np.eye(4, dtype=np.float32)[classes][:, None, :]  # (64, 1, 4)
    cfg = DecoderConfig(vocab_size=300, max_len=24, n_embd=64, n_layer=2, n_head=2, steps=150, batch_size=32,
                        lr=3e-3, seed=0)
    decoder, tok, log = train_report_decoder(tokens, [reports[c] for c in classes], cfg, log=lambda *_: None)
    assert log.losses[-1] < 0.05 * log.losses[0]
    out = generate_reports(decoder, tok, np.eye(4, dtype=np.float32)[:, None, :], max_new_tokens=24)
    assert out == reports
    beams = generate_reports(decoder, tok, np.eye(4, dtype=np.float32)[:, None, :], max_new_tokens=24, num_beams=3)
    assert beams == reports


def test_bleu4_from_summed_statistics_equals_sacrebleus_corpus_score():
    import sacrebleu

    from raddino_lib.probe.report_generation import bleu4_from_statistics, bleu4_statistics

    hyps = ["the heart is enlarged", "no pleural effusion is seen today", "small left effusion", "clear lungs"]
    refs = ["the heart is mildly enlarged", "no pleural effusion is seen", "small left pleural effusion", "lungs clear"]
    stats = bleu4_statistics(hyps, refs)
    assert stats.shape == (4, 10)
    for subset in ([0, 1, 2, 3], [1, 1, 2], [0, 2]):
        expected = sacrebleu.corpus_bleu([hyps[i] for i in subset], [[refs[i] for i in subset]]).score / 100
        assert bleu4_from_statistics(stats[subset]) == pytest.approx(expected, abs=1e-12)


def test_the_small_gpt2s_fused_gelu_is_gpt2s_tanh_gelu():
    from raddino_lib.models.report_decoder import small_gpt2

    lm = small_gpt2(32, 16, n_embd=16, n_layer=1, n_head=2)
    x = torch.linspace(-6, 6, 1001)
    gpt2_gelu = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))  # GPT-2's formula
    torch.testing.assert_close(lm.transformer.h[0].mlp.act(x), gpt2_gelu, rtol=1e-6, atol=1e-6)


def test_decoders_trained_side_by_side_equal_one_at_a_time_on_one_thread():
    from raddino_lib.parallel import one_thread
    from raddino_lib.probe.report_generation import train_report_decoders

    reports = ["no acute process.", "small left effusion.", "the heart is enlarged.", "right nodule."] * 4
    rng = np.random.default_rng(0)
    tokens = {"a": rng.normal(size=(16, 2, 8)).astype(np.float32), "b": rng.normal(size=(16, 3, 8)).astype(np.float32)}
    cfg = DecoderConfig(vocab_size=300, max_len=12, n_embd=16, n_layer=1, n_head=2, steps=4, batch_size=8, seed=0)
    lines: list[str] = []
    decoders, tok, logs = train_report_decoders(tokens, reports, cfg, steps={"b": 6}, workers=2, log=lines.append)
    assert len(logs["a"].losses) == 4 and len(logs["b"].losses) == 6  # per-name steps
    assert sorted(line.split(":")[0] for line in lines) == ["a", "b"]
    for name, steps in (("a", 4), ("b", 6)):
        with one_thread():
            alone, _, log = train_report_decoder(tokens[name], reports, replace(cfg, steps=steps), tokenizer=tok,
                                                 log=lambda *_: None)
        assert log.losses == logs[name].losses
        for p, q in zip(alone.state_dict().values(), decoders[name].state_dict().values(), strict=True):
            assert torch.equal(p, q)
    with pytest.raises(ValueError, match=r"steps given for \['c'\]"):
        train_report_decoders(tokens, reports, cfg, steps={"c": 2})
