"""``raddino phantoms``: generate a phantom dataset and print its summary."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("phantoms", help="generate synthetic chest radiographs with ground truth",
                              description="Write DIR/images, DIR/masks, DIR/manifest.csv and DIR/card.yaml.")
    p.add_argument("--out", required=True, help="output folder (created; reused if it holds the same dataset)")
    p.add_argument("--n", type=int, default=1000, help="number of images (one per patient)")
    p.add_argument("--size", type=int, default=224, help="image side in pixels")
    p.add_argument("--seed", type=int, default=0, help="image i of seed K is the same whatever --n or --workers")
    p.add_argument("--balanced", action="store_true",
                   help="every finding at ~15%% prevalence (small datasets); default: ChestX-ray14 statistics")
    p.add_argument("--workers", type=int, default=1, help="processes (one per CPU core)")
    p.add_argument("--overwrite", action="store_true", help="replace a different dataset already in --out")
    p.add_argument("--lesion-scale", type=float, default=1.0, help="lesion size multiplier (< 1: harder)")
    p.add_argument("--lesion-contrast", type=float, default=1.0, help="lesion density multiplier (< 1: harder)")
    p.add_argument("--unreported-fraction", type=float, default=0.15, help="present findings left out of reports")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from raddino_lib.data.phantoms.generate import generate
    from raddino_lib.data.phantoms.stats import describe, format_summary

    manifest = generate(args.out, n=args.n, size=args.size, seed=args.seed, balanced=args.balanced,
                        workers=args.workers, overwrite=args.overwrite, lesion_scale=args.lesion_scale,
                        lesion_contrast=args.lesion_contrast, unreported_fraction=args.unreported_fraction)
    df = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    print(f"wrote {manifest}")
    print(format_summary(describe(df)))
    return 0
