"""The ``raddino`` command.

Each subcommand lives beside the code it drives: a module listed in
``COMMAND_MODULES`` exposes ``add_parser(subparsers)``, which registers one or
more subcommands with ``set_defaults(func=...)``; ``func(args)`` returns an
exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES: tuple[str, ...] = (
    "raddino_lib.data.phantoms.cli",  # raddino phantoms
    "raddino_lib.data.phantoms_ct.cli",  # raddino phantoms-ct
    "raddino_lib.data.cli",  # raddino manifest
    "raddino_lib.models.cli",  # raddino backbone-info, convert-backbone, export-hf
    "raddino_lib.train.cli",  # raddino pretrain, raddino train-clip
    "raddino_lib.probe.cli",  # raddino extract, raddino probe
    "raddino_lib.pipeline",  # raddino run
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raddino", description="Image-only and language-supervised encoders for radiographs.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name and name.startswith(err.name):
                continue  # that part of the package is not installed in this build
            raise
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, FileExistsError, ValueError, KeyError) as err:
        print(f"raddino {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
