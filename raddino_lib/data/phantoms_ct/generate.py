"""Write a CT phantom dataset: volumes/, masks/, legend.json, manifest.csv and card.yaml.

Volume i of seed s depends only on (s, i, size, balanced, knobs): its random streams come from
``SeedSequence([s, i])``, so the bytes do not depend on the number of workers or their order, and the same
request writes identical files. Every file is written atomically (temporary name, then rename); the manifest
and then the card are written last, so a folder without card.yaml is never a complete dataset. An interrupted
run is resumed: volumes already on disk for the same request are kept. A folder holding anything else is
refused, with what is there and what to do.
"""

from __future__ import annotations

import json
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
from raddino_lib.data.phantoms_ct.anatomy import ANATOMY_LABELS
from raddino_lib.data.phantoms_ct.knobs import GENERATOR_VERSION, CTPhantomKnobs, lesion_label
from raddino_lib.data.phantoms_ct.patients import finding_model, sample_case
from raddino_lib.data.phantoms_ct.render import render_ct
from raddino_lib.data.phantoms_ct.reports import write_report
from raddino_lib.data.schema import CT_FINDINGS, label_column, mask_column, reported_column
from raddino_lib.data.volume_io import nifti_bytes
from raddino_lib.data.volume_manifest import LEGEND_NAME, format_triplet

DATASET_NAME = "phantoms_ct"
OWNED = ("volumes", "masks", LEGEND_NAME, "manifest.csv", "card.yaml", ".request.yaml")  # what --overwrite removes
REQUEST = ".request.yaml"  # the parameters of a generation in progress (resume marker)
NOMINAL_FOV_MM = 400.0  # typical field of view: resample phantoms of size S to NOMINAL_FOV_MM / S mm voxels


def generate(out_dir: str | Path, n: int, size: int, seed: int, balanced: bool = False, workers: int = 1,
             overwrite: bool = False, progress: bool = False, **knobs: Any) -> Path:
    """Generate ``n`` CT phantoms of ``size`` voxels in-plane into ``out_dir``; return the manifest path.

    A folder that already holds the same dataset is reused as is. ``knobs``: :class:`CTPhantomKnobs` fields.
    """
    if n < 1 or size < 16:
        raise ValueError(f"CT phantoms need n >= 1 and size >= 16, got n={n}, size={size}")
    params = {"generator_version": GENERATOR_VERSION, "n": int(n), "size": int(size), "seed": int(seed),
              "balanced": bool(balanced), "knobs": CTPhantomKnobs.from_kwargs(knobs).as_dict()}
    out = Path(out_dir)
    manifest = out / "manifest.csv"
    if not overwrite and _read_yaml(out / "card.yaml").get("params") == params and manifest.is_file():
        return manifest
    _prepare(out, params, overwrite)
    atomic.write_text(out / REQUEST, yaml.safe_dump(params, sort_keys=True))
    finding_model(tuple(sorted(CTPhantomKnobs(**params["knobs"]).targets(balanced).items())))  # calibrate once
    tasks = [(out, i, params) for i in range(n)]
    rows = _run(tasks, workers, progress)
    df = pd.DataFrame(rows)
    splits = assign_splits(df["patient_id"], seed=seed)
    df["split"] = df["patient_id"].map(splits)
    atomic.write_json(out / LEGEND_NAME, legend())
    write_manifest(df, manifest)
    atomic.write_text(out / "card.yaml", yaml.safe_dump(_card(params), sort_keys=True))
    (out / REQUEST).unlink(missing_ok=True)
    for info in (out / "masks").glob(".*.yaml"):  # resume notes, no longer needed
        info.unlink()
    return manifest


def _run(tasks: list, workers: int, progress: bool) -> list[dict[str, Any]]:
    from tqdm.auto import tqdm

    bar = tqdm(total=len(tasks), desc="CT phantoms", unit="vol", disable=not progress)
    if workers > 1:
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        with ctx.Pool(workers, initializer=_one_thread) as pool:
            rows = []
            for row in pool.imap(_make_one, tasks, chunksize=max(1, min(8, len(tasks) // (4 * workers) or 1))):
                rows.append(row)
                bar.update()
    else:
        rows = []
        for task in tasks:
            rows.append(_make_one(task))
            bar.update()
    bar.close()
    return rows


def _one_thread() -> None:
    """Worker processes: one BLAS / OpenMP thread each (the processes already fill the cores)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def legend() -> dict[str, dict[str, str]]:
    """Integer → name of both label maps (written as legend.json)."""
    return {"anatomy": {str(i): name for i, name in enumerate(ANATOMY_LABELS)},
            "lesions": {"0": "none", **{str(lesion_label(f)): f for f in CT_FINDINGS}}}


def throughput(size: int, n: int = 32, workers: int = 1, seed: int = 0) -> dict[str, float]:
    """Volumes/s of ``generate`` (files included) for ``n`` fresh volumes of ``size`` in a temporary folder."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        generate(Path(tmp) / "ct", n=n, size=size, seed=seed, workers=workers)
        wall = time.perf_counter() - start
    return {"volumes_per_s": round(n / wall, 1), "size": size, "n": n, "workers": workers}


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError:
        return {}


def _prepare(out: Path, params: dict, overwrite: bool) -> None:
    """Keep an interrupted run of the same request, empty a previous CT phantom dataset when asked, refuse
    anything else."""
    present = {p.name for p in out.iterdir()} if out.is_dir() else set()
    resuming = _read_yaml(out / REQUEST) == params and present <= set(OWNED)
    if resuming and not overwrite:
        (out / "card.yaml").unlink(missing_ok=True)
        (out / "manifest.csv").unlink(missing_ok=True)
        return
    if present and not overwrite:
        card = _read_yaml(out / "card.yaml")
        if card.get("name") == DATASET_NAME:
            old = card.get("params", {})
            diff = ", ".join(f"{k}: {old.get(k)!r} there, {v!r} asked" for k, v in params.items() if old.get(k) != v)
            what = f"a CT phantom dataset with different parameters ({diff})"
        elif card.get("name"):
            what = f"another dataset ('{card['name']}', see its card.yaml)"
        else:
            what = f"files that are not a CT phantom dataset ({', '.join(sorted(present)[:5])})"
        raise FileExistsError(f"{out} holds {what}: pass --overwrite (overwrite=True) to replace it, or choose "
                              "another folder")
    other = _read_yaml(out / "card.yaml").get("name")
    if overwrite and other not in (None, DATASET_NAME):
        raise FileExistsError(f"{out} holds another dataset ('{other}', see its card.yaml); --overwrite only replaces "
                              "CT phantoms: choose another folder")
    for name in OWNED:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    (out / "volumes").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)


def _make_one(task: tuple[Path, int, dict]) -> dict[str, Any]:
    """Draw, render and write volume ``i`` (unless already there from an interrupted run); return its row."""
    out, i, params = task
    knobs = CTPhantomKnobs(**params["knobs"])
    case_rng, voxel_rng, report_rng = (np.random.default_rng(s)
                                       for s in np.random.SeedSequence([params["seed"], i]).spawn(3))
    case = sample_case(case_rng, params["balanced"], knobs)
    report, reported = write_report(case, report_rng, knobs)
    volume_id = f"ctp{i:06d}"
    image_id = f"{volume_id}_a_1"
    paths = {"volume": f"volumes/{image_id}.nii.gz", "anatomy": f"masks/{image_id}_anatomy.nii.gz",
             "lesions": f"masks/{image_id}_lesions.nii.gz"}
    info_path = out / "masks" / f".{image_id}.yaml"  # the render facts a resumed run needs (spacing, shape, kernel)
    info = _read_yaml(info_path)
    if not (info and all((out / p).is_file() for p in paths.values())):
        r = render_ct(case, params["size"], voxel_rng, knobs)
        atomic.write_bytes(out / paths["volume"], nifti_bytes(r.hu, r.spacing, np.int16))
        atomic.write_bytes(out / paths["anatomy"], nifti_bytes(r.anatomy, r.spacing, np.uint8))
        atomic.write_bytes(out / paths["lesions"], nifti_bytes(r.lesions, r.spacing, np.uint8))
        info = {"spacing": format_triplet(r.spacing), "shape": format_triplet(r.hu.shape, integer=True),
                "kernel": r.kernel}
        atomic.write_text(info_path, yaml.safe_dump(info, sort_keys=True))
    row: dict[str, Any] = {
        "image_id": image_id, "path": paths["volume"], "patient_id": volume_id, "study_id": f"{volume_id}_a",
        "split": "", "age": case.age, "sex": case.sex, "view": "", "site": case.site, "bmi": case.bmi,
        "report": report, "dataset": DATASET_NAME, "modality": "CT", "spacing": info["spacing"],
        "shape": info["shape"], "kernel": info["kernel"],
        mask_column("anatomy"): paths["anatomy"], mask_column("lesions"): paths["lesions"],
    }
    labels = case.labels()
    row.update({label_column(f): labels[f] for f in CT_FINDINGS})
    row.update({reported_column(f): reported[f] for f in CT_FINDINGS})
    row["finding_details"] = json.dumps({f: {"severity": d.severity, "side": d.side, "where": list(d.where),
                                              "sizes_mm": list(d.sizes_mm)} for f, d in case.findings.items()},
                                         sort_keys=True)
    return row


def _card(params: dict) -> dict:
    size = params["size"]
    return {
        "name": DATASET_NAME,
        "description": "Synthetic chest CT volumes in HU with CT-RATE's 18 abnormalities, label maps and reports",
        "generator": "raddino_lib.data.phantoms_ct.generate",
        "params": params,
        "recommended_preprocessing": {"spacing_mm": round(NOMINAL_FOV_MM / size, 3), "size": size,
                                      "hu_range": [-1000, 1000], "out_range": [-1, 1]},
        "layout": {"volumes": "volumes/<image_id>.nii.gz (int16 HU, RAS+)",
                   "masks": "masks/<image_id>_anatomy.nii.gz and _lesions.nii.gz (uint8 label maps, legend.json)",
                   "manifest": "manifest.csv (volume manifest: modality, spacing z,y,x mm, shape D,H,W)"},
    }
