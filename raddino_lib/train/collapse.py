"""Collapse diagnostics of self-distillation, logged every step, and a monitor that warns once.

DINO-style training has two trivial solutions, and the loss alone does not always tell them apart from
learning:

- **uniform collapse**: every prototype gets the same score for every image; the teacher's targets are
  uniform, the DINO loss sits at log K and the student has nothing to learn;
- **one-hot (total) collapse**: every image lands on the same prototype; targets are sharp but identical
  across the batch, the loss falls towards 0.

Six numbers separate them from a healthy run (all on the global crops of one step):

| name | what | healthy | uniform | one-hot |
|---|---|---|---|---|
| ``teacher_entropy`` | mean entropy of a teacher target (nats) | well below log K | ≈ log K | ≈ 0 |
| ``student_entropy`` | mean entropy of the student's softmax (nats) | below log K | ≈ log K | ≈ 0 |
| ``prototypes_used`` | exp(entropy of the batch-mean target) | many | K | ≈ 1 |
| ``teacher_logit_std`` | std of a teacher logit row across prototypes | ~1/√bottleneck or more | ≈ 0 | large |
| ``teacher_logit_spread`` | std across the batch of a prototype's teacher logit, mean | ≫ temp | ≪ temp | ≈ 0 |
| ``cls_std`` | std across the batch of the L2-normalised teacher [CLS] features, mean over dims | ~1/√D | — | ≈ 0 |

Centering and Sinkhorn-Knopp both remove what is common to the batch, so what the targets can express about an
image is its ``teacher_logit_spread`` divided by the teacher temperature: a spread far below the temperature
gives near-uniform targets even when ``teacher_logit_std`` looks healthy (images the network cannot yet tell
apart). ``prototypes_used`` is bounded by the batch too: a batch of n targets can use at most about n · exp(mean
target entropy) prototypes.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["COLLAPSE_COLUMNS", "CollapseMonitor", "collapse_stats", "entropy"]

COLLAPSE_COLUMNS = ("teacher_entropy", "student_entropy", "prototypes_used", "teacher_logit_std",
                    "teacher_logit_spread", "cls_std")


def entropy(p: torch.Tensor) -> torch.Tensor:
    """Entropy in nats of each row of probabilities p (..., K) → (...)."""
    return -(p * p.clamp_min(1e-30).log()).sum(dim=-1)


@torch.no_grad()
def collapse_stats(teacher_targets: torch.Tensor, teacher_logits: torch.Tensor, student_logits: torch.Tensor,
                   student_temp: float, teacher_cls: torch.Tensor) -> dict[str, float]:
    """The five diagnostics of one step.

    teacher_targets: (n, K) teacher probabilities of the global crops; teacher_logits: (n, K) their raw head
    outputs; student_logits: (n, K) the student's head outputs on the global crops; teacher_cls: (n, D) the
    teacher backbone's [CLS] features.
    """
    targets = teacher_targets.float()
    student = F.softmax(student_logits.float() / student_temp, dim=-1)
    cls = F.normalize(teacher_cls.float(), dim=-1)
    return {
        "teacher_entropy": float(entropy(targets).mean()),
        "student_entropy": float(entropy(student).mean()),
        "prototypes_used": float(entropy(targets.mean(dim=0)).exp()),
        "teacher_logit_std": float(teacher_logits.float().std(dim=-1).mean()),
        "teacher_logit_spread": float(teacher_logits.float().std(dim=0).mean()) if len(teacher_logits) > 1
        else float("nan"),
        "cls_std": float(cls.std(dim=0).mean()) if cls.shape[0] > 1 else float("nan"),
    }


@dataclass
class CollapseMonitor:
    """Classifies each step as healthy / uniform / one-hot and warns once after ``patience`` steps in a row.

    Args:
        n_prototypes: K, the head's number of prototypes.
        patience: consecutive collapsed steps before the warning (a run may pass through a collapsed-looking
            phase at the very start, before the teacher has moved).
        uniform_fraction: a step is uniform when the teacher targets' entropy exceeds this fraction of log K.
        one_hot_prototypes: a step is one-hot when the batch-mean target uses fewer prototypes than this.
    """

    n_prototypes: int
    patience: int = 50
    uniform_fraction: float = 0.98
    one_hot_prototypes: float = 1.5

    def __post_init__(self) -> None:
        self._kind = "healthy"
        self._run = 0
        self.warned: str | None = None

    def state(self, stats: dict[str, float]) -> str:
        """"uniform", "one-hot" or "healthy" for one step's ``collapse_stats``."""
        if stats["teacher_entropy"] > self.uniform_fraction * math.log(self.n_prototypes):
            return "uniform"
        if stats["prototypes_used"] < self.one_hot_prototypes:
            return "one-hot"
        return "healthy"

    def update(self, stats: dict[str, float], step: int) -> str:
        """Record one step; warn (once per run) when the same collapse lasted ``patience`` steps."""
        kind = self.state(stats)
        self._run = self._run + 1 if kind == self._kind else 1
        self._kind = kind
        if kind != "healthy" and self._run >= self.patience and self.warned is None:
            self.warned = kind
            warnings.warn(self.message(kind, step, stats), RuntimeWarning, stacklevel=2)
        return kind

    def message(self, kind: str, step: int, stats: dict[str, float]) -> str:
        log_k = math.log(self.n_prototypes)
        if kind == "uniform":
            return (f"pretraining has sat at uniform collapse for {self._run} steps (step {step}): teacher target "
                    f"entropy {stats['teacher_entropy']:.3f} of log K = {log_k:.3f}, teacher logit std "
                    f"{stats['teacher_logit_std']:.4f}. The targets say nothing about the image; try a lower "
                    "teacher temperature, a slower teacher (higher momentum), fewer prototypes for the batch, or a "
                    "lower learning rate for the head.")
        return (f"pretraining has sat at one-hot collapse for {self._run} steps (step {step}): the batch uses "
                f"{stats['prototypes_used']:.2f} prototypes. Try Sinkhorn-Knopp targets or a higher teacher "
                "temperature.")
