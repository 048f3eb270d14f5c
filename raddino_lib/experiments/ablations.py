"""Scaling and ablation arms of notebook 08: does the image-only encoder improve with data, steps, resolution and
its recipe's parts?

RAD-DINO reports that downstream results grow with the quantity and diversity of pretraining images, and studies
resolution, masked image modelling (iBOT) and continual pretraining from DINOv2 (PAPERS.md). Each question here
is a group of **arms**; an arm is one pretraining run that differs from a common *base* run in one respect:

| group          | arms                                                   | held equal                        |
|----------------|--------------------------------------------------------|-----------------------------------|
| data size      | ``images_<n>`` for each size, base = the largest       | optimizer steps                   |
| equal epochs   | ``images_<n>_epochs``: steps in proportion to n        | passes over the data              |
| steps          | ``steps_<s>`` for each step count, base = the most     | data                              |
| diversity      | ``one_site_<n>``: n images of the largest site only    | image count (against images_<n>)  |
| resolution     | ``crop_<c>``: global crops of c px, probed at c px     | compute (batch × tokens per image)|
| recipe         | ``no_ibot``, ``no_koleo``, ``softmax_centering``       | everything else                   |
| initialisation | ``other_family``: pretrained on toy shapes;            | steps                             |
|                | ``continual``: other_family's weights, then phantoms   |                                   |

Every arm's teacher is probed three ways on the full manifest (all splits; train fits, test scores, 95%
patient-bootstrap intervals): findings macro AUROC (logistic regression on [CLS]), Dice over all structures (a
linear head on the last patch tokens) and age R² (ridge on [CLS, mean patch]). The base arm's random init, the
raw-pixel floor and, when given, the supervised ceiling are probed the same way.

Bookkeeping: each arm lives in ``<root>/arms/<name>/`` (its pretraining run, its pretraining manifest and
``arm.json``). ``arm.json`` holds the arm's record and the digest of everything that defines it (pretraining
config, data subset, initialisation, probe settings): an arm whose digest matches is skipped, one whose
definition changed is rerun from scratch, and an interrupted pretraining resumes from its newest checkpoint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from raddino_lib import atomic

__all__ = [
    "GROUPS",
    "METRICS",
    "REFERENCES",
    "Arm",
    "ArmRun",
    "ProbeSettings",
    "aliases",
    "base_config",
    "build_arms",
    "parse_counts",
    "resolve_sizes",
    "pretrain_manifest",
    "probe_encoder",
    "probe_references",
    "results_table",
    "arms_frame",
    "compare_arms",
    "comparisons",
    "verdict_frame",
    "describe_verdicts",
    "run_arm",
    "run_arms",
    "select_arms",
]

GROUPS: tuple[str, ...] = ("data size", "equal epochs", "steps", "diversity", "resolution", "recipe",
                           "initialisation")
# results.json metric -> (title, higher is better)
METRICS: dict[str, tuple[str, bool]] = {
    "cls_macro_auroc": ("findings macro AUROC (linear, CLS)", True),
    "dice_mean": ("Dice, all structures (linear)", True),
    "age_r2": ("age R² (ridge, CLS + mean patch)", True),
}
REFERENCES: tuple[str, ...] = ("random", "pixels", "supervised")  # the floor and ceiling rows
RECORD_NAME = "arm.json"
SHAPES_IMAGES = 1000  # size of the other image family (toy shapes) that other_family pretrains on


@dataclass(frozen=True)
class Arm:
    """One pretraining run of the grid: what differs from the base."""

    name: str
    group: str  # one of GROUPS ("base" for the base arm, a member of every group)
    overrides: dict[str, Any] = field(default_factory=dict)  # PretrainConfig fields changed from the base
    n_images: int = 0  # pretraining images drawn from the train split; 0 = every one
    site: str = ""  # "" = every site; "largest" = only the site with the most training images
    family: str = "phantoms"  # "phantoms" (the manifest) or "shapes" (another image family, data.toy_shapes)
    init_from: str = ""  # arm whose final teacher initialises this run (continual pretraining)
    probe_size: int = 0  # eval crop of the probes; 0 = the arm's global crop size
    note: str = ""


def build_arms(base: Mapping[str, Any], sizes: Sequence[int], steps: Sequence[int], small_crop: int = 0,
               groups: Iterable[str] = GROUPS) -> list[Arm]:
    """The grid for a base pretraining config: arms in run order (an arm after the arm it starts from).

    sizes: pretraining set sizes, the largest is the base's; steps: step counts, the largest is the base's
    ``max_steps``; small_crop: the resolution arm's global crop (0 = no resolution arm).
    """
    groups = set(groups)
    unknown = groups - set(GROUPS)
    if unknown:
        raise ValueError(f"unknown ablation groups {sorted(unknown)}; choose from {list(GROUPS)}")
    sizes, steps = sorted(set(sizes)), sorted(set(steps))
    if not sizes or not steps or min(sizes) < 1 or min(steps) < 1:
        raise ValueError(f"sizes {sizes} and steps {steps} need at least one positive value each")
    if base.get("max_steps") != steps[-1]:
        raise ValueError(f"the base runs {base.get('max_steps')} steps but the largest step count is {steps[-1]}: "
                         "make the base's max_steps the largest of steps")
    n_base, s_base = sizes[-1], steps[-1]
    arms = [Arm("base", "base", n_images=n_base, note=f"{n_base} images, {s_base} steps")]
    if "data size" in groups:
        arms += [Arm(f"images_{n}", "data size", n_images=n, note=f"{n} images, {s_base} steps") for n in sizes[:-1]]
    if "equal epochs" in groups:
        for n in sizes[:-1]:
            s = max(1, round(s_base * n / n_base))
            arms.append(Arm(f"images_{n}_epochs", "equal epochs", {"max_steps": s}, n_images=n,
                            note=f"{n} images, {s} steps: as many passes over the data as the base"))
    if "steps" in groups:
        arms += [Arm(f"steps_{s}", "steps", {"max_steps": s}, n_images=n_base, note=f"{n_base} images, {s} steps")
                 for s in steps[:-1]]
    if "diversity" in groups and len(sizes) > 1:
        n = sizes[-2]
        arms.append(Arm(f"one_site_{n}", "diversity", n_images=n, site="largest",
                        note=f"{n} images of one site, against images_{n} drawn from every site"))
    if "resolution" in groups and small_crop:
        arms.append(_resolution_arm(base, small_crop, n_base))
    if "recipe" in groups:
        other = "sinkhorn" if base.get("centering") == "softmax" else "softmax"
        arms += [Arm("no_ibot", "recipe", {"ibot_weight": 0.0, "mask_probability": 0.0}, n_images=n_base,
                     note="no masked-patch objective and no masks"),
                 Arm("no_koleo", "recipe", {"koleo_weight": 0.0}, n_images=n_base, note="no KoLeo regulariser"),
                 Arm(f"{other}_centering", "recipe", {"centering": other}, n_images=n_base,
                     note=f"{other} targets instead of {base.get('centering', 'softmax')}")]
    if "initialisation" in groups:
        arms += [Arm("other_family", "initialisation", family="shapes",
                     note=f"pretrained on {SHAPES_IMAGES} toy shapes (another image family), never on phantoms"),
                 Arm("continual", "initialisation", init_from="other_family", n_images=n_base,
                     note="other_family's weights, then the base run on phantoms (as RAD-DINO starts from DINOv2)")]
    return arms


def _resolution_arm(base: Mapping[str, Any], crop: int, n_images: int) -> Arm:
    """Global crops of ``crop`` px at the base's compute: the batch grows as the tokens per image shrink."""
    patch, g, loc = base["patch_size"], base["global_crop_size"], base["local_crop_size"]
    if crop % patch or crop >= g:
        raise ValueError(f"resolution arm: crop {crop} must be a multiple of the patch size {patch} and smaller "
                         f"than the base's global crop {g}")
    local = max(patch, round(loc * crop / g / patch) * patch)
    n_local = base.get("n_local_crops", 0)
    tokens = lambda gc, lc: 2 * (gc // patch) ** 2 + n_local * (lc // patch) ** 2  # noqa: E731
    batch = max(1, round(base["batch_size"] * tokens(g, loc) / tokens(crop, local)))
    return Arm(f"crop_{crop}", "resolution", {"global_crop_size": crop, "local_crop_size": local,
                                              "batch_size": batch}, n_images=n_images, probe_size=crop,
               note=f"{crop} px global / {local} px local crops, batch {batch} (equal tokens per step), "
                    f"probed at {crop} px")


def select_arms(arms: Sequence[Arm], names: Iterable[str]) -> list[Arm]:
    """The arms named (empty = all) plus the arms they start from, in run order; unknown names fail."""
    names = [n for n in names if n]
    if not names:
        return list(arms)
    by_name = {a.name: a for a in arms}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(f"unknown arms {unknown}; this grid has {list(by_name)}")
    wanted = set(names)
    for n in names:
        while by_name[n].init_from:
            n = by_name[n].init_from
            wanted.add(n)
    return [a for a in arms if a.name in wanted]


def aliases(arms: Sequence[Arm]) -> dict[str, str]:
    """Claim roles -> table rows: the largest and smallest pretraining sets at equal steps; ssl = the base."""
    sized = sorted(((a.n_images, a.name) for a in arms if a.group in ("base", "data size")), reverse=True)
    out = {"ssl": "base"}
    if len(sized) > 1:
        out.update(largest=sized[0][1], smallest=sized[-1][1])
    return out


# ===== grid parameters =====

def base_config(recipe: str = "short", **fields: Any) -> dict[str, Any]:
    """PretrainConfig fields of the base arm: the given fields plus a teacher recipe ("short": the smoke/cpu
    profiles' short-run teacher, "dinov2": DINOv2's long-run values; raddino_lib.config)."""
    from raddino_lib.config import DINOV2_TEACHER, SHORT_RUN_TEACHER

    teachers = {"short": SHORT_RUN_TEACHER, "dinov2": DINOV2_TEACHER}
    if recipe not in teachers:
        raise ValueError(f"recipe {recipe!r}: choose one of {sorted(teachers)}")
    return {**teachers[recipe], **fields}


def parse_counts(text: str, what: str) -> list[int]:
    """ "15,30,60" -> [15, 30, 60]; anything but positive integers fails naming ``what``."""
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"{what} {text!r}: expected comma-separated positive integers, e.g. 15,30,60") from None
    if not values or min(values) < 1:
        raise ValueError(f"{what} {text!r}: expected comma-separated positive integers, e.g. 15,30,60")
    return values


def resolve_sizes(text: str, n_train: int) -> list[int]:
    """Pretraining set sizes from "250,500,2000" (images) or "12.5%,25%,100%" (shares of the train split)."""
    sizes = []
    for item in (x.strip() for x in text.split(",") if x.strip()):
        if item.endswith("%"):
            share = float(item[:-1])
            if not 0 < share <= 100:
                raise ValueError(f"sizes: {item} is not a share in (0%, 100%]")
            sizes.append(max(1, int(n_train * share / 100)))
        else:
            sizes += parse_counts(item, "sizes")
    if not sizes:
        raise ValueError("sizes: give at least one pretraining set size, e.g. 250,500,2000 or 12.5%,25%,100%")
    if max(sizes) > n_train:
        raise ValueError(f"sizes {text!r}: the largest set ({max(sizes)} images) exceeds the {n_train} images of "
                         "the manifest's train split; lower the sizes or give them as shares (e.g. 25%,100%)")
    return sorted(set(sizes))


# ===== data of an arm =====

def pretrain_manifest(arm: Arm, manifest: str | Path, out: Path, shapes_dir: Path, seed: int = 0,
                      shapes_size: int = 64) -> Path:
    """The manifest an arm pretrains on: a nested draw of train images (same seed → the smaller sets are
    prefixes of the larger ones), one site's images, or the other image family."""
    from raddino_lib.data.manifest import read_manifest, write_manifest

    if arm.family == "shapes":
        from raddino_lib.data.toy_shapes import generate_shapes

        path = shapes_dir / "manifest.csv"
        if not path.is_file():
            generate_shapes(shapes_dir, n=SHAPES_IMAGES, size=shapes_size, seed=seed)
        return path
    if arm.family != "phantoms":
        raise ValueError(f"arm {arm.name}: unknown image family {arm.family!r} (phantoms or shapes)")
    df = read_manifest(manifest, check_files=False)
    train = df[df["split"] == "train"]
    if arm.site == "largest":
        site = train["site"].value_counts().idxmax()
        train = train[train["site"] == site]
    elif arm.site:
        raise ValueError(f"arm {arm.name}: site must be '' or 'largest', got {arm.site!r}")
    order = np.random.default_rng(seed).permutation(len(train))
    n = arm.n_images or len(train)
    if n > len(train):
        where = f"site {train['site'].iloc[0]}" if arm.site else "the train split"
        raise ValueError(f"arm {arm.name} asks for {n} pretraining images but {where} of {manifest} has "
                         f"{len(train)}: lower the sizes of the grid or use a larger manifest")
    subset = train.iloc[np.sort(order[:n])].copy()
    subset["path"] = subset["abs_path"]  # absolute: the subset manifest lives in the arm's folder
    for col in [c for c in subset.columns if c.startswith("mask_")]:
        subset[col] = subset["abs_" + col]
    path = out / "pretrain_manifest.csv"
    write_manifest(subset, path)
    return path


# ===== probes =====

@dataclass(frozen=True)
class ProbeSettings:
    seg_epochs: int = 5  # passes of the linear segmentation head
    n_boot: int = 300
    seed: int = 0
    device: str = "cpu"


def probe_encoder(path: str, manifest: str | Path, image_size: int, settings: ProbeSettings,
                  cache_dir: str | Path | None = None, patch_size: int = 8,
                  masks: dict[int, tuple[list[str], np.ndarray]] | None = None) -> dict[str, dict[str, Any]]:
    """Findings macro AUROC, Dice over all structures and age R² of one frozen encoder (metric cells).

    path: a backbone file or ``probe.pixels.PIXELS_SOURCE``; masks: cache of the loaded masks per image size.
    """
    from raddino_lib.data.manifest import label_matrix, read_manifest
    from raddino_lib.probe.classification import linear_probe
    from raddino_lib.probe.compare import encoder_features, estimate_cell, manifest_findings
    from raddino_lib.probe.metadata import MetadataProbeConfig, align_features, probe_target
    from raddino_lib.probe.pixels import PixelFloorConfig
    from raddino_lib.probe.segmentation import SegConfig, segmentation_probe

    df = read_manifest(manifest)
    splits, pids = df["split"].to_numpy(), df["patient_id"].to_numpy()
    fs = encoder_features(str(path), str(manifest), str(cache_dir) if cache_dir else None, image_size,
                          device=settings.device, keep_grid=True, keep_layers=False, progress=False,
                          pixel_cfg=PixelFloorConfig(patch_size=patch_size))
    cls = align_features(fs.image_ids, fs.cls, df)
    row: dict[str, dict[str, Any]] = {}
    findings = manifest_findings(df)
    if findings:
        res = linear_probe(cls, label_matrix(df, findings), splits, pids, findings, n_boot=settings.n_boot,
                           seed=settings.seed)
        row["cls_macro_auroc"] = estimate_cell(res.macro_auroc)
    names, truth = _masks_at(manifest, image_size, {} if masks is None else masks, df)
    if names and fs.grid is not None:
        grid = align_features(fs.image_ids, fs.grid, df)
        seg = segmentation_probe(grid, truth, splits, pids, names,
                                 SegConfig(epochs=settings.seg_epochs, seed=settings.seed, device=settings.device),
                                 settings.n_boot, settings.seed, keep_predictions=0)
        row["dice_mean"] = estimate_cell(seg.dice_mean)
    both = align_features(fs.image_ids, fs.features("cls+mean_patch"), df)
    age = probe_target(both, df, "age", MetadataProbeConfig(n_boot=settings.n_boot, seed=settings.seed))
    if age is not None and "r2" in age.metrics:
        row["age_r2"] = estimate_cell(age.metrics["r2"])
    return row


def _masks_at(manifest: str | Path, image_size: int, masks: dict[int, tuple[list[str], np.ndarray]],
              df: pd.DataFrame | None = None) -> tuple[list[str], np.ndarray]:
    """(structure names, (N, S, H, W) masks) of the manifest at ``image_size``, loaded once into ``masks``."""
    from raddino_lib.data.manifest import read_manifest
    from raddino_lib.data.masks import load_masks, mask_structures

    if image_size not in masks:
        df = read_manifest(manifest) if df is None else df
        names = mask_structures(df, None)
        masks[image_size] = (names, load_masks(df, names, image_size)[0] if names else np.zeros(0))
    return masks[image_size]


# ===== running arms =====

@dataclass
class ArmRun:
    """Where and how the arms run: the data, the base config, the probes."""

    root: Path  # <root>/arms/<name>/, <root>/shapes/, <root>/features/
    manifest: str  # the phantom (or real) manifest: pretraining draws from its train split, the probes use all
    base: dict[str, Any]  # PretrainConfig fields shared by every arm
    probe: ProbeSettings = ProbeSettings()
    seed: int = 0
    device: str = "cpu"
    checkpoint_every: int = 50  # an interrupted arm resumes from its newest checkpoint
    cache_dir: str = ""  # feature cache shared with the probe notebooks; "" = <root>/features

    def __post_init__(self) -> None:
        from raddino_lib.device import resolve_device

        self.root = Path(self.root).resolve()
        self.cache_dir = self.cache_dir or str(self.root / "features")
        self.device = str(resolve_device(self.device))  # "auto" -> cuda or cpu, for the probes' heads too
        self.probe = dataclasses.replace(self.probe, device=str(resolve_device(self.probe.device)))

    def arm_dir(self, arm: Arm) -> Path:
        return self.root / "arms" / arm.name

    def config(self, arm: Arm, init_weights: str = "") -> dict[str, Any]:
        """The arm's PretrainConfig fields (without paths that change from machine to machine).

        The head's last layer stays frozen for the first tenth of each arm's steps (unless the base says
        otherwise): PretrainConfig's default, one pass over the data, would freeze it for a different share of
        the run in every data-size arm.
        """
        fields = {**self.base, **arm.overrides, "seed": self.seed, "init_weights": init_weights}
        fields.setdefault("freeze_last_layer_steps", max(1, fields.get("max_steps", 1) // 10))
        return fields

    def digest(self, arm: Arm, parent_digest: str = "") -> str:
        """What defines the arm's result: config, data, initialisation, probes (paths left out)."""
        blob = {"config": self.config(arm), "arm": {k: v for k, v in dataclasses.asdict(arm).items()
                                                    if k not in ("note", "name")},
                "parent": parent_digest, "probe": dataclasses.asdict(self.probe) | {"device": ""},
                "manifest": _file_digest(self.manifest)}
        return hashlib.sha256(json.dumps(blob, sort_keys=True, default=list).encode()).hexdigest()[:16]


def _file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def read_record(arm_dir: Path) -> dict[str, Any] | None:
    path = arm_dir / RECORD_NAME
    return json.loads(path.read_text()) if path.is_file() else None


def run_arm(run: ArmRun, arm: Arm, parent: dict[str, Any] | None = None,
            masks: dict | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Pretrain and probe one arm, or return its record when it is complete with the same definition.

    parent: the record of the arm named in ``arm.init_from`` (its backbone initialises this run).
    """
    from raddino_lib.train.metrics_log import read_metrics
    from raddino_lib.train.pretrain import PretrainConfig, pretrain

    if arm.init_from and parent is None:
        raise ValueError(f"arm {arm.name} starts from {arm.init_from}: run that arm first")
    digest = run.digest(arm, parent["digest"] if parent else "")
    out = run.arm_dir(arm)
    record = read_record(out)
    if record is not None and record.get("digest") == digest:
        log(f"{arm.name}: complete, skipped")
        return record
    if record is not None or _stale_pretraining(out, digest):
        log(f"{arm.name}: its definition changed, rerunning from scratch")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_json(out / "definition.json", {"digest": digest, "arm": dataclasses.asdict(arm)})
    data = pretrain_manifest(arm, run.manifest, out, run.root / "shapes", run.seed,
                             shapes_size=max(64, run.base["global_crop_size"]))
    init = parent["backbone"] if parent else ""
    cfg = PretrainConfig(**run.config(arm, init), manifest=str(data), output_dir=str(out / "pretrain"),
                         device=run.device, checkpoint_every=run.checkpoint_every, resume=True)
    log(f"{arm.name}: pretraining {cfg.max_steps} steps ({arm.note})")
    start = time.perf_counter()
    result = pretrain(cfg, progress=False)
    pretrain_s = time.perf_counter() - start
    rows = read_metrics(result.metrics_path)
    tail = rows[-max(1, min(10, len(rows) // 5)):]
    n_images = int(pd.read_csv(data).query("split == 'train'").shape[0])
    size = arm.probe_size or cfg.global_crop_size
    start = time.perf_counter()
    metrics = probe_encoder(str(result.backbone_path), run.manifest, size, run.probe, run.cache_dir,
                            cfg.patch_size, masks)
    record = {"name": arm.name, "group": arm.group, "note": arm.note, "digest": digest,
              "n_images": n_images, "steps": cfg.max_steps, "batch_size": cfg.batch_size,
              "epochs": round(cfg.max_steps * cfg.batch_size / max(1, n_images), 3),
              "probe_size": size, "family": arm.family, "init_from": arm.init_from,
              "dino_over_log_k": round(float(np.mean([r["dino_loss"] for r in tail])) / math.log(cfg.out_dim), 4),
              # std of the teacher's normalised [CLS] over the batch, end of the run: near 0 = every image alike
              "cls_std": round(float(np.mean([r["cls_std"] for r in tail])), 4),
              "pretrain_s": round(pretrain_s, 1), "probe_s": round(time.perf_counter() - start, 1),
              "backbone": str(result.backbone_path), "backbone_init": str(result.backbone_init_path),
              "metrics": metrics}
    atomic.write_json(out / RECORD_NAME, record)
    log(f"{arm.name}: " + ", ".join(f"{k} {v['value']:.3f}" for k, v in metrics.items()))
    return record


def _stale_pretraining(out: Path, digest: str) -> bool:
    """A folder left by an interrupted run of a different definition (its checkpoints must not be resumed)."""
    path = out / "definition.json"
    return path.is_file() and json.loads(path.read_text()).get("digest") != digest


# a probe (classification, segmentation, age) costs about as much as this many pretraining steps of the cpu grid's
# base (35 s against 0.85 s a step): the arms' relative costs, for handing out the longest jobs first
PROBE_COST_STEPS = 35


def run_arms(run: ArmRun, arms: Sequence[Arm], log: Callable[[str], None] = print, workers: int = 0
             ) -> dict[str, dict[str, Any]]:
    """Run (or skip) every arm; arm name -> record, in the arms' order (``run_grid`` without the references)."""
    return run_grid(run, arms, log=log, workers=workers, references=False)[0]


def run_grid(run: ArmRun, arms: Sequence[Arm], supervised: str = "", log: Callable[[str], None] = print,
             workers: int = 0, references: bool = True
             ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, dict[str, Any]]]]:
    """Run (or skip) every arm, and probe the floor and ceiling rows (``probe_references``) in the same pool:
    (arm name -> record in the arms' order, reference name -> metric -> cell).

    On a CPU the jobs run side by side, one core each (``parallel.map_jobs``), longest first. An arm that starts
    from another (``init_from``) starts when that one has finished; the references start when the base has
    (its random init is a floor), or at once when the base is not in ``arms`` (its record is read from disk).
    Each job seeds itself, so no result depends on what ran beside it. Side by side, ``log`` gets a line as each
    job finishes, then every arm's own lines.
    """
    from raddino_lib.parallel import cpu_workers, map_jobs

    ref_names = list(_reference_sources({"backbone_init": ""}, supervised)) if references else []
    workers = (workers or cpu_workers(len(arms) + len(ref_names))) if run.device == "cpu" else 1
    masks: dict = {}
    if workers > 1:  # load the masks once, here: the workers inherit them
        for arm in arms:
            _masks_at(run.manifest, arm.probe_size or run.config(arm)["global_crop_size"], masks)
    index = {arm.name: k for k, arm in enumerate(arms)}

    def job(item: Arm | str, parent_done: tuple[dict[str, Any], list[str]] | None = None
            ) -> tuple[dict[str, Any], list[str]]:
        parent = parent_done[0] if parent_done else None  # the parent arm's (record, lines) in this selection
        if isinstance(item, str):  # a reference row, probed on the base's random init and probe size
            base = parent or read_record(run.arm_dir(Arm("base", "")))
            if base is None:
                raise ValueError(f"the floor and ceiling rows need the base arm: add 'base' to the arms, or run it "
                                 f"first ({run.arm_dir(Arm('base', ''))} has no {RECORD_NAME})")
            return _probe_reference(run, base, _reference_sources(base, supervised)[item], masks), []
        if item.init_from and parent is None:  # the parent arm is not in this selection: its record on disk
            parent = read_record(run.arm_dir(Arm(item.init_from, "")))
        lines: list[str] = []  # a worker's lines are logged here once it has finished
        return run_arm(run, item, parent, masks, lines.append if workers > 1 else log), lines

    jobs: list[Arm | str] = [*arms, *ref_names]
    cost = [run.config(a)["max_steps"] + PROBE_COST_STEPS for a in arms] + [PROBE_COST_STEPS] * len(ref_names)
    after = [index.get(a.init_from) if a.init_from else None for a in arms] + [index.get("base")] * len(ref_names)
    done = map_jobs(job, jobs, workers, names=[a.name for a in arms] + ref_names, log=log if workers > 1 else None,
                    after=after, device=run.device, cost=cost)
    for _, lines in done[:len(arms)]:
        for line in lines:
            log(line)
    records = {arm.name: record for arm, (record, _) in zip(arms, done[:len(arms)], strict=True)}
    return records, {name: row for name, (row, _) in zip(ref_names, done[len(arms):], strict=True)}


def _reference_sources(base: dict[str, Any], supervised: str = "") -> dict[str, str]:
    """Reference name -> encoder source: the base's random init, raw pixels, the supervised ceiling when given."""
    from raddino_lib.probe.pixels import PIXELS_SOURCE

    sources = {"random": base["backbone_init"], "pixels": PIXELS_SOURCE}
    if supervised:
        sources["supervised"] = supervised
    return sources


def _probe_reference(run: ArmRun, base: dict[str, Any], source: str, masks: dict | None = None
                     ) -> dict[str, dict[str, Any]]:
    """One floor or ceiling row: ``probe_encoder`` at the base's probe size and the grid's patch size."""
    return probe_encoder(source, run.manifest, base["probe_size"], run.probe, run.cache_dir, run.base["patch_size"],
                         masks)


def probe_references(run: ArmRun, base: dict[str, Any], supervised: str = "", log: Callable[[str], None] = print
                     ) -> dict[str, dict[str, dict[str, Any]]]:
    """The floor and ceiling rows at the base's probe size: random init, raw pixels, supervised (when given)."""
    from raddino_lib.parallel import map_jobs

    sources = _reference_sources(base, supervised)
    names = list(sources)
    done = map_jobs(lambda name: _probe_reference(run, base, sources[name]), names, names=names, log=None,
                    device=run.device)
    rows = dict(zip(names, done, strict=True))
    for name, row in rows.items():
        log(f"{name}: " + ", ".join(f"{k} {v['value']:.3f}" for k, v in row.items()))
    return rows


def results_table(records: Mapping[str, dict[str, Any]], references: Mapping[str, dict[str, dict[str, Any]]]
                  ) -> dict[str, dict[str, dict[str, Any]]]:
    """results.json's table: arm or reference -> metric -> cell."""
    return {**{name: r["metrics"] for name, r in records.items()}, **references}


def arms_frame(records: Mapping[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per arm: group, images, steps, epochs, DINO loss / log K, and each metric with its interval."""
    rows = []
    for r in records.values():
        row = {"arm": r["name"], "group": r["group"], "images": r["n_images"], "steps": r["steps"],
               "epochs": r["epochs"], "probe px": r["probe_size"], "DINO loss / log K": r["dino_over_log_k"],
               "[CLS] std": r.get("cls_std", float("nan"))}  # records written before it was logged have none
        for key, (title, _) in METRICS.items():
            cell = r["metrics"].get(key)
            row[title] = (f"{cell['value']:.3f} [{cell['ci_low']:.3f}, {cell['ci_high']:.3f}]"
                          if cell and cell.get("ci_low") is not None else "–")
        row["what"] = r["note"]
        rows.append(row)
    return pd.DataFrame(rows).set_index("arm")


def compare_arms(table: Mapping[str, Mapping[str, Any]], a: str, b: str, key: str) -> str:
    """'holds' / 'contradicted' / 'not shown (intervals overlap)' for a above b on one metric."""
    from raddino_lib.claims import verdict

    return verdict(table.get(a, {}).get(key), table.get(b, {}).get(key), METRICS[key][1])


def comparisons(names: Iterable[str]) -> list[tuple[str, str, str]]:
    """(a, b, question) pairs the grid answers, for the arms present: a is the arm the paper expects better."""
    names = list(names)
    present = set(names)
    pairs = [("base", "random", "pretraining at all: base against its random init")]
    sized = sorted((int(n.split("_")[1]), n) for n in names if n.startswith("images_") and not n.endswith("_epochs"))
    if sized:
        pairs.append(("base", sized[0][1], "more images at equal steps: base against the smallest set"))
    epochs = sorted((int(n.split("_")[1]), n) for n in names if n.startswith("images_") and n.endswith("_epochs"))
    if epochs:
        pairs.append(("base", epochs[0][1], "more images at equal epochs: base against the smallest set"))
    steps = sorted((int(n.split("_")[1]), n) for n in names if n.startswith("steps_"))
    if steps:
        pairs.append(("base", steps[0][1], "more steps: base against the fewest"))
    for n in names:
        if n.startswith("one_site_") and f"images_{n.rsplit('_', 1)[1]}" in present:
            pairs.append((f"images_{n.rsplit('_', 1)[1]}", n, "diversity: every site against one site, same count"))
        if n.startswith("crop_"):
            pairs.append(("base", n, f"resolution at equal compute: the base's crops against {n.split('_')[1]} px"))
    for n, what in (("no_ibot", "iBOT"), ("no_koleo", "KoLeo")):
        if n in present:
            pairs.append(("base", n, f"{what}: base against the base without it"))
    for n in names:
        if n.endswith("_centering"):
            pairs.append(("base", n, f"centering: the base's targets against {n.split('_')[0]}"))
    if "continual" in present:
        pairs.append(("continual", "base", "continual pretraining from another image family against random init"))
        if "other_family" in present:
            pairs.append(("continual", "other_family", "what the phantoms add to the other family's encoder"))
    return [(a, b, q) for a, b, q in pairs if a in present | {"random"} and b in present | {"random"}]


def verdict_frame(table: Mapping[str, Mapping[str, Any]], metrics: Iterable[str] = METRICS) -> pd.DataFrame:
    """One row per comparison: the difference a − b of each metric and the verdict read from the intervals."""
    rows = []
    for a, b, question in comparisons(table):
        row: dict[str, Any] = {"question": question, "a": a, "b": b}
        for key in metrics:
            ca, cb = table.get(a, {}).get(key), table.get(b, {}).get(key)
            if ca and cb and ca.get("value") is not None and cb.get("value") is not None:
                row[f"{key} a−b"] = round(ca["value"] - cb["value"], 3)
            row[f"{key} verdict"] = compare_arms(table, a, b, key)
        rows.append(row)
    return pd.DataFrame(rows)


def describe_verdicts(verdicts: pd.DataFrame, metrics: Iterable[str] = METRICS) -> str:
    """One line per question of ``verdict_frame``: each metric's difference and verdict, in words."""
    lines = []
    for row in verdicts.to_dict(orient="records"):
        parts = []
        for key in metrics:
            diff = row.get(f"{key} a−b")
            said = row.get(f"{key} verdict", NOT_MEASURED_TEXT)
            parts.append(f"{METRICS[key][0].split(' (')[0]} {diff:+.3f} ({said})" if diff is not None
                         and not (isinstance(diff, float) and math.isnan(diff)) else f"{key}: {said}")
        lines.append(f"- {row['question']} ({row['a']} − {row['b']}): " + "; ".join(parts))
    return "\n".join(lines)


NOT_MEASURED_TEXT = "not measured"
