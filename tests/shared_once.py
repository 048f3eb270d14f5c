"""Build something once per test session, whichever pytest-xdist worker asks first.

A module- or session-scoped fixture lives in one worker process; with ``-n 2`` two workers may each build
it (the smoke pipeline then ran twice in ``make test``). ``build_once`` puts the result in a folder shared
by the session's workers and guards it with a file lock: the first worker builds, the others wait and
read. Without xdist the folder is the session's own temporary folder.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock

from raddino_lib.atomic import write_json

DONE = "built.json"


def shared_root(tmp_path_factory, worker_id: str) -> Path:
    """The temporary folder every worker of this session sees (fresh per session)."""
    base = tmp_path_factory.getbasetemp()
    return base if worker_id == "master" else base.parent


def build_once(root: Path, name: str, build: Callable[[Path], Any]) -> tuple[Path, Any]:
    """``build(out)`` once per session into ``root/name``; return ``(out, its JSON-able result)``."""
    out = root / name
    with FileLock(str(root / f"{name}.lock")):
        done = out / DONE
        if not done.exists():
            write_json(done, build(out))
        return out, json.loads(done.read_text())
