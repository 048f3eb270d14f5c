"""Plain DINO from an outside library on the toy shapes: does the collapse come from this package's step?

Notebook 01's short runs stay at DINO loss ≈ log K. To tell a bug in ``train.pretrain`` from a property of the
recipe at this scale, this script trains DINO assembled from `lightly`'s modules (``DINOProjectionHead``,
``DINOLoss`` with softmax centring, ``update_momentum``) on a timm ``VisionTransformer`` of the toy sweep's size,
fed the *same batches* as the package (``train.pretrain_data.build_pretrain_loader``: same crops, same
photometric changes, no masks), and scores its teacher with the same kNN probe on the val split
(``probe.selection.knn_val_scorer``). The recipe sweep's ``plain_dino_600`` arm runs the same recipe in the
package's own step.

lightly is not a dependency of the package. Install it next to the environment, without its dependencies (torch,
torchvision and timm are already there), then run::

    .venv/bin/pip install --no-deps --target /tmp/lightly lightly==1.6.0
    PYTHONPATH=/tmp/lightly .venv/bin/python -m raddino_lib.experiments.outside_dino \\
        --out raddino_lib/experiments/results/outside_dino_toy.json

Each run appends a record (``dino_over_log_k`` = mean DINO loss of the last 10 steps over log K, ``val_init``,
``val`` = [[step, kNN accuracy]], ``val_best``) to the JSON file; runs already there are skipped.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import torch

from raddino_lib import atomic
from raddino_lib.experiments.recipe_sweep import BASES, _data

__all__ = ["RUNS", "comparison_table", "load_outside", "run_outside_dino"]

# (name, steps, peak lr; 0 = the toy base's lr, 5e-4 for its batch of 16)
RUNS: tuple[tuple[str, int, float], ...] = (("lightly_150", 150, 0.0), ("lightly_600", 600, 0.0),
                                            ("lightly_600_lr2e-3", 600, 2e-3))


def run_outside_dino(name: str, steps: int, lr: float, root: Path, eval_every: int = 50, seed: int = 0
                     ) -> dict[str, Any]:
    """One plain-DINO run with lightly's modules on the toy shapes; returns its record."""
    import lightly
    import timm
    from lightly.loss import DINOLoss
    from lightly.models.modules import DINOProjectionHead
    from lightly.models.utils import update_momentum

    from raddino_lib.probe.selection import knn_val_scorer
    from raddino_lib.train.pretrain_config import PretrainConfig
    from raddino_lib.train.pretrain_data import build_pretrain_loader

    torch.manual_seed(seed)
    manifest, size, label = _data("toy", root)
    base = {k: v for k, v in BASES["toy"].items() if k != "eval_every"}
    cfg = PretrainConfig(**{**base, "max_steps": steps, "mask_probability": 0.0}, manifest=str(manifest),
                         output_dir=str(root / "unused"), device="cpu", seed=seed)
    spec = SimpleNamespace(image_mean=(0.485, 0.456, 0.406), image_std=(0.229, 0.224, 0.225),
                           patch_size=cfg.patch_size)
    loader, n_images = build_pretrain_loader(cfg, spec, SimpleNamespace(rank=0, world_size=1))
    student = timm.models.vision_transformer.VisionTransformer(
        img_size=cfg.global_crop_size, patch_size=cfg.patch_size, embed_dim=192, depth=cfg.depth, num_heads=3,
        num_classes=0, dynamic_img_size=True, drop_path_rate=cfg.drop_path_rate)
    teacher = copy.deepcopy(student).eval()
    steps_per_epoch = max(1, n_images // cfg.batch_size)
    s_head = DINOProjectionHead(192, cfg.head_hidden_dim, cfg.head_bottleneck_dim, cfg.out_dim, freeze_last_layer=1)
    t_head = DINOProjectionHead(192, cfg.head_hidden_dim, cfg.head_bottleneck_dim, cfg.out_dim)
    t_head.load_state_dict(s_head.state_dict())
    for module in (teacher, t_head):
        module.requires_grad_(False)
    criterion = DINOLoss(output_dim=cfg.out_dim, warmup_teacher_temp=cfg.teacher_temp, teacher_temp=cfg.teacher_temp,
                         warmup_teacher_temp_epochs=0)
    peak = lr or cfg.peak_lr()
    params = [*student.parameters(), *s_head.parameters()]
    optimizer = torch.optim.AdamW(params, lr=peak, weight_decay=cfg.weight_decay)
    scorer = knn_val_scorer(manifest, size, max_bank=1000, max_query=400, label_column=label)
    record: dict[str, Any] = {"data": "toy", "run": name, "library": f"lightly {lightly.__version__}",
                              "steps": steps, "lr": peak, "val_init": round(scorer(teacher), 4), "val": []}
    warmup = max(1, int(cfg.lr_warmup_fraction * steps))
    losses, batches, start = [], iter(loader), time.perf_counter()
    for step in range(steps):
        batch = next(batches)
        crops = batch["global_crops"]  # (2B, 3, G, G), all first views then all second views
        b = crops.shape[0] // 2
        if step < warmup:
            value = peak * (step + 1) / warmup
        else:
            done = (step - warmup) / (steps - warmup)
            value = cfg.min_lr + 0.5 * (peak - cfg.min_lr) * (1 + math.cos(math.pi * done))
        for group in optimizer.param_groups:
            group["lr"] = value
        with torch.no_grad():
            targets = list(t_head(teacher.forward_features(crops)[:, 0]).chunk(2))
        views = [crops[:b], crops[b:], *batch["local_crops"].chunk(cfg.n_local_crops)]
        outputs = [s_head(student.forward_features(v)[:, 0]) for v in views]
        loss = criterion(targets, outputs, epoch=step // steps_per_epoch)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad)
        s_head.cancel_last_layer_gradients(step // steps_per_epoch)
        optimizer.step()
        momentum = 1 - (1 - 0.996) * (math.cos(math.pi * step / steps) + 1) / 2  # 0.996 -> 1, cosine
        update_momentum(student, teacher, momentum)
        update_momentum(s_head, t_head, momentum)
        losses.append(float(loss) / math.log(cfg.out_dim))
        if (step + 1) % eval_every == 0 or step + 1 == steps:
            record["val"].append([step + 1, round(scorer(teacher), 4)])
            print(f"{name} step {step + 1}: DINO loss / log K {sum(losses[-10:]) / len(losses[-10:]):.3f}, "
                  f"val accuracy {record['val'][-1][1]:.3f}", flush=True)
    record.update(dino_over_log_k=round(sum(losses[-10:]) / 10, 4), val_best=max(v for _, v in record["val"]),
                  wall_s=round(time.perf_counter() - start, 1))
    return record


def load_outside(path: str | Path) -> list[dict[str, Any]]:
    """The records of a comparison file (empty when it does not exist)."""
    path = Path(path)
    return json.loads(path.read_text())["runs"] if path.exists() else []


def comparison_table(outside: list[dict[str, Any]], sweep: list[dict[str, Any]],
                     arms: tuple[str, ...] = ("base", "plain_dino_600")) -> pd.DataFrame:
    """One row per run: the outside library's runs, then the package's sweep ``arms`` on the same toy shapes."""
    rows = [{"run": r["run"], "implementation": r["library"], "steps": r["steps"], "peak lr": r["lr"],
             "DINO loss / log K": r["dino_over_log_k"], "val accuracy, init": r["val_init"],
             "val accuracy, best": r["val_best"], "val accuracy, last": r["val"][-1][1]} for r in outside]
    from raddino_lib.train.pretrain_config import PretrainConfig

    by_name = {r["arm"]: r for r in sweep}

    def peak_lr(record: dict[str, Any]) -> float:
        return PretrainConfig(**{**BASES["toy"], **record["overrides"]}).peak_lr()

    rows += [{"run": name, "implementation": "raddino (sweep arm)", "steps": by_name[name]["steps"],
              "peak lr": peak_lr(by_name[name]), "DINO loss / log K": by_name[name]["dino_over_log_k"],
              "val accuracy, init": by_name[name]["val_init"], "val accuracy, best": by_name[name]["val_best"],
              "val accuracy, last": by_name[name]["val"][-1][1]} for name in arms if name in by_name]
    return pd.DataFrame(rows).set_index("run")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="JSON file of the records (resumed when it exists)")
    parser.add_argument("--root", default="runs/recipe_sweep", help="folder of the toy shapes")
    args = parser.parse_args(argv)
    out = Path(args.out)
    records = json.loads(out.read_text())["runs"] if out.exists() else []
    for name, steps, lr in RUNS:
        if any(r["run"] == name for r in records):
            continue
        records.append(run_outside_dino(name, steps, lr, Path(args.root), eval_every=50 if steps <= 150 else 100))
        atomic.write_json(out, {"data": "toy", "base": BASES["toy"], "runs": records})


if __name__ == "__main__":
    main()
