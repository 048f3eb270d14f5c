"""Command-line flags from a config dataclass: one flag per field, help text = the comment after the field.

``raddino pretrain`` (PretrainConfig) and ``raddino train-clip`` (CLIPConfig) build their parsers here:
``--max-steps`` for ``max_steps``; bool fields get ``--x`` / ``--no-x``; ``tuple`` fields take two floats
(LOW HIGH); int / float fields are converted, everything else stays a string. Every flag defaults to None,
so ``config_overrides`` returns only the flags that were given.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any

_FIELD_COMMENT = re.compile(r"^\s+(\w+): [^=\n]+= [^#\n]*#(.*)$", re.M)


def field_help(config_cls: type) -> dict[str, str]:
    """Field name -> the comment after it in the source of ``config_cls``."""
    return {m.group(1): m.group(2).strip() for m in _FIELD_COMMENT.finditer(inspect.getsource(config_cls))}


def add_config_arguments(parser: argparse.ArgumentParser, config_cls: type,
                         aliases: Mapping[str, Sequence[str]] | None = None, skip: Collection[str] = ()) -> None:
    """One flag per field of ``config_cls`` (except ``skip``); ``aliases``: extra spellings of a field's flag."""
    helps = field_help(config_cls)
    for f in dataclasses.fields(config_cls):
        if f.name in skip:
            continue
        flags = ["--" + f.name.replace("_", "-"), *(aliases or {}).get(f.name, [])]
        default = f.default if f.default is not dataclasses.MISSING else None
        text = f"{helps.get(f.name, '')} (default: {default})".replace("%", "%%")
        if f.type in ("bool", bool):
            parser.add_argument(*flags, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=text)
        elif "tuple" in str(f.type):
            parser.add_argument(*flags, dest=f.name, type=float, nargs=2, metavar=("LOW", "HIGH"), default=None,
                                help=text)
        else:
            kind = {"int": int, "float": float}.get(str(f.type), str)
            parser.add_argument(*flags, dest=f.name, type=kind, default=None, help=text)


def config_overrides(args: argparse.Namespace, config_cls: type, skip: Collection[str] = ()) -> dict[str, Any]:
    """The fields of ``config_cls`` (except ``skip``) whose flags were given: name -> parsed value."""
    names = {f.name for f in dataclasses.fields(config_cls)} - set(skip)
    return {k: v for k, v in vars(args).items() if k in names and v is not None}
