"""Why the supervised ceiling sits below the raw-pixel floor on findings: the ViT's plateau.

On the cpu profile, notebook 03's supervised ceiling (``train.supervised``: the encoders' ViT-tiny/8 with 4 blocks,
trained 400 steps, multi-task) probes at a findings macro AUROC of about 0.75, below a linear probe on 64 principal
components of the 16 × 16 image (about 0.81). Its findings loss stops at the *base rate*, the loss of predicting
each finding's prevalence for every image (``train.supervised_data.base_rate_bce``), from step 50 on: the ceiling
does not learn findings at all in its budget. Its other losses (masks, patient fields) do fall.

This experiment trains models on the findings alone, with the same data, augmentation (a random shift of up to
4 px), batch (32), optimizer (AdamW, lr 1e-3, cosine, 10% warmup, gradient clip 1) and test split as the ceiling,
and changes one thing per arm:

- ``cnn``: notebook 00's reference CNN (``data.phantoms.difficulty.ReferenceCNN``), 400 steps;
- ``vit``: the ceiling's backbone (LayerScale 0.1) with a linear head on [CLS, mean patch], 400 steps;
- ``vit_1200``: the same, 1,200 steps;
- ``vit_max_pool``: the head also reads the maximum over the patch tokens (as the CNN's head does), 400 steps;
- ``vit_mimetic``: attention weights initialised *mimetically* (Trockman & Kolter, ICML 2023: each head's
  W_q W_kᵀ ≈ αZ + βI, W_v W_oᵀ ≈ αZ − βI, Z random), an initialisation known to help ViTs on small data, 400 steps.
- ``vit_bn_head``: a BatchNorm on the head's input, which standardises each pooled feature over the batch (as a
  linear probe standardises frozen features): does the ViT's plateau come from pooled features whose differences
  between images are small beside their common part? 400 steps;
- ``vit_bn_head_1200``: the same, 1,200 steps.

Each record: the training loss every 25 steps (mean of the 25), the base-rate loss, the first step whose running
mean of 50 steps lies 5% below the base rate (``escape_step``; None: never), the test macro AUROC of the model's
own head and per finding, and the wall time on one core. Beside them the JSON holds the raw-pixel floor on the
same splits (``pixel_floor``) and how much the ViT's pooled features differ between images at initialisation
(``init_feature_spread``). Arms run side by side, one core each
(``parallel.map_jobs``); the JSON is rewritten after each call and arms already in it are skipped. The recorded
run is ``results/ceiling_plateau_phantoms.json``; notebook 03 shows it.

    python -m raddino_lib.experiments.ceiling_plateau --out ceiling_plateau.json
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ARMS", "PlateauArm", "escape_step", "init_feature_spread", "load_pixel_floor", "load_plateau",
           "mimetic_init", "pixel_floor", "run_plateau"]

RESULTS_DIR = Path(__file__).parent / "results"
RECORDED = RESULTS_DIR / "ceiling_plateau_phantoms.json"
LOG_EVERY = 25  # steps per point of the recorded loss curve


@dataclass(frozen=True)
class PlateauArm:
    name: str
    model: str  # "cnn" | "vit"
    steps: int = 400
    pooling: str = "cls_mean"  # vit head input: "cls_mean" | "cls_mean_max"
    init: str = ""  # "" | "mimetic"
    head_norm: str = ""  # "" | "batchnorm": a BatchNorm1d on the vit head's input (standardises it over the batch)
    note: str = ""


ARMS: tuple[PlateauArm, ...] = (
    PlateauArm("cnn", "cnn", note="notebook 00's reference CNN (BatchNorm, global average and max pool)"),
    PlateauArm("vit", "vit", note="the ceiling's ViT, head on [CLS, mean patch], as in train.supervised"),
    PlateauArm("vit_1200", "vit", steps=1200, note="the same, 3x the steps"),
    PlateauArm("vit_max_pool", "vit", pooling="cls_mean_max", note="the head also reads the max over patch tokens"),
    PlateauArm("vit_mimetic", "vit", init="mimetic", note="mimetic attention initialisation (Trockman & Kolter 2023)"),
    PlateauArm("vit_bn_head", "vit", head_norm="batchnorm",
               note="a BatchNorm on the head's input: each pooled feature standardised over the batch"),
    PlateauArm("vit_bn_head_1200", "vit", steps=1200, head_norm="batchnorm", note="the same, 3x the steps"),
)
DATA = {"n": 3000, "size": 96, "seed": 0, "image_size": 64, "batch_size": 32, "lr": 1e-3, "max_shift": 4}


def escape_step(losses: np.ndarray, base_rate: float, window: int = 50, margin: float = 0.05) -> int | None:
    """First step at which the mean of the last ``window`` losses lies ``margin`` below ``base_rate``."""
    if len(losses) < window:
        return None
    running = np.convolve(losses, np.ones(window) / window, mode="valid")  # running[i]: steps i .. i + window - 1
    below = np.flatnonzero(running < (1 - margin) * base_rate)
    return int(below[0] + window - 1) if len(below) else None


@torch.no_grad()
def mimetic_init(backbone: nn.Module, seed: int = 0, qk: tuple[float, float] = (0.7, 0.7),
                 vo: tuple[float, float] = (0.4, 0.4)) -> None:
    """Set every block's attention so that each head's W_qᵀW_k is the best rank-(D/H) approximation of
    αZ + βI and the blocks' W_vᵀW_oᵀ equals αZ − βI (Z with entries N(0, 1/D); (α, β) = ``qk`` and ``vo``):
    at step 0 each token attends most to tokens like itself, and the value path starts near −βI."""
    g = torch.Generator().manual_seed(seed)
    for block in backbone.blocks:
        attn = block.attn
        d, heads = attn.qkv.in_features, attn.num_heads
        k = d // heads
        w = attn.qkv.weight  # (3D, D): rows of q, then k, then v
        for h in range(heads):
            u, s, vh = torch.linalg.svd(qk[0] * torch.randn(d, d, generator=g) / d ** 0.5 + qk[1] * torch.eye(d))
            w[h * k:(h + 1) * k] = (u[:, :k] * s[:k].sqrt()).T  # W_q[h]ᵀ W_k[h] = U_k S_k V_kᵀ
            w[d + h * k:d + (h + 1) * k] = vh[:k] * s[:k, None].sqrt()
        u, s, vh = torch.linalg.svd(vo[0] * torch.randn(d, d, generator=g) / d ** 0.5 - vo[1] * torch.eye(d))
        w[2 * d:] = (u * s.sqrt()).T  # W_vᵀ = U S^½
        attn.proj.weight.copy_(vh.T * s.sqrt())  # W_oᵀ = S^½ Vᵀ


class _ViTFindings(nn.Module):
    def __init__(self, backbone: nn.Module, n_out: int, pooling: str, head_norm: str = "") -> None:
        super().__init__()
        self.backbone, self.pooling = backbone, pooling
        width = (3 if pooling == "cls_mean_max" else 2) * backbone.embed_dim
        self.norm = nn.BatchNorm1d(width) if head_norm == "batchnorm" else nn.Identity()
        self.head = nn.Linear(width, n_out)

    def pooled(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The head's inputs, each (B, D): [CLS], the mean patch token, and with ``cls_mean_max`` the maximum."""
        from raddino_lib.models.backbone import pool_tokens

        cls, mean_patch, grid = pool_tokens(self.backbone, self.backbone.forward_features(x))  # grid (B, h, w, D)
        return [cls, mean_patch] + ([grid.amax(dim=(1, 2))] if self.pooling == "cls_mean_max" else [])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(torch.cat(self.pooled(x), dim=1)))


def _model(arm: PlateauArm, n_out: int, image_size: int) -> tuple[nn.Module, Any]:
    """(model, input transform) of an arm, seeded."""
    from raddino_lib.data.phantoms.difficulty import ReferenceCNN
    from raddino_lib.models.backbone import create_backbone
    from raddino_lib.train.supervised import SupervisedConfig
    from raddino_lib.train.supervised_data import normalize

    torch.manual_seed(0)
    if arm.model == "cnn":
        return ReferenceCNN(n_out), lambda x: x  # the CNN reads [0, 1] images, as in notebook 00
    ceiling = SupervisedConfig(manifest="-")  # the ceiling's architecture and LayerScale start
    backbone = create_backbone(ceiling.arch, patch_size=ceiling.patch_size, img_size=image_size, depth=ceiling.depth,
                               layer_scale_init=ceiling.layer_scale_init)
    if arm.init == "mimetic":
        mimetic_init(backbone)
    spec = backbone.spec
    model = _ViTFindings(backbone, n_out, arm.pooling, arm.head_norm)
    return model, lambda x: normalize(x, spec.image_mean, spec.image_std)


def run_arm(arm: PlateauArm, train: dict[str, torch.Tensor], test: dict[str, torch.Tensor], findings: list[str],
            base_rate: float, batch_size: int = 32, lr: float = 1e-3, max_shift: int = 4) -> dict[str, Any]:
    """Train one arm on the findings of ``train`` (``train.supervised_data.load_split``) and score it on ``test``."""
    from raddino_lib.train.schedules import cosine_schedule
    from raddino_lib.train.supervised_data import shift_batch

    model, prepare = _model(arm, len(findings), train["images"].shape[-1])
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    lrs = cosine_schedule(lr, 1e-5, arm.steps, arm.steps // 10)
    g = torch.Generator().manual_seed(0)
    n, losses, began = len(train["images"]), [], time.perf_counter()
    model.train()
    for step in range(arm.steps):
        idx = torch.randint(0, n, (min(batch_size, n),), generator=g)
        images, _ = shift_batch(train["images"][idx].float(), train["masks"][idx].float(), max_shift, g)
        y = train["labels"][idx]
        known = torch.isfinite(y)
        for group in optimizer.param_groups:
            group["lr"] = float(lrs[step])
        loss = F.binary_cross_entropy_with_logits(model(prepare(images))[known], y[known])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
    wall = time.perf_counter() - began
    model.eval()
    with torch.no_grad():
        scores = torch.cat([model(prepare(b.float())) for b in torch.split(test["images"], 256)]).numpy()
    per_finding = _aurocs(scores, test["labels"].numpy(), findings)
    curve = np.asarray(losses)
    return {"arm": arm.name, "note": arm.note, "model": arm.model, "steps": arm.steps, "pooling": arm.pooling,
            "init": arm.init, "head_norm": arm.head_norm, "wall_s": round(wall, 1),
            "base_rate_bce": round(base_rate, 5),
            "loss_every": LOG_EVERY,
            "loss": [round(float(v), 5) for v in curve[: len(curve) // LOG_EVERY * LOG_EVERY]
                     .reshape(-1, LOG_EVERY).mean(axis=1)],
            "final_loss": round(float(curve[-50:].mean()), 5), "escape_step": escape_step(curve, base_rate),
            **_macro(per_finding)}


def _aurocs(scores: np.ndarray, labels: np.ndarray, findings: list[str]) -> dict[str, float]:
    """Test AUROC per finding with known positives and negatives; scores and labels (N, F), labels nan unknown."""
    from sklearn.metrics import roc_auc_score

    out = {}
    for j, name in enumerate(findings):
        known = np.isfinite(labels[:, j])
        if len(np.unique(labels[known, j])) == 2:
            out[name] = round(float(roc_auc_score(labels[known, j], scores[known, j])), 4)
    return out


def _macro(per_finding: dict[str, float]) -> dict[str, Any]:
    return {"macro_auroc": round(float(np.mean(list(per_finding.values()))), 4) if per_finding else None,
            "per_finding": per_finding}


def pixel_floor(train: dict[str, torch.Tensor], test: dict[str, torch.Tensor], findings: list[str],
                side: int = 16, n_components: int = 64, c: float = 0.1) -> dict[str, Any]:
    """The raw-pixel floor on the same splits: per finding, an L2 logistic regression (``c``) on the standardised
    leading principal components of the ``side`` × ``side`` image (as ``probe.pixels``), scored on test."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from raddino_lib.probe.pixels import pca_features

    images = torch.cat([train["images"], test["images"]]).float()  # (N, 1, S, S)
    vectors = F.adaptive_avg_pool2d(images, side).flatten(1).double().numpy()
    fit = np.arange(len(images)) < len(train["images"])
    x = StandardScaler().fit_transform(pca_features(vectors, fit, n_components))
    y = train["labels"].numpy()
    scores = np.zeros((int((~fit).sum()), len(findings)))
    for j in range(len(findings)):
        known = np.isfinite(y[:, j])
        if len(np.unique(y[known, j])) == 2:
            model = LogisticRegression(C=c, max_iter=2000).fit(x[fit][known], y[known, j])
            scores[:, j] = model.decision_function(x[~fit])
    return {"what": f"logistic (C={c}) on {n_components} principal components of the {side} x {side} image",
            **_macro(_aurocs(scores, test["labels"].numpy(), findings))}


@torch.no_grad()
def init_feature_spread(images: torch.Tensor, image_size: int = 64, n: int = 256) -> dict[str, float]:
    """How much the ceiling's ViT's pooled features differ between images at initialisation: per pooled input of
    the head ([CLS], mean patch), the root mean square over features of the standard deviation across the first
    ``n`` ``images``, divided by the root mean square of the features' mean (what every image shares)."""
    vit = next(a for a in ARMS if a.name == "vit")  # the ceiling's ViT, head on [CLS, mean patch]
    model, prepare = _model(vit, 1, image_size)
    model.eval()
    out = {}
    for name, f in zip(("cls", "mean_patch"), model.pooled(prepare(images[:n].float())), strict=True):
        between, common = f.std(0).pow(2).mean().sqrt(), f.mean(0).pow(2).mean().sqrt()
        out[name] = round(float(between / common), 4)
    return out


def load_plateau(path: str | Path = RECORDED) -> list[dict[str, Any]]:
    """The arms' records of a run's JSON ([] when there is none)."""
    path = Path(path)
    return json.loads(path.read_text())["arms"] if path.exists() else []


def load_pixel_floor(path: str | Path = RECORDED) -> dict[str, Any] | None:
    """The raw-pixel floor recorded with a run (``pixel_floor``), or None."""
    path = Path(path)
    return json.loads(path.read_text()).get("pixel_floor") if path.exists() else None


def run_plateau(manifest: str | Path, out: str | Path, arms: tuple[PlateauArm, ...] = ARMS, workers: int = 0,
                source: str = "") -> list[dict[str, Any]]:
    """Run the ``arms`` not yet recorded in ``out`` on ``manifest``'s train and test splits, side by side;
    ``source`` says in the JSON where the data came from (default: the manifest's path)."""
    from raddino_lib import atomic
    from raddino_lib.data.manifest import read_manifest
    from raddino_lib.parallel import map_jobs
    from raddino_lib.train.supervised_data import base_rate_bce, discover_targets, load_split

    records = load_plateau(out)
    done = {r["arm"] for r in records}
    todo = [a for a in arms if a.name not in done]
    previous = json.loads(Path(out).read_text()) if Path(out).exists() else {}
    floor = previous.get("pixel_floor")
    if not todo and floor is not None and "init_feature_spread" in previous:
        return records
    df = read_manifest(manifest)
    targets = discover_targets(df)
    if not targets.findings:
        raise ValueError(f"{manifest}: no label column with positives and negatives in train; nothing to learn")
    size = DATA["image_size"]
    train, test = (load_split(df, targets, split, size, size // 8) for split in ("train", "test"))
    base_rate = base_rate_bce(train["labels"].numpy())
    def job(arm: PlateauArm) -> dict[str, Any]:
        return run_arm(arm, train, test, targets.findings, base_rate, DATA["batch_size"], DATA["lr"], DATA["max_shift"])

    results = map_jobs(job, todo, workers=workers, names=[a.name for a in todo],
                       cost=[a.steps for a in todo]) if todo else []
    records = [r for r in records if r["arm"] not in {a.name for a in todo}] + results
    floor = floor or pixel_floor(train, test, targets.findings)
    spread = previous.get("init_feature_spread") or init_feature_spread(test["images"], size)
    atomic.write_json(Path(out), {"data": {**DATA, "source": source or str(manifest)}, "pixel_floor": floor,
                                  "init_feature_spread": spread, "arms": records})
    return records


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="JSON file (arms already in it are skipped)")
    parser.add_argument("--root", default="runs/ceiling_plateau", help="folder for the phantoms")
    parser.add_argument("--manifest", default="", help="a manifest instead of the cpu profile's phantoms")
    parser.add_argument("--arms", default="", help="comma-separated arm names (default: every arm)")
    args = parser.parse_args(argv)
    by_name = {a.name: a for a in ARMS}
    names = [a for a in args.arms.split(",") if a] or list(by_name)
    unknown = set(names) - set(by_name)
    if unknown:
        parser.error(f"unknown arms {sorted(unknown)}; choose from {sorted(by_name)}")
    manifest, source = args.manifest, ""
    if not manifest:
        source = "the cpu profile's phantoms (n, size, seed above)"
        from raddino_lib.data.phantoms import generate

        manifest = generate(Path(args.root) / "phantoms", n=DATA["n"], size=DATA["size"], seed=DATA["seed"],
                            balanced=False, workers=2)
    run_plateau(manifest, args.out, tuple(by_name[n] for n in names), source=source)


if __name__ == "__main__":
    main()
