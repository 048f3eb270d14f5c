"""Throughput of the phantom generator (images/s, files written) at 224 px with 2 worker processes.

Target: >= 200 images/s on a 2-core machine. Writes ``benchmarks/results/phantoms.json``.

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
        generate(Path(tmp) / "warmup", n=16, size=args.size, seed=1, workers=1)
        start = time.perf_counter()
        generate(Path(tmp) / "bench", n=args.n, size=args.size, seed=0, workers=args.workers)
        wall = time.perf_counter() - start
    result = {"images_per_s": round(args.n / wall, 1), "size": args.size, "n": args.n, "workers": args.workers,
              "target": TARGET, "wall_s": round(wall, 2), "machine": platform.machine(),
              "load_average_1min": round(os.getloadavg()[0], 2)}
    write_json(RESULTS, result)
    print(result)


if __name__ == "__main__":
    main()
