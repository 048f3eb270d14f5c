"""What the MFU benchmarks share: CPU time, device sync, the same-run matmul peak, and timed repeats of a step.

MFU = (FLOPs of one step, counted by ``torch.utils.flop_counter.FlopCounterMode`` × steps / wall time) / the peak of
a large matmul measured in the same run (fp32 on CPU, bf16 on GPU). On a shared CPU the wall clock also counts other
processes' time, so the same ratio in this process's CPU seconds is reported beside it.
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, n: int, repeats: int) -> tuple[float, float]:
    """(FLOP/s by wall clock, FLOP/s per CPU second) of an n x n matmul: fp32 on CPU, bf16 on GPU."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    sync(device)
    wall, cpu = time.perf_counter(), cpu_seconds()
    for _ in range(repeats):
        a @ b
    sync(device)
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    flops = 2.0 * n**3 * repeats
    return flops / wall, flops / max(cpu, 1e-9)


def count_flops(step: Callable[[], object]) -> float:
    """FLOPs of one call of ``step`` (matmuls, convolutions, attention)."""
    with FlopCounterMode(display=False) as counter:
        step()
    return float(counter.get_total_flops())


def time_step(step: Callable[[], object], device: torch.device, steps: int, repeats: int, warmup: int = 2,
              peak_n: int = 2048, peak_repeats: int = 10) -> dict[str, float]:
    """Median over ``repeats`` of: seconds per step, FLOPs, the matmul peak just before, and both MFUs."""
    for _ in range(warmup):
        step()
    sync(device)
    flops = count_flops(step)
    runs = []
    for _ in range(repeats):
        peak_wall, peak_cpu = matmul_peak(device, peak_n, peak_repeats)
        sync(device)
        wall, cpu = time.perf_counter(), cpu_seconds()
        for _ in range(steps):
            step()
        sync(device)
        wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
        runs.append({"step_s": wall / steps, "peak_flops": peak_wall,
                     "mfu": flops * steps / wall / peak_wall,
                     "mfu_cpu_time": flops * steps / max(cpu, 1e-9) / peak_cpu})
    out = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    return {"flops_per_step": flops, **out}
