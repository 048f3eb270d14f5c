"""NIH ChestX-ray14: Data_Entry_2017.csv + train_val_list.txt / test_list.txt → manifest rows.

"Finding Labels" is a pipe-separated list ("Cardiomegaly|Effusion" or "No
Finding"); a listed finding is 1, every other finding of the card's mapping 0
(the NLP labels are exhaustive over the 14 findings). Official test list →
test; train_val list → train / val by patient hash. Any metadata file may be
gzipped. Images are found by name anywhere under root; a metadata-only build
writes ``<options.image_dir>/<Image Index>`` (card option, "images").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from raddino_lib.data.builders.common import (
    BuildOptions,
    Record,
    find_file,
    map_view,
    mapping_targets,
    normalize_age,
    normalize_sex,
    read_lines,
    read_table,
    records_to_frame,
    require_columns,
    require_file,
    resolve_images,
    table_rows,
    view_mapping,
)

COLUMNS = ("Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender",
           "View Position")


def build(root: Path, card: dict[str, Any], options: BuildOptions) -> pd.DataFrame:
    """Manifest rows for the images of ``root`` (paths relative to root)."""
    entries = require_file(root, "Data_Entry_2017.csv", "Data_Entry_2017_v2020.csv")
    df = read_table(entries)
    require_columns(df, COLUMNS, entries)
    official = _official_splits(root)
    mapping, views = card["label_mapping"], view_mapping(card)
    targets = mapping_targets(mapping)
    image_dir = card["options"].get("image_dir", "images")
    records = []
    for row in table_rows(df):
        names = [n.strip() for n in row["Finding Labels"].split("|") if n.strip()]
        labels = {t: 0.0 for t in targets}
        labels.update({mapping[n]: 1.0 for n in names if mapping.get(n)})
        records.append(Record(
            image_id=row["Image Index"], path=f"{image_dir}/{row['Image Index']}", patient_id=row["Patient ID"],
            study_id=f"{row['Patient ID']}_{row['Follow-up #']}", age=normalize_age(row["Patient Age"]),
            sex=normalize_sex(row["Patient Gender"]), view=map_view(row["View Position"], views), labels=labels,
            original_labels=row["Finding Labels"], split=official.get(row["Image Index"], "")))
    records = resolve_images(records, root, card["name"], options, by_name=True)
    return records_to_frame(records, card["name"], card["site"], options)


def _official_splits(root: Path) -> dict[str, str]:
    """Image → 'test' / 'trainval' from the official lists (absent lists → no official split)."""
    out: dict[str, str] = {}
    for name, split in (("train_val_list.txt", "trainval"), ("test_list.txt", "test")):
        path = find_file(root, name)
        if path is not None:
            out.update(dict.fromkeys(read_lines(path), split))
    return out
