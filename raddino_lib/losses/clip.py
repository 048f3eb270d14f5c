"""Symmetric InfoNCE (CLIP) loss with a learnable temperature.

Radford et al. 2021 (CLIP) and Zhang et al. 2020 (ConVIRT): a batch of B
image–text pairs gives a (B, B) similarity matrix; row i should pick column i
(image → text) and column j should pick row j (text → image). The loss is the
mean of the two cross-entropies. Two invariants worth knowing:

- with identical (or constant) embeddings every logit is equal and the loss is
  exactly ``log(B)`` — chance level;
- the loss is ``>= 0`` and tends to 0 as the diagonal dominates.

The temperature is learned as ``logit_scale = log(1 / tau)``, initialized at
``log(1 / 0.07)`` and clamped so ``exp(logit_scale) <= 100`` (CLIP's choice).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

INIT_TEMPERATURE = 0.07  # CLIP's initial tau
MAX_LOGIT_SCALE = 100.0  # CLIP clamps exp(logit_scale) at 100


def clip_logits(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor | float) -> torch.Tensor:
    """Scaled cosine similarities.

    image_emb: (B, D), text_emb: (B, D) (normalized here); logit_scale: scalar, log of the inverse temperature.
    Returns (B, B): ``logits[i, j] = exp(logit_scale) * cos(image_i, text_j)``.
    """
    if image_emb.shape != text_emb.shape or image_emb.ndim != 2:
        raise ValueError(f"clip_logits expects two (B, D) tensors of the same shape, got "
                         f"{tuple(image_emb.shape)} and {tuple(text_emb.shape)}")
    scale = torch.as_tensor(logit_scale, dtype=image_emb.dtype, device=image_emb.device)
    scale = scale.clamp(max=math.log(MAX_LOGIT_SCALE)).exp()
    img = F.normalize(image_emb, dim=-1)
    txt = F.normalize(text_emb, dim=-1)
    return scale * img @ txt.t()  # (B, B)


def clip_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor | float,
              groups: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE: mean of image→text and text→image cross-entropies.

    image_emb, text_emb: (B, D). groups: optional (B,) ints; pairs with the same group id (e.g. identical
    report texts, "No acute cardiopulmonary process.") are all positives for each other, the target being
    uniform over the group — otherwise the loss pushes apart images whose reports are word for word the same.
    None = every pair is its own group (targets on the diagonal). Returns a scalar tensor.
    """
    logits = clip_logits(image_emb, text_emb, logit_scale)  # (B, B)
    B = logits.shape[0]
    if groups is None:
        targets = torch.arange(B, device=logits.device)
        return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets))
    if groups.shape != (B,):
        raise ValueError(f"groups must have shape ({B},), got {tuple(groups.shape)}")
    same = (groups[:, None] == groups[None, :]).to(logits.dtype)  # (B, B), symmetric
    targets = same / same.sum(dim=1, keepdim=True)  # (B, B), rows sum to 1
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets))


class CLIPLoss(nn.Module):
    """Thin module owning the learnable ``logit_scale`` (log inverse temperature)."""

    def __init__(self, init_temperature: float = INIT_TEMPERATURE, learn_temperature: bool = True) -> None:
        super().__init__()
        if not 0 < init_temperature:
            raise ValueError(f"init_temperature must be > 0, got {init_temperature}")
        value = torch.tensor(math.log(1.0 / init_temperature))
        self.logit_scale = nn.Parameter(value, requires_grad=learn_temperature)

    @property
    def temperature(self) -> float:
        """Current tau = 1 / exp(clamped logit_scale)."""
        return 1.0 / float(self.logit_scale.detach().clamp(max=math.log(MAX_LOGIT_SCALE)).exp())

    def forward(self, image_emb: torch.Tensor, text_emb: torch.Tensor,
                groups: torch.Tensor | None = None) -> torch.Tensor:
        return clip_loss(image_emb, text_emb, self.logit_scale, groups)
