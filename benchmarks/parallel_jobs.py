"""Independent jobs in turn on every core, or side by side on one core each (``raddino_lib.parallel``).

The cpu profile trains its report decoders (notebook 07), pretraining arms (08) and COLIPRI arms (10) as
independent jobs. For each loop of ``train_loops.py`` this measures, in one run:

- ``in_turn_s``: J jobs of S steps one after another, each on all the process's threads;
- ``side_by_side_s``: the same J jobs through ``parallel.map_jobs``, one worker process per core, one thread each;

and reports ``ratio`` = side_by_side_s / in_turn_s (below 1: side by side is faster). Model setup is inside
each job in both modes. Writes ``benchmarks/results/parallel_jobs_cpu.json``.

    python benchmarks/parallel_jobs.py [--loops report_decoder,colipri_3d] [--jobs 2] [--steps 40]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch
from train_loops import LOOPS, loop_names

from raddino_lib.atomic import write_json
from raddino_lib.parallel import cpu_workers, map_jobs

RESULTS = Path(__file__).resolve().parent / "results"


def run_job(name: str, steps: int) -> None:
    step = LOOPS[name]()
    for _ in range(steps):
        step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loops", default="report_decoder,colipri_3d,seg_upernet,seg_linear,extract",
                        help=f"comma-separated, from {list(LOOPS)}")
    parser.add_argument("--jobs", type=int, default=0, help="jobs per loop (0: one per core)")
    parser.add_argument("--steps", type=int, default=40, help="steps per job")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    names = loop_names(parser, args.loops)
    workers = cpu_workers(1 << 10)
    n_jobs = args.jobs or workers
    results = {}
    for name in names:
        run_job(name, 2)  # warm-up: imports and first-call costs out of both timings
        start = time.perf_counter()
        for _ in range(n_jobs):
            run_job(name, args.steps)
        in_turn = time.perf_counter() - start
        start = time.perf_counter()
        map_jobs(lambda _, name=name: run_job(name, args.steps), list(range(n_jobs)), workers, log=None)
        apart = time.perf_counter() - start
        results[name] = {"in_turn_s": in_turn, "side_by_side_s": apart, "ratio": apart / in_turn}
        print(f"{name}: {n_jobs} jobs of {args.steps} steps in turn {in_turn:.1f} s, side by side {apart:.1f} s "
              f"(ratio {apart / in_turn:.2f})", flush=True)
    payload = {"device": "cpu", "loops": results, "jobs": n_jobs, "workers": workers, "steps": args.steps,
               "machine": {"platform": platform.platform(), "threads": torch.get_num_threads(),
                           "torch": torch.__version__, "load_avg_1m": os.getloadavg()[0]}}
    path = write_json(Path(args.out) / "parallel_jobs_cpu.json", payload)
    print(f"-> {path}")


if __name__ == "__main__":
    main()
