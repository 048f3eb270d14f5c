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


def run_zero_shot(args: argparse.Namespace) -> int:
    """Zero-shot classification and retrieval of any two-tower model on a manifest split (JSON to stdout)."""
    from raddino_lib.data.manifest import read_manifest
    from raddino_lib.device import resolve_device
    from raddino_lib.models.two_tower import load_two_tower
    from raddino_lib.train.language_eval import evaluate_two_tower

    model = load_two_tower(args.model)
    evaluation = evaluate_two_tower(model, read_manifest(args.manifest), args.split, args.image_size or None,
                                    resolve_device(args.device), args.batch_size)
    macro = evaluation.macro_auroc(args.n_boot)
    summary = {**evaluation.summary(), "zeroshot_macro_auroc_ci": [macro.ci_low, macro.ci_high]}
    print(json.dumps({"model": str(args.model), "kind": model.kind, **summary}, indent=2, default=float))
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    zero = subparsers.add_parser(
        "zero-shot", help="zero-shot classification and retrieval of any two-tower model",
        description=run_zero_shot.__doc__ + " Models: this package's CLIP run, open_clip / BiomedCLIP folders, "
        "Hugging Face CLIPModel folders.")
    zero.add_argument("--model", required=True, help="clip_model.safetensors or its run folder, an open_clip "
                      "folder or a Hugging Face CLIPModel folder")
    zero.add_argument("--manifest", required=True, help="manifest.csv with label columns (and reports for retrieval)")
    zero.add_argument("--split", default="test")
    zero.add_argument("--image-size", type=int, default=0, help="eval crop; 0 = the model's own input size")
    zero.add_argument("--batch-size", type=int, default=64)
    zero.add_argument("--n-boot", type=int, default=200, help="patient-bootstrap resamples of the macro AUROC")
    zero.add_argument("--device", default="auto")
    zero.set_defaults(func=run_zero_shot)
    parser = subparsers.add_parser(
        "train-clip", help="language-supervised baseline: CLIP-style image-report pretraining + zero-shot eval",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs, batch jobs)")
    add_config_arguments(parser)
    parser.set_defaults(func=run_train_clip)
