"""``raddino pretrain``: every PretrainConfig field is a flag (help text = the field's comment).

    raddino pretrain --manifest data/manifest.csv --out runs/pretrain --preset rad-dino \\
        --init-weights /weights/dinov2-base --max-steps 35000
    torchrun --nproc_per_node 4 .venv/bin/raddino pretrain ...      # data-parallel
    raddino pretrain ... --resume                                     # continue a killed run exactly

Only flags that are given override the preset; ``--preset`` picks the base (``dinov2`` | ``rad-dino``).
Also registers the language-supervised commands when ``raddino_lib.train.language_cli`` exists.
"""

from __future__ import annotations

import argparse
import importlib
import json

from raddino_lib.train import config_flags
from raddino_lib.train.pretrain_config import PRESETS, PretrainConfig

_ALIASES = {"output_dir": ["--out"]}  # extra spellings of a field's flag
_SKIP = {"preset"}  # set with --preset


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per PretrainConfig field (``--preset`` aside)."""
    config_flags.add_config_arguments(parser, PretrainConfig, _ALIASES, _SKIP)


def config_from_args(args: argparse.Namespace) -> PretrainConfig:
    """The ``--preset`` config with the given flags applied."""
    return PretrainConfig.from_preset(args.preset, **config_flags.config_overrides(args, PretrainConfig, _SKIP))


def run_pretrain(args: argparse.Namespace) -> int:
    from raddino_lib.train.distributed import cleanup_distributed
    from raddino_lib.train.pretrain import pretrain

    cfg = config_from_args(args)
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    try:
        result = pretrain(cfg, progress=not args.no_progress)
    finally:
        cleanup_distributed()
    print(json.dumps({"run_dir": str(result.run_dir), "backbone": str(result.backbone_path),
                      "backbone_init": str(result.backbone_init_path), **result.final_metrics}, indent=2))
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pretrain", help="DINOv2 / RAD-DINO self-supervised pretraining (DINO + iBOT + KoLeo)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="dinov2", choices=sorted(PRESETS),
                        help="base settings: 'dinov2' (ssl_default_config) or 'rad-dino' (ViT-B/14, 518 px, Sinkhorn)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs, batch jobs)")
    add_config_arguments(parser)
    parser.set_defaults(func=run_pretrain)
    try:
        language_cli = importlib.import_module("raddino_lib.train.language_cli")
    except ModuleNotFoundError as err:
        if err.name != "raddino_lib.train.language_cli":
            raise
    else:
        language_cli.add_parser(subparsers)
