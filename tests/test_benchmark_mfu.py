"""The MFU benchmarks' matmul ceiling: it replays exactly the ops FlopCounterMode counts, layouts included."""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from _mfu import count_flops, matmul_ceiling  # noqa: E402


def test_ceiling_replays_every_counted_op_of_a_forward_and_backward():
    torch.manual_seed(0)
    lin = torch.nn.Linear(48, 96)  # addmm with a broadcast (stride 0) bias, and mm in its backward
    q = torch.randn(2, 3, 16, 8, requires_grad=True)
    x = torch.randn(64, 48)

    def step():
        y = lin(x)
        a = F.scaled_dot_product_attention(q, q, q)
        (y.sum() + a.sum()).backward()

    # by hand: linear forward 2·64·48·96 and the weight's gradient as much again (x needs no gradient);
    # attention forward QKᵀ and AV, 2·16·16·8 each per (batch, head); its backward recomputes QKᵀ, then dP, dV,
    # dQ and dK: five such matmuls against two
    linear = 2 * 64 * 48 * 96 * 2
    attention = 2 * 3 * (2 * 16 * 16 * 8) * 2
    assert count_flops(step) == linear + attention + attention * 5 // 2
    out = matmul_ceiling(step, torch.device("cpu"), repeats=1)
    assert out["flops"] == count_flops(step)
    assert out["ops"] == 4 and 0 < out["ceiling_flops"] < float("inf")  # addmm, mm, attention and its backward
