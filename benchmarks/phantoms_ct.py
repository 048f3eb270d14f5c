"""Throughput of the CT phantom generator (volumes/s, files written) at 64³ and 128³ with 2 worker processes.

Target: >= 20 volumes/s at 64³ on a 2-core machine. Writes ``benchmarks/results/phantoms_ct.json`` with, per size,
the measured wall-clock rate and, because a shared machine's load changes that rate, the CPU time per volume
(one process, files included) and the rate it implies when ``workers`` cores are free, also counted in cubes of
size³ voxels (volumes have S × S voxels in-plane and fewer slices at the thick-slice sites).

    python benchmarks/phantoms_ct.py
    python benchmarks/phantoms_ct.py --sizes 64 --n 200 --workers 2
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from raddino_lib.atomic import write_json
from raddino_lib.data.phantoms_ct.generate import generate
from raddino_lib.data.volume_manifest import read_volume_manifest

RESULTS = Path(__file__).resolve().parent / "results" / "phantoms_ct.json"
TARGET = 20.0  # volumes/s at 64³ with 2 workers


def measure(size: int, n: int, workers: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        n_cpu = max(n // 4, 8)
        generate(Path(tmp) / "warm", n=2, size=size, seed=2)  # imports, calibration and caches outside the timing
        start_cpu = time.process_time()
        generate(Path(tmp) / "cpu", n=n_cpu, size=size, seed=1, workers=1)
        cpu_ms = (time.process_time() - start_cpu) / n_cpu * 1000.0
        load = os.getloadavg()[0]
        start = time.perf_counter()
        manifest = generate(Path(tmp) / "bench", n=n, size=size, seed=0, workers=workers)
        wall = time.perf_counter() - start
        slices = [int(s.split(",")[0]) for s in read_volume_manifest(manifest, check_files=False)["shape"]]
    free = workers * 1000.0 / cpu_ms
    depth = sum(slices) / len(slices)  # slices follow the scan length: fewer than ``size`` at thick-slice sites
    return {"volumes_per_s": round(n / wall, 1), "n": n, "workers": workers, "wall_s": round(wall, 2),
            "cpu_ms_per_volume": round(cpu_ms, 1), "volumes_per_s_if_cores_free": round(free, 1),
            "mean_shape": [round(depth, 1), size, size], "load_average_1min": round(load, 2),
            "cubes_per_s_if_cores_free": round(free * depth / size, 1)}  # in volumes of size³ voxels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--n", type=int, default=100, help="volumes per size (half of it at 128 and above)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    result = {"target_volumes_per_s_at_64": TARGET, "machine": platform.machine(), "cpu_count": os.cpu_count(),
              "sizes": {str(s): measure(s, args.n if s < 128 else max(args.n // 2, 8), args.workers)
                        for s in args.sizes}}
    write_json(RESULTS, result)
    print(result)


if __name__ == "__main__":
    main()
