"""The short-run recipe sweep of notebook 01: pretraining arms scored on the validation split.

RAD-DINO chose its public checkpoint by linear probing on validation sets (PAPERS.md); a short CPU run has to
choose its recipe the same way, because its DINO loss does not say whether it learned. Each *arm* is one
pretraining run, a set of ``PretrainConfig`` overrides on a common base, and records:

- ``dino_over_log_k``: the DINO loss over log K, mean of the last 10 steps (1.0 = uniform targets);
- ``teacher_entropy`` and ``student_entropy`` over log K, same window (how sharp the targets are, and how
  sharp the student's predictions of them are);
- ``cls_std_start`` / ``cls_std``: the std of the teacher's normalised [CLS] over the batch at step 0 and at
  the end (near 0: every image gets the same feature);
- ``val``: the kNN score of the teacher on the val split every ``eval_every`` steps, ``val_init`` that of the
  random init, ``val_best`` the best of them (``probe.selection.knn_val_scorer``).

Two data sets: the toy shapes (8 classes, kNN accuracy; ``data.toy_shapes``) and phantoms (findings macro
AUROC). ``phantoms_gpu`` runs the phantoms' recipe for more steps than two cores allow, on a GPU. With ``test``
(``--test``) an arm on phantoms also records the test split's linear probes of its best teacher and of its random
init (findings macro AUROC on [CLS] and on [CLS, mean patch], 95% patient-bootstrap intervals; ``test_table``).
``run_sweep`` appends each finished arm to a JSON file and skips arms already there, so an
interrupted sweep resumes. The recorded sweeps live in ``raddino_lib/experiments/results/``.

    python -m raddino_lib.experiments.recipe_sweep --data toy --out toy.json
    python -m raddino_lib.experiments.recipe_sweep --data phantoms_gpu --device cuda --test --out gpu.json
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["BASES", "SWEEPS", "Arm", "load_sweep", "run_arm", "run_sweep", "sweep_table", "test_table"]

RESULTS_DIR = Path(__file__).parent / "results"


@dataclass(frozen=True)
class Arm:
    name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    note: str = ""


# The smoke/cpu short-run teacher (config.SHORT_RUN_TEACHER) on a small ViT: the common base of every arm.
_TEACHER = {"centering": "sinkhorn", "momentum_teacher": 0.98, "teacher_temp": 0.04, "warmup_teacher_temp": 0.04}
BASES: dict[str, dict[str, Any]] = {
    # 960 shapes of 32 px (96 in val), ViT-tiny/4 with 2 blocks, batch 16, K = 128: about a minute per arm on one core
    "toy": {"arch": "vit_tiny", "patch_size": 4, "depth": 2, "global_crop_size": 32, "local_crop_size": 16,
            "n_local_crops": 4, "batch_size": 16, "max_steps": 150, "out_dim": 128, "head_hidden_dim": 256,
            "head_bottleneck_dim": 64, "eval_every": 50, **_TEACHER},
    # the cpu profile's data, model and length (3,000 phantoms at 96 px, 64 px crops, ViT-tiny/8, 4 blocks, K = 1024,
    # 300 steps): about 8 minutes per arm on one core
    "phantoms": {"arch": "vit_tiny", "patch_size": 8, "depth": 4, "global_crop_size": 64, "local_crop_size": 32,
                 "n_local_crops": 4, "batch_size": 32, "max_steps": 300, "out_dim": 1024, "head_hidden_dim": 512,
                 "head_bottleneck_dim": 128, "eval_every": 50, **_TEACHER},
}
# the same data and model on one GPU, images decoded by 8 worker processes (a 16-core host)
BASES["phantoms_gpu"] = {**BASES["phantoms"], "num_workers": 8}

_CB = {"head_use_bn": True, "head_center_bottleneck": True}
_EASY = {"global_crops_scale": (0.8, 1.0), "n_local_crops": 0, "mask_probability": 0.0, "drop_path_rate": 0.0}
# DINO v1 as a general SSL library assembles it (experiments/outside_dino.py): image-level loss only, softmax
# centring, teacher momentum 0.996 -> 1, a constant weight decay, every layer at one lr; 600 steps
_PLAIN_DINO = {"ibot_weight": 0.0, "koleo_weight": 0.0, "mask_probability": 0.0, "centering": "softmax",
               "momentum_teacher": 0.996, "final_momentum_teacher": 1.0, "layer_scale_init": 1.0,
               "layerwise_decay": 1.0, "patch_embed_lr_mult": 1.0, "weight_decay_end": 0.04, "max_steps": 600,
               "eval_every": 100}
# every setting that helped one toy arm, together: a faster teacher, easier views, sharper targets, a 4x lr
_COMBINED = {"layer_scale_init": 0.1, **_CB, "momentum_teacher": 0.9, "final_momentum_teacher": 0.9,
             "photometric": "lite", "global_crops_scale": (0.6, 1.0), "local_crops_scale": (0.25, 0.5),
             "base_lr": 0.016}
_SHARP = {"teacher_temp": 0.02, "warmup_teacher_temp": 0.02}
SWEEPS: dict[str, list[Arm]] = {
    "toy": [
        Arm("base", {}, "the smoke/cpu recipe before the sweep: LayerScale 1e-5"),
        Arm("layerscale_0.1", {"layer_scale_init": 0.1}, "residual branches at 0.1 from the start"),
        Arm("teacher_momentum_0.9", {"layer_scale_init": 0.1, "momentum_teacher": 0.9,
                                     "final_momentum_teacher": 0.9}, "a faster teacher"),
        Arm("prototypes_16", {"layer_scale_init": 0.1, "out_dim": 16}, "K = 16 against 32 global views"),
        Arm("bn_centred_head", {"layer_scale_init": 0.1, **_CB},
            "BatchNorm head, batch-standardised bottleneck: targets differ between images from step 0"),
        Arm("bn_centred_head_t0.02", {"layer_scale_init": 0.1, **_CB, "teacher_temp": 0.02,
                                      "warmup_teacher_temp": 0.02}, "sharper targets"),
        Arm("mild_crops_lite_photometric", {"layer_scale_init": 0.1, **_CB, "photometric": "lite",
                                            "global_crops_scale": (0.6, 1.0), "local_crops_scale": (0.25, 0.5)},
            "views easier to match"),
        Arm("easy_views", {"layer_scale_init": 0.1, **_CB, **_EASY, "photometric": "none"},
            "two near-identical global views, no masks, no photometric change: a task with nothing to learn"),
        Arm("easy_views_photometric", {"layer_scale_init": 0.1, **_CB, **_EASY},
            "the same with the photometric changes back"),
        Arm("easy_views_local_crops", {"layer_scale_init": 0.1, **_CB, **_EASY, "photometric": "none",
                                       "n_local_crops": 4, "local_crops_scale": (0.25, 0.5)},
            "the same with local crops back"),
        Arm("bn_centred_head_600", {"layer_scale_init": 0.1, **_CB, "max_steps": 600, "eval_every": 100},
            "4x the steps"),
        Arm("mild_crops_lite_photometric_600", {"layer_scale_init": 0.1, **_CB, "photometric": "lite",
                                                "global_crops_scale": (0.6, 1.0), "local_crops_scale": (0.25, 0.5),
                                                "max_steps": 600, "eval_every": 100}, "4x the steps"),
        Arm("no_koleo", {"koleo_weight": 0.0}, "KoLeo off (notebook 08's cpu grid scored best without it)"),
        Arm("plain_dino_600", _PLAIN_DINO, "plain DINO (no iBOT, KoLeo, masks, LayerScale or layer-wise lr), as "
            "the outside implementation of outside_dino.py: the same recipe in this package's step"),
        Arm("frozen_prototypes", {"freeze_last_layer_steps": 150},
            "the head's last layer frozen for the whole run (the base unfreezes it after one pass, step 60)"),
        Arm("bn_centred_head_layerscale_1", {"layer_scale_init": 1.0, **_CB}, "no LayerScale damping"),
        Arm("bn_centred_head_lr_4x", {"layer_scale_init": 0.1, **_CB, "base_lr": 0.016}, "4x the learning rate"),
        Arm("combined_t0.04", _COMBINED, "the helpful settings together: BatchNorm head, teacher momentum 0.9, "
            "mild crops, lite photometrics, 4x lr"),
        Arm("combined", {**_COMBINED, **_SHARP}, "the same with teacher temperature 0.02"),
        Arm("combined_1200", {**_COMBINED, **_SHARP, "max_steps": 1200, "eval_every": 100},
            "the same, 8x the steps: does the plateau end with time, as the supervised ceiling's did?"),
    ],
    "phantoms": [
        Arm("base", {}, "the cpu profile's recipe: LayerScale 1e-5"),
        Arm("layerscale_0.1", {"layer_scale_init": 0.1}, "residual branches at 0.1 from the start"),
        Arm("bn_centred_head", {"layer_scale_init": 0.1, **_CB},
            "BatchNorm head, batch-standardised bottleneck: targets differ between images from step 0"),
        Arm("mild_crops_lite_photometric", {"layer_scale_init": 0.1, **_CB, "photometric": "lite",
                                            "global_crops_scale": (0.6, 1.0), "local_crops_scale": (0.25, 0.5)},
            "views easier to match"),
        Arm("teacher_momentum_0.9", {"layer_scale_init": 0.1, "momentum_teacher": 0.9,
                                     "final_momentum_teacher": 0.9}, "a faster teacher (the toy sweep's best at 150)"),
        Arm("no_koleo", {"koleo_weight": 0.0}, "KoLeo off (notebook 08's cpu grid scored best without it)"),
        Arm("combined", {**_COMBINED, **_SHARP, "eval_every": 100}, "the toy sweep's combined arm: BatchNorm head, "
            "teacher momentum 0.9 and temperature 0.02, mild crops, lite photometrics, 4x lr"),
        Arm("combined_lr_2x", {**_COMBINED, **_SHARP, "eval_every": 100, "base_lr": 0.008}, "the same at 2x lr"),
        Arm("combined_1200", {**_COMBINED, **_SHARP, "max_steps": 1200, "eval_every": 200},
            "the toy sweep's combined arm, 4x the steps: does the plateau end with time?"),
        Arm("combined_1200_batch16", {**_COMBINED, **_SHARP, "max_steps": 1200, "eval_every": 200, "batch_size": 16},
            "the same steps at half the batch (about half the time): can a smaller batch buy the steps?"),
    ],
    # the combined arm for 2x, 4x and 6.7x the cpu profile's steps: where do its features leave random init's?
    "phantoms_gpu": [
        Arm("combined_600", {**_COMBINED, **_SHARP, "max_steps": 600, "eval_every": 60, "precision": "fp32"},
            "the combined arm, 2x the cpu profile's steps, fp32"),
        Arm("combined_1200", {**_COMBINED, **_SHARP, "max_steps": 1200, "eval_every": 120, "precision": "fp32"},
            "the same, 4x the steps (the phantoms sweep's combined_1200 with val scored more often)"),
        Arm("combined_2000", {**_COMBINED, **_SHARP, "max_steps": 2000, "eval_every": 200},
            "the same, 6.7x the steps, bf16 autocast"),
    ],
}


def _data(kind: str, root: Path) -> tuple[Path, int, str]:
    """(manifest, probe image size, kNN label column) of a sweep's data set, generated once under ``root``."""
    if kind == "toy":
        from raddino_lib.data.toy_shapes import generate_shapes

        manifest = root / "shapes" / "manifest.csv"
        if not manifest.exists():
            generate_shapes(root / "shapes", n=960, size=32, seed=0)
        return manifest, 32, "shape"
    if kind in ("phantoms", "phantoms_gpu"):
        from raddino_lib.data.phantoms import generate

        return generate(root / "phantoms", n=3000, size=96, seed=0, balanced=False, workers=2), 64, ""
    raise ValueError(f"unknown sweep data {kind!r}; choose one of {sorted(BASES)}")


def _test_probes(run_dir: Path, manifest: Path, size: int, device: str) -> dict[str, dict[str, list[float]]]:
    """Test-split linear probes (findings macro AUROC, [CLS] and [CLS, mean patch]) of the best teacher and init."""
    from raddino_lib.probe.compare import compare_classification

    encoders = {"ssl": str(run_dir / "backbone_best.safetensors"), "random": str(run_dir / "backbone_init.safetensors")}
    res = compare_classification(encoders, str(manifest), None, size, n_boot=300, seed=0, device=device,
                                 log=lambda _: None)
    return {enc: {probe: [round(cells[f"{probe}_macro_auroc"][k], 4) for k in ("value", "ci_low", "ci_high")]
                  for probe in ("cls", "clsmean")} for enc, cells in res.table.items()}


def _device_name(device: str) -> str:
    import platform

    import torch

    if device != "cpu" and torch.cuda.is_available():
        gpu = torch.device(device if ":" in device else "cuda")
        return f"{torch.cuda.get_device_name(gpu)}, torch {torch.__version__}"
    return f"cpu ({platform.processor() or platform.machine()}), torch {torch.__version__}"


def run_arm(kind: str, arm: Arm, root: str | Path, device: str = "cpu", test: bool = False) -> dict[str, Any]:
    """Pretrain one arm on ``kind``'s data under ``root`` and return its record (see the module docstring)."""
    from raddino_lib.models import load_backbone
    from raddino_lib.probe.selection import knn_val_scorer
    from raddino_lib.train.metrics_log import read_metrics
    from raddino_lib.train.pretrain import PretrainConfig, pretrain

    root = Path(root)
    manifest, size, label_column = _data(kind, root)
    if test and label_column:
        raise ValueError(f"test probes need the phantoms' findings; the {kind} data has none (drop --test)")
    run_dir = root / "runs" / kind / arm.name
    shutil.rmtree(run_dir, ignore_errors=True)
    cfg = PretrainConfig(**{**BASES[kind], **arm.overrides}, manifest=str(manifest), output_dir=str(run_dir),
                         device=device, checkpoint_every=100_000, seed=0)
    scorer = knn_val_scorer(manifest, size, max_bank=1000, max_query=400, label_column=label_column)
    start = time.perf_counter()
    result = pretrain(cfg, progress=False, scorer=scorer)
    wall = time.perf_counter() - start
    rows = read_metrics(result.metrics_path)
    last, log_k = rows[-10:], math.log(cfg.out_dim)

    def mean(key: str) -> float:
        return sum(r[key] for r in last) / len(last)

    val = pd.read_csv(run_dir / "val_scores.csv")
    val_init = scorer(load_backbone(result.backbone_init_path))
    extra: dict[str, Any] = {"device": _device_name(device)}
    if test:
        extra["test"] = _test_probes(run_dir, manifest, size, device)
    return {**extra, "data": kind, "arm": arm.name, "note": arm.note, "overrides": arm.overrides,
            "steps": cfg.max_steps,
            "wall_s": round(wall, 1), "dino_over_log_k": round(mean("dino_loss") / log_k, 4),
            "teacher_entropy": round(mean("teacher_entropy") / log_k, 4),
            "student_entropy": round(mean("student_entropy") / log_k, 4),
            "cls_std_start": round(rows[0]["cls_std"], 4), "cls_std": round(mean("cls_std"), 4),
            "val_kind": "accuracy" if label_column else "macro AUROC", "val_init": round(val_init, 4),
            "val": [[int(s), round(float(v), 4)] for s, v in zip(val["step"], val["val_score"], strict=True)],
            "val_best": round(float(val["val_score"].max()), 4)}


def load_sweep(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    return json.loads(path.read_text())["arms"] if path.exists() else []


def run_sweep(kind: str, out: str | Path, root: str | Path, arms: Iterable[str] = (), device: str = "cpu",
              test: bool = False) -> list[dict[str, Any]]:
    """Run the arms of ``SWEEPS[kind]`` (or those named) not yet in ``out``; rewrite ``out`` after each."""
    from raddino_lib import atomic

    wanted = set(arms)
    records = load_sweep(out)
    done = {(r["arm"], json.dumps(r["overrides"], sort_keys=True)) for r in records}
    for arm in SWEEPS[kind]:
        key = (arm.name, json.dumps(arm.overrides, sort_keys=True))  # tuples dump as the lists JSON read back
        if (wanted and arm.name not in wanted) or key in done:
            continue
        print(f"[{kind}] {arm.name}: {arm.note}", flush=True)
        records = [r for r in records if r["arm"] != arm.name] + [run_arm(kind, arm, root, device, test)]
        atomic.write_json(Path(out), {"data": kind, "base": BASES[kind], "arms": records})
    return records


def sweep_table(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per arm: steps, loss and entropies over log K, [CLS] spread, kNN score at init / best / last."""
    rows = [{"arm": r["arm"], "steps": r["steps"], "DINO loss / log K": r["dino_over_log_k"],
             "teacher entropy / log K": r["teacher_entropy"], "student entropy / log K": r["student_entropy"],
             "[CLS] std, step 0": r["cls_std_start"], "[CLS] std, end": r["cls_std"],
             f"val {r['val_kind']}, init": r["val_init"], f"val {r['val_kind']}, best": r["val_best"],
             f"val {r['val_kind']}, last": r["val"][-1][1] if r["val"] else float("nan"), "what": r["note"]}
            for r in records]
    return pd.DataFrame(rows).set_index("arm")


def test_table(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Arms with test probes: steps, best val score, and each probe's test macro AUROC for SSL and random init
    ("value [low, high]"), with whether the two 95% intervals are apart (SSL's entirely above)."""
    from raddino_lib.claims import separated
    from raddino_lib.results import metric
    from raddino_lib.summary import format_metric

    rows = []
    for r in records:
        if "test" not in r:
            continue
        row: dict[str, Any] = {"arm": r["arm"], "steps": r["steps"], "val best": r["val_best"]}
        for probe, label in (("cls", "[CLS]"), ("clsmean", "[CLS, mean patch]")):
            ssl, rnd = (metric(*r["test"][enc][probe]) for enc in ("ssl", "random"))  # (value, low, high) lists
            row[f"SSL, {label}"], row[f"random, {label}"] = format_metric(ssl), format_metric(rnd)
            row[f"apart, {label}"] = bool(separated(ssl, rnd))
        rows.append(row)
    if not rows:
        raise ValueError("test_table: no arm was run with test probes (run_sweep(..., test=True) or --test)")
    return pd.DataFrame(rows).set_index("arm")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=sorted(SWEEPS), default="toy")
    parser.add_argument("--out", required=True, help="JSON file of the sweep (resumed when it exists)")
    parser.add_argument("--root", default="runs/recipe_sweep", help="folder for the data and the runs")
    parser.add_argument("--arms", default="", help="comma-separated arm names (default: every arm)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--test", action="store_true",
                        help="also probe each arm's best teacher and random init on the test split (phantoms only)")
    args = parser.parse_args(argv)
    arms = [a for a in args.arms.split(",") if a]
    unknown = set(arms) - {a.name for a in SWEEPS[args.data]}
    if unknown:
        parser.error(f"unknown arms {sorted(unknown)}; the {args.data} sweep has {[a.name for a in SWEEPS[args.data]]}")
    run_sweep(args.data, args.out, args.root, arms, args.device, args.test)


if __name__ == "__main__":
    main()
