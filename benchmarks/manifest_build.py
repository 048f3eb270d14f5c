"""Wall time of `raddino manifest build` / `validate` on a ChestX-ray14-sized metadata file, and CLI start-up.

Writes a synthetic Data_Entry_2017.csv in the official NIH format (112,120
rows, 30,805 patients, the release's sizes; labels, ages, sexes and views
drawn at random) with official train_val / test lists, then times, each in a
fresh process as a user runs them: the metadata-only build (``--no-files``),
``validate --no-files``, and (``--with-files``) a build that finds every image
under the root and a validate that checks every file (empty files stand in
for the PNGs). Also times ``raddino --help`` and ``raddino manifest build
--help`` (start-up). Wall and CPU seconds are both reported: CPU seconds are
the cost on an idle core. Writes ``benchmarks/results/manifest_build.json``.

    python benchmarks/manifest_build.py                 # metadata only
    python benchmarks/manifest_build.py --with-files    # + 112,120 empty image files under a temporary folder
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from raddino_lib.atomic import write_json
from raddino_lib.data.schema import CXR14_FINDINGS

RESULTS = Path(__file__).resolve().parent / "results" / "manifest_build.json"
REPO = Path(__file__).resolve().parents[1]


def write_nih_metadata(root: Path, n_images: int, n_patients: int, seed: int = 0) -> list[str]:
    """Data_Entry_2017.csv + train_val_list.txt + test_list.txt under root; returns the image names."""
    rng = np.random.default_rng(seed)
    every = np.arange(1, n_patients + 1)  # each patient has at least one image, the rest are follow-ups
    patient = np.sort(np.concatenate([every, rng.integers(1, n_patients + 1, size=n_images - n_patients)]))
    names, rows, follow_up = [], [], {}
    for p in patient.tolist():
        k = follow_up.get(p, 0)
        follow_up[p] = k + 1
        name = f"{p:08d}_{k:03d}.png"
        findings = [f for f in CXR14_FINDINGS if rng.random() < 0.05]
        rows.append([name, "|".join(findings) or "No Finding", k, p, int(rng.integers(1, 95)), "MF"[p % 2],
                     "PA" if rng.random() < 0.6 else "AP", 2500, 2048, 0.143, 0.143, ""])
        names.append(name)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "Data_Entry_2017.csv", "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender",
                      "View Position", "OriginalImage[Width", "Height]", "OriginalImagePixelSpacing[x", "y]", ""])
        out.writerows(rows)
    test_patients = set(rng.choice(np.unique(patient), size=len(np.unique(patient)) // 5, replace=False).tolist())
    test = [n for n, p in zip(names, patient.tolist(), strict=True) if p in test_patients]
    (root / "test_list.txt").write_text("\n".join(test) + "\n")
    (root / "train_val_list.txt").write_text("\n".join(sorted(set(names) - set(test))) + "\n")
    return names


def timed(argv: list[str], repeats: int = 1) -> dict[str, float]:
    """Median wall and CPU (user + system) seconds of ``python -m raddino_lib.cli ARGV`` in a fresh process.

    CPU seconds are what the command costs on an idle core; wall seconds also count waiting for a busy machine.
    """
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    walls, cpus = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "raddino_lib.cli", *argv], env=env, capture_output=True,
                              text=True)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if done.returncode != 0:
            raise RuntimeError(f"raddino {' '.join(argv)} failed:\n{done.stderr[-2000:]}")
    return {"median_wall_s": round(statistics.median(walls), 2), "median_cpu_s": round(statistics.median(cpus), 2),
            "runs": len(walls)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=112_120, help="rows of Data_Entry_2017.csv")
    parser.add_argument("--patients", type=int, default=30_805, help="distinct Patient IDs")
    parser.add_argument("--with-files", action="store_true", help="also time builds and checks with image files")
    parser.add_argument("--repeats", type=int, default=3, help="runs per timing (median reported)")
    args = parser.parse_args()
    result: dict = {"images": args.images, "patients": args.patients, "python": platform.python_version(),
                    "cpus": os.cpu_count(), "timings": {}}
    t = result["timings"]
    t["raddino --help"] = timed(["--help"], args.repeats)
    t["raddino manifest build --help"] = timed(["manifest", "build", "--help"], args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ChestX-ray14"
        names = write_nih_metadata(root, args.images, args.patients)
        out = str(root / "manifest.csv")
        build = ["manifest", "build", "--card", "nih_cxr14", "--root", str(root), "--out", out]
        t["build --no-files"] = timed([*build, "--no-files"], args.repeats)
        t["validate --no-files"] = timed(["manifest", "validate", out, "--no-files"], args.repeats)
        if args.with_files:
            (root / "images").mkdir()
            for name in names:
                (root / "images" / name).touch()
            t["build (finds every image)"] = timed(build, args.repeats)
            t["validate (checks every file)"] = timed(["manifest", "validate", out], args.repeats)
    result["load_average_1min"] = round(os.getloadavg()[0], 2)
    write_json(RESULTS, result)
    print(f"{'command':<32} {'wall s':>7} {'cpu s':>7}   (load average {result['load_average_1min']})")
    for name, value in t.items():
        print(f"{name:<32} {value['median_wall_s']:>7.2f} {value['median_cpu_s']:>7.2f}")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
