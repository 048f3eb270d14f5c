"""``raddino manifest build|validate``: make a manifest from a dataset card, or check one.

Registering the commands imports nothing heavy (no pandas, no torch): the
builders load when a command runs, so ``raddino manifest ...`` starts at once.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from raddino_lib.data.schema import ALL_FINDINGS, SPLITS, label_column

if TYPE_CHECKING:
    import pandas as pd


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("manifest", help="build or validate an image manifest",
                                   description="Build a manifest from a dataset card, or validate one.")
    sub = parser.add_subparsers(dest="manifest_command", required=True, metavar="ACTION")

    build = sub.add_parser("build", help="official metadata under --root → manifest.csv")
    build.add_argument("--card", required=True, help="dataset card name (e.g. nih_cxr14) or path to a card YAML")
    build.add_argument("--root", required=True, help="local folder holding the dataset (see the card's root_layout)")
    build.add_argument("--out", required=True, help="manifest CSV to write; image paths become relative to its folder")
    build.add_argument("--seed", type=int, default=0, help="seed of the patient split hash")
    build.add_argument("--fractions", type=_fractions, default=(0.7, 0.1, 0.2), metavar="TRAIN,VAL,TEST",
                       help="split of the patients without an official split (default 0.7,0.1,0.2); the official "
                            "non-test pool is cut train/val in the ratio of the first two")
    build.add_argument("--drop-missing", action="store_true",
                       help="skip images listed in the metadata but absent under --root (default: error)")
    build.add_argument("--no-files", action="store_true",
                       help="metadata only: write the paths without looking for the images (or reading DICOM "
                            "headers); check them later with `raddino manifest validate`")
    build.add_argument("--masks", action="store_true",
                       help="write lesion masks (RSNA boxes, SIIM run-length codes) to <out folder>/masks")
    build.set_defaults(func=run_build)

    validate = sub.add_parser("validate", help="check a manifest and print its counts")
    validate.add_argument("path", help="manifest CSV")
    validate.add_argument("--root", default=None, help="resolve relative paths against this folder "
                                                       "(default: the manifest's folder)")
    validate.add_argument("--no-files", action="store_true", help="skip the check that every image file exists")
    validate.set_defaults(func=run_validate)


def _fractions(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or any(not v >= 0 for v in values) or abs(sum(values) - 1.0) > 1e-6:
        raise argparse.ArgumentTypeError(f"'{text}' is not three non-negative numbers summing to 1, e.g. 0.7,0.1,0.2")
    return values  # type: ignore[return-value]


def run_build(args: argparse.Namespace) -> int:
    from raddino_lib.data.builders import build_manifest
    from raddino_lib.data.manifest import read_manifest

    try:
        path = build_manifest(args.card, args.root, args.out, seed=args.seed, fractions=args.fractions,
                              drop_missing=args.drop_missing, check_files=not args.no_files, masks=args.masks)
        df = read_manifest(path, check_files=False)
    except ValueError as err:
        print(f"raddino manifest build: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path}" + (" (metadata only: check the images with `raddino manifest validate`)"
                             if args.no_files else ""))
    print(summarize(df))
    return 0


def run_validate(args: argparse.Namespace) -> int:
    from raddino_lib.data.manifest import read_manifest

    try:
        df = read_manifest(args.path, root=args.root, check_files=not args.no_files)
    except ValueError as err:
        print(f"raddino manifest validate: error: {err}", file=sys.stderr)
        return 2
    print(f"{args.path}: valid" + (" (image files not checked)" if args.no_files else ""))
    print(summarize(df))
    return 0


def summarize(df: pd.DataFrame) -> str:
    """Counts a person checks first: images, patients, splits, views, labelled / positive / uncertain per finding."""
    lines = [f"images: {len(df)}  patients: {df['patient_id'].nunique()}"]
    lines.append("splits: " + "  ".join(f"{s} {int((df['split'] == s).sum())}" for s in SPLITS))
    views = df["view"].replace("", "unknown").value_counts()
    lines.append("views: " + "  ".join(f"{v} {n}" for v, n in views.items()))
    lines.append(f"{'finding':<20} {'labelled':>9} {'positive':>9} {'uncertain':>9}")
    for finding in ALL_FINDINGS:
        if label_column(finding) not in df.columns:
            continue
        values = df[label_column(finding)]
        if values.notna().any():
            lines.append(f"{finding:<20} {int(values.notna().sum()):>9} {int((values == 1).sum()):>9} "
                         f"{int((values == -1).sum()):>9}")
    masks = [c for c in df.columns if c.startswith("mask_")]
    if masks:
        lines.append("masks: " + "  ".join(f"{c[len('mask_'):]} {int((df[c] != '').sum())}" for c in masks))
    return "\n".join(lines)
