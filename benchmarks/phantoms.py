"""Throughput of the phantom generator (images/s, files written) at 224 px with 2 worker processes.

Target: >= 200 images/s on a 2-core machine. Writes ``benchmarks/results/phantoms.json`` with the measured
wall-clock rate and, because a shared machine's load changes that rate, the CPU time per image and the rate
it implies when ``workers`` cores are free.

    python benchmarks/phantoms.py
    python benchmarks/phantoms.py --n 2000 --size 518 --workers 8
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from raddino_lib.atomic import write_json
from raddino_lib.data.phantoms.generate import generate

RESULTS = Path(__file__).resolve().parent / "results" / "phantoms.json"
TARGET = 200.0  # images/s at 224 px with 2 workers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        # CPU time per image in one process (user + system, files included): what the generator costs,
        # independent of other load on the machine
        n_cpu = max(args.n // 5, 16)
        start_cpu = time.process_time()
        generate(Path(tmp) / "cpu", n=n_cpu, size=args.size, seed=1, workers=1)
        cpu_ms = (time.process_time() - start_cpu) / n_cpu * 1000.0
        load = os.getloadavg()[0]
        start = time.perf_counter()
        generate(Path(tmp) / "bench", n=args.n, size=args.size, seed=0, workers=args.workers)
        wall = time.perf_counter() - start
    result = {"images_per_s": round(args.n / wall, 1), "size": args.size, "n": args.n, "workers": args.workers,
              "target": TARGET, "wall_s": round(wall, 2), "machine": platform.machine(),
              "cpu_count": os.cpu_count(), "load_average_1min": round(load, 2),
              "cpu_ms_per_image": round(cpu_ms, 2),
              "images_per_s_if_cores_free": round(args.workers * 1000.0 / cpu_ms, 1)}
    write_json(RESULTS, result)
    print(result)


if __name__ == "__main__":
    main()
