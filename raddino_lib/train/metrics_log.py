"""``metrics.csv``: one row per optimizer step, appended and flushed as training goes.

Floats are written with ``repr`` (shortest round-trip form), so a resumed run's rows can be compared
bit for bit with an uninterrupted run's. On resume, rows at or after the resumed step (written after the
last checkpoint, before the job was killed) are dropped first.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from raddino_lib import atomic
from raddino_lib.train.collapse import COLLAPSE_COLUMNS

COLUMNS = ("step", "total_loss", "dino_loss", "ibot_loss", "koleo_loss", "lr", "wd", "momentum", "teacher_temp",
           "images_per_s", *COLLAPSE_COLUMNS)
LOSSES = ("total_loss", "dino_loss", "ibot_loss", "koleo_loss")


class MetricsLog:
    """Append-only CSV writer; ``enabled=False`` (non-main processes) keeps rows in memory only."""

    def __init__(self, path: str | Path, start_step: int = 0, enabled: bool = True,
                 columns: tuple[str, ...] = COLUMNS) -> None:
        self.path = Path(path)
        self.enabled = enabled
        self.columns = columns
        self.rows: list[dict[str, float]] = []
        self._file = None
        if not enabled:
            return
        kept = [r for r in read_metrics(self.path) if int(r["step"]) < start_step] if self.path.is_file() else []
        # rows of a run started before a column existed get NaN there
        lines = [",".join(columns)] + [",".join(_fmt(r.get(c, float("nan"))) for c in columns) for r in kept]
        atomic.write_text(self.path, "\n".join(lines) + "\n")
        self.rows = [{c: r.get(c, float("nan")) for c in columns} for r in kept]
        self._file = self.path.open("a", newline="")

    def append(self, row: dict[str, float]) -> None:
        missing = [c for c in self.columns if c not in row]
        if missing:
            raise KeyError(f"metrics row lacks {missing}")
        self.rows.append({c: row[c] for c in self.columns})
        if self._file is not None:
            self._file.write(",".join(_fmt(row[c]) for c in self.columns) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def summary(self, last: int = 10) -> dict[str, float]:
        """Final losses, their mean over the ``last`` steps, the first step's total loss, mean throughput."""
        if not self.rows:
            return {}
        out = {f"final_{k}": float(self.rows[-1][k]) for k in LOSSES}
        out.update({f"last{last}_mean_{k}": float(np.mean([r[k] for r in self.rows[-last:]])) for k in LOSSES})
        out["first_total_loss"] = float(self.rows[0]["total_loss"])
        out["images_per_s"] = float(np.mean([r["images_per_s"] for r in self.rows[1:] or self.rows]))
        return out


def read_metrics(path: str | Path) -> list[dict[str, float]]:
    """Rows of a metrics.csv as dicts of floats (``step`` as int)."""
    with Path(path).open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [{k: (int(v) if k == "step" else float(v)) for k, v in r.items()} for r in rows]


def _fmt(value: float) -> str:
    return str(int(value)) if isinstance(value, int) else repr(float(value))
