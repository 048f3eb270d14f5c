"""Write a phantom dataset: images/, masks/, manifest.csv and card.yaml.

Image i of seed s depends only on (s, i, size, balanced, knobs): its random
stream is ``SeedSequence([s, i])``, so the pixels do not depend on the
number of workers or their order, and the manifest is byte-identical across
runs. Splits are patient-level (one image per patient).
"""

from __future__ import annotations

import multiprocessing as mp
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from raddino_lib import atomic
from raddino_lib.data.manifest import assign_splits, write_manifest
from raddino_lib.data.phantoms.knobs import GENERATOR_VERSION, LOCALIZED_FINDINGS, PhantomKnobs
from raddino_lib.data.phantoms.patients import sample_case
from raddino_lib.data.phantoms.png import encode_gray8
from raddino_lib.data.phantoms.render import DEVICE_MASK, render_phantom
from raddino_lib.data.phantoms.reports import write_report
from raddino_lib.data.schema import FINDINGS, label_column, mask_column, reported_column

DATASET_NAME = "phantoms"
OWNED = ("images", "masks", "manifest.csv", "card.yaml")  # what --overwrite removes


def generate(out_dir: str | Path, n: int, size: int, seed: int, balanced: bool = False, workers: int = 1,
             overwrite: bool = False, **knobs: Any) -> Path:
    """Generate ``n`` phantoms of ``size`` px into ``out_dir``; return the manifest path.

    If ``out_dir`` already holds the same dataset (same card parameters), nothing is
    regenerated. ``knobs`` are :class:`PhantomKnobs` fields (lesion_scale, lesion_contrast, ...).
    """
    if n < 1 or size < 16:
        raise ValueError(f"phantoms need n >= 1 and size >= 16, got n={n}, size={size}")
    params = {"generator_version": GENERATOR_VERSION, "n": int(n), "size": int(size), "seed": int(seed),
              "balanced": bool(balanced), "knobs": PhantomKnobs.from_kwargs(knobs).as_dict()}
    out = Path(out_dir)
    manifest = out / "manifest.csv"
    if not overwrite and _existing_params(out) == params and manifest.is_file():
        return manifest
    _prepare(out, params, overwrite)
    tasks = [(out, i, params) for i in range(n)]
    if workers > 1:
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        with ctx.Pool(workers) as pool:
            rows = pool.map(_make_one, tasks, chunksize=max(1, min(32, n // (4 * workers) or 1)))
    else:
        rows = [_make_one(t) for t in tasks]
    df = pd.DataFrame(rows)
    splits = assign_splits(df["patient_id"], seed=seed)
    df["split"] = df["patient_id"].map(splits)
    write_manifest(df, manifest)
    atomic.write_text(out / "card.yaml", yaml.safe_dump(_card(params), sort_keys=True))
    return manifest


def throughput(size: int, n: int = 64, workers: int = 1, seed: int = 0) -> dict[str, float]:
    """Images/s of ``generate`` (files included) for ``n`` fresh images of ``size`` px in a temporary folder."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        generate(Path(tmp) / "phantoms", n=n, size=size, seed=seed, workers=workers)
        wall = time.perf_counter() - start
    return {"images_per_s": round(n / wall, 1), "size": size, "n": n, "workers": workers}


def _existing_params(out: Path) -> dict | None:
    card = out / "card.yaml"
    if not card.is_file():
        return None
    try:
        return (yaml.safe_load(card.read_text()) or {}).get("params")
    except yaml.YAMLError:
        return None


def _prepare(out: Path, params: dict, overwrite: bool) -> None:
    """Empty ``out`` of a previous phantom dataset, or refuse when it holds anything else."""
    present = {p.name for p in out.iterdir()} if out.is_dir() else set()
    interrupted = present <= {"images", "masks"} or _existing_params(out) == params  # same run, cut short
    if present and not interrupted and not overwrite:
        old = _existing_params(out)
        what = "a phantom dataset with different parameters" if old else "files that are not this phantom dataset"
        diff = "" if not old else " (" + ", ".join(
            f"{k}: {old.get(k)!r} there, {v!r} asked" for k, v in params.items() if old.get(k) != v) + ")"
        raise FileExistsError(f"{out} holds {what}{diff}: pass --overwrite (overwrite=True) to replace it, "
                              "or choose another folder")
    for name in OWNED:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)


def _make_one(task: tuple[Path, int, dict]) -> dict[str, Any]:
    """Draw, render and write image ``i``; return its manifest row (split filled in later)."""
    out, i, params = task
    knobs = PhantomKnobs(**params["knobs"])
    case_rng, pixel_rng, report_rng = (np.random.default_rng(s)
                                       for s in np.random.SeedSequence([params["seed"], i]).spawn(3))
    case = sample_case(case_rng, params["balanced"], knobs)
    image, masks = render_phantom(case, params["size"], pixel_rng, knobs)
    report, reported = write_report(case, report_rng, knobs)
    image_id = f"ph{i:06d}"
    _write_png(out / "images" / f"{image_id}.png", image)
    row: dict[str, Any] = {
        "image_id": image_id, "path": f"images/{image_id}.png", "patient_id": f"P{i:06d}",
        "study_id": f"S{i:06d}", "split": "", "age": case.age, "sex": case.sex, "view": case.view,
        "site": case.site, "bmi": case.bmi, "report": report, "dataset": DATASET_NAME,
    }
    labels = case.labels()
    row.update({label_column(f): labels[f] for f in FINDINGS})
    row.update({reported_column(f): reported[f] for f in FINDINGS})
    for name, mask in masks.items():
        rel = f"masks/{image_id}_{name.replace(' ', '_')}.png"
        _write_png(out / rel, mask.astype(np.uint8) * np.uint8(255), level=1)
        row[mask_column(name)] = rel
    row.update({mask_column(f): "" for f in (*LOCALIZED_FINDINGS, DEVICE_MASK) if mask_column(f) not in row})
    return row


def _write_png(path: Path, array: np.ndarray, level: int = 0) -> None:
    """Plain write (no temporary file): images and masks only count once ``manifest.csv`` lists them, and it is
    written last, atomically; an interrupted run leaves no manifest and is regenerated."""
    with open(path, "wb") as fh:
        fh.write(encode_gray8(array, level))


def _card(params: dict) -> dict:
    return {
        "name": DATASET_NAME,
        "description": "Synthetic frontal chest radiographs with ground-truth findings, masks and reports",
        "generator": "raddino_lib.data.phantoms.generate",
        "params": params,
        "layout": {"images": "images/<image_id>.png (8-bit grayscale)",
                   "masks": "masks/<image_id>_<structure or finding>.png (0/255; spaces in names as _)",
                   "manifest": "manifest.csv"},
    }
