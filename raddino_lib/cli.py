"""The ``raddino`` command.

Each subcommand lives beside the code it drives: the module named for it in
``COMMANDS`` exposes ``add_parser(subparsers)``, which registers one or more
subcommands with ``set_defaults(func=...)``; ``func(args)`` returns an exit
code.

Start-up stays under a second: ``main`` imports only the module of the
command being run (``raddino manifest ...`` never imports torch); the other
commands are listed by name and help line alone. ``build_parser()`` without
a command imports every module (the complete parser, for tests and docs).
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command -> (module whose add_parser registers it, help line shown by `raddino --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "phantoms": ("raddino_lib.data.phantoms.cli", "generate synthetic chest radiographs with ground truth"),
    "phantoms-ct": ("raddino_lib.data.phantoms_ct.cli", "generate synthetic chest CT volumes with ground truth"),
    "manifest": ("raddino_lib.data.cli", "build or validate an image manifest"),
    "backbone-info": ("raddino_lib.models.cli", "print a backbone's spec and digest"),
    "convert-backbone": ("raddino_lib.models.cli", "convert a backbone to this package's safetensors file"),
    "export-hf": ("raddino_lib.models.cli", "write a backbone as a Hugging Face Dinov2Model folder"),
    "pretrain": ("raddino_lib.train.cli", "DINOv2 / RAD-DINO self-supervised pretraining (DINO + iBOT + KoLeo)"),
    "train-clip": ("raddino_lib.train.cli",
                   "language-supervised baseline: CLIP-style image-report pretraining + zero-shot eval"),
    "zero-shot": ("raddino_lib.train.cli", "zero-shot classification and retrieval of any two-tower model"),
    "extract": ("raddino_lib.probe.cli", "extract and cache frozen features (CLS, mean patch, grid)"),
    "probe": ("raddino_lib.probe.cli", "linear/kNN classification or linear segmentation probe of encoders"),
    "run": ("raddino_lib.pipeline", "execute every notebook with papermill and write a summary"),
}
COMMAND_MODULES: tuple[str, ...] = tuple(dict.fromkeys(module for module, _ in COMMANDS.values()))


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``raddino`` parser.

    ``command=None``: every module is imported and registers its commands.
    ``command`` given: only the module of that command is imported (none for
    "" or a name not in ``COMMANDS``); the other commands appear with their
    help line only, so ``raddino --help`` and ``raddino manifest ...`` start
    without loading torch.
    """
    parser = argparse.ArgumentParser(
        prog="raddino", description="Image-only and language-supervised encoders for radiographs.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    wanted = COMMAND_MODULES if command is None else tuple({COMMANDS[command][0]} if command in COMMANDS else ())
    for name in wanted:
        _register(name, sub)
    for name, (module_name, help_line) in COMMANDS.items():
        if name not in sub.choices:  # listed only: parsed just when its module could not be imported
            placeholder = sub.add_parser(name, help=help_line, add_help=False)
            placeholder.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
            placeholder.set_defaults(func=lambda args, m=module_name: _unavailable(args.command, m))
    return parser


def _register(module_name: str, sub: argparse._SubParsersAction) -> None:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and module_name.startswith(err.name):
            return  # that part of the package is not installed in this build
        raise
    module.add_parser(sub)


def _unavailable(command: str, module_name: str) -> int:
    print(f"raddino {command}: not available in this installation ({module_name} could not be imported)",
          file=sys.stderr)
    return 2


def command_of(argv: list[str]) -> str:
    """The subcommand named in ``argv`` (its first word not starting with '-'), or ''."""
    return next((a for a in argv if not a.startswith("-")), "")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = command_of(argv)
    args = build_parser(command if command in COMMANDS or not command else None).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, FileExistsError, ValueError, KeyError) as err:
        print(f"raddino {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
