"""Per-notebook ``results.json``: the numbers a notebook shows, where tests and
the run summary read them back.

Layout (every key optional except where a notebook's test says otherwise)::

    {
      "notebook": "03_classification_probe",
      "table": {                      # encoder x metric, merged into summary.md
        "ssl": {"cls_macro_auroc": {"value": 0.81, "ci_low": 0.78, "ci_high": 0.84}},
        "random": {...}
      },
      "artifacts": {"backbone": "/abs/path/backbone.safetensors"},
      ...                             # anything else the notebook wants to record
    }
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from raddino_lib import atomic

RESULTS_NAME = "results.json"


def metric(value: float, ci_low: float | None = None, ci_high: float | None = None) -> dict[str, float | None]:
    """One table cell: a value with an optional confidence interval."""
    def clean(x: float | None) -> float | None:
        return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)

    return {"value": clean(value), "ci_low": clean(ci_low), "ci_high": clean(ci_high)}


def write_results(output_dir: str | Path, results: dict[str, Any]) -> Path:
    """Write ``output_dir/results.json`` atomically and return its path."""
    return atomic.write_json(Path(output_dir) / RESULTS_NAME, results)


def read_results(output_dir: str | Path) -> dict[str, Any]:
    path = Path(output_dir) / RESULTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the notebook that writes it has not completed")
    return json.loads(path.read_text())
