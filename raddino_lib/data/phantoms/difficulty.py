"""How hard are the phantoms? A floor and a ceiling for every later probe.

(a) ``random_linear`` (floor): linear probes on frozen features (CLS + mean patch token) of a randomly
    initialised tiny ViT (patch 8, 4 blocks, the cpu profile's architecture): what any encoder gets for
    free. Logistic regression per finding and for sex, ridge regression for age; the penalty is chosen on
    the val split.
(b) ``supervised_cnn`` (ceiling): small CNNs trained end to end for a few epochs at the same resolution,
    one on the findings, one on the patient (sex and age).

Both report test-split AUROC per finding (findings with positives and negatives in train and test) and its
macro average, sex AUROC and age R². A pretrained encoder's probe should land between the two; if the floor
is already near the ceiling, the phantoms cannot tell encoders apart.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from scipy.linalg import LinAlgWarning
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import r2_score, roc_auc_score
from sklearn.preprocessing import StandardScaler
from torch import nn

from raddino_lib.data.schema import FINDINGS, label_column
from raddino_lib.parallel import map_jobs

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# Penalty grids, chosen on val, as the probes of notebooks 03 (findings) and 06 (sex, age) do.
FINDING_CS = (0.01, 0.1, 1.0)  # logistic C per finding
SEX_CS = (1e-3, 1e-2, 1e-1, 1.0, 10.0)  # logistic C for sex
AGE_ALPHAS = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4)  # ridge alpha for age
BATCH = 32  # CNN batch size


def measure_difficulty(manifest_path: str | Path, image_size: int = 64, epochs: int = 3, seed: int = 0,
                       device: str = "cpu") -> dict:
    """{"random_linear": {...}, "supervised_cnn": {...}, "findings": [...], "n_train", "n_test", ...}.

    Each model entry: {"per_finding": {finding: test AUROC}, "macro_auroc", "sex_auroc", "age_r2"}.
    """
    manifest_path = Path(manifest_path)
    df = pd.read_csv(manifest_path, dtype=str, keep_default_na=False)
    images = load_images(df, manifest_path.parent, image_size)  # (N, 1, S, S) in [0, 1]
    labels = np.stack([pd.to_numeric(df[label_column(f)], errors="coerce").fillna(0).to_numpy() == 1
                       for f in FINDINGS], axis=1).astype(np.float32)  # (N, F)
    split = df["split"].to_numpy()
    test = split == "test"
    usable = [j for j in range(len(FINDINGS))
              if 0 < labels[~test, j].sum() < (~test).sum() and 0 < labels[test, j].sum() < test.sum()]
    male = (df["sex"] == "M").to_numpy().astype(np.float32)
    age = pd.to_numeric(df["age"]).to_numpy().astype(np.float32)
    fit = split != "test"
    cnn_jobs, age_mean, age_sd = _cnn_jobs(labels, male, age, fit)

    def run(job):
        if job == "linear":
            feats = random_vit_features(images, image_size, seed, device)
            return _linear_predictions(feats, labels, male, age, split, usable)
        targets, pos_weight, regression_last = job
        return _train_cnn(images, targets, fit, epochs, seed, device, pos_weight=pos_weight,
                          regression_last=regression_last)

    # three independent jobs, on a CPU side by side, one core each; costs in seconds per 1,000 images on one core
    # (cpu profile: the features and their probes 21, each CNN 2 per epoch), so that the longest starts first
    linear, findings, patient = map_jobs(run, ["linear", *cnn_jobs], names=["random ViT + linear probes",
                                                                          "findings CNN", "patient CNN"],
                                         log=None, device=device, cost=[21.0, 2.0 * epochs, 2.0 * epochs])
    cnn = findings, patient[:, 0], patient[:, 1] * age_sd + age_mean
    return {
        "findings": [FINDINGS[j] for j in usable],
        "n_train": int((~test).sum()), "n_test": int(test.sum()), "image_size": image_size, "epochs": epochs,
        "random_linear": _summary(*linear, labels[test], male[test], age[test], usable),
        "supervised_cnn": _summary(*cnn, labels[test], male[test], age[test], usable),
    }


def load_images(df: pd.DataFrame, root: Path, size: int) -> torch.Tensor:
    """(N, 1, size, size) float32, each image min–max scaled to [0, 1] (as the probes' eval transform)."""
    arrays = np.stack([np.asarray(Image.open(root / p).convert("L").resize((size, size), Image.Resampling.BICUBIC))
                       for p in df["path"]]).astype(np.float32)  # (N, S, S)
    lo, hi = arrays.min(axis=(1, 2), keepdims=True), arrays.max(axis=(1, 2), keepdims=True)
    return torch.from_numpy((arrays - lo) / np.maximum(hi - lo, 1.0))[:, None]


@torch.no_grad()
def random_vit_features(images: torch.Tensor, image_size: int, seed: int, device: str) -> np.ndarray:
    """(N, 2D) CLS and mean patch token of a random-init tiny ViT (patch 8, 4 blocks)."""
    from raddino_lib.models import create_backbone

    torch.manual_seed(seed)
    model = create_backbone("vit_tiny", patch_size=8, img_size=image_size, depth=4).to(device).eval()
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


def _linear_predictions(feats, labels, male, age, split, usable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Test-split (finding scores (n, F), sex scores (n,), age predictions (n,)) of val-tuned linear probes."""
    fit, val, test = split == "train", split == "val", split == "test"
    scaler = StandardScaler().fit(feats[fit | val])
    x = scaler.transform(feats)

    def best(make, grid, y, score):
        models = [make(p).fit(x[fit], y[fit]) for p in grid]
        k = int(np.argmax([score(y[val], m, x[val]) for m in models])) if val.any() else len(grid) // 2
        return make(grid[k]).fit(x[fit | val], y[fit | val])

    def logistic(p):
        return LogisticRegression(C=p, max_iter=1000, tol=1e-3)

    def auc(y, m, xv):
        return roc_auc_score(y, m.decision_function(xv)) if 0 < y.sum() < len(y) else 0.0

    scores = np.zeros((int(test.sum()), labels.shape[1]))
    for j in usable:
        scores[:, j] = best(logistic, FINDING_CS, labels[:, j], auc).decision_function(x[test])
    sex = best(logistic, SEX_CS, male, auc).decision_function(x[test])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LinAlgWarning)  # small alphas on D > N: the val split judges them
        ridge = best(lambda a: Ridge(alpha=a), AGE_ALPHAS, age, lambda y, m, xv: r2_score(y, m.predict(xv)))
    return scores, sex, ridge.predict(x[test])


class ReferenceCNN(nn.Module):
    """4 blocks of a strided and a plain 3x3 conv (16-32-64-128 channels, BN, ReLU) → global average and max
    pool → n_out outputs.

    The max pool lets small findings (nodules) count as much as large ones.
    """

    def __init__(self, n_out: int, channels: tuple[int, ...] = (16, 32, 64, 128)) -> None:
        super().__init__()
        chans, layers = (1, *channels), []
        for cin, cout in zip(chans[:-1], chans[1:], strict=True):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                       nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(2 * chans[-1], n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, S, S) → (B, n_out)
        z = self.features(x)  # (B, C, S / 16, S / 16)
        return self.head(torch.cat([z.mean(dim=(2, 3)), z.amax(dim=(2, 3))], dim=1))


def _cnn_jobs(labels: np.ndarray, male: np.ndarray, age: np.ndarray,
             fit: np.ndarray) -> tuple[list[tuple[np.ndarray, np.ndarray | None, bool]], float, float]:
    """The two CNNs' (targets, positive weights, last column a regression): one on the findings (multi-label BCE),
    one on the patient (sex BCE + standardised age MSE); one network for everything learns the findings markedly
    worse. Also the fit rows' age mean and standard deviation, to undo the standardisation.

    Rare findings get a larger positive weight (square root of the negative/positive ratio, at most 6), as is
    usual for multi-label chest X-ray classifiers.
    """
    positives = labels[fit].sum(0)
    weight = np.sqrt(np.clip((fit.sum() - positives) / np.maximum(positives, 1.0), 1.0, 36.0)).astype(np.float32)
    age_mean, age_sd = float(age[fit].mean()), float(age[fit].std() + 1e-6)
    patient = np.stack([male, (age - age_mean) / age_sd], axis=1).astype(np.float32)  # (N, 2)
    return [(labels, weight, False), (patient, None, True)], age_mean, age_sd


def _train_cnn(images: torch.Tensor, targets: np.ndarray, fit: np.ndarray, epochs: int, seed: int, device: str,
               pos_weight: np.ndarray | None = None, regression_last: bool = False) -> np.ndarray:
    """Train a :class:`ReferenceCNN` on the ``fit`` rows of (N, K) targets; (n_test, K) outputs on the others.

    Columns are BCE logits, except the last one with ``regression_last`` (MSE).
    """
    torch.manual_seed(seed)
    k_bce = targets.shape[1] - int(regression_last)
    model = ReferenceCNN(targets.shape[1]).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    weight = None if pos_weight is None else torch.from_numpy(pos_weight).to(device)
    x, y = images[torch.from_numpy(fit)], torch.from_numpy(targets[fit])
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(BATCH):
            out, t = model(x[idx].to(device)), y[idx].to(device)  # (B, K)
            loss = nn.functional.binary_cross_entropy_with_logits(out[:, :k_bce], t[:, :k_bce], pos_weight=weight)
            if regression_last:
                loss = loss + nn.functional.mse_loss(out[:, -1], t[:, -1])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        return torch.cat([model(b.to(device)).cpu() for b in images[torch.from_numpy(~fit)].split(128)]).numpy()


def _summary(scores, sex_score, age_pred, labels, male, age, usable) -> dict:
    per = {FINDINGS[j]: float(roc_auc_score(labels[:, j], scores[:, j])) for j in usable}
    return {"per_finding": per, "macro_auroc": float(np.mean(list(per.values()))) if per else float("nan"),
            "sex_auroc": float(roc_auc_score(male, sex_score)) if 0 < male.sum() < len(male) else float("nan"),
            "age_r2": float(r2_score(age, age_pred))}
