"""Student / teacher meta-architecture of DINOv2 (and RAD-DINO), split into readable steps.

One training step reads top to bottom as the paper's algorithm::

    targets = arch.teacher_targets(batch, teacher_temp)   # teacher sees unmasked global crops (no grad)
    outputs = arch.student_outputs(batch)                 # student sees masked global + local crops
    total, parts = arch.total_loss(outputs, targets, batch)
    total.backward(); optimizer.step()
    arch.update_centers(targets)                          # softmax-centering state, explicit
    arch.update_teacher(momentum)                         # EMA of the student

Batch layout (``data.augment.collate_multicrop``): ``global_crops`` (2B, 3, G, G) view-major (all first
views, then all second views), ``local_crops`` (nL*B, 3, L, L), ``masks`` (2B, N) bool (True = masked patch),
``mask_indices`` (M,) flat indices into the (2B*N) patch tokens, ``masks_weight`` (M,) = 1 / n_masked(crop).

DINO pairs every student crop with the teacher's *other* global view (never the same view), which is why the
teacher's CLS outputs are swapped before matching the student's global crops.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from raddino_lib.losses import DINOLoss, KoLeoLoss, iBOTPatchLoss

N_GLOBAL_CROPS = 2


@dataclass
class TeacherTargets:
    dino: torch.Tensor  # (2, B, K) target probabilities, views swapped: [0] is for the student's view 0
    ibot: torch.Tensor  # (M, K) target probabilities of the masked patches
    cls_logits: torch.Tensor  # (2B, K) raw teacher logits (for the center update)
    patch_logits: torch.Tensor  # (M, K)
    cls_features: torch.Tensor  # (2B, D) teacher backbone [CLS] features, crop order (for diagnostics)


@dataclass
class StudentOutputs:
    global_cls: torch.Tensor  # (2B, D) backbone CLS features of the global crops (KoLeo acts here)
    global_logits: torch.Tensor  # (2B, K) head outputs of the global crops' CLS
    local_logits: torch.Tensor | None  # (nL*B, K) or None without local crops
    patch_logits: torch.Tensor  # (M, K) head outputs of the masked patch tokens


class SSLMetaArch(nn.Module):
    """student = {backbone, dino_head}; teacher = same modules, updated only by EMA.

    The DINO head is shared by the CLS and the masked patch tokens (DINOv2 default ``ibot_separate_head``
    False). The student backbone carries drop path; the teacher has none and stays in eval mode.
    """

    def __init__(self, student_backbone: nn.Module, teacher_backbone: nn.Module, student_head: nn.Module,
                 teacher_head: nn.Module, out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9,
                 centering: str = "softmax", sinkhorn_iterations: int = 3, dino_weight: float = 1.0,
                 ibot_weight: float = 1.0, koleo_weight: float = 0.1) -> None:
        super().__init__()
        self.student = nn.ModuleDict({"backbone": student_backbone, "dino_head": student_head})
        self.teacher = nn.ModuleDict({"backbone": teacher_backbone, "dino_head": teacher_head})
        self.teacher.load_state_dict(self.student.state_dict())
        self.teacher.requires_grad_(False)
        self.dino_loss = DINOLoss(out_dim, student_temp, center_momentum)
        self.ibot_loss = iBOTPatchLoss(out_dim, student_temp, center_momentum)
        self.koleo_loss = KoLeoLoss()
        self.centering = centering
        self.sinkhorn_iterations = sinkhorn_iterations
        self.weights = {"dino": dino_weight, "ibot": ibot_weight, "koleo": koleo_weight}
        self.n_prefix = int(getattr(student_backbone, "num_prefix_tokens", 1))  # CLS + registers
        self.head_bn = bool(getattr(student_head, "uses_batch_stats", False))

    def train(self, mode: bool = True) -> SSLMetaArch:
        super().train(mode)
        self.teacher["backbone"].eval()  # the teacher never uses drop path
        # A head with BatchNorm normalizes with the batch's statistics in the teacher too (DINO): its running
        # statistics are never learned, since the teacher only receives the student's parameters.
        self.teacher["dino_head"].train(mode and self.head_bn)
        return self

    def _head(self, head: nn.Module, groups: list[torch.Tensor]) -> torch.Tensor:
        """Head outputs of token groups, concatenated. One call when the head has no BatchNorm; otherwise
        [CLS] tokens and patch tokens (the last group) are normalized with their own batch statistics."""
        if not self.head_bn or len(groups) == 1 or groups[-1].shape[0] < 2:  # BatchNorm needs 2+ rows
            return head(torch.cat(groups))
        return torch.cat([head(torch.cat(groups[:-1])), head(groups[-1])])

    # ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def teacher_targets(self, batch: dict[str, torch.Tensor], teacher_temp: float) -> TeacherTargets:
        """Teacher forward on the unmasked global crops → DINO and iBOT target probabilities."""
        crops, mask_indices = batch["global_crops"], batch["mask_indices"]
        B = crops.shape[0] // N_GLOBAL_CROPS
        tokens = self.teacher["backbone"].forward_features(crops)  # (2B, T, D)
        cls_features = tokens[:, 0]  # (2B, D)
        cls = torch.cat(cls_features.chunk(N_GLOBAL_CROPS)[::-1])  # (2B, D), views swapped: A is matched to B
        patches = tokens[:, self.n_prefix:].flatten(0, 1)  # (2B*N, D)
        masked = patches.index_select(0, mask_indices)  # (M, D)
        logits = self._head(self.teacher["dino_head"], [cls, masked]).float()  # (2B + M, K)
        cls_logits, patch_logits = logits[:N_GLOBAL_CROPS * B], logits[N_GLOBAL_CROPS * B:]
        if self.centering == "sinkhorn":
            dino = self.dino_loss.sinkhorn_knopp_teacher(cls_logits, teacher_temp, self.sinkhorn_iterations)
            ibot = (self.ibot_loss.sinkhorn_knopp_teacher(patch_logits, teacher_temp, patch_logits.shape[0],
                                                          self.sinkhorn_iterations)
                    if _global_count(patch_logits.shape[0], logits.device) > 0 else patch_logits)
        else:
            dino = self.dino_loss.softmax_center_teacher(cls_logits, teacher_temp)
            ibot = self.ibot_loss.softmax_center_teacher(patch_logits, teacher_temp)
        K = dino.shape[-1]
        return TeacherTargets(dino=dino.view(N_GLOBAL_CROPS, B, K), ibot=ibot, cls_logits=cls_logits,
                              patch_logits=patch_logits, cls_features=cls_features)

    def student_outputs(self, batch: dict[str, torch.Tensor]) -> StudentOutputs:
        """Student forward: masked global crops and local crops through backbone and the shared head."""
        backbone, head = self.student["backbone"], self.student["dino_head"]
        g_tokens = backbone.forward_features(batch["global_crops"], masks=batch["masks"])  # (2B, T, D)
        g_cls = g_tokens[:, 0]  # (2B, D)
        masked = g_tokens[:, self.n_prefix:].flatten(0, 1).index_select(0, batch["mask_indices"])  # (M, D)
        parts = [g_cls]
        local = batch.get("local_crops")
        if local is not None and local.numel() > 0:
            parts.append(backbone.forward_features(local)[:, 0])  # (nL*B, D)
        parts.append(masked)
        logits = self._head(head, parts).float()  # (2B + nL*B + M, K)
        sizes = [p.shape[0] for p in parts]
        chunks = list(logits.split(sizes))
        return StudentOutputs(global_cls=g_cls, global_logits=chunks[0],
                              local_logits=chunks[1] if len(chunks) == 3 else None, patch_logits=chunks[-1])

    def total_loss(self, student: StudentOutputs, teacher: TeacherTargets, batch: dict[str, torch.Tensor]
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Weighted sum of DINO, iBOT and KoLeo; returns (total, unweighted parts detached)."""
        # DINO: each local crop against both teacher views, each global crop against the other view.
        # Normalized by the number of (student crop, teacher crop) terms (DINOv2: nL*2 + 2).
        n_local = 0 if student.local_logits is None else student.local_logits.shape[0] // teacher.dino.shape[1]
        n_terms = n_local * N_GLOBAL_CROPS + N_GLOBAL_CROPS * (N_GLOBAL_CROPS - 1)
        dino = self.dino_loss([student.global_logits], [teacher.dino.flatten(0, 1)]) * N_GLOBAL_CROPS
        if n_local:
            dino = dino + self.dino_loss(list(student.local_logits.chunk(n_local)), list(teacher.dino.unbind(0)))
        dino = dino / n_terms
        # iBOT: masked patches; mean over the masked patches of each crop, divided by the number of global crops.
        if student.patch_logits.shape[0] > 0:
            ibot = self.ibot_loss.forward_masked(student.patch_logits, teacher.ibot, batch["masks"],
                                                 masks_weight=batch["masks_weight"])
        else:
            ibot = student.patch_logits.sum() * 0.0
        # KoLeo: on the backbone CLS of each global view separately (DINOv2).
        koleo = sum(self.koleo_loss(x) for x in student.global_cls.chunk(N_GLOBAL_CROPS))
        w = self.weights
        total = w["dino"] * dino + w["ibot"] * ibot + w["koleo"] * koleo
        return total, {"dino_loss": dino.detach(), "ibot_loss": ibot.detach(), "koleo_loss": koleo.detach()}

    # ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def update_centers(self, teacher: TeacherTargets) -> None:
        """Softmax-centering: EMA of the teacher logits (all-reduced); nothing to do for Sinkhorn."""
        if self.centering != "softmax":
            return
        self.dino_loss.update_center(teacher.cls_logits)
        if _global_count(teacher.patch_logits.shape[0], teacher.patch_logits.device) > 0:
            self.ibot_loss.update_center(teacher.patch_logits)

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        """teacher <- momentum * teacher + (1 - momentum) * student, for every parameter."""
        s = [p.detach() for p in self.student.parameters()]
        t = [p for p in self.teacher.parameters()]
        torch._foreach_mul_(t, momentum)
        torch._foreach_add_(t, s, alpha=1.0 - momentum)


def _global_count(n: int, device: torch.device) -> int:
    """``n`` summed over processes (masked patches may be absent in one process and present in another)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return n
    count = torch.tensor([n], device=device)
    dist.all_reduce(count)
    return int(count.item())
