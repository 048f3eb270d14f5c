"""How hard are the phantom findings? Two reference points for every later probe:

(a) ``random_linear``: logistic regression on frozen features (CLS + mean patch token) of a
    randomly initialised tiny ViT: what any encoder gets for free. It must stay well below a
    trained model, or the findings are too easy for pretraining to matter.
(b) ``supervised_cnn``: a small CNN trained end to end on the labels for a few epochs.

Both report per-finding test AUROC (findings with positives and negatives in train and test),
their macro average, and (random features) how well age and sex are recovered from pixels.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import r2_score, roc_auc_score
from sklearn.preprocessing import StandardScaler
from torch import nn

from raddino_lib.data.schema import FINDINGS, label_column

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def measure_difficulty(manifest_path: str | Path, image_size: int = 64, epochs: int = 3, seed: int = 0,
                       device: str = "cpu") -> dict:
    """{"random_linear": {...}, "supervised_cnn": {...}, "metadata": {...}, "findings": [...], ...}.

    Each model entry: {"per_finding": {finding: test AUROC}, "macro_auroc": float}.
    """
    manifest_path = Path(manifest_path)
    df = pd.read_csv(manifest_path, dtype=str, keep_default_na=False)
    images = load_images(df, manifest_path.parent, image_size)  # (N, 1, S, S) in [0, 1]
    labels = np.stack([pd.to_numeric(df[label_column(f)], errors="coerce").fillna(0).to_numpy() == 1
                       for f in FINDINGS], axis=1).astype(np.float32)  # (N, F)
    train = np.array(df["split"] != "test")  # train + val fit the probes
    test = np.array(df["split"] == "test")
    usable = [j for j in range(len(FINDINGS))
              if 0 < labels[train, j].sum() < train.sum() and 0 < labels[test, j].sum() < test.sum()]
    with _torch_threads(1):  # tiny models: extra threads only add synchronisation (and spin on busy machines)
        feats = random_vit_features(images, image_size, seed, device)
        scores_cnn = _cnn_scores(images, labels, train, test, epochs, seed, device)
    scores_lin = _linear_scores(feats, labels, train, test, usable, seed)
    return {
        "findings": [FINDINGS[j] for j in usable],
        "n_train": int(train.sum()), "n_test": int(test.sum()), "image_size": image_size, "epochs": epochs,
        "random_linear": _summary(scores_lin, labels, test, usable),
        "supervised_cnn": _summary(scores_cnn, labels, test, usable),
        "metadata": _metadata(feats, df, train, test, seed),
    }


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def load_images(df: pd.DataFrame, root: Path, size: int) -> torch.Tensor:
    """(N, 1, size, size) float32 in [0, 1] from the manifest's ``path`` column."""
    arrays = [np.asarray(Image.open(root / p).convert("L").resize((size, size), Image.Resampling.BILINEAR))
              for p in df["path"]]
    return torch.from_numpy(np.stack(arrays)[:, None].astype(np.float32) / 255.0)


@torch.no_grad()
def random_vit_features(images: torch.Tensor, image_size: int, seed: int, device: str) -> np.ndarray:
    """(N, 2D) CLS and mean patch token of a random-init tiny ViT (patch 8, 4 blocks)."""
    torch.manual_seed(seed)
    try:
        from raddino_lib.models import create_backbone
        model = create_backbone("vit_tiny", patch_size=8, img_size=image_size, depth=4)
    except ImportError:  # models package not installed in this build
        import timm
        model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=image_size, patch_size=8,
                                  depth=4, num_classes=0)
    model = model.to(device).eval()
    prefix = int(getattr(model, "num_prefix_tokens", 1))
    out = []
    for batch in torch.split(images, 64):
        tokens = model.forward_features(_normalize(batch).to(device))  # (B, prefix + N, D)
        out.append(torch.cat([tokens[:, 0], tokens[:, prefix:].mean(1)], dim=1).cpu())
    return torch.cat(out).numpy()


def _normalize(batch: torch.Tensor) -> torch.Tensor:
    """(B, 1, S, S) [0, 1] → (B, 3, S, S) ImageNet-normalised."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (batch.repeat(1, 3, 1, 1) - mean) / std


def _linear_scores(feats, labels, train, test, usable, seed) -> np.ndarray:
    scaler = StandardScaler().fit(feats[train])
    xtr, xte = scaler.transform(feats[train]), scaler.transform(feats[test])
    scores = np.zeros((int(test.sum()), labels.shape[1]))
    for j in usable:
        clf = LogisticRegression(C=0.05, max_iter=300, tol=1e-3, random_state=seed).fit(xtr, labels[train, j])
        scores[:, j] = clf.decision_function(xte)
    return scores


class SmallCNN(nn.Module):
    """4 strided conv blocks (8-16-32-64 channels, BN, ReLU) → global average pool → F logits."""

    def __init__(self, n_out: int) -> None:
        super().__init__()
        chans, layers = (1, 8, 16, 32, 64), []
        for cin, cout in zip(chans[:-1], chans[1:], strict=True):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(chans[-1], n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, S, S) → (B, F)
        return self.head(self.features(x).mean(dim=(2, 3)))


def _cnn_scores(images, labels, train, test, epochs, seed, device) -> np.ndarray:
    torch.manual_seed(seed)
    model = SmallCNN(labels.shape[1]).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    x, y = images[torch.from_numpy(train)], torch.from_numpy(labels[train])
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(16):
            loss = nn.functional.binary_cross_entropy_with_logits(model(x[idx].to(device)), y[idx].to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        return torch.cat([model(b.to(device)).cpu() for b in images[torch.from_numpy(test)].split(128)]).numpy()


def _summary(scores: np.ndarray, labels: np.ndarray, test: np.ndarray, usable: list[int]) -> dict:
    per = {FINDINGS[j]: float(roc_auc_score(labels[test, j], scores[:, j])) for j in usable}
    return {"per_finding": per, "macro_auroc": float(np.mean(list(per.values()))) if per else float("nan")}


def _metadata(feats, df, train, test, seed) -> dict:
    """Age R² (ridge) and sex AUROC (logistic) from the random-ViT features."""
    scaler = StandardScaler().fit(feats[train])
    xtr, xte = scaler.transform(feats[train]), scaler.transform(feats[test])
    age = pd.to_numeric(df["age"]).to_numpy()
    ridge = Ridge(alpha=10.0).fit(xtr, age[train])
    male = (df["sex"] == "M").to_numpy()
    clf = LogisticRegression(C=0.1, max_iter=2000, random_state=seed).fit(xtr, male[train])
    return {"age_r2": float(r2_score(age[test], ridge.predict(xte))),
            "sex_auroc": float(roc_auc_score(male[test], clf.decision_function(xte)))}
