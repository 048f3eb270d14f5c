"""KoLeo regulariser (Kozachenko-Leonenko entropy estimator; Sablayrolles et al. 2019, used by DINOv2).

Spreads features uniformly on the sphere by pushing every vector away from its nearest neighbour in the batch:

    loss = -mean_i log(min_{j != i} ||x_i - x_j|| + eps),  x = L2-normalised features.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["KoLeoLoss", "koleo", "nearest_neighbor_indices"]


def nearest_neighbor_indices(x: torch.Tensor) -> torch.Tensor:
    """For unit vectors x (B, D), the index (B,) of each row's nearest other row (max inner product)."""
    dots = x @ x.t()  # (B, B)
    dots.fill_diagonal_(-2.0)  # below any cosine: never pick yourself
    return dots.argmax(dim=1)


def koleo(student_output: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """KoLeo loss of (B, D) features (B >= 2). Returns a scalar; computed in float32."""
    if student_output.ndim != 2 or student_output.shape[0] < 2:
        raise ValueError(f"KoLeo needs (B, D) features with B >= 2, got shape {tuple(student_output.shape)}")
    x = F.normalize(student_output.float(), p=2, dim=-1, eps=eps)  # (B, D)
    with torch.no_grad():
        idx = nearest_neighbor_indices(x)  # (B,)
    distances = (x - x[idx]).norm(dim=-1)  # (B,)
    return -torch.log(distances + eps).mean()


class KoLeoLoss(nn.Module):
    """Thin module around ``koleo``; DINOv2 applies it to the student [CLS] of each global crop separately."""

    def forward(self, student_output: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
        """student_output: (B, D) backbone features (before the head). Returns a scalar."""
        return koleo(student_output, eps=eps)
