"""``raddino train-clip``: the language-supervised (CLIP-style) baseline; every CLIPConfig field is a flag.

    raddino train-clip --manifest runs/cpu/data/manifest.csv --out runs/clip --arch vit_tiny --patch-size 8 \\
        --depth 6 --image-size 96 --batch-size 64 --max-steps 400

Prints the run's paths and final metrics (zero-shot AUROC, retrieval recall) as JSON. The image tower,
``image_encoder.safetensors``, is a backbone file: pass it to the probes as the "language" encoder.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from raddino_lib.train import config_flags
from raddino_lib.train.language import CLIPConfig

_ALIASES = {"out_dir": ["--out"]}
_SKIP = {"extra"}


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per CLIPConfig field (``extra`` aside)."""
    config_flags.add_config_arguments(parser, CLIPConfig, _ALIASES, _SKIP)


def config_from_args(args: argparse.Namespace) -> CLIPConfig:
    """CLIPConfig defaults with the given flags applied."""
    return CLIPConfig(**config_flags.config_overrides(args, CLIPConfig, _SKIP))


def run_train_clip(args: argparse.Namespace) -> int:
    from raddino_lib.train.language import train_clip

    cfg = config_from_args(args)
    if args.print_config:
        print(json.dumps(dataclasses.asdict(cfg), indent=2))
        return 0
    result = train_clip(cfg, progress=not args.no_progress)
    paths = {"run_dir": result.run_dir, "image_encoder": result.image_encoder_path, "model": result.model_path,
             "tokenizer": result.tokenizer_path, "metrics": result.metrics_path}
    print(json.dumps({**{k: str(v) for k, v in paths.items()}, **result.final_metrics}, indent=2))
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train-clip", help="language-supervised baseline: CLIP-style image-report pretraining + zero-shot eval",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs, batch jobs)")
    add_config_arguments(parser)
    parser.set_defaults(func=run_train_clip)
