"""iBOT masked-patch loss (DINOv2 semantics): the student sees masked patches, the teacher sees them all.

For each masked patch of a global crop the student's patch logits are trained to match the teacher's target
for the same patch. Each image's masked patches share weight ``1 / n_masked(image)``, so every image counts
once whatever its mask ratio; the result is averaged over images:

    loss = -(1 / B) * sum_b sum_{p masked in b} (1 / n_b) * sum_k t[p, k] log softmax(s[p] / student_temp)_k

Teacher targets come from ``softmax_center_teacher`` (with a (1, 1, K) centre, updated explicitly by
``update_center``) or ``sinkhorn_knopp_teacher`` (balanced over all masked patches of the global batch).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from raddino_lib.losses.dino import all_reduce_sum, ema_center, sinkhorn_knopp, softmax_center, world_size

__all__ = ["iBOTPatchLoss", "masked_patch_loss", "masks_weight_from_masks"]


def masks_weight_from_masks(masks: torch.Tensor) -> torch.Tensor:
    """Per-masked-patch weights ``1 / n_masked(image)``.

    masks: (B, N) bool. Returns (M,) float with M = masks.sum(), ordered like ``masks.flatten().nonzero()``.
    """
    per_image = 1.0 / masks.sum(dim=-1).clamp(min=1).float()  # (B,)
    return per_image.unsqueeze(-1).expand_as(masks)[masks]  # (M,)


def masked_patch_loss(
    student_patch_tokens_masked: torch.Tensor,
    teacher_patch_tokens_masked: torch.Tensor,
    student_masks_flat: torch.Tensor,
    student_temp: float,
    n_masked_patches: int | None = None,
    masks_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Weighted cross-entropy over masked patches, averaged over images. Returns a scalar.

    student_patch_tokens_masked: (M', K) student logits of the masked patches (M' >= M when padded to an
    upper bound); teacher_patch_tokens_masked: (M', K) teacher probabilities; student_masks_flat: (B, N) bool;
    n_masked_patches: M, keep only the first M rows (default: all); masks_weight: (M,) (default: 1/n_b).
    """
    if student_patch_tokens_masked.shape != teacher_patch_tokens_masked.shape:
        raise ValueError(
            f"student {tuple(student_patch_tokens_masked.shape)} and teacher "
            f"{tuple(teacher_patch_tokens_masked.shape)} masked-patch shapes differ"
        )
    log_p = F.log_softmax(student_patch_tokens_masked.float() / student_temp, dim=-1)  # (M', K)
    ce = (teacher_patch_tokens_masked * log_p).sum(dim=-1)  # (M',)
    if n_masked_patches is not None:
        ce = ce[: int(n_masked_patches)]  # (M,)
    if masks_weight is None:
        masks_weight = masks_weight_from_masks(student_masks_flat)
    if masks_weight.shape[0] != ce.shape[0]:
        raise ValueError(
            f"{ce.shape[0]} masked-patch losses but {masks_weight.shape[0]} weights "
            "(pass n_masked_patches when the tokens are padded to an upper bound)"
        )
    return -(ce * masks_weight).sum() / student_masks_flat.shape[0]


class iBOTPatchLoss(nn.Module):
    """iBOT patch loss with a centre buffer of shape (1, 1, patch_out_dim).

    Args:
        patch_out_dim: number of patch prototypes K (the DINO head's out_dim when the head is shared).
        student_temp: student softmax temperature (0.1 in DINOv2).
        center_momentum: EMA momentum of the centre (0.9 in DINOv2).
    """

    def __init__(self, patch_out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9) -> None:
        super().__init__()
        if patch_out_dim < 1:
            raise ValueError(f"iBOTPatchLoss: patch_out_dim must be >= 1, got {patch_out_dim}")
        self.patch_out_dim = patch_out_dim
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, 1, patch_out_dim))

    @torch.no_grad()
    def softmax_center_teacher(self, teacher_patch_tokens: torch.Tensor, teacher_temp: float) -> torch.Tensor:
        """(M, K) or (B, N, K) teacher logits → probabilities of the same shape (current centre)."""
        center = self.center[0] if teacher_patch_tokens.ndim == 2 else self.center
        return softmax_center(teacher_patch_tokens, center, teacher_temp)

    @torch.no_grad()
    def sinkhorn_knopp_teacher(
        self,
        teacher_output: torch.Tensor,
        teacher_temp: float,
        n_masked_patches_tensor: torch.Tensor | int | None = None,
        n_iterations: int = 3,
    ) -> torch.Tensor:
        """(M, K) masked-patch teacher logits → (M, K) Sinkhorn-Knopp targets.

        n_masked_patches_tensor: this process's number of masked patches (tensor or int; summed over processes
        here). Default: M, the number of rows.
        """
        if n_masked_patches_tensor is None:
            n_total = None
        else:
            n_local = torch.as_tensor(n_masked_patches_tensor, dtype=torch.float32, device=teacher_output.device)
            n_total = float(all_reduce_sum(n_local.detach().clone().reshape(-1)[:1]).item())
        return sinkhorn_knopp(teacher_output, teacher_temp, n_iterations=n_iterations, n_samples=n_total)

    def forward(
        self, student_patch_tokens: torch.Tensor, teacher_patch_tokens: torch.Tensor, student_masks_flat: torch.Tensor
    ) -> torch.Tensor:
        """Dense form: (B, N, K) student logits and teacher probabilities, (B, N) bool masks → scalar."""
        masks = student_masks_flat.bool()
        return masked_patch_loss(
            student_patch_tokens[masks], teacher_patch_tokens[masks], masks, self.student_temp
        )

    def forward_masked(
        self,
        student_patch_tokens_masked: torch.Tensor,
        teacher_patch_tokens_masked: torch.Tensor,
        student_masks_flat: torch.Tensor,
        n_masked_patches: int | None = None,
        masks_weight: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Gathered form (what DINOv2 trains with); see ``masked_patch_loss``. No state changes here."""
        return masked_patch_loss(
            student_patch_tokens_masked,
            teacher_patch_tokens_masked,
            student_masks_flat.bool(),
            self.student_temp,
            n_masked_patches=n_masked_patches,
            masks_weight=masks_weight,
        )

    @torch.no_grad()
    def update_center(self, teacher_patch_tokens: torch.Tensor) -> None:
        """EMA update of the centre with the mean teacher patch logit.

        teacher_patch_tokens: (M, K) masked-patch logits (as DINOv2 trains) or (B, N, K); the batch centre is
        the mean over patches of each image, averaged over images and processes.
        """
        tokens = teacher_patch_tokens.float()
        if tokens.ndim == 2:
            tokens = tokens.unsqueeze(0)  # (1, M, K)
        batch_center = tokens.mean(dim=1).sum(dim=0, keepdim=True).unsqueeze(0)  # (1, 1, K)
        all_reduce_sum(batch_center)
        batch_center = batch_center / (tokens.shape[0] * world_size())
        self.center.copy_(ema_center(self.center, batch_center, self.center_momentum))

    def extra_repr(self) -> str:
        return (
            f"patch_out_dim={self.patch_out_dim}, student_temp={self.student_temp}, "
            f"center_momentum={self.center_momentum}"
        )
