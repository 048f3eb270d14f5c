"""Evaluating a COLIPRI model: zero-shot classification, retrieval, linear probing and report generation.

Every metric comes with a 95% patient-bootstrap interval, on the test split.

- **zero-shot**: per finding, a prompt pair (negative, positive sentence); a volume's score is
  cos(volume, positive) − cos(volume, negative) in the shared space; AUROC per finding, macro average;
- **retrieval**: image→report and report→image recall@k over the test set (a report identical word for word to
  the true one counts as a hit); chance is k / N;
- **linear probe**: logistic regression per finding on the frozen features (attention-pooled token, mean token);
- **report generation** (models trained with the generation objective): their own decoder writes the test
  reports from the token grid; BLEU-4, ROUGE-L, and clinical F1 of the CT labeler's findings against the
  reference reports' and against the phantoms' ground truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from raddino_lib.data.ct_reports import ct_zero_shot_prompts, label_ct_reports
from raddino_lib.data.schema import CT_FINDINGS
from raddino_lib.probe.bootstrap import Estimate, patient_bootstrap
from raddino_lib.probe.ct_difficulty import auroc_summary
from raddino_lib.probe.report_generation import (
    bleu4_from_statistics,
    bleu4_statistics,
    clinical_f1,
    generate_reports,
    rouge_l,
)

RECALL_AT = (1, 5, 10)


@dataclass
class VolumeEmbeddings:
    embedding: np.ndarray  # (N, P) unit vectors in the shared image-text space
    features: np.ndarray  # (N, 2E) attention-pooled token and mean token: the linear probe's input
    prefix: np.ndarray  # (N, T, E) the pooled token grid the report decoder reads
    token_scores: np.ndarray | None  # (N, n_tokens, P) every token in the shared space (score maps), on request


@torch.no_grad()
def encode_volumes(model, volumes: torch.Tensor, batch_size: int = 16, device: str = "cpu",
                   token_scores: bool = False) -> VolumeEmbeddings:
    """Run the image tower of a trained (or untrained) COLIPRI model over (N, 1, D, H, W) volumes.
    ``token_scores``: also project every token (N x tokens x P floats: ask for it on the volumes to map only)."""
    model.eval().to(device)
    keys = ("embedding", "features", "prefix") + (("token_scores",) if token_scores else ())
    parts: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    for batch in volumes.split(batch_size):
        emb, tokens = model.image(batch.to(device))
        pooled, _ = model.image.pool(tokens)
        parts["embedding"].append(F.normalize(emb, dim=-1).cpu().numpy())
        parts["features"].append(torch.cat([pooled, tokens.mean(1)], 1).cpu().numpy())
        parts["prefix"].append(model.prefix_tokens(tokens).cpu().numpy())
        if token_scores:
            parts["token_scores"].append(F.normalize(model.image.token_scores(tokens), dim=-1).cpu().numpy())
    return VolumeEmbeddings(**{"token_scores": None, **{k: np.concatenate(v) for k, v in parts.items()}})


@torch.no_grad()
def encode_texts(model, tokenizer, texts: Sequence[str], batch_size: int = 64, device: str = "cpu") -> np.ndarray:
    """(N, P) unit vectors of ``texts`` through the text tower and its projection."""
    model.eval().to(device)
    out = [F.normalize(model.encode_text(tokenizer(list(texts[i:i + batch_size])).to(device)), dim=-1).cpu().numpy()
           for i in range(0, len(texts), batch_size)]
    return np.concatenate(out)


# ===== zero-shot =====

def prompt_embeddings(model, tokenizer, findings: Sequence[str] = CT_FINDINGS, device: str = "cpu"
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(negative, positive) prompt embeddings, each (F, P)."""
    pairs = [ct_zero_shot_prompts(f) for f in findings]
    return (encode_texts(model, tokenizer, [n for n, _ in pairs], device=device),
            encode_texts(model, tokenizer, [p for _, p in pairs], device=device))


def zero_shot_scores(image_emb: np.ndarray, negative: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """(N, F): cos(image, positive prompt) − cos(image, negative prompt); unit vectors in."""
    return image_emb @ positive.T - image_emb @ negative.T


# ===== retrieval =====

def retrieval_ranks(query: np.ndarray, gallery: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """(N,) rank of each query's partner (0 = first): gallery items of another group scored strictly higher than
    the best item of the query's own group (item i's partner is gallery item i; ``groups`` marks identical texts)."""
    sims = query @ gallery.T
    same = groups[:, None] == groups[None, :]
    best_own = np.where(same, sims, -np.inf).max(1, keepdims=True)
    return ((sims > best_own) & ~same).sum(1)


def retrieval_eval(image_emb: np.ndarray, text_emb: np.ndarray, groups: np.ndarray, patient_ids: Sequence,
                   ks: Sequence[int] = RECALL_AT, n_boot: int = 200, seed: int = 0) -> dict:
    """{"image_to_report": {"R@k": Estimate dict}, "report_to_image": {...}, "chance": {"R@k": k / N}, "n": N}."""
    out: dict = {"n": len(image_emb), "chance": {f"R@{k}": min(1.0, k / len(image_emb)) for k in ks}}
    for name, q, g in (("image_to_report", image_emb, text_emb), ("report_to_image", text_emb, image_emb)):
        ranks = retrieval_ranks(q, g, np.asarray(groups))
        out[name] = {f"R@{k}": patient_bootstrap(np.mean, ((ranks < k).astype(float),), patient_ids, n_boot,
                                                 seed=seed).as_dict() for k in ks}
    return out


# ===== report generation =====

def ct_positive_findings(texts: Sequence[str]) -> np.ndarray:
    """(N, 18) bool: the CT labeler reads each finding as stated (1) in each text."""
    return (label_ct_reports(list(texts))[list(CT_FINDINGS)].to_numpy() == 1).reshape(len(texts), len(CT_FINDINGS))


def report_metrics(generated: Sequence[str], references: Sequence[str], truth: np.ndarray, patient_ids: Sequence,
                   n_boot: int = 200, seed: int = 0) -> dict[str, Estimate]:
    """bleu4, rouge_l, clinical_f1_micro/macro (against the reference reports' labels) and the same two with
    ``_gt`` (against the ground truth ``truth``, (N, 18) bool), each with its patient-bootstrap interval."""
    gen, ref = np.asarray(list(generated), dtype=object), np.asarray(list(references), dtype=object)
    pred = ct_positive_findings(gen)
    out = {"bleu4": patient_bootstrap(bleu4_from_statistics, (bleu4_statistics(gen, ref),), patient_ids, n_boot,
                                      seed=seed),
           "rouge_l": patient_bootstrap(np.mean, (rouge_l(gen, ref),), patient_ids, n_boot, seed=seed)}
    for suffix, target in (("", ct_positive_findings(ref)), ("_gt", np.asarray(truth, dtype=bool))):
        for k, kind in enumerate(("micro", "macro")):
            out[f"clinical_f1_{kind}{suffix}"] = patient_bootstrap(lambda t, p, k=k: clinical_f1(t, p)[k],
                                                                  (target, pred), patient_ids, n_boot, seed=seed)
    return out


def generation_eval(model, decoder_tokenizer, test_prefix: np.ndarray, test_reports: Sequence[str],
                    truth: np.ndarray, patient_ids: Sequence, max_new_tokens: int = 160, n_boot: int = 200,
                    seed: int = 0, device: str = "cpu") -> tuple[dict[str, Estimate], list[str]]:
    """The model's own report decoder (trained with the encoder) writes the test reports; score them."""
    generated = generate_reports(model.decoder, decoder_tokenizer, test_prefix, max_new_tokens=max_new_tokens,
                                 device=device)
    return report_metrics(generated, test_reports, truth, patient_ids, n_boot, seed), generated


# ===== linear probe =====

def linear_probe_eval(features: np.ndarray, labels: np.ndarray, train: np.ndarray, test: np.ndarray,
                      usable: list[int], patient_ids: Sequence, n_boot: int = 200, seed: int = 0) -> dict:
    """Logistic regression per finding on standardised frozen features: the ct_difficulty floor's protocol."""
    from raddino_lib.probe.ct_difficulty import linear_probe_scores

    scores = linear_probe_scores(features, labels, train, test, usable, seed)
    return auroc_summary(scores, labels[test], usable, np.asarray(patient_ids), n_boot, seed)


def zero_shot_eval(scores: np.ndarray, labels: np.ndarray, usable: list[int], patient_ids: Sequence,
                   n_boot: int = 200, seed: int = 0) -> dict:
    """AUROC per usable finding and the macro average with its interval, from (N, 18) zero-shot scores."""
    return auroc_summary(scores, labels, usable, np.asarray(patient_ids), n_boot, seed)


# ===== segmentation probe =====

# Structures scored by the segmentation probe: name -> anatomy labels (legend names) merged into it.
SEG_STRUCTURES: dict[str, tuple[str, ...]] = {
    "lungs": ("lung_right", "lung_left"),
    "heart": ("heart_myocardium", "left_ventricle", "right_ventricle", "left_atrium", "right_atrium"),
    "aorta": ("aorta",),
    "vertebrae": ("vertebrae",),
    "liver": ("liver",),
}


def structure_maps(df, preprocess, legend: dict[int, str], structures: dict[str, tuple[str, ...]] = SEG_STRUCTURES
                   ) -> torch.Tensor:
    """(N, D, H, W) int64 class per voxel (0 = none of ``structures``, k = the k-th structure) from each row's
    ``mask_anatomy`` label map, resampled by nearest neighbour onto the encoder's input grid."""
    from raddino_lib.data.volume_io import read_nifti
    from raddino_lib.data.volume_transforms import crop_or_pad, resample

    if "abs_mask_anatomy" not in df.columns or (df["abs_mask_anatomy"].fillna("") == "").any():
        raise ValueError("the segmentation probe needs a mask_anatomy label map for every volume")
    by_name = {name: code for code, name in legend.items()}
    missing = sorted({n for names in structures.values() for n in names} - set(by_name))
    if missing:
        raise ValueError(f"the anatomy legend lacks {missing}; known: {sorted(by_name)}")
    lut = torch.zeros(max(legend) + 1, dtype=torch.int64)
    for k, names in enumerate(structures.values(), start=1):
        for n in names:
            lut[by_name[n]] = k
    out = []
    for path in df["abs_mask_anatomy"]:
        labels, spacing = read_nifti(path, labels=True)
        x = resample(torch.from_numpy(np.asarray(labels, dtype=np.int64)), spacing, preprocess.spacing, "nearest")
        out.append(lut[crop_or_pad(x, preprocess.size, 0).clamp(0, len(lut) - 1)])
    return torch.stack(out)


class PatchSegHead(torch.nn.Module):
    """Each frozen token → logits of its patch's p³ voxels for C classes (a linear layer), reassembled into the
    volume: the 3D form of the linear segmentation probe."""

    def __init__(self, dim: int, n_classes: int, patch: int, grid: tuple[int, int, int]) -> None:
        super().__init__()
        self.norm = torch.nn.LayerNorm(dim)
        self.linear = torch.nn.Linear(dim, n_classes * patch ** 3)
        self.c, self.p, self.grid = n_classes, patch, grid

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # (B, N, E) → (B, C, D, H, W)
        b, p, (gd, gh, gw) = len(tokens), self.p, self.grid
        x = self.linear(self.norm(tokens)).view(b, gd, gh, gw, self.c, p, p, p)
        return x.permute(0, 4, 1, 5, 2, 6, 3, 7).reshape(b, self.c, gd * p, gh * p, gw * p)


def segmentation_eval(model, volumes: torch.Tensor, targets: torch.Tensor, train: np.ndarray, test: np.ndarray,
                      patient_ids: Sequence, structures: Sequence[str] = tuple(SEG_STRUCTURES), epochs: int = 5,
                      batch_size: int = 16, lr: float = 3e-3, n_boot: int = 200, seed: int = 0,
                      device: str = "cpu") -> dict:
    """Train :class:`PatchSegHead` on the frozen encoder's tokens (train split, cross-entropy), then Dice per
    structure on the test split: {"per_structure": {name: Estimate dict}, "mean": Estimate dict}."""
    from raddino_lib.probe.segmentation import dice_per_image

    model.eval().to(device)
    cfg = model.image.config
    torch.manual_seed(seed)
    head = PatchSegHead(cfg.width, len(structures) + 1, cfg.patch_size, cfg.grid).to(device)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-4)
    tr = torch.from_numpy(np.flatnonzero(train))

    def tokens(idx: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model.image.encoder(volumes[idx].to(device))

    for _ in range(epochs):
        for idx in tr[torch.randperm(len(tr))].split(batch_size):
            loss = F.cross_entropy(head(tokens(idx)), targets[idx].to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
    te = torch.from_numpy(np.flatnonzero(test))
    with torch.no_grad():
        pred = torch.cat([head(tokens(idx)).argmax(1).cpu() for idx in te.split(batch_size)])
    classes = torch.arange(1, len(structures) + 1).view(1, -1, 1, 1, 1)
    n = len(te)
    onehot = lambda x: (x[:, None] == classes).reshape(n, len(structures), -1, 1).numpy()  # noqa: E731
    dice = dice_per_image(onehot(pred), onehot(targets[te]))  # (N, S), nan where a structure is absent in both
    per = {name: patient_bootstrap(lambda d: float(np.nanmean(d)), (dice[:, k],), patient_ids, n_boot,
                                   seed=seed).as_dict() for k, name in enumerate(structures)}
    mean = patient_bootstrap(lambda d: float(np.nanmean(d)), (dice,), patient_ids, n_boot, seed=seed).as_dict()
    return {"per_structure": per, "mean": mean}
