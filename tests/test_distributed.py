"""Data parallelism: 2 CPU processes (torchrun, gloo) train like 1 process with the same global batch.

Both runs see the same images, crops and iBOT masks (keyed by seed/epoch/image and seed/step, masks drawn for
the global batch and sliced per process), gradients are averaged across processes and the centers use
all-reduced statistics, so the logged losses must agree up to float summation order. Drop path (random per
process) and KoLeo (computed per process over its local batch, as in DINOv2) are switched off here.
Targets use Sinkhorn-Knopp (balanced over the global batch): with softmax-centering the iBOT centre is, as in
DINOv2, the mean over processes of each process's masked-patch mean, which differs slightly from the
single-process mean when processes hold different numbers of masked patches (~1e-3 relative from step 1).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from raddino_lib.train.metrics_log import read_metrics
from raddino_lib.train.pretrain import PretrainConfig, pretrain

SETTINGS = dict(arch="vit_tiny", patch_size=8, depth=2, global_crop_size=32, local_crop_size=16, n_local_crops=2,
                out_dim=128, head_hidden_dim=64, head_bottleneck_dim=32, drop_path_rate=0.0, koleo_weight=0.0,
                max_steps=3, checkpoint_every=3, centering="sinkhorn")


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tmp_path):
    from raddino_lib.data.phantoms.generate import generate

    manifest = str(generate(tmp_path / "phantoms", n=24, size=32, seed=0))
    single = pretrain(PretrainConfig(**SETTINGS, batch_size=8, manifest=manifest, output_dir=str(tmp_path / "one")),
                      progress=False)
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in SETTINGS.items()]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "raddino_lib.cli",
           "pretrain", "--manifest", manifest, "--out", str(tmp_path / "two"), "--batch-size=4", "--no-progress",
           "--device=cpu", *flags]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = read_metrics(single.metrics_path), read_metrics(tmp_path / "two" / "metrics.csv")
    assert len(one) == len(two) == SETTINGS["max_steps"]
    for a, b in zip(one, two, strict=True):
        for key in ("total_loss", "dino_loss", "ibot_loss", "lr", "teacher_temp"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-5), (a["step"], key, a[key], b[key])
    # the world size entered the lr scaling: global batch 2 x 4 = 8, as in the single process
    assert two[-1]["lr"] == pytest.approx(one[-1]["lr"])
