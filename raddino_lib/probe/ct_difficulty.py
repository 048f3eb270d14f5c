"""How hard are the CT phantom findings? The floor and the ceiling every 3D encoder is read against.

(a) ``random_vit_linear`` (floor): logistic regression on the frozen features (CLS + mean patch token) of a
    randomly initialised 3D ViT: what an architecture gives for free. Pretraining must beat it to matter.
(b) ``supervised_cnn3d`` (ceiling at this data size): a small 3D CNN trained end to end on the labels.

Volumes go through the COLIPRI-style preprocessing (isotropic resampling, HU window [-1000, 1000] → [-1, 1],
centre crop or pad) at the phantoms' own scale. Both models report test AUROC per finding (findings with
positives and negatives in train and test) and the macro average with a 95% patient-bootstrap interval; the
random features also probe age (ridge R²) and sex (AUROC): patient factors are in the voxels, not the reports.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import r2_score
from sklearn.preprocessing import StandardScaler
from torch import nn

from raddino_lib.data.schema import CT_FINDINGS, label_column
from raddino_lib.data.volume_manifest import read_volume_manifest
from raddino_lib.data.volume_transforms import CTPreprocess
from raddino_lib.data.volume_transforms import load_volumes as preprocess_volumes
from raddino_lib.models.volume import VolumeViT, VolumeViTConfig
from raddino_lib.probe.bootstrap import patient_bootstrap
from raddino_lib.probe.classification import auroc


def load_volumes(manifest_path: str | Path, preprocess: CTPreprocess) -> tuple[pd.DataFrame, torch.Tensor]:
    """The manifest and its volumes preprocessed: (N, 1, D, H, W) float32 in ``preprocess.out_range``."""
    df = read_volume_manifest(manifest_path)
    return df, preprocess_volumes(df, preprocess, progress=True)


def measure_ct_difficulty(manifest_path: str | Path, preprocess: CTPreprocess, epochs: int = 8, seed: int = 0,
                          n_boot: int = 200, device: str = "cpu") -> dict:
    """{"random_vit_linear": {...}, "supervised_cnn3d": {...}, "metadata": {...}, "findings": [...], ...}.

    Model entries: {"per_finding": {finding: AUROC}, "macro_auroc": {"value", "ci_low", "ci_high"}}.
    """
    df, volumes = load_volumes(manifest_path, preprocess)
    labels = np.stack([df[label_column(f)].to_numpy(dtype=float) == 1 for f in CT_FINDINGS], 1).astype(np.float32)
    train, test = np.array(df["split"] != "test"), np.array(df["split"] == "test")
    usable = usable_findings(labels, train, test)
    with _torch_threads(2):
        feats = random_vit_features(volumes, seed, device)
        cnn = cnn_scores(volumes, labels, train, test, epochs, seed, device)
    linear = linear_probe_scores(feats, labels, train, test, usable, seed)
    pids = df.loc[test, "patient_id"].to_numpy()
    return {
        "findings": [CT_FINDINGS[j] for j in usable], "n_train": int(train.sum()), "n_test": int(test.sum()),
        "input_shape": list(volumes.shape[2:]), "spacing_mm": list(preprocess.spacing), "epochs": epochs,
        "random_vit_linear": auroc_summary(linear, labels[test], usable, pids, n_boot, seed),
        "supervised_cnn3d": auroc_summary(cnn, labels[test], usable, pids, n_boot, seed),
        "metadata": _metadata(feats, df, train, test, seed),
    }


def usable_findings(labels: np.ndarray, train: np.ndarray, test: np.ndarray) -> list[int]:
    """Columns of (N, F) ``labels`` with positive and negative cases in both the train and the test rows."""
    return [j for j in range(labels.shape[1])
            if 0 < labels[train, j].sum() < train.sum() and 0 < labels[test, j].sum() < test.sum()]


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@torch.no_grad()
def random_vit_features(volumes: torch.Tensor, seed: int, device: str, patch_size: int = 8) -> np.ndarray:
    """(N, 2E) CLS + mean patch token of a randomly initialised 3D ViT (patch 8, width 96, 4 blocks)."""
    torch.manual_seed(seed)
    model = VolumeViT(VolumeViTConfig(img_size=tuple(volumes.shape[2:]), patch_size=patch_size)).to(device).eval()
    return torch.cat([model.pooled(b.to(device)).cpu() for b in volumes.split(16)]).numpy()


class SmallCNN3d(nn.Module):
    """Four strided 3D conv blocks (8-16-32-64 channels, BN, ReLU) → global average pool → F logits."""

    def __init__(self, n_out: int) -> None:
        super().__init__()
        chans, layers = (1, 8, 16, 32, 64), []
        for cin, cout in zip(chans[:-1], chans[1:], strict=True):
            layers += [nn.Conv3d(cin, cout, 3, stride=2, padding=1), nn.BatchNorm3d(cout), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(chans[-1], n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, D, H, W) → (B, F)
        return self.head(self.features(x).mean(dim=(2, 3, 4)))


def cnn_scores(volumes, labels, train, test, epochs, seed, device) -> np.ndarray:
    """Test-set logits (N_test, F) of :class:`SmallCNN3d` trained end to end on the train split."""
    torch.manual_seed(seed)
    model = SmallCNN3d(labels.shape[1]).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    x, y = volumes[torch.from_numpy(train)], torch.from_numpy(labels[train])
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(8):
            loss = nn.functional.binary_cross_entropy_with_logits(model(x[idx].to(device)), y[idx].to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        return torch.cat([model(b.to(device)).cpu() for b in volumes[torch.from_numpy(test)].split(16)]).numpy()


def linear_probe_scores(feats, labels, train, test, usable, seed) -> np.ndarray:
    """Test-set decision values (N_test, F): one logistic regression per usable finding on standardised features."""
    scaler = StandardScaler().fit(feats[train])
    xtr, xte = scaler.transform(feats[train]), scaler.transform(feats[test])
    scores = np.zeros((int(test.sum()), labels.shape[1]))
    for j in usable:
        clf = LogisticRegression(C=0.05, max_iter=500, tol=1e-3, random_state=seed).fit(xtr, labels[train, j])
        scores[:, j] = clf.decision_function(xte)
    return scores


def macro_auroc(y: np.ndarray, scores: np.ndarray) -> float:
    """Mean AUROC over the columns where ``y`` has both classes; ValueError when none has."""
    values = [auroc(y[:, j], scores[:, j]) for j in range(y.shape[1]) if 0 < y[:, j].sum() < len(y)]
    if not values:
        raise ValueError("no column with both classes")
    return float(np.mean(values))


def auroc_summary(scores: np.ndarray, y: np.ndarray, usable: list[int], pids: np.ndarray, n_boot: int, seed: int
                  ) -> dict:
    """{"per_finding": {name: AUROC}, "macro_auroc": Estimate dict} over the ``usable`` CT findings."""
    per = {CT_FINDINGS[j]: float(auroc(y[:, j], scores[:, j])) for j in usable}
    if not usable:
        return {"per_finding": {}, "macro_auroc": {"value": float("nan"), "ci_low": None, "ci_high": None}}
    est = patient_bootstrap(macro_auroc, (y[:, usable], scores[:, usable]), pids, n_boot=n_boot, seed=seed)
    return {"per_finding": per, "macro_auroc": est.as_dict()}


def _metadata(feats, df, train, test, seed) -> dict:
    """Age R² (ridge) and sex AUROC (logistic) from the random-ViT features."""
    scaler = StandardScaler().fit(feats[train])
    xtr, xte = scaler.transform(feats[train]), scaler.transform(feats[test])
    age = df["age"].to_numpy(dtype=float)
    male = (df["sex"] == "M").to_numpy()
    out = {"age_r2": r2_score(age[test], Ridge(alpha=10.0).fit(xtr, age[train]).predict(xte))}
    if 0 < male[train].sum() < train.sum() and 0 < male[test].sum() < test.sum():
        clf = LogisticRegression(C=0.1, max_iter=2000, random_state=seed).fit(xtr, male[train])
        out["sex_auroc"] = auroc(male[test], clf.decision_function(xte))
    return {k: float(v) for k, v in out.items()}
