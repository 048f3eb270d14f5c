"""Self-supervised losses: DINO ([CLS]), iBOT (masked patches), KoLeo (feature spreading)."""

from raddino_lib.losses.dino import DINOLoss
from raddino_lib.losses.ibot import iBOTPatchLoss
from raddino_lib.losses.koleo import KoLeoLoss

__all__ = ["DINOLoss", "KoLeoLoss", "iBOTPatchLoss"]
