"""DINO loss on the [CLS] token: teacher targets + cross-entropy (DINOv2 semantics).

The teacher *target* is computed apart from the cross-entropy, in one of two ways:

- ``softmax_center_teacher``: softmax of centred, sharpened teacher logits (DINO). The centre is an
  exponential moving average of the teacher logits, updated explicitly with ``update_center`` once per step.
- ``sinkhorn_knopp_teacher``: a few Sinkhorn-Knopp iterations that make the batch of targets use every
  prototype equally (SwAV / DINOv2 large-model configs). Needs no centre.

The loss itself is ``-sum_k t_k log softmax(s / student_temp)_k``, averaged over the batch and *summed* over
all (student crop, teacher crop) pairs handed in. Which pairs to form (e.g. skip a global crop against itself)
and how to normalise by the number of terms is the caller's choice, exactly as in DINOv2.

Collectives are guarded: outside a ``torch.distributed`` run everything works on one process.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

__all__ = [
    "DINOLoss",
    "all_reduce_sum",
    "cross_entropy_pairs",
    "ema_center",
    "sinkhorn_knopp",
    "softmax_center",
    "world_size",
]


# ===== collectives (no-ops outside distributed runs) =====


def world_size() -> int:
    """Number of processes in the default group, 1 outside ``torch.distributed``."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """In-place sum over processes when distributed; returns ``x`` unchanged otherwise."""
    if world_size() > 1:
        dist.all_reduce(x)
    return x


def _all_reduce_max(x: torch.Tensor) -> torch.Tensor:
    if world_size() > 1:
        dist.all_reduce(x, op=dist.ReduceOp.MAX)
    return x


# ===== pure functions =====


def softmax_center(teacher_output: torch.Tensor, center: torch.Tensor, teacher_temp: float) -> torch.Tensor:
    """Centred, sharpened teacher probabilities ``softmax((t - c) / teacher_temp)``.

    teacher_output: (..., K) logits; center: broadcastable to it, e.g. (1, K). Returns (..., K), rows sum to 1.
    """
    return F.softmax((teacher_output.float() - center) / teacher_temp, dim=-1)


@torch.no_grad()
def sinkhorn_knopp(
    teacher_output: torch.Tensor,
    teacher_temp: float,
    n_iterations: int = 3,
    n_samples: float | None = None,
) -> torch.Tensor:
    """Sinkhorn-Knopp targets (SwAV, DINOv2), balanced over the *global* batch.

    teacher_output: (B, K) logits of this process. n_samples: total number of rows over all processes
    (default B * world_size; iBOT passes the all-reduced number of masked patches). Returns (B, K) whose rows
    sum to 1 (exactly, when ``n_iterations >= 1``) and whose columns, summed over all processes, approach
    ``n_samples / K`` as iterations increase (every prototype used equally).
    """
    if teacher_output.ndim != 2:
        raise ValueError(f"sinkhorn_knopp expects (B, K) logits, got shape {tuple(teacher_output.shape)}")
    logits = teacher_output.float() / teacher_temp  # (B, K)
    # Subtracting the global max avoids overflow in exp and cancels in the first normalisation below.
    logits = logits - _all_reduce_max(logits.max().detach().clone())
    q = torch.exp(logits).t()  # (K, B)
    k = q.shape[0]
    b = float(q.shape[1] * world_size() if n_samples is None else n_samples)
    q = q / all_reduce_sum(q.sum())
    for _ in range(n_iterations):
        # each prototype (row) gets total mass 1/K over the global batch
        q = q / all_reduce_sum(q.sum(dim=1, keepdim=True)) / k  # (K, B)
        # each sample (column) gets mass 1/B
        q = q / q.sum(dim=0, keepdim=True) / b  # (K, B)
    return (q * b).t()  # (B, K), rows sum to 1


def cross_entropy_pairs(
    student_output_list: list[torch.Tensor],
    teacher_probs_list: list[torch.Tensor],
    student_temp: float,
) -> torch.Tensor:
    """``sum_{s, t} mean_b( -sum_k t[b, k] * log_softmax(s[b] / student_temp)[k] )`` over all list pairs.

    student_output_list: S tensors (B, K) of student logits; teacher_probs_list: T tensors (B, K) of teacher
    probabilities (rows sum to 1). Returns a scalar: the sum of S*T batch-mean cross-entropies.
    """
    if not student_output_list or not teacher_probs_list:
        raise ValueError("cross_entropy_pairs needs at least one student and one teacher tensor")
    total = student_output_list[0].new_zeros((), dtype=torch.float32)
    for s in student_output_list:
        log_p = F.log_softmax(s.float() / student_temp, dim=-1)  # (B, K)
        for t in teacher_probs_list:
            if t.shape != s.shape:
                raise ValueError(f"student {tuple(s.shape)} and teacher {tuple(t.shape)} shapes differ")
            total = total - (t * log_p).sum(dim=-1).mean()
    return total


def ema_center(center: torch.Tensor, batch_center: torch.Tensor, center_momentum: float) -> torch.Tensor:
    """``center * m + batch_center * (1 - m)``: the exponential moving average used for centring."""
    return center * center_momentum + batch_center * (1.0 - center_momentum)


# ===== module =====


class DINOLoss(nn.Module):
    """DINO [CLS] loss with a centre buffer of shape (1, out_dim).

    Args:
        out_dim: number of prototypes K (65536 in DINOv2 / RAD-DINO; a few hundred for tiny runs).
        student_temp: student softmax temperature (0.1 in DINOv2).
        center_momentum: EMA momentum of the centre (0.9 in DINOv2).

    Typical step::

        t = loss.softmax_center_teacher(teacher_logits, teacher_temp)   # or sinkhorn_knopp_teacher
        value = loss(student_logit_chunks, [t_chunk_a, t_chunk_b])
        loss.update_center(teacher_logits)                              # explicit, after the targets
    """

    def __init__(self, out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9) -> None:
        super().__init__()
        if out_dim < 1:
            raise ValueError(f"DINOLoss: out_dim must be >= 1, got {out_dim}")
        self.out_dim = out_dim
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))

    @torch.no_grad()
    def softmax_center_teacher(self, teacher_output: torch.Tensor, teacher_temp: float) -> torch.Tensor:
        """(B, K) teacher logits → (B, K) centred, sharpened probabilities (uses the current centre)."""
        return softmax_center(teacher_output, self.center, teacher_temp)

    @torch.no_grad()
    def sinkhorn_knopp_teacher(
        self, teacher_output: torch.Tensor, teacher_temp: float, n_iterations: int = 3
    ) -> torch.Tensor:
        """(B, K) teacher logits → (B, K) Sinkhorn-Knopp targets, balanced over the global batch."""
        return sinkhorn_knopp(teacher_output, teacher_temp, n_iterations=n_iterations)

    def forward(
        self, student_output_list: list[torch.Tensor], teacher_out_softmaxed_centered_list: list[torch.Tensor]
    ) -> torch.Tensor:
        """Sum over (student, teacher) pairs of the batch-mean cross-entropy; no state changes here.

        student_output_list: list of (B, K) student logits; teacher_out_softmaxed_centered_list: list of (B, K)
        teacher probabilities. Returns a scalar.
        """
        return cross_entropy_pairs(student_output_list, teacher_out_softmaxed_centered_list, self.student_temp)

    @torch.no_grad()
    def update_center(self, teacher_output: torch.Tensor) -> None:
        """EMA update of the centre with the mean teacher logit over the global batch. teacher_output: (B, K)."""
        batch_center = teacher_output.float().sum(dim=0, keepdim=True)  # (1, K)
        all_reduce_sum(batch_center)
        batch_center = batch_center / (teacher_output.shape[0] * world_size())
        self.center.copy_(ema_center(self.center, batch_center, self.center_momentum))

    def extra_repr(self) -> str:
        return f"out_dim={self.out_dim}, student_temp={self.student_temp}, center_momentum={self.center_momentum}"
