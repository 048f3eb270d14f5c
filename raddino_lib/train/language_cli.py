"""``raddino train-clip``: the language-supervised (CLIP-style) baseline; every CLIPConfig field is a flag.

    raddino train-clip --manifest runs/cpu/data/manifest.csv --out runs/clip --arch vit_tiny --patch-size 8 \\
        --depth 6 --image-size 96 --batch-size 64 --max-steps 400

Prints the run's paths and final metrics (zero-shot AUROC, retrieval recall) as JSON. The image tower,
``image_encoder.safetensors``, is a backbone file: pass it to the probes as the "language" encoder.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import re

from raddino_lib.train.language import CLIPConfig

_ALIASES = {"out_dir": ["--out"]}
_SKIP = {"extra"}


def field_help() -> dict[str, str]:
    """Field name -> the comment after it in the CLIPConfig source."""
    source = inspect.getsource(CLIPConfig)
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"^\s+(\w+): [^=\n]+= [^#\n]*#(.*)$", source, re.M)}


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    helps = field_help()
    for f in dataclasses.fields(CLIPConfig):
        if f.name in _SKIP:
            continue
        flags = ["--" + f.name.replace("_", "-")] + _ALIASES.get(f.name, [])
        default = f.default
        text = f"{helps.get(f.name, '')} (default: {default})".replace("%", "%%")
        kind = str(f.type)
        if kind == "bool":
            parser.add_argument(*flags, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=text)
        elif "tuple" in kind:
            parser.add_argument(*flags, dest=f.name, type=float, nargs=2, metavar=("LOW", "HIGH"), default=None,
                                help=text)
        else:
            parser.add_argument(*flags, dest=f.name, type={"int": int, "float": float}.get(kind, str), default=None,
                                help=text)


def config_from_args(args: argparse.Namespace) -> CLIPConfig:
    names = {f.name for f in dataclasses.fields(CLIPConfig)} - _SKIP
    return CLIPConfig(**{k: v for k, v in vars(args).items() if k in names and v is not None})


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
