"""Calibration of the phantoms: floor (random-init ViT, linear probes) vs ceiling (supervised CNN) per target.

Generates phantoms with the cpu profile's settings (96 px, ChestX-ray14 statistics), then measures on the
test split, at the probes' 64 px:
- floor: the probe code of notebooks 03 and 06 (``linear_probe`` on CLS and CLS + mean patch,
  ``probe_metadata`` for age and sex) on a randomly initialised ViT-Tiny/8 with 4 blocks;
- ceiling: the supervised CNN of ``phantoms.difficulty`` (and its own random-ViT linear floor);
- the global-statistic leak (sex AUROC, age R² from image-wide statistics, patient-grouped 5-fold CV);
- optionally (``--segmentation-epochs``) the Dice per structure of a supervised U-Net (segmentation ceiling).
Writes ``benchmarks/results/phantom_calibration.json`` (one entry per ``--tag``).

    python benchmarks/phantom_calibration.py --n 1500 --tag iteration
    python benchmarks/phantom_calibration.py --n 3000 --tag cpu_profile
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from raddino_lib.atomic import write_json
from raddino_lib.data.manifest import label_matrix, read_manifest
from raddino_lib.data.phantoms.difficulty import measure_difficulty
from raddino_lib.data.phantoms.generate import generate
from raddino_lib.data.phantoms.leakage import leak_scores, manifest_statistics
from raddino_lib.data.phantoms.segmentation_ceiling import segmentation_ceiling
from raddino_lib.probe.classification import linear_probe
from raddino_lib.probe.compare import manifest_findings
from raddino_lib.probe.encoders import make_random_encoder
from raddino_lib.probe.features import extract_features
from raddino_lib.probe.metadata import MetadataProbeConfig, probe_metadata

RESULTS = Path(__file__).resolve().parent / "results" / "phantom_calibration.json"


def floor_with_probe_code(manifest: Path, work: Path, image_size: int) -> dict:
    """Random-init ViT-Tiny/8 (4 blocks) features → the probes' own linear heads (test split)."""
    encoder = make_random_encoder(work / "random.safetensors", img_size=image_size, seed=0)
    fs = extract_features(encoder, manifest, None, image_size, progress=False)
    df = read_manifest(manifest, check_files=False)
    names = manifest_findings(df)
    labels, splits, pids = label_matrix(df, names), df["split"].to_numpy(), df["patient_id"].to_numpy()
    out = {}
    for kind in ("cls", "cls+mean_patch"):
        res = linear_probe(fs.features(kind), labels, splits, pids, names, n_boot=100)
        out[f"{kind}_macro_auroc"] = res.macro_auroc.value
        out[f"{kind}_per_finding"] = dict(zip(res.per_label["finding"], res.per_label["auroc"].round(3), strict=True))
    meta = probe_metadata(fs.features("cls+mean_patch"), df, ("age", "sex"), MetadataProbeConfig(n_boot=100))
    out["age_r2"] = meta["age"].metrics["r2"].value
    out["sex_auroc"] = meta["sex"].metrics["auroc"].value
    return out


def _dice(table: pd.DataFrame) -> dict[str, float | None]:
    """{structure: Dice} with None where no test image defines it (JSON has no NaN)."""
    return {s: (None if np.isnan(d) else round(float(d), 3)) for s, d in zip(table["structure"], table["dice"],
                                                                                strict=True)}


def add_segmentation(args: argparse.Namespace) -> None:
    """Train the segmentation ceiling on ``--manifest`` and store it in the ``--tag`` entry of the results."""
    start = time.perf_counter()
    table = segmentation_ceiling(args.manifest, image_size=args.probe_size, epochs=args.segmentation_epochs or 8)
    print(table.round(3).to_string())
    everything = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    entry = everything.setdefault(args.tag, {"manifest": args.manifest})
    entry["segmentation_ceiling_dice"] = _dice(table)
    entry.setdefault("timings", {})["segmentation_s"] = round(time.perf_counter() - start, 1)
    write_json(RESULTS, everything)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1500)
    parser.add_argument("--size", type=int, default=96, help="phantom size (cpu profile: 96)")
    parser.add_argument("--probe-size", type=int, default=64, help="probe resolution (cpu profile: 64)")
    parser.add_argument("--epochs", type=int, default=8, help="supervised CNN epochs (cpu profile: 8)")
    parser.add_argument("--work", default="/tmp/phantom_calibration", help="folder for the phantoms")
    parser.add_argument("--tag", default="latest")
    parser.add_argument("--manifest", default="", help="measure this manifest instead of generating phantoms")
    parser.add_argument("--segmentation-epochs", type=int, default=0,
                        help="also train the U-Net segmentation ceiling for this many epochs (0: skip)")
    parser.add_argument("--only-segmentation", action="store_true",
                        help="add the segmentation ceiling to the existing --tag entry (needs --manifest)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.only_segmentation:
        add_segmentation(args)
        return
    work = Path(args.work) / f"n{args.n}_s{args.size}"
    timings, start = {}, time.perf_counter()
    manifest = (Path(args.manifest) if args.manifest else
                generate(work / "data", n=args.n, size=args.size, seed=0, balanced=False, workers=2, overwrite=True))
    timings["generate_s"] = round(time.perf_counter() - start, 1)
    df = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    start = time.perf_counter()
    leak = leak_scores(manifest_statistics(manifest), df["sex"], pd.to_numeric(df["age"]), df["patient_id"])
    timings["leak_s"] = round(time.perf_counter() - start, 1)
    start = time.perf_counter()
    floor = floor_with_probe_code(manifest, work, args.probe_size)
    timings["floor_s"] = round(time.perf_counter() - start, 1)
    start = time.perf_counter()
    difficulty = measure_difficulty(manifest, image_size=args.probe_size, epochs=args.epochs)
    timings["difficulty_s"] = round(time.perf_counter() - start, 1)
    segmentation = None
    if args.segmentation_epochs:
        start = time.perf_counter()
        table = segmentation_ceiling(manifest, image_size=args.probe_size, epochs=args.segmentation_epochs)
        segmentation = _dice(table)
        timings["segmentation_s"] = round(time.perf_counter() - start, 1)
        print(table.round(3).to_string())
    result = {"manifest": str(manifest), "n": len(df), "size": args.size, "probe_size": args.probe_size,
              "epochs": args.epochs, "global_statistics_leak": leak, "floor_probe_code": floor,
              "difficulty": difficulty, "segmentation_ceiling_dice": segmentation,
              "timings": timings}
    everything = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    everything[args.tag] = result
    write_json(RESULTS, everything)
    cnn, lin = difficulty["supervised_cnn"], difficulty["random_linear"]
    print(json.dumps({"leak": leak, "timings": timings}, indent=None))
    print(f"floor (probe code): cls macro {floor['cls_macro_auroc']:.3f}, clsmean macro "
          f"{floor['cls+mean_patch_macro_auroc']:.3f}, sex {floor['sex_auroc']:.3f}, age R2 {floor['age_r2']:.3f}")
    for name, m in (("floor (difficulty)", lin), ("ceiling (CNN)", cnn)):
        print(f"{name}: macro {m['macro_auroc']:.3f}, sex {m['sex_auroc']:.3f}, age R2 {m['age_r2']:.3f}")
    per = pd.DataFrame({"floor_cls": floor["cls_per_finding"], "floor_lin": lin["per_finding"],
                        "cnn": cnn["per_finding"]}).round(3)
    print(per.to_string())
    print("test positives:", {f: int(v) for f, v in zip(
        manifest_findings(read_manifest(manifest, check_files=False)),
        np.nansum(label_matrix(read_manifest(manifest, check_files=False))[df["split"].to_numpy() == "test"], 0),
        strict=False)})


if __name__ == "__main__":
    main()
