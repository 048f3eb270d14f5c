"""``raddino extract`` and ``raddino probe``: frozen-encoder features and probes from the shell.

    raddino extract --encoder runs/smoke/01_pretrain_rad_dino/backbone.safetensors \\
        --manifest data/manifest.csv --cache features/ --image-size 64
    raddino probe --encoder ssl=backbone.safetensors --encoder random=backbone_init.safetensors \\
        --manifest data/manifest.csv --task classification
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _encoders(values: list[str]) -> dict[str, str]:
    """["name=path", "path"] → {"name": path, "<file stem>": path}; paths must exist."""
    from raddino_lib.probe.encoders import resolve_encoders

    out: dict[str, str] = {}
    for v in values:
        name, sep, path = v.partition("=")
        if not sep:
            name, path = Path(v).stem, v
        if name in out:
            raise ValueError(f"--encoder name '{name}' given twice; name them: --encoder NAME=PATH")
        out[name] = path
    fixed = {k: out.pop(k) for k in ("ssl", "random", "language") if k in out}
    return resolve_encoders(**fixed, extra=",".join(f"{k}={p}" for k, p in out.items()))


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--manifest", required=True, help="manifest.csv (all splits are extracted)")
    p.add_argument("--cache", default="", help="feature cache folder (reused while checkpoint and manifest match)")
    p.add_argument("--image-size", type=int, default=224, help="square eval crop; a multiple of the patch size")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass; lower it on out-of-memory")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (bf16 autocast on CUDA)")
    p.add_argument("--num-workers", type=int, default=0, help="image-decoding workers; raise it if the GPU idles")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("extract", help="extract and cache frozen features (CLS, mean patch, grid)")
    p.add_argument("--encoder", required=True, help="backbone file, training checkpoint or HF Dinov2Model folder")
    _common(p)
    p.add_argument("--grid", action="store_true", help="also keep the (h, w, D) patch grid (segmentation)")
    p.set_defaults(func=run_extract)

    p = subparsers.add_parser("probe", help="linear/kNN classification or linear segmentation probe of encoders")
    p.add_argument("--encoder", action="append", required=True, metavar="[NAME=]PATH",
                   help="repeat for each encoder; NAME defaults to the file stem (ssl, random, language are the "
                        "table's fixed names)")
    _common(p)
    p.add_argument("--task", choices=("classification", "segmentation"), default="classification")
    p.add_argument("--n-boot", type=int, default=1000, help="patient bootstrap resamples for the 95%% CIs")
    p.add_argument("--epochs", type=int, default=20, help="segmentation head epochs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default="", help="also write the table as CSV here")
    p.set_defaults(func=run_probe)


def run_extract(args: argparse.Namespace) -> int:
    from raddino_lib.probe.features import extract_features

    _encoders([args.encoder])  # existence check with a clear message
    fs = extract_features(args.encoder, args.manifest, args.cache or None, args.image_size, args.batch_size,
                          args.device, keep_grid=args.grid, num_workers=args.num_workers)
    grid = "" if fs.grid is None else f", grid {fs.grid.shape}"
    print(f"{len(fs)} images: cls {fs.cls.shape}, mean_patch {fs.mean_patch.shape}{grid}"
          + (f" (cache {args.cache})" if args.cache else ""))
    return 0


def run_probe(args: argparse.Namespace) -> int:
    from raddino_lib.probe.compare import compare_classification, compare_segmentation, table_frame

    encoders = _encoders(args.encoder)
    common = dict(n_boot=args.n_boot, seed=args.seed, device=args.device, batch_size=args.batch_size,
                  num_workers=args.num_workers, log=lambda s: print(s, file=sys.stderr))
    if args.task == "classification":
        res = compare_classification(encoders, args.manifest, args.cache or None, args.image_size, **common)
        for finding, why in res.skipped.items():
            print(f"skipped {finding}: {why}", file=sys.stderr)
    else:
        res = compare_segmentation(encoders, args.manifest, args.cache or None, args.image_size, epochs=args.epochs,
                                   **common)
    frame = table_frame(res.table)
    print(frame.to_string())
    if args.output:
        from raddino_lib.atomic import write_text

        write_text(args.output, frame.to_csv())
    return 0
