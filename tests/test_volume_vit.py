"""The minimal 3D ViT (shapes, pooling, input checks) and the difficulty module's metric on known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from raddino_lib.models.volume import VolumeViT, VolumeViTConfig
from raddino_lib.probe.ct_difficulty import SmallCNN3d, macro_auroc


def test_volume_vit_tokens_and_pooling():
    torch.manual_seed(0)
    model = VolumeViT(VolumeViTConfig(img_size=(16, 24, 32), patch_size=8, embed_dim=24, depth=2, num_heads=2)).eval()
    x = torch.randn(3, 1, 16, 24, 32)
    tokens = model.forward_features(x)
    assert tokens.shape == (3, 1 + 2 * 3 * 4, 24) and torch.isfinite(tokens).all()
    pooled = model.pooled(x)
    assert torch.allclose(pooled, torch.cat([tokens[:, 0], tokens[:, 1:].mean(1)], 1))
    assert torch.allclose(model.pooled(x[:1]), pooled[:1], atol=1e-5)  # no batch interaction
    with pytest.raises(ValueError, match="expects volumes of"):
        model.forward_features(torch.randn(1, 1, 16, 16, 16))
    with pytest.raises(ValueError, match="multiples of patch_size"):
        VolumeViTConfig(img_size=(20, 24, 32), patch_size=8)


def test_cnn3d_and_macro_auroc():
    assert SmallCNN3d(5)(torch.randn(2, 1, 32, 32, 32)).shape == (2, 5)
    y = np.array([[1, 0], [0, 0], [1, 0], [0, 0]])
    s = np.array([[0.9, 0.1], [0.1, 0.2], [0.8, 0.3], [0.2, 0.4]])
    assert macro_auroc(y, s) == 1.0  # the second column has one class and is skipped
    s2 = s.copy()
    s2[:, 0] = [0.1, 0.9, 0.2, 0.8]
    assert macro_auroc(y, s2) == 0.0
    with pytest.raises(ValueError):
        macro_auroc(np.zeros((3, 2)), np.zeros((3, 2)))
