"""Dataset cards: YAML files in ``data_manifests/`` describing each real dataset.

A card says where a dataset comes from (citation, documentation url), how its
files are laid out under a local root, which official metadata files the
builder reads, how its labels and view codes map onto ``FINDINGS`` and
``VIEWS``, and what is done with uncertain labels and splits. The builder of
the same name executes the card; ``label_mapping`` and ``view_mapping`` are
the single source of truth for label names and views.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from raddino_lib.data.schema import ALL_FINDINGS, VIEWS

CARD_DIR = Path(__file__).resolve().parents[2] / "data_manifests"
REQUIRED_KEYS: tuple[str, ...] = (
    "name",  # card / builder name, e.g. nih_cxr14
    "title",
    "citation",
    "url",  # documentation only; nothing is downloaded
    "site",  # value of the manifest's 'site' column
    "root_layout",  # expected files under --root
    "metadata_files",  # official files the builder reads
    "label_mapping",  # source label → common finding, or null (kept only in original_labels)
    "view_mapping",  # source view code → PA / AP / LATERAL, or null (empty view); codes not listed → empty
    "uncertain_policy",
    "splits_policy",
)
NOT_A_CARD = ("phantoms", "phantoms_ct")  # yaml files in data_manifests/ without a builder


class CardError(ValueError):
    """A dataset card is missing or malformed; the message names the file and key."""


def card_names() -> list[str]:
    """Names of the cards with a builder, e.g. ['brax', 'chexpert', ...]."""
    return sorted(p.stem for p in CARD_DIR.glob("*.yaml") if p.stem not in NOT_A_CARD)


def load_card(name_or_path: str | os.PathLike) -> dict[str, Any]:
    """Card by name (``nih_cxr14``) or path to a YAML file; validated."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = CARD_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise CardError(f"dataset card '{name_or_path}' not found (known cards: {', '.join(card_names())})")
    try:
        card = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise CardError(f"{path}: not valid YAML ({err})") from err
    if not isinstance(card, dict):
        raise CardError(f"{path}: expected a mapping of keys, got {type(card).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in card]
    if missing:
        raise CardError(f"{path}: missing key(s) {missing}; see data_manifests/README.md")
    mapping = card["label_mapping"] or {}
    bad = {src: dst for src, dst in mapping.items() if dst is not None and dst not in ALL_FINDINGS}
    if bad:
        raise CardError(f"{path}: label_mapping targets {bad} are not in ALL_FINDINGS {list(ALL_FINDINGS)} "
                        "(map to null to keep a label only in original_labels)")
    card["label_mapping"] = {str(k): v for k, v in mapping.items()}
    views = card["view_mapping"] or {}
    bad = {src: dst for src, dst in views.items() if dst is not None and dst not in VIEWS}
    if bad:
        raise CardError(f"{path}: view_mapping targets {bad} are not in VIEWS {list(VIEWS)} "
                        "(map to null for an empty view)")
    card.setdefault("options", {})
    return card
