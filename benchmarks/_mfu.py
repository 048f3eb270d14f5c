"""What the MFU benchmarks share: CPU time, device sync, the same-run matmul peak, and timed repeats of a step.

MFU = (FLOPs of one step, counted by ``torch.utils.flop_counter.FlopCounterMode`` × steps / wall time) / the peak of
a large matmul measured in the same run (fp32 on CPU, bf16 on GPU). On a shared CPU the wall clock also counts other
processes' time, so the same ratio in this process's CPU seconds is reported beside it.

A step's own matmuls are smaller than the peak's (a ViT 192 wide multiplies 192 × 576 weights), and small matmuls
do not reach the large one's FLOP/s. :func:`matmul_ceiling` measures what they do reach: it records every counted
op of one step (matmuls, attention, convolutions: shapes, strides, arguments), replays each alone on fresh tensors
of the same layout, and returns their FLOPs over their summed time. No step made of those ops can beat it, so
achieved / ceiling says how much of the time outside them is left to win.
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map
from torch.utils.flop_counter import (
    FlopCounterMode,
    flop_registry,
    register_flop_formula,
    sdpa_backward_flop_count,
    sdpa_flop_count,
)

# FlopCounterMode (torch 2.14) counts the GPU attention kernels but not the CPU one that scaled_dot_product_attention
# dispatches to; without these two formulas every CPU MFU here would leave out the attention's FLOPs.
_CPU_ATTENTION = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
_CPU_ATTENTION_BACKWARD = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward
if _CPU_ATTENTION not in flop_registry:
    @register_flop_formula(_CPU_ATTENTION)
    def _cpu_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query_shape, key_shape, value_shape)
if _CPU_ATTENTION_BACKWARD not in flop_registry:
    @register_flop_formula(_CPU_ATTENTION_BACKWARD)
    def _cpu_attention_backward_flops(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None,
                                      **kwargs) -> int:
        return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


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


class _TensorSpec:
    """Shape, strides, dtype and device of a recorded tensor argument."""

    def __init__(self, t: torch.Tensor) -> None:
        self.shape, self.stride, self.dtype, self.device = tuple(t.shape), tuple(t.stride()), t.dtype, t.device

    def key(self) -> tuple:
        return ("T", self.shape, self.stride, self.dtype)

    def make(self) -> torch.Tensor:
        # fill the storage, then view it with the recorded strides (stride 0 = a broadcast argument)
        n = 1 + sum((size - 1) * step for size, step in zip(self.shape, self.stride, strict=True)) if all(
            self.shape) else 0
        flat = torch.empty(n, dtype=self.dtype, device=self.device)
        flat = flat.normal_() if flat.is_floating_point() else flat.zero_()
        return flat.as_strided(self.shape, self.stride)


class _Recorder(TorchDispatchMode):
    """Records every op that FlopCounterMode counts: (op, argument specs, FLOPs)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func.overloadpacket in flop_registry:
            flops = flop_registry[func.overloadpacket](*args, **kwargs, out_val=out)
            spec = tree_map(lambda x: _TensorSpec(x) if isinstance(x, torch.Tensor) else x, (args, kwargs))
            self.calls.append((func, spec, int(flops)))
        return out


def _spec_key(spec) -> str:
    return repr(tree_map(lambda x: x.key() if isinstance(x, _TensorSpec) else x, spec))


def matmul_ceiling(step: Callable[[], object], device: torch.device, repeats: int = 3) -> dict[str, float]:
    """FLOP/s that one step's own counted ops reach when each runs alone (see the module's docstring).

    Returns ``ceiling_flops`` (FLOPs over summed replay time), ``flops`` (of one step, as FlopCounterMode counts
    them), ``ops`` (counted ops per step) and ``distinct_ops`` (distinct op, shape and layout combinations).
    """
    with _Recorder() as recorder:
        step()
    groups: dict[str, list] = {}
    for func, spec, flops in recorder.calls:
        entry = groups.setdefault(f"{func}:{_spec_key(spec)}", [func, spec, flops, 0])
        entry[3] += 1
    seconds = 0.0
    with torch.no_grad():
        for func, spec, _, count in groups.values():
            args, kwargs = tree_map(lambda x: x.make() if isinstance(x, _TensorSpec) else x, spec)
            func(*args, **kwargs)  # warm-up (and the allocator's first touch)
            sync(device)
            start = time.perf_counter()
            for _ in range(repeats):
                func(*args, **kwargs)
            sync(device)
            seconds += (time.perf_counter() - start) / repeats * count
    total = float(sum(flops for _, _, flops in recorder.calls))
    return {"ceiling_flops": total / seconds, "flops": total, "ops": len(recorder.calls), "distinct_ops": len(groups)}
