"""DINOv2 / RAD-DINO self-supervised pretraining: ``pretrain(cfg) -> PretrainResult``.

The run directory (``cfg.output_dir``) receives::

    config.json                 the resolved PretrainConfig (also inside every checkpoint)
    metrics.csv                 one row per step: losses, schedules, throughput
    checkpoints/step_XXXXXXX/   safetensors + JSON (train/checkpoint.py); resume=True continues exactly
    backbone_init.safetensors   the backbone at step 0 (random init or the loaded weights)
    backbone.safetensors        the teacher backbone at the end
    backbone_best.safetensors   with a scorer and ``eval_every``: the teacher of the best validation score
    val_scores.csv              with a scorer: (step, val_score) every ``eval_every`` steps

Launch on several GPUs with ``torchrun --nproc_per_node N .venv/bin/raddino pretrain ...``.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from raddino_lib import atomic
from raddino_lib.device import resolve_device
from raddino_lib.models import backbone_from_spec, create_backbone, load_backbone, save_backbone
from raddino_lib.models.heads import DINOHead, load_dino_head
from raddino_lib.train import distributed as D
from raddino_lib.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from raddino_lib.train.collapse import CollapseMonitor, collapse_stats
from raddino_lib.train.metrics_log import MetricsLog
from raddino_lib.train.pretrain_config import PretrainConfig
from raddino_lib.train.pretrain_data import build_pretrain_loader, to_device
from raddino_lib.train.schedules import Schedules, param_groups_lrd
from raddino_lib.train.ssl_arch import SSLMetaArch

__all__ = ["NonFiniteLossError", "PretrainConfig", "PretrainResult", "build_meta_arch", "pretrain"]


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN/inf; the message names the step and the last good checkpoint."""


@dataclass
class PretrainResult:
    run_dir: Path
    backbone_path: Path  # teacher backbone (save_backbone format)
    backbone_init_path: Path  # backbone at step 0
    metrics_path: Path  # metrics.csv
    final_metrics: dict[str, float]  # last-step losses, mean over the last 10 steps, wall time, throughput
    best_path: Path | None = None  # teacher of the best validation score (None without scoring)
    best_step: int = 0  # the step it was taken at
    best_score: float = float("nan")  # its validation score


def build_meta_arch(cfg: PretrainConfig) -> SSLMetaArch:
    """Student and teacher (same init) from ``cfg``: random, or ``init_weights`` for continual pretraining."""
    if cfg.init_weights:
        start = load_backbone(cfg.init_weights)
        spec = start.spec.to_dict()
        if spec["patch_size"] != cfg.patch_size:
            raise ValueError(f"init_weights {cfg.init_weights} has patch size {spec['patch_size']} but the config "
                             f"says {cfg.patch_size}: set patch_size={spec['patch_size']} (crops must be multiples)")
        student = backbone_from_spec({**spec, "drop_path_rate": cfg.drop_path_rate, "drop_path_uniform": True})
        teacher = backbone_from_spec({**spec, "drop_path_rate": 0.0})
        student.load_state_dict(start.state_dict())
    else:
        kwargs = dict(arch=cfg.arch, patch_size=cfg.patch_size, img_size=cfg.global_crop_size, depth=cfg.depth,
                      layer_scale_init=cfg.layer_scale_init, num_register_tokens=cfg.num_register_tokens,
                      weight_init=cfg.weight_init)
        student = create_backbone(**kwargs, drop_path_rate=cfg.drop_path_rate, drop_path_uniform=True)
        teacher = create_backbone(**kwargs)
    if cfg.grad_checkpointing:
        student.set_grad_checkpointing(True)
    dim = student.embed_dim
    if cfg.init_head:
        head = load_dino_head(cfg.init_head, in_dim=dim, out_dim=cfg.out_dim)
        head_t = load_dino_head(cfg.init_head, in_dim=dim, out_dim=cfg.out_dim)
    else:
        sizes = dict(out_dim=cfg.out_dim, hidden_dim=cfg.head_hidden_dim, bottleneck_dim=cfg.head_bottleneck_dim,
                     nlayers=cfg.head_nlayers, use_bn=cfg.head_use_bn,
                     train_prototype_norms=cfg.head_train_norms, center_bottleneck=cfg.head_center_bottleneck)
        head, head_t = DINOHead(dim, **sizes), DINOHead(dim, **sizes)
    return SSLMetaArch(student, teacher, head, head_t, out_dim=cfg.out_dim, student_temp=cfg.student_temp,
                       center_momentum=cfg.center_momentum, centering=cfg.centering,
                       sinkhorn_iterations=cfg.sinkhorn_iterations, dino_weight=cfg.dino_weight,
                       ibot_weight=cfg.ibot_weight, koleo_weight=cfg.koleo_weight)


def build_schedules(cfg: PretrainConfig, world_size: int, steps_per_epoch: int) -> Schedules:
    freeze = steps_per_epoch if cfg.freeze_last_layer_steps < 0 else cfg.freeze_last_layer_steps
    return Schedules.build(
        cfg.max_steps, base_lr=cfg.peak_lr(world_size), min_lr=cfg.min_lr,
        warmup_steps=round(cfg.lr_warmup_fraction * cfg.max_steps),
        weight_decay=cfg.weight_decay, weight_decay_end=cfg.weight_decay_end,
        momentum_teacher=cfg.momentum_teacher, final_momentum_teacher=cfg.final_momentum_teacher,
        warmup_teacher_temp=cfg.warmup_teacher_temp, teacher_temp=cfg.teacher_temp,
        teacher_temp_warmup_steps=round(cfg.teacher_temp_warmup_fraction * cfg.max_steps),
        freeze_last_layer_steps=min(freeze, cfg.max_steps))


def _seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _prepare_run_dir(cfg: PretrainConfig, run_dir: Path, is_main: bool):
    """Return the checkpoint to resume from (or None); a fresh run clears old checkpoints and metrics."""
    ckpt = latest_checkpoint(run_dir / "checkpoints") if cfg.resume else None
    if ckpt is not None:
        saved = PretrainConfig.from_dict(ckpt.state["config"])
        diff = cfg.differences(saved)
        if diff:
            raise ValueError(f"resume: {ckpt.path} was written with a different config: "
                             + ", ".join(f"{k}: now {a!r}, then {b!r}" for k, (a, b) in diff.items())
                             + " (use the same settings, or a new output_dir)")
    elif is_main:
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        for name in ("metrics.csv", "val_scores.csv", "backbone_best.safetensors"):
            (run_dir / name).unlink(missing_ok=True)
    D.barrier()
    return ckpt


def pretrain(cfg: PretrainConfig, progress: bool = True,
             scorer: Callable[[torch.nn.Module], float] | None = None) -> PretrainResult:
    """Train student/teacher for ``cfg.max_steps`` steps (or until ``cfg.stop_after_steps``).

    scorer: teacher backbone → validation score, higher is better (``raddino_lib.probe.selection``); called
    every ``cfg.eval_every`` steps and at the end, the best teacher is kept as ``backbone_best.safetensors``.
    """
    info = D.init_distributed("cuda" if cfg.device.startswith("cuda") or (
        cfg.device == "auto" and torch.cuda.is_available()) else "cpu")
    device = resolve_device(cfg.device, info.local_rank if D.world_size() > 1 else 0)
    use_bf16 = device.type == "cuda" and cfg.precision in ("auto", "bf16")
    if cfg.precision == "bf16" and device.type != "cuda":
        raise ValueError("precision 'bf16' needs CUDA; on CPU use 'auto' or 'fp32'")
    run_dir = Path(cfg.output_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt = _prepare_run_dir(cfg, run_dir, info.is_main)
    if info.is_main:
        atomic.write_json(run_dir / "config.json", cfg.to_dict())

    # ===== model, optimizer, schedules =====
    _seed_everything(cfg.seed)
    arch = build_meta_arch(cfg).to(device)
    init_path, final_path = run_dir / "backbone_init.safetensors", run_dir / "backbone.safetensors"
    if info.is_main and ckpt is None:
        save_backbone(arch.teacher["backbone"], init_path, meta={"step": 0, "source": cfg.init_weights or "random"})
    groups = param_groups_lrd(arch.student, weight_decay=cfg.weight_decay, layer_decay=cfg.layerwise_decay,
                              patch_embed_lr_mult=cfg.patch_embed_lr_mult)
    optimizer = torch.optim.AdamW(groups, lr=0.0, betas=(0.9, cfg.adam_beta2), fused=True)  # one kernel per tensor
    params = [p for g in groups for p in g["params"]]
    loader, n_images = build_pretrain_loader(cfg, arch.student["backbone"].spec, info,
                                             start_step=ckpt.step if ckpt else 0)
    steps_per_epoch = max(1, n_images // (cfg.batch_size * info.world_size))
    schedules = build_schedules(cfg, info.world_size, steps_per_epoch)
    start_step = 0
    if ckpt is not None:
        load_checkpoint(ckpt, arch, optimizer)
        start_step = ckpt.step
    if cfg.compile:
        for module in (arch.student["backbone"], arch.teacher["backbone"]):
            module.forward_features = torch.compile(module.forward_features)
    end_step = cfg.max_steps if cfg.stop_after_steps <= 0 else min(cfg.max_steps, cfg.stop_after_steps)

    # ===== training loop =====
    log = MetricsLog(run_dir / "metrics.csv", start_step, enabled=info.is_main)
    scoring = scorer is not None and cfg.eval_every > 0
    # val_scores.csv counts completed steps: a score taken at the resumed checkpoint's step stays
    val_log = MetricsLog(run_dir / "val_scores.csv", start_step + 1, enabled=info.is_main and scoring,
                         columns=("step", "val_score"))
    best = {"best_val_score": ckpt.state.get("best_val_score", -math.inf) if ckpt else -math.inf,
            "best_val_step": ckpt.state.get("best_val_step", 0) if ckpt else 0}
    best_path = run_dir / "backbone_best.safetensors"
    monitor = CollapseMonitor(cfg.out_dim, patience=max(10, min(100, cfg.max_steps // 5)))
    bar = _progress(progress and info.is_main, start_step, end_step)
    spec_meta = {"raddino": _json_spec(arch.teacher["backbone"])}
    state_extra = {"world_size": info.world_size, "n_images": n_images, "peak_lr": cfg.peak_lr(info.world_size)}
    arch.train()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if use_bf16 else nullcontext()
    batches = iter(loader)
    started = time.perf_counter()
    for step in range(start_step, end_step):
        tick = time.perf_counter()
        batch = to_device(next(batches), device)
        values = schedules.apply(optimizer, step)
        with autocast:
            targets = arch.teacher_targets(batch, values["teacher_temp"])
            outputs = arch.student_outputs(batch)
            total, parts = arch.total_loss(outputs, targets, batch)
        row = {k: D.all_reduce_mean(v.detach().float().clone()).item() for k, v in
               {**parts, "total_loss": total}.items()}
        row.update(collapse_stats(targets.dino.flatten(0, 1), targets.cls_logits, outputs.global_logits,
                                  cfg.student_temp, targets.cls_features))
        if info.is_main:
            monitor.update(row, step)
        if not all(math.isfinite(v) for v in row.values()):
            last = latest_checkpoint(run_dir / "checkpoints")
            raise NonFiniteLossError(
                f"non-finite loss at step {step} ({row}); last good checkpoint: "
                f"{last.path if last else 'none'} (lower the lr or teacher temperature, then resume=True)")
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        D.average_gradients(params)
        if cfg.clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad)
        optimizer.step()
        arch.update_centers(targets)
        arch.update_teacher(values["momentum"])
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - tick
        row.update(step=step, lr=values["lr"], wd=values["wd"], momentum=values["momentum"],
                   teacher_temp=values["teacher_temp"], images_per_s=cfg.batch_size * info.world_size / seconds)
        log.append(row)
        bar.update(1)
        bar.set_postfix(loss=f"{row['total_loss']:.3f}")
        if scoring and info.is_main and ((step + 1) % cfg.eval_every == 0 or step + 1 == cfg.max_steps):
            _score_teacher(arch, scorer, step + 1, val_log, best, best_path, bar)
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == end_step:
            if info.is_main:
                save_checkpoint(run_dir / "checkpoints", step + 1, arch, optimizer, cfg.to_dict(),
                                extra={**state_extra, **best}, keep=cfg.keep_checkpoints, metadata=spec_meta)
            D.barrier()
    bar.close()
    log.close()
    val_log.close()

    # ===== export =====
    if info.is_main and end_step == cfg.max_steps:
        save_backbone(arch.teacher["backbone"], final_path, meta={"step": end_step, "config": cfg.to_dict()})
    D.barrier()
    final = log.summary()
    final.update(wall_time_s=time.perf_counter() - started, steps_run=end_step - start_step, step=end_step)
    return PretrainResult(run_dir=run_dir, backbone_path=final_path, backbone_init_path=init_path,
                          metrics_path=run_dir / "metrics.csv", final_metrics=final,
                          best_path=best_path if scoring and best_path.is_file() else None,
                          best_step=int(best["best_val_step"]), best_score=float(best["best_val_score"]))


def _score_teacher(arch: SSLMetaArch, scorer: Callable[[torch.nn.Module], float], step: int, val_log: MetricsLog,
                   best: dict[str, float], best_path: Path, bar: Any) -> None:
    """Score the teacher on validation; keep it as ``best_path`` when it beats every earlier score."""
    score = float(scorer(arch.teacher["backbone"]))
    val_log.append({"step": step, "val_score": score})
    bar.write(f"step {step}: validation score {score:.4f}")
    if score > best["best_val_score"]:
        best.update(best_val_score=score, best_val_step=step)
        save_backbone(arch.teacher["backbone"], best_path, meta={"step": step, "val_score": score})


def _json_spec(model: torch.nn.Module) -> str:
    import json

    return json.dumps(model.spec.to_dict())


def _progress(enabled: bool, start: int, end: int) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=end, initial=start, disable=not enabled, desc="pretrain", unit="step", dynamic_ncols=True)
