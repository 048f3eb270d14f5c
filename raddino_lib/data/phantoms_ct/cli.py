"""``raddino phantoms-ct``: generate a CT phantom dataset and print its summary."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("phantoms-ct", help="generate synthetic chest CT volumes with ground truth",
                              description="Write DIR/volumes, DIR/masks, DIR/legend.json, DIR/manifest.csv and "
                                          "DIR/card.yaml (NIfTI volumes in HU, label maps, CT-RATE-style reports).")
    p.add_argument("--out", required=True, help="output folder (created; reused if it holds the same dataset)")
    p.add_argument("--n", type=int, default=200, help="number of volumes (one per patient)")
    p.add_argument("--size", type=int, default=64, help="in-plane voxels; slices follow the scan length (about as "
                                                        "many at the thin-slice site)")
    p.add_argument("--seed", type=int, default=0, help="volume i of seed K is the same whatever --n or --workers")
    p.add_argument("--balanced", action="store_true",
                   help="every finding near 30%% prevalence (small datasets); default: CT-RATE statistics")
    p.add_argument("--prevalence", default="",
                   help="override prevalences, e.g. 'Lung nodule=0.5;Emphysema=0.3' (the rest keep the default)")
    p.add_argument("--workers", type=int, default=1, help="processes (one per CPU core)")
    p.add_argument("--overwrite", action="store_true", help="replace a different CT phantom dataset in --out")
    p.add_argument("--lesion-scale", type=float, default=1.0, help="lesion size multiplier (< 1: harder)")
    p.add_argument("--lesion-contrast", type=float, default=1.0, help="lesion density multiplier (< 1: harder)")
    p.add_argument("--unreported-fraction", type=float, default=0.15, help="present findings left out of reports")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from raddino_lib.data.phantoms_ct.generate import generate
    from raddino_lib.data.phantoms_ct.knobs import parse_prevalence
    from raddino_lib.data.phantoms_ct.stats import describe, format_summary
    from raddino_lib.data.volume_manifest import read_volume_manifest

    manifest = generate(args.out, n=args.n, size=args.size, seed=args.seed, balanced=args.balanced,
                        workers=args.workers, overwrite=args.overwrite, progress=True,
                        lesion_scale=args.lesion_scale, lesion_contrast=args.lesion_contrast,
                        unreported_fraction=args.unreported_fraction, prevalence=parse_prevalence(args.prevalence))
    print(f"wrote {manifest}")
    print(format_summary(describe(read_volume_manifest(manifest, check_files=False))))
    return 0
