"""Evaluating a CLIP model without labels at training time: zero-shot classification and retrieval.

Zero-shot (CLIP; BioViL; COLIPRI): each finding gets a prompt pair, "No
pleural effusion." vs "Pleural effusion.", embedded by the text tower (averaged
over report-like templates); an image's score is its cosine similarity to the
positive prompt minus that to the negative one. AUROC per finding against the
manifest's labels (uncertain and unknown labels left out).

Retrieval: the (N, N) image–report cosine matrix of the evaluation split;
recall@k is the share of images whose own report is among the k nearest
reports (image→text), and vice versa (text→image). Reports that are word for
word identical count as the same report.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy.stats import rankdata

from raddino_lib.data.datasets import ManifestDataset
from raddino_lib.data.reports import zero_shot_prompts
from raddino_lib.data.schema import CXR14_FINDINGS, label_column
from raddino_lib.data.tokenizer import WordPieceTokenizer
from raddino_lib.data.transforms import EvalTransform
from raddino_lib.models.clip import CLIPModel
from raddino_lib.models.two_tower import RaddinoCLIP, TwoTower
from raddino_lib.probe.bootstrap import Estimate, patient_bootstrap

PROMPT_TEMPLATES: tuple[str, ...] = ("{}", "FINDINGS: {} IMPRESSION: {}")  # averaged (CLIP prompt ensembling)
RECALL_KS: tuple[int, ...] = (1, 5, 10)


@dataclass
class CLIPEvaluation:
    split: str
    image_ids: list[str]
    patient_ids: np.ndarray  # (N,)
    reports: list[str]  # (N,) "" where a row has none
    image_emb: np.ndarray  # (N, P) unit norm
    text_emb: np.ndarray  # (N, P) unit norm (zeros where no report)
    scores: np.ndarray  # (N, F) zero-shot score: cos(image, positive) - cos(image, negative)
    labels: np.ndarray  # (N, F) 1 / 0, NaN for uncertain or unknown
    findings: tuple[str, ...] = CXR14_FINDINGS

    def zeroshot_auroc(self) -> dict[str, float]:
        """AUROC per finding; NaN where the split lacks positives or negatives."""
        return {f: _auroc(self.labels[:, j], self.scores[:, j]) for j, f in enumerate(self.findings)}

    def macro_auroc(self, n_boot: int = 0, seed: int = 0) -> Estimate:
        """Mean AUROC over findings with both classes, with a patient-level bootstrap interval."""
        if n_boot <= 0:
            return Estimate(_macro(self.labels, self.scores), float("nan"), float("nan"), 0)
        return patient_bootstrap(_macro, (self.labels, self.scores), self.patient_ids, n_boot, seed=seed)

    def similarity(self) -> np.ndarray:
        """(M, M) image × report cosine matrix over the rows that have a report."""
        has = np.array([bool(r) for r in self.reports])
        return self.image_emb[has] @ self.text_emb[has].T

    def retrieval(self, ks: tuple[int, ...] = RECALL_KS) -> dict[str, dict[int, float]]:
        """{"i2t": {k: recall}, "t2i": {k: recall}} over the rows that have a report."""
        sim = self.similarity()  # (M, M)
        texts = [" ".join(r.lower().split()) for r in self.reports if r]
        _, group = np.unique(texts, return_inverse=True)
        relevant = group[:, None] == group[None, :]  # (M, M) same report text
        return {"i2t": _recall(sim, relevant, ks), "t2i": _recall(sim.T, relevant.T, ks)}

    def summary(self, n_boot: int = 0) -> dict[str, object]:
        per = self.zeroshot_auroc()
        out: dict[str, object] = {"n_eval": len(self.image_ids), "eval_split": self.split,
                                  "zeroshot_macro_auroc": self.macro_auroc(n_boot).value, "zeroshot_auroc": per}
        for direction, recalls in self.retrieval().items():
            out.update({f"retrieval_r@{k}_{direction}": v for k, v in recalls.items()})
        return out


def _auroc(y: np.ndarray, s: np.ndarray) -> float:
    """AUROC by the Mann–Whitney rank sum (ties get mean ranks; equals sklearn's roc_auc_score, ~50x faster
    inside the bootstrap); NaN labels are left out, NaN when one class is missing."""
    keep = ~np.isnan(y)
    y, s = y[keep] > 0.5, s[keep]
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _macro(labels: np.ndarray, scores: np.ndarray) -> float:
    values = [_auroc(labels[:, j], scores[:, j]) for j in range(labels.shape[1])]
    values = [v for v in values if not np.isnan(v)]
    if not values:
        raise ValueError("no finding has both positives and negatives")
    return float(np.mean(values))


def _recall(sim: np.ndarray, relevant: np.ndarray, ks: tuple[int, ...]) -> dict[int, float]:
    """sim, relevant: (Q, M); share of queries with a relevant item among their top-k."""
    order = np.argsort(-sim, axis=1, kind="stable")  # (Q, M) best first
    hits = np.take_along_axis(relevant, order, axis=1)  # (Q, M)
    first = np.where(hits.any(axis=1), hits.argmax(axis=1), sim.shape[1])  # rank of the first relevant item
    return {k: float((first < k).mean()) for k in ks}


@torch.no_grad()
def encode_prompts(model: TwoTower, findings: tuple[str, ...]) -> torch.Tensor:
    """(F, 2, P) unit-norm embeddings of each finding's (negative, positive) prompt, template-averaged."""
    out = []
    for f in findings:
        pair = []
        for prompt in zero_shot_prompts(f):
            emb = model.encode_text([t.format(prompt, prompt) for t in PROMPT_TEMPLATES]).mean(0)  # (P,)
            pair.append(emb / emb.norm())
        out.append(torch.stack(pair))
    return torch.stack(out)  # (F, 2, P)


@torch.no_grad()
def evaluate_clip(model: CLIPModel, tokenizer: WordPieceTokenizer, df: pd.DataFrame, split: str,
                  image_size: int, device: torch.device, batch_size: int = 128,
                  findings: tuple[str, ...] = CXR14_FINDINGS) -> CLIPEvaluation:
    """Embed every image and report of ``split`` and score the zero-shot prompts (this package's CLIP model)."""
    return evaluate_two_tower(RaddinoCLIP(model, tokenizer), df, split, image_size, device, batch_size, findings)


@torch.no_grad()
def evaluate_two_tower(model: TwoTower, df: pd.DataFrame, split: str, image_size: int | None = None,
                       device: torch.device | str = "cpu", batch_size: int = 128,
                       findings: tuple[str, ...] = CXR14_FINDINGS) -> CLIPEvaluation:
    """Zero-shot scores and retrieval embeddings of any two-tower model (``models.two_tower``) on ``split``.

    Images are prepared with the model's own mean / std at ``image_size`` (None: the model's own input size).
    """
    model = model.to(device).eval()
    size = image_size or model.image_size
    data = ManifestDataset(df, split=split, transform=EvalTransform(size, model.image_mean, model.image_std))
    if len(data) == 0:
        raise ValueError(f"split '{split}' has no rows to evaluate on (splits present: {sorted(set(df['split']))})")
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)
    image_emb = torch.cat([model.encode_image(b["image"].to(device)).cpu() for b in loader])  # (N, P)
    rows = df.iloc[data.positions]
    reports = rows["report"].fillna("").astype(str).str.strip().tolist() if "report" in rows else [""] * len(rows)
    text_emb = torch.zeros_like(image_emb)
    has = [i for i, r in enumerate(reports) if r]
    for start in range(0, len(has), batch_size):
        chunk = has[start:start + batch_size]
        text_emb[chunk] = model.encode_text([reports[i] for i in chunk]).cpu()
    prompts = encode_prompts(model, findings).cpu()  # (F, 2, P)
    sims = torch.einsum("np,fcp->nfc", image_emb, prompts)  # (N, F, 2)
    labels = np.stack([_labels(rows, f) for f in findings], axis=1)  # (N, F)
    return CLIPEvaluation(split, rows["image_id"].astype(str).tolist(), rows["patient_id"].astype(str).to_numpy(),
                          reports, image_emb.numpy(), text_emb.numpy(), (sims[..., 1] - sims[..., 0]).numpy(),
                          labels, tuple(findings))


def _labels(rows: pd.DataFrame, finding: str) -> np.ndarray:
    """(N,) 1 / 0, NaN for uncertain (-1), empty or missing columns."""
    col = label_column(finding)
    if col not in rows.columns:
        return np.full(len(rows), np.nan)
    values = np.array(pd.to_numeric(rows[col].replace("", np.nan), errors="coerce"), dtype=float)
    values[values == -1] = np.nan
    return values
