"""Throughput and model-FLOP utilisation (MFU) of one full SSL training step.

A step = teacher forward on the global crops, student forward + backward on all crops (masked global +
local), DINO + iBOT + KoLeo losses, gradient clipping, AdamW, center update and teacher EMA — exactly
``raddino_lib.train.pretrain``'s loop body, on synthetic crops already in memory (data loading excluded).

- FLOPs of one step are counted with ``torch.utils.flop_counter.FlopCounterMode`` (matmuls, convolutions,
  attention; element-wise ops are free in this count, as usual for MFU).
- The machine's peak is measured in the same run: a large fp32 matmul on CPU, bf16 on GPU.
- MFU = (FLOPs per step x steps / wall time) / peak. On a shared CPU the wall clock also counts other
  processes' time, so the CPU-time ratio (both measured as this process's CPU seconds) is reported as well.
- The step's own ceiling (``matmul_ceiling`` in the JSON): its counted ops replayed one by one, alone, on tensors
  of the same shapes and strides. Small matmuls and short-sequence attention run below the large matmul's peak,
  so this says how far the step can go at all, and how much of the gap is the time spent outside those ops.

    python benchmarks/pretrain_step.py                  # CPU: ViT 192 wide, 12 deep, patch 8, 2x64 + 8x32 px
    python benchmarks/pretrain_step.py --device cuda    # GPU: ViT-B/14, 2x224 + 8x98 px, bf16 autocast

Writes ``benchmarks/results/pretrain_step_<device>[_compile].json``. Targets: CPU >= 0.75, GPU >= 0.45.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from _mfu import count_flops, cpu_seconds, matmul_ceiling, matmul_peak, sync

from raddino_lib.atomic import write_json
from raddino_lib.train.pretrain import PretrainConfig, build_meta_arch
from raddino_lib.train.pretrain_data import MultiCropCollator
from raddino_lib.train.schedules import param_groups_lrd

RESULTS = Path(__file__).resolve().parent / "results"
SETUPS = {
    "cpu": dict(arch="vit_tiny", patch_size=8, depth=12, global_crop_size=64, local_crop_size=32, n_local_crops=8,
                batch_size=32, out_dim=8192, target=0.75),
    "cuda": dict(arch="vit_base", patch_size=14, depth=0, global_crop_size=224, local_crop_size=98, n_local_crops=8,
                 batch_size=64, out_dim=65536, target=0.45),
}


def synthetic_batch(cfg: PretrainConfig, device: torch.device) -> dict[str, torch.Tensor]:
    """Random normalised crops with the real iBOT mask sampling (MultiCropCollator)."""
    g = torch.Generator().manual_seed(0)
    n_img, G, L = cfg.batch_size, cfg.global_crop_size, cfg.local_crop_size
    items = [{"step": 0, "global_crops": list(torch.randn(2, 3, G, G, generator=g)),
              "local_crops": list(torch.randn(cfg.n_local_crops, 3, L, L, generator=g))} for _ in range(n_img)]
    collate = MultiCropCollator(G // cfg.patch_size, 0, cfg.mask_probability, cfg.mask_ratio_min, cfg.mask_ratio_max)
    return {k: v.to(device) for k, v in collate(items).items()}


def make_step(cfg: PretrainConfig, device: torch.device):
    arch = build_meta_arch(cfg).to(device).train()
    if cfg.compile:
        for module in (arch.student["backbone"], arch.teacher["backbone"]):
            module.forward_features = torch.compile(module.forward_features)
    groups = param_groups_lrd(arch.student, weight_decay=0.04, layer_decay=0.9, patch_embed_lr_mult=0.2)
    optimizer = torch.optim.AdamW(groups, lr=1e-4, betas=(0.9, 0.999), fused=True)
    params = [p for gr in groups for p in gr["params"]]
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()

    def step(batch: dict[str, torch.Tensor]) -> None:
        with autocast:
            targets = arch.teacher_targets(batch, 0.04)
            outputs = arch.student_outputs(batch)
            total, _ = arch.total_loss(outputs, targets, batch)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(params, 3.0)
        optimizer.step()
        arch.update_centers(targets)
        arch.update_teacher(0.994)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--steps", type=int, default=0, help="timed steps (default: 5 on CPU, 30 on GPU)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats; the median is reported")
    parser.add_argument("--batch-size", type=int, default=0, help="override the setup's batch size")
    parser.add_argument("--compile", action="store_true", help="torch.compile the backbones")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()

    setup = dict(SETUPS[args.device])
    target = setup.pop("target")
    if args.batch_size:
        setup["batch_size"] = args.batch_size
    device = torch.device(args.device)
    steps = args.steps or (5 if device.type == "cpu" else 30)
    cfg = PretrainConfig(**setup, head_hidden_dim=2048, head_bottleneck_dim=256, drop_path_rate=0.1,
                         compile=args.compile, device=args.device)
    torch.manual_seed(0)
    batch = synthetic_batch(cfg, device)
    step = make_step(cfg, device)
    for _ in range(args.warmup):
        step(batch)
    sync(device)
    flops_per_step = count_flops(lambda: step(batch))

    peak_n = 4096 if device.type == "cpu" else 8192
    runs = []
    for _ in range(args.repeats):
        peak_wall, peak_cpu = matmul_peak(device, peak_n, 10 if device.type == "cpu" else 50)
        sync(device)
        wall, cpu = time.perf_counter(), cpu_seconds()
        for _ in range(steps):
            step(batch)
        sync(device)
        wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
        runs.append({"step_s": wall / steps, "cpu_s_per_step": cpu / steps, "peak_flops": peak_wall,
                     "peak_flops_per_cpu_s": peak_cpu, "achieved_flops": flops_per_step * steps / wall,
                     "achieved_flops_per_cpu_s": flops_per_step * steps / max(cpu, 1e-9)})
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    mfu = med["achieved_flops"] / med["peak_flops"]
    # the step's own matmuls, attention and convolutions, each replayed alone (eager: the shapes are the same)
    eager = step if not args.compile else make_step(dataclasses.replace(cfg, compile=False), device)
    ceiling = matmul_ceiling(lambda: eager(batch), device)
    result = {
        "device": args.device,
        "setup": {**setup, "precision": "bf16 autocast" if device.type == "cuda" else "fp32",
                  "compile": args.compile, "steps": steps, "repeats": args.repeats,
                  "what": "teacher fwd + student fwd/bwd on all crops + DINO/iBOT/KoLeo + clip + AdamW + EMA"},
        "images_per_s": cfg.batch_size / med["step_s"],
        "step_s": med["step_s"],
        "flops_per_step": flops_per_step,
        "achieved_flops": med["achieved_flops"],
        "peak_matmul_flops": med["peak_flops"],
        "mfu": mfu,
        "mfu_cpu_time": med["achieved_flops_per_cpu_s"] / med["peak_flops_per_cpu_s"],
        "target": target,
        "meets_target": mfu >= target,
        "matmul_ceiling": {
            "what": "FLOP/s of this step's own counted ops (matmuls, attention), each replayed alone on fresh "
                    "tensors of the same shapes and strides: the most any step made of them can reach",
            "flops": ceiling["ceiling_flops"],
            "of_peak": ceiling["ceiling_flops"] / med["peak_flops"],
            "achieved_of_ceiling": med["achieved_flops"] / ceiling["ceiling_flops"],
            "ops_per_step": ceiling["ops"], "distinct_ops": ceiling["distinct_ops"],
            "flops_per_step_counted": ceiling["flops"],
        },
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "threads": torch.get_num_threads(), "torch": torch.__version__,
                    "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None,
                    "load_avg_1m": os.getloadavg()[0]},
        "runs": runs,
    }
    name = f"pretrain_step_{args.device}{'_compile' if args.compile else ''}.json"
    path = write_json(Path(args.out) / name, result)
    print(f"{args.device}: {result['images_per_s']:.1f} img/s, {flops_per_step / 1e9:.1f} GFLOP/step, "
          f"achieved {med['achieved_flops'] / 1e9:.1f} GFLOP/s, peak {med['peak_flops'] / 1e9:.1f} GFLOP/s, "
          f"MFU {mfu:.2f} (cpu-time MFU {result['mfu_cpu_time']:.2f}; target {target}); its own matmuls alone "
          f"reach {ceiling['ceiling_flops'] / 1e9:.1f} GFLOP/s ({result['matmul_ceiling']['of_peak']:.2f} of peak), "
          f"the step {result['matmul_ceiling']['achieved_of_ceiling']:.2f} of that -> {path}")


if __name__ == "__main__":
    main()
