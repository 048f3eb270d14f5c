"""Report generation on frozen features: train a decoder, generate, score with intervals.

Rows compared (``models.report_decoder`` for the decoder):

* one decoder per frozen encoder (``ssl``, ``language``, ``random``, extras), same size, steps and seed, on
  cached image tokens (CLS + the patch grid, average-pooled to ``pool`` × ``pool``);
* ``most_frequent`` — the most frequent training report for every image (the floor: constant prediction);
* ``retrieval_<encoder>`` — the report of the nearest training image (cosine on CLS) in that encoder's space;
* ``oracle`` — the same decoder conditioned on the true labels instead of image tokens (the ceiling: what the
  pipeline can express when it knows what is in the image).

Metrics on the test split, each with a 95% patient-bootstrap interval (``probe.bootstrap``): BLEU-4
(``sacrebleu``, corpus level), ROUGE-L (``rouge-score``, mean F-measure), and clinical efficacy — the package's
report labeler (``data.reports.label_report``, positive = stated present) on generated and reference text → F1
micro and macro over the 14 findings and over the 5 competition findings, and the same F1 against the phantoms'
ground-truth ``label_<F>`` columns (what is in the image, which a reference report may leave out). Macro F1 is
the mean over the findings with at least one positive in the reference (or truth); micro pools their counts.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import torch

from raddino_lib.data.reports import label_report
from raddino_lib.data.schema import CXR14_FINDINGS, FINDINGS, label_column
from raddino_lib.device import resolve_device
from raddino_lib.models.report_decoder import (
    ReportDecoder,
    check_vocabulary,
    encode_reports,
    load_causal_lm,
    small_gpt2,
    train_tokenizer,
)
from raddino_lib.probe.bootstrap import Estimate, patient_bootstrap

REPORT_COLUMN = "report"
COMPETITION: tuple[str, ...] = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Effusion")


# ===== inputs =====

def read_reports(manifest: str | os.PathLike, column: str = REPORT_COLUMN) -> pd.DataFrame:
    """The manifest's rows (as text) with a ``report`` column; empty reports become "".

    Raises:
        ValueError: the manifest has no ``column`` (the message names both).
    """
    df = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    if column not in df.columns:
        raise ValueError(f"manifest {manifest} has no '{column}' column: report generation needs a report per row "
                         f"(columns present: {', '.join(df.columns[:12])}{' ...' if len(df.columns) > 12 else ''})")
    df[column] = df[column].fillna("").astype(str).str.strip()
    return df


def drop_empty(df: pd.DataFrame, column: str = REPORT_COLUMN, log=print) -> pd.DataFrame:
    """Rows with a non-empty report; says how many were dropped per split."""
    empty = df[column].str.strip() == ""
    if empty.any():
        per_split = df.loc[empty, "split"].value_counts().to_dict() if "split" in df.columns else {}
        log(f"dropped {int(empty.sum())} rows with an empty report {per_split}")
    return df[~empty].reset_index(drop=True)


def truth_labels(df: pd.DataFrame, findings: Sequence[str] = CXR14_FINDINGS) -> np.ndarray:
    """(N, F) bool: the manifest's ``label_<F>`` is 1 (unknown and uncertain count as absent)."""
    out = np.zeros((len(df), len(findings)), dtype=bool)
    for j, f in enumerate(findings):
        if label_column(f) in df.columns:
            out[:, j] = pd.to_numeric(df[label_column(f)], errors="coerce").to_numpy() == 1
    return out


def label_tokens(df: pd.DataFrame, findings: Sequence[str] = FINDINGS, prefix: str = "label_") -> np.ndarray:
    """The oracle's input: one token per finding, (N, F, F + 3) = [one-hot finding, one-hot label state].

    The state is one-hot over (stated present = 1, absent or unmentioned = 0, hedged = -1), so that a positive and
    a negative finding reach the projector as different inputs, not as one scalar among F + 1 (with the scalar, the
    cpu profile's oracle stated fewer findings: clinical macro F1 0.56 against 0.68 in the same 400 steps).

    ``prefix``: "label_" reads the ground truth (what is in the image); "reported_" the phantoms' report labels
    (what the reference report states, hedged findings as -1), the input of an oracle scored against the reports.
    Missing columns count as 0.
    """
    values = np.zeros((len(df), len(findings)), dtype=np.float32)
    for j, f in enumerate(findings):
        column = prefix + f
        if column in df.columns:
            values[:, j] = np.nan_to_num(pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=float))
    eye = np.broadcast_to(np.eye(len(findings), dtype=np.float32), (len(df), len(findings), len(findings)))
    state = np.stack([values == 1, values == 0, values == -1], axis=2).astype(np.float32)
    return np.concatenate([eye, state], axis=2)


def image_tokens(cls: np.ndarray, grid: np.ndarray | None, pool: int = 4) -> np.ndarray:
    """(N, 1 + pool², D) float32: CLS then the (N, h, w, D) patch grid average-pooled to pool × pool
    (``pool`` 0 keeps every patch; no grid = CLS alone)."""
    cls = np.asarray(cls, dtype=np.float32)[:, None]
    if grid is None:
        return cls
    g = torch.from_numpy(np.asarray(grid, dtype=np.float32)).permute(0, 3, 1, 2)  # (N, D, h, w)
    if pool:
        g = torch.nn.functional.adaptive_avg_pool2d(g, pool)
    return np.concatenate([cls, g.flatten(2).transpose(1, 2).numpy()], axis=1)


# ===== decoder =====

@dataclass(frozen=True)
class DecoderConfig:
    lm_path: str = ""  # a local AutoModelForCausalLM folder; empty = a small GPT-2 trained from scratch
    vocab_size: int = 512  # BPE vocabulary trained on the train reports (from-scratch LM only)
    max_len: int = 96  # report tokens kept (with <eos>); longer reports are truncated, and counted
    n_embd: int = 128
    n_layer: int = 2
    n_head: int = 4
    steps: int = 300
    batch_size: int = 32
    lr: float = 1e-3
    seed: int = 0
    freeze_lm: bool = False  # with lm_path: train the projector only

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "max_len", "n_embd", "n_layer", "n_head"):
            if getattr(self, name) < 1:
                raise ValueError(f"DecoderConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"DecoderConfig.lr must be > 0, got {self.lr}")


@dataclass
class TrainLog:
    losses: list[float] = field(default_factory=list)
    n_truncated: int = 0
    seconds: float = 0.0


def build_decoder(token_dim: int, n_prefix: int, train_reports: Sequence[str], cfg: DecoderConfig, tokenizer=None):
    """(ReportDecoder, tokenizer): the LM folder's own tokenizer, or ``tokenizer``, or one trained here."""
    if cfg.lm_path:
        lm, tok = load_causal_lm(cfg.lm_path)
        tok = tokenizer or tok
    else:
        tok = tokenizer or train_tokenizer(train_reports, cfg.vocab_size)
        lm = small_gpt2(len(tok), n_prefix + 1 + cfg.max_len + 1, cfg.n_embd, cfg.n_layer, cfg.n_head, cfg.seed,
                        tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)
    check_vocabulary(tok, lm)
    torch.manual_seed(cfg.seed)
    decoder = ReportDecoder(token_dim, lm, tok.bos_token_id, tok.eos_token_id, tok.pad_token_id,
                            freeze_lm=bool(cfg.lm_path) and cfg.freeze_lm)
    return decoder, tok


def train_report_decoder(tokens: np.ndarray, reports: Sequence[str], cfg: DecoderConfig, tokenizer=None,
                         device: str = "cpu", log=print):
    """Train projector + LM by teacher forcing on (N, T, D) tokens and N reports; return (decoder, tokenizer,
    TrainLog)."""
    if len(tokens) != len(reports):
        raise ValueError(f"{len(tokens)} token grids but {len(reports)} reports")
    device = resolve_device(device)
    start = time.perf_counter()
    decoder, tok = build_decoder(tokens.shape[-1], tokens.shape[1], reports, cfg, tokenizer)
    enc = encode_reports(tok, reports, cfg.max_len)
    if enc.n_truncated:
        log(f"truncated {enc.n_truncated} of {len(reports)} training reports to {cfg.max_len} tokens")
    decoder.to(device).train()
    x = torch.as_tensor(np.asarray(tokens, dtype=np.float32))
    opt = torch.optim.AdamW([p for p in decoder.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(cfg.steps, 1), pct_start=0.1)
    gen = torch.Generator().manual_seed(cfg.seed)
    out = TrainLog(n_truncated=enc.n_truncated)
    for _ in range(cfg.steps):
        idx = torch.randint(0, len(x), (min(cfg.batch_size, len(x)),), generator=gen)
        mask = enc.attention_mask[idx]
        keep = int(mask.sum(1).max())
        out.losses.append(decoder_step(decoder, opt, x[idx].to(device), enc.input_ids[idx, :keep].to(device),
                                       mask[:, :keep].to(device)))
        sched.step()
    out.seconds = time.perf_counter() - start
    return decoder.eval(), tok, out


def train_report_decoders(tokens: Mapping[str, np.ndarray], reports: Sequence[str], cfg: DecoderConfig,
                          steps: Mapping[str, int] | None = None, device: str = "cpu", workers: int = 0, log=print):
    """One decoder per named (N, T, D) token set, all on the same reports, tokenizer, config and seed; on a CPU
    side by side, one core each (``parallel.map_jobs``). Returns (decoders, tokenizer, logs), dicts by name.

    steps: optimizer steps per name where they differ from ``cfg.steps`` (e.g. a longer-trained oracle).
    """
    from raddino_lib.parallel import map_jobs

    steps = dict(steps or {})
    unknown = sorted(set(steps) - set(tokens))
    if unknown:
        raise ValueError(f"steps given for {unknown}, which have no image tokens (names: {sorted(tokens)})")
    tokenizer = load_causal_lm(cfg.lm_path)[1] if cfg.lm_path else train_tokenizer(reports, cfg.vocab_size)
    names = list(tokens)

    def job(name: str):
        return train_report_decoder(tokens[name], reports, replace(cfg, steps=steps.get(name, cfg.steps)),
                                    tokenizer=tokenizer, device=device, log=lambda _: None)

    trained = map_jobs(job, names, workers, names=names, log=log, device=resolve_device(device),
                       cost=[steps.get(n, cfg.steps) for n in names])
    if trained and trained[0][2].n_truncated:
        log(f"truncated {trained[0][2].n_truncated} of {len(reports)} training reports to {cfg.max_len} tokens")
    return ({n: t[0] for n, t in zip(names, trained, strict=True)}, tokenizer,
            {n: t[2] for n, t in zip(names, trained, strict=True)})


def decoder_step(decoder: ReportDecoder, opt: torch.optim.Optimizer, tokens: torch.Tensor, input_ids: torch.Tensor,
                 attention_mask: torch.Tensor) -> float:
    """One teacher-forcing step: the report loss given the image tokens, gradients clipped at 1, AdamW."""
    loss = decoder(tokens, input_ids, attention_mask)
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(decoder.parameters(), 1.0)
    opt.step()
    return float(loss.detach())


def generate_reports(decoder: ReportDecoder, tokenizer, tokens: np.ndarray, max_new_tokens: int = 96,
                     num_beams: int = 1, use_cache: bool = True, batch_size: int = 64, device: str = "cpu"
                     ) -> list[str]:
    """Decoded text of one generated report per token grid."""
    device = resolve_device(device)
    decoder.to(device)
    ids = decoder.generate(torch.as_tensor(np.asarray(tokens, dtype=np.float32)).to(device), max_new_tokens,
                           num_beams, use_cache, batch_size)
    return [tokenizer.decode(r, skip_special_tokens=True).strip() for r in ids]


# ===== references =====

def most_frequent_report(train_reports: Sequence[str]) -> str:
    """The most frequent training report (ties: the first seen)."""
    return Counter(r for r in train_reports if r).most_common(1)[0][0]


def retrieve_reports(train_features: np.ndarray, train_reports: Sequence[str], query_features: np.ndarray
                     ) -> list[str]:
    """The report of each query's nearest training image by cosine similarity."""
    def unit(a):
        a = np.asarray(a, dtype=np.float32)
        return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-8)

    nearest = (unit(query_features) @ unit(train_features).T).argmax(axis=1)
    return [train_reports[i] for i in nearest]


# ===== metrics =====

def bleu4(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU-4 (sacrebleu's defaults, one reference per hypothesis), on the 0-1 scale."""
    import sacrebleu

    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score) / 100.0


def bleu4_statistics(hypotheses: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """(N, 10) sacrebleu's sufficient statistics per report (hypothesis and reference lengths, matched and total
    n-grams for n = 1..4): summed over any subset they give that subset's corpus BLEU-4 (``bleu4_from_statistics``),
    so a bootstrap tokenizes each report once instead of once per resample."""
    from sacrebleu.metrics import BLEU

    return np.asarray(BLEU()._extract_corpus_statistics(list(hypotheses), [list(references)]), dtype=np.int64)


def bleu4_from_statistics(stats: np.ndarray) -> float:
    """Corpus BLEU-4 (0-1) of the reports whose rows of ``bleu4_statistics`` are given."""
    from sacrebleu.metrics import BLEU

    return float(BLEU()._compute_score_from_stats([int(v) for v in np.asarray(stats).sum(0)]).score) / 100.0


def rouge_l(hypotheses: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """(N,) ROUGE-L F-measure per report (rouge-score, no stemming)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    return np.array([scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(hypotheses, references, strict=True)])


def positive_findings(texts: Sequence[str], findings: Sequence[str] = CXR14_FINDINGS) -> np.ndarray:
    """(N, F) bool: the labeler reads each finding as stated present (1) in each text."""
    labels = (label_report(t) for t in texts)  # once per text: the labeler reads every finding in one pass
    return np.array([[row[f] == 1 for f in findings] for row in labels], dtype=bool).reshape(len(texts), len(findings))


def clinical_f1(truth: np.ndarray, predicted: np.ndarray) -> tuple[float, float]:
    """(micro, macro) F1 over findings with at least one true positive case.

    Raises:
        ValueError: no finding has a positive case (F1 undefined; the bootstrap skips such resamples).
    """
    t, p = np.asarray(truth, dtype=bool), np.asarray(predicted, dtype=bool)
    tp, fp, fn = (t & p).sum(0), (~t & p).sum(0), (t & ~p).sum(0)
    defined = (tp + fn) > 0
    if not defined.any():
        raise ValueError("clinical F1: no finding has a positive case")
    per = 2 * tp[defined] / (2 * tp[defined] + fp[defined] + fn[defined])
    micro = 2 * tp[defined].sum() / (2 * tp[defined].sum() + fp[defined].sum() + fn[defined].sum())
    return float(micro), float(per.mean())


def evaluate_reports(generated: Sequence[str], references: Sequence[str], truth: np.ndarray,
                     patient_ids: Sequence, n_boot: int = 200, seed: int = 0) -> dict[str, Estimate]:
    """Every metric of one row, each with its patient-bootstrap interval.

    ``truth``: (N, 14) bool ground-truth labels over CXR14_FINDINGS. Keys: bleu4, rouge_l, clinical_f1_micro,
    clinical_f1_macro (14 findings vs the reference reports), clinical_f1_micro_5 / _macro_5 (the 5 competition
    findings), and the same four with ``_gt`` (against the ground truth).
    """
    gen, ref = np.asarray(list(generated), dtype=object), np.asarray(list(references), dtype=object)
    pred, ref_labels = positive_findings(gen), positive_findings(ref)
    five = [CXR14_FINDINGS.index(f) for f in COMPETITION]
    out = {
        "bleu4": patient_bootstrap(bleu4_from_statistics, (bleu4_statistics(gen, ref),), patient_ids, n_boot,
                                   seed=seed),
        "rouge_l": patient_bootstrap(np.mean, (rouge_l(gen, ref),), patient_ids, n_boot, seed=seed),
    }
    for suffix, target in (("", ref_labels), ("_gt", np.asarray(truth, dtype=bool))):
        for cols, tag in ((slice(None), ""), (five, "_5")):
            for k, kind in enumerate(("micro", "macro")):
                def metric(t, p, k=k, cols=cols):
                    return clinical_f1(t[:, cols], p[:, cols])[k]

                out[f"clinical_f1_{kind}{tag}{suffix}"] = patient_bootstrap(metric, (target, pred), patient_ids,
                                                                           n_boot, seed=seed)
    return out
