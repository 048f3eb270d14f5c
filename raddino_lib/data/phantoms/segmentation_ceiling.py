"""Can the phantoms' masks be segmented at all? A supervised U-Net as the segmentation ceiling.

A frozen encoder's linear head can only do as well as the pixels allow. Here a
small U-Net is trained end to end on every mask of the manifest (lungs, heart,
ribs, lung zones, localized findings, support devices) at the probes'
resolution, and scored by Dice per structure on the test split. A structure
whose Dice stays near zero for this model is too small or too faint for the
resolution, whatever the encoder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import nn

from raddino_lib.data.phantoms.difficulty import load_images
from raddino_lib.data.schema import ANATOMY, FINDINGS, mask_column


def load_masks(df: pd.DataFrame, root: Path, structures: list[str], size: int) -> np.ndarray:
    """(N, S, size, size) uint8 0/1 masks (bilinear resize, threshold 0.5); empty path = empty mask."""
    out = np.zeros((len(df), len(structures), size, size), dtype=np.uint8)
    for s, name in enumerate(structures):
        for i, rel in enumerate(df[mask_column(name)]):
            if rel:
                mask = Image.open(root / rel).convert("L").resize((size, size), Image.Resampling.BILINEAR)
                out[i, s] = np.asarray(mask) > 127
    return out


class TinyUNet(nn.Module):
    """Encoder 16-32-64-128 channels (stride-2 convs), decoder with skip connections → S logits per pixel."""

    def __init__(self, n_out: int, channels: tuple[int, ...] = (16, 32, 64, 128)) -> None:
        super().__init__()

        def block(cin: int, cout: int, stride: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout),
                                 nn.ReLU(), nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                                 nn.ReLU())

        chans = (1, *channels)
        self.down = nn.ModuleList(block(a, b, 1 if i == 0 else 2) for i, (a, b) in
                                  enumerate(zip(chans[:-1], chans[1:], strict=True)))
        self.up = nn.ModuleList(block(b + a, a, 1) for a, b in zip(channels[:-1], channels[1:], strict=True))
        self.head = nn.Conv2d(channels[0], n_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, H, W) → (B, S, H, W)
        skips = []
        for layer in self.down:
            x = layer(x)
            skips.append(x)
        for layer, skip in zip(reversed(self.up), reversed(skips[:-1]), strict=True):
            x = nn.functional.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = layer(torch.cat([x, skip], dim=1))
        return self.head(x)


def segmentation_ceiling(manifest_path: str | Path, image_size: int = 64, epochs: int = 8, seed: int = 0,
                         device: str = "cpu") -> pd.DataFrame:
    """Test-split Dice per structure of a U-Net trained on train + val: columns structure, dice, n_images.

    Dice of one image is left out when both prediction and truth are empty (absent finding, none predicted).
    """
    manifest_path = Path(manifest_path)
    df = pd.read_csv(manifest_path, dtype=str, keep_default_na=False)
    structures = [s for s in (*ANATOMY, *FINDINGS) if mask_column(s) in df.columns and (df[mask_column(s)] != "").any()]
    images = load_images(df, manifest_path.parent, image_size)  # (N, 1, S, S)
    masks = torch.from_numpy(load_masks(df, manifest_path.parent, structures, image_size)).float()
    fit = torch.from_numpy((df["split"] != "test").to_numpy().copy())
    torch.manual_seed(seed)
    model = TinyUNet(len(structures)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    x, y = images[fit], masks[fit]
    # rare structures (a lesion in a few percent of images, on a few percent of their pixels) get a larger
    # positive weight, and Dice is pooled over the batch so that images without the lesion do not dominate it
    share = y.mean(dim=(0, 2, 3)).clamp_min(1e-4)  # (S,) pixel prevalence
    pos_weight = ((1 - share) / share).sqrt().clamp(1.0, 30.0).view(1, -1, 1, 1).to(device)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(32):
            logits, t = model(x[idx].to(device)), y[idx].to(device)  # (B, S, H, W)
            p = torch.sigmoid(logits)
            dice = (2 * (p * t).sum((0, 2, 3)) + 1) / (p.sum((0, 2, 3)) + t.sum((0, 2, 3)) + 1)  # (S,)
            bce = nn.functional.binary_cross_entropy_with_logits(logits, t, pos_weight=pos_weight)
            loss = bce + (1 - dice).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(b.to(device)).cpu() > 0 for b in images[~fit].split(64)]).numpy()  # (n, S, H, W)
    truth = masks[~fit].numpy() > 0.5
    inter, total = (pred & truth).sum((2, 3)), pred.sum((2, 3)) + truth.sum((2, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = np.where(total > 0, 2.0 * inter / total, np.nan)  # (n, S)
    defined = np.isfinite(dice)
    mean = np.where(defined.any(axis=0), np.nansum(dice, axis=0) / np.maximum(defined.sum(axis=0), 1), np.nan)
    return pd.DataFrame({"structure": structures, "dice": mean, "n_images": defined.sum(axis=0)})
