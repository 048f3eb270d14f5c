"""Validation of notebook parameters.

Papermill injects parameters without checking their types, so every notebook
validates them in the first code cell after its ``parameters`` cell, in one line::

    params = check_params(PretrainParams, globals())

``PretrainParams`` (``raddino_lib.notebook_params``) declares each parameter's
name and type once; the values stay in the notebook's ``parameters`` cell. A
wrong type, a missing parameter or an input path that does not exist fails
there, with the parameter's name.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

P = TypeVar("P")


class ParameterError(ValueError):
    """A notebook parameter has the wrong type or points at nothing."""


@dataclasses.dataclass(frozen=True)
class NotebookParams:
    """Base of the per-notebook parameter declarations: fields are names and types, no defaults.

    ``EXISTING_PATHS`` lists the parameters that, when non-empty, must name an existing file or folder.
    """

    EXISTING_PATHS: ClassVar[tuple[str, ...]] = ()


def check_params(spec: type[P], namespace: Mapping[str, Any]) -> P:
    """Validate the parameters ``spec`` declares against ``namespace`` (a notebook's ``globals()``).

    ``int`` is accepted where ``float`` is expected (and converted); ``bool`` is never accepted as ``int``.
    Empty strings in ``spec.EXISTING_PATHS`` mean "not given" and pass. Returns a frozen ``spec`` instance.
    """
    if not (dataclasses.is_dataclass(spec) and isinstance(spec, type)):
        raise TypeError(f"check_params expects a parameter dataclass, got {spec!r}")
    hints = typing.get_type_hints(spec)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(spec):
        values[f.name] = _checked(f.name, namespace, hints[f.name])
    for name in getattr(spec, "EXISTING_PATHS", ()):
        value = values.get(name)
        if value and not Path(value).exists():
            raise ParameterError(f"parameter '{name}': path {value!r} does not exist")
    return spec(**values)


def _checked(name: str, namespace: Mapping[str, Any], expected: Any) -> Any:
    if name not in namespace:
        raise ParameterError(f"parameter '{name}' is missing (add it to the notebook's parameters cell)")
    value = namespace[name]
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, bool) and expected is not bool:
        raise ParameterError(f"parameter '{name}' must be {expected.__name__}, got bool {value!r}")
    if not isinstance(value, expected):
        raise ParameterError(
            f"parameter '{name}' must be {expected.__name__}, got {type(value).__name__} {value!r}"
            " (papermill passes values as given: check the -p/-y option or the profile)"
        )
    return value


def declared_names(spec: type) -> list[str]:
    """The parameter names ``spec`` declares, in order."""
    return [f.name for f in dataclasses.fields(spec)]
