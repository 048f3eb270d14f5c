"""Validation of notebook parameters.

Papermill injects parameters without checking their types, so every notebook
calls :func:`check_params` in its first code cell after the parameters cell:
a wrong type or a missing input path fails there, with the parameter's name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class ParameterError(ValueError):
    """A notebook parameter has the wrong type or points at nothing."""


def check_params(values: dict[str, Any], types: dict[str, type | tuple[type, ...]],
                 existing_paths: tuple[str, ...] = ()) -> None:
    """Check each ``values[name]`` against ``types[name]``; check listed paths exist.

    ``int`` is accepted where ``float`` is expected; ``bool`` is never accepted
    as ``int``. Empty strings in ``existing_paths`` mean "not given" and pass.
    """
    for name, expected in types.items():
        if name not in values:
            raise ParameterError(f"parameter '{name}' is missing")
        value = values[name]
        allowed = expected if isinstance(expected, tuple) else (expected,)
        if float in allowed and isinstance(value, int) and not isinstance(value, bool):
            continue
        if isinstance(value, bool) and bool not in allowed:
            raise ParameterError(f"parameter '{name}' must be {_names(allowed)}, got bool {value!r}")
        if not isinstance(value, allowed):
            raise ParameterError(
                f"parameter '{name}' must be {_names(allowed)}, got {type(value).__name__} {value!r}"
                " (papermill passes values as given: check the -p/-y option or the profile)"
            )
    for name in existing_paths:
        value = values.get(name)
        if value and not Path(value).exists():
            raise ParameterError(f"parameter '{name}': path {value!r} does not exist")


def _names(types: tuple[type, ...]) -> str:
    return " or ".join(t.__name__ for t in types)
