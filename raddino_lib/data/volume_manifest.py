"""Volume manifests: the common manifest plus three columns that say what a 3D image is.

A volume manifest is an ordinary manifest (``manifest.py``: one row per image, patient-level splits,
``label_<F>`` / ``reported_<F>`` columns, here over ``CT_FINDINGS``) with:

- ``modality``: ``CT`` (``schema.MODALITIES``);
- ``spacing``: voxel size in mm, ``"z,y,x"`` in the (D, H, W) order of the loaded tensor, e.g. ``"1.5,0.75,0.75"``;
- ``shape``: voxels, ``"D,H,W"``, e.g. ``"240,512,512"``;
- optionally ``mask_anatomy`` / ``mask_lesions``: label-map volumes on the same grid, whose integer → name
  legend is a JSON file (``legend.json`` beside the manifest for the phantoms).

``read_volume_manifest`` validates the common part with ``read_manifest``, then these columns, and adds
parsed ``spacing_zyx`` and ``shape_dhw`` tuples. Errors name the file, the row and the column.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from raddino_lib.data.manifest import ManifestError, read_manifest
from raddino_lib.data.schema import MODALITIES

VOLUME_COLUMNS: tuple[str, ...] = ("modality", "spacing", "shape")
LEGEND_NAME = "legend.json"  # label-map legend beside a phantom manifest


def format_triplet(values: Sequence[float], integer: bool = False) -> str:
    """(1.5, 0.75, 0.75) → '1.5,0.75,0.75'; canonical text (no trailing zeros) so manifests stay byte-stable."""
    if len(values) != 3:
        raise ValueError(f"expected three values (z, y, x), got {tuple(values)}")
    return ",".join(str(int(v)) if integer else format(float(v), ".6g") for v in values)


def parse_triplet(text: str, where: str, integer: bool = False) -> tuple:
    """'1.5,0.75,0.75' → (1.5, 0.75, 0.75); every value must be a positive number (an integer for shapes)."""
    parts = str(text).replace("x", ",").split(",")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3 or not all(v > 0 for v in values) or (integer and not all(v.is_integer() for v in values)):
        kind = "three positive integers 'D,H,W'" if integer else "three positive numbers 'z,y,x' in mm"
        raise ManifestError(f"{where}: '{text}' is not {kind} (fix the manifest or rebuild it from its card)")
    return tuple(int(v) for v in values) if integer else values


def validate_volume_columns(df: pd.DataFrame, source: str) -> None:
    """Raise ``ManifestError`` if a volume column is missing or malformed (every problem listed)."""
    missing = [c for c in VOLUME_COLUMNS if c not in df.columns]
    if missing:
        raise ManifestError(f"{source}: missing volume column(s) {missing}; a volume manifest needs "
                            f"{list(VOLUME_COLUMNS)} (see raddino_lib/data/volume_manifest.py)")
    problems = []
    for i, (modality, spacing, shape) in enumerate(zip(df["modality"], df["spacing"], df["shape"], strict=True)):
        where = f"{source} row {i + 1}"
        if modality not in MODALITIES:
            problems.append(f"{where}, column 'modality': '{modality}' is not one of {list(MODALITIES)}")
        for col, value, integer in (("spacing", spacing, False), ("shape", shape, True)):
            try:
                parse_triplet(value, f"{where}, column '{col}'", integer)
            except ManifestError as err:
                problems.append(str(err))
    if problems:
        listed = "\n  ".join(problems[:30]) + (f"\n  ... and {len(problems) - 30} more" if len(problems) > 30 else "")
        raise ManifestError(f"{source}: {len(problems)} problem(s):\n  {listed}")


def read_volume_manifest(path: str | os.PathLike, root: str | os.PathLike | None = None, check_files: bool = True
                         ) -> pd.DataFrame:
    """``read_manifest`` + volume columns; adds ``spacing_zyx`` (floats) and ``shape_dhw`` (ints) tuples."""
    df = read_manifest(path, root=root, check_files=check_files)
    validate_volume_columns(df, str(path))
    df["spacing_zyx"] = [parse_triplet(v, str(path)) for v in df["spacing"]]
    df["shape_dhw"] = [parse_triplet(v, str(path), integer=True) for v in df["shape"]]
    return df


def read_legend(manifest_path: str | os.PathLike) -> dict[str, dict[int, str]]:
    """{"anatomy": {0: "background", ...}, "lesions": {...}} from ``legend.json`` beside the manifest."""
    path = Path(manifest_path).parent / LEGEND_NAME
    if not path.is_file():
        raise FileNotFoundError(f"label-map legend '{path}' not found (it is written beside the manifest by "
                                "`raddino phantoms-ct`; other datasets need their own legend)")
    raw = json.loads(path.read_text())
    return {kind: {int(k): v for k, v in names.items()} for kind, names in raw.items()}
