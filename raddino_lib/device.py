"""Device names as notebooks and commands take them: "auto", "cpu", "cuda", "cuda:1"."""

from __future__ import annotations

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str | torch.device, local_rank: int = 0) -> torch.device:
    """``"auto"`` is CUDA when available, else the CPU; ``"cuda"`` in a multi-process
    run is this process's GPU (``cuda:local_rank``). Asking for CUDA without it is an error."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and local_rank:
        name = f"cuda:{local_rank}"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available (use device='cpu' or 'auto')")
    if not (name == "cpu" or name == "cuda" or name.startswith("cuda:") or name == "mps"):
        raise ValueError(f"unknown device {name!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    return torch.device(name)
