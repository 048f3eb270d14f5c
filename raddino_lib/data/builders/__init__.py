"""Dataset builders: official metadata under a local root → the common manifest.

One module per dataset card (``data_manifests/<name>.yaml``), each exposing
``build(root, card, options: BuildOptions) -> DataFrame`` with paths
relative to the dataset root (``common`` holds what they share, ``dicom``
what the DICOM-only datasets read from headers). ``build_manifest`` runs one
and writes the manifest with paths relative to the manifest's folder.
"""

from __future__ import annotations

import importlib
import os
import posixpath
from pathlib import Path

import pandas as pd

from raddino_lib.data.builders.common import BuildError, BuildOptions
from raddino_lib.data.cards import card_names, load_card
from raddino_lib.data.manifest import DEFAULT_FRACTIONS, write_manifest

__all__ = ["BuildError", "BuildOptions", "build_frame", "build_manifest"]


def build_frame(card: str | os.PathLike, root: str | os.PathLike, seed: int = 0,
                fractions: tuple[float, float, float] = DEFAULT_FRACTIONS, drop_missing: bool = False,
                check_files: bool = True, masks_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """Manifest rows for dataset ``card`` (name or YAML path) under ``root``; paths relative to root.

    The keywords are ``BuildOptions`` fields: ``check_files=False`` builds from
    the metadata alone (no image is looked for or read).
    """
    options = BuildOptions(seed=seed, fractions=fractions, drop_missing=drop_missing, check_files=check_files,
                           masks_dir=Path(masks_dir) if masks_dir is not None else None)
    spec = load_card(card)
    root = Path(root)
    if not root.is_dir():
        raise BuildError(f"dataset root '{root}' is not a folder (expected layout: {spec['root_layout'].strip()})")
    name = spec.get("builder", spec["name"])
    try:
        module = importlib.import_module(f"raddino_lib.data.builders.{name}")
    except ModuleNotFoundError as err:
        raise BuildError(f"no builder '{name}' for card '{card}' (cards with builders: "
                         f"{', '.join(card_names())})") from err
    return module.build(root, spec, options)


def build_manifest(card: str | os.PathLike, root: str | os.PathLike, out: str | os.PathLike, seed: int = 0,
                   fractions: tuple[float, float, float] = DEFAULT_FRACTIONS, drop_missing: bool = False,
                   check_files: bool = True, masks: bool = False) -> Path:
    """Build and write ``out`` (manifest.csv); masks (RSNA, SIIM) go to ``<out folder>/masks`` when asked."""
    out = Path(out)
    masks_dir = out.parent / "masks" if masks else None
    df = build_frame(card, root, seed=seed, fractions=fractions, drop_missing=drop_missing, check_files=check_files,
                     masks_dir=masks_dir)
    return write_manifest(rebase_paths(df, Path(root), out.parent), out)


def rebase_paths(df: pd.DataFrame, root: Path, folder: Path) -> pd.DataFrame:
    """Paths relative to ``root`` (or absolute) → relative to ``folder`` (the manifest's), posix separators.

    Root and folder are resolved once (symlinks followed); a relative path is
    then joined as text, so 100k rows take well under a second.
    """
    df = df.copy()
    folder = folder.resolve()
    prefix = Path(os.path.relpath(Path(root).resolve(), folder)).as_posix()
    for col in ["path", *(c for c in df.columns if c.startswith("mask_"))]:
        df[col] = [_relative(prefix, folder, p) for p in df[col]]
    return df


def _relative(prefix: str, folder: Path, value: str) -> str:
    if not value:
        return ""
    if os.path.isabs(value):
        return Path(os.path.relpath(value, folder)).as_posix()
    return posixpath.normpath(f"{prefix}/{value}")
