"""Run one probe for several frozen encoders on one manifest; shape the results table.

This is what notebooks 03/04/06 and ``raddino probe`` call: extract (or reuse
cached) features per encoder — the raw-pixel floor (``probe.pixels``) is one
more "encoder" whose path is ``PIXELS_SOURCE`` — run the probes, and collect
``table[encoder][metric] = metric(value, ci_low, ci_high)`` for results.json
plus the per-finding / per-structure tables behind the figures.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from raddino_lib.data.masks import is_finding, load_masks, mask_structures
from raddino_lib.data.schema import FINDINGS, label_column
from raddino_lib.device import resolve_device
from raddino_lib.parallel import map_jobs
from raddino_lib.probe.bootstrap import Estimate, patient_bootstrap
from raddino_lib.probe.classification import DEFAULT_CS, linear_probe
from raddino_lib.probe.features import N_LAYERS, FeatureSet, extract_features
from raddino_lib.probe.knn import knn_probe
from raddino_lib.probe.pixels import PixelFloorConfig, is_pixels, pixel_features
from raddino_lib.probe.segmentation import SegConfig, mean_over_structures, segmentation_probe
from raddino_lib.results import metric

# probe name in tables -> (kind, feature set)
CLASSIFICATION_PROBES: dict[str, tuple[str, str]] = {
    "cls": ("linear", "cls"),  # logistic regression on the CLS token
    "clsmean": ("linear", "cls+mean_patch"),  # DINOv2 linear eval: CLS ++ mean patch token
    "knn": ("knn", "cls"),  # DINO's weighted 20-NN on the CLS token
}
GRID_CACHE_BYTES = 1 << 30  # classification caches patch grids too when they take less than this (float16)
# relative cost of one epoch of each segmentation head (cpu profile, 3,000 images at 64 px, one core: 5.9 s for the
# linear head, 13.3 s for UPerNet), for handing out the longest jobs first
HEAD_EPOCH_COST = {"linear": 1.0, "upernet": 2.25}


def grid_bytes(backbone_path: str, n_images: int, image_size: int) -> int:
    """Bytes of the float16 (N, h, w, D) patch grids of ``n_images`` at ``image_size``."""
    from raddino_lib.models.weights import read_backbone_spec

    if is_pixels(backbone_path):
        return 0
    spec = read_backbone_spec(backbone_path)
    return 2 * n_images * (image_size // spec["patch_size"]) ** 2 * spec["embed_dim"]


def floor_config(encoders: Mapping[str, str]) -> PixelFloorConfig:
    """The pixel floor's config with the patch size of the first real encoder (so the dense grids align)."""
    from raddino_lib.models.weights import read_backbone_spec

    real = [p for p in encoders.values() if not is_pixels(p)]
    return PixelFloorConfig(patch_size=read_backbone_spec(real[0])["patch_size"]) if real else PixelFloorConfig()


def encoder_features(path: str, manifest: str, cache_dir: str | None, image_size: int, batch_size: int = 64,
                     device: str = "cpu", num_workers: int = 0, keep_grid: bool | None = None,
                     n_images: int | None = None, progress: bool = True, keep_layers: bool | None = None,
                     pixel_cfg: PixelFloorConfig | None = None) -> FeatureSet:
    """``extract_features``, or the pixel floor's features when ``path`` is ``PIXELS_SOURCE``.

    keep_grid / keep_layers None: keep the patch grids (and the 4-layer grids of the UPerNet head) when they are
    small (< GRID_CACHE_BYTES), so that the segmentation probe later reuses the same cache file.
    """
    if keep_grid is None or keep_layers is None:
        from raddino_lib.data.manifest import read_manifest

        n = n_images if n_images is not None else len(read_manifest(manifest, check_files=False))
        size = grid_bytes(path, n, image_size)
        keep_grid = bool(cache_dir) and size < GRID_CACHE_BYTES if keep_grid is None else keep_grid
        keep_layers = bool(cache_dir) and N_LAYERS * size < GRID_CACHE_BYTES if keep_layers is None else keep_layers
    if is_pixels(path):
        return pixel_features(manifest, image_size, pixel_cfg or PixelFloorConfig(), cache_dir, keep_grid=keep_grid,
                              keep_layers=keep_layers, num_workers=num_workers)
    return extract_features(path, manifest, cache_dir, image_size, batch_size, device, keep_grid=keep_grid,
                            num_workers=num_workers, progress=progress, keep_layers=keep_layers)


def extract_all(encoders: Mapping[str, str], manifest: str, cache_dir: str | None, image_size: int,
                device: str = "cpu", pixel_cfg: PixelFloorConfig | None = None) -> dict[str, FeatureSet]:
    """``encoder_features`` of every encoder; on a CPU the extractions run side by side, one core each.

    With a cache the workers write the cache files and this process reads back only the CLS and mean patch tokens
    (the patch grids stay on disk for the probes that want them); without one the whole feature sets come back.
    A cached encoder is not extracted again. One pass at 64 px is mostly fixed costs that one thread pays as well
    as two (reading and resizing the images, writing a 300 MB cache of four layers' grids).
    """
    from raddino_lib.data.manifest import read_manifest

    n = len(read_manifest(manifest, check_files=False))
    pixel_cfg = pixel_cfg or floor_config(encoders)
    names = list(encoders)

    def extract(name: str, **levels) -> FeatureSet:
        return encoder_features(encoders[name], manifest, cache_dir, image_size, device=device, progress=False,
                                n_images=n, pixel_cfg=pixel_cfg, **levels)

    def job(name: str) -> FeatureSet | None:
        fs = extract(name)
        return None if cache_dir else fs

    # the raw-pixel floor costs a fraction of a forward pass (a resize and a PCA): the networks go first
    done = map_jobs(job, names, names=names, log=None, device=resolve_device(device),
                    cost=[0.2 if is_pixels(encoders[k]) else 1.0 for k in names])
    if not cache_dir:
        return dict(zip(names, done, strict=True))
    return {name: extract(name, keep_grid=False, keep_layers=False) for name in names}


def estimate_cell(est: Estimate) -> dict[str, float | None]:
    """A results.json cell (value and interval, NaN as None) of a bootstrap estimate."""
    return metric(est.value, est.ci_low, est.ci_high)


def table_frame(table: Mapping[str, Mapping[str, Mapping]]) -> pd.DataFrame:
    """results.json table → DataFrame of "value [lo, hi]" strings (rows = encoders)."""
    def fmt(c: Mapping) -> str:
        if c.get("value") is None:
            return "-"
        ci = "" if c.get("ci_low") is None else f" [{c['ci_low']:.3f}, {c['ci_high']:.3f}]"
        return f"{c['value']:.3f}{ci}"

    return pd.DataFrame({enc: {m: fmt(c) for m, c in cells.items()} for enc, cells in table.items()}).T


def compare_pair(table: Mapping[str, Mapping[str, Mapping]], a: str, b: str, name: str) -> str:
    """One sentence on encoder ``a`` vs ``b`` for metric ``name``, read from the intervals."""
    ca, cb = table[a][name], table[b][name]
    va, vb = ca["value"], cb["value"]
    if None in (va, vb, ca["ci_low"], cb["ci_low"]):
        return f"{a} {name} = {va}, {b} = {vb}: no interval to compare."
    where = (f"**{a}** lies above **{b}**: its 95% interval [{ca['ci_low']:.3f}, {ca['ci_high']:.3f}] is "
             f"entirely above {b}'s [{cb['ci_low']:.3f}, {cb['ci_high']:.3f}]" if ca["ci_low"] > cb["ci_high"] else
             f"**{a}** lies below **{b}**: its 95% interval [{ca['ci_low']:.3f}, {ca['ci_high']:.3f}] is entirely "
             f"below {b}'s [{cb['ci_low']:.3f}, {cb['ci_high']:.3f}]" if ca["ci_high"] < cb["ci_low"] else
             f"the intervals of **{a}** [{ca['ci_low']:.3f}, {ca['ci_high']:.3f}] and **{b}** "
             f"[{cb['ci_low']:.3f}, {cb['ci_high']:.3f}] overlap, so this test set does not resolve the difference")
    return f"{name}: {a} {va:.3f} vs {b} {vb:.3f} ({va - vb:+.3f}); {where}."


def describe(table: Mapping[str, Mapping[str, Mapping]], name: str, chance: float | None = None) -> str:
    """Markdown bullets comparing ssl with random and language (and extras with random) on one metric;
    with ``chance`` (0.5 for AUROC), also which encoders lie above it."""
    pairs = [("ssl", "random"), ("ssl", "language"), ("language", "random"), ("random", "pixels"),
             ("supervised", "ssl")]
    pairs += [(e, "random") for e in table if e not in ("ssl", "random", "language", "pixels", "supervised")]
    lines = [f"- {compare_pair(table, a, b, name)}" for a, b in pairs if a in table and b in table]
    if "ssl" in table and "language" in table and None not in (table["ssl"][name]["ci_low"],
                                                                table["language"][name]["ci_low"]):
        ssl, lang = table["ssl"][name], table["language"][name]
        verdict = ("SSL lies above the language encoder: consistent with RAD-DINO's claim that image-only SSL "
                   "matches or beats language supervision" if ssl["ci_low"] > lang["ci_high"] else
                   "SSL lies below the language encoder: RAD-DINO's claim that image-only SSL matches or beats "
                   "language supervision is not reproduced by this run" if ssl["ci_high"] < lang["ci_low"] else
                   "the intervals overlap: this run neither supports nor contradicts RAD-DINO's claim that "
                   "image-only SSL matches or beats language supervision (more test images would tell)")
        lines.append(f"- {verdict}.")
    if chance is not None:
        above = [e for e, c in table.items() if c[name]["ci_low"] is not None and c[name]["ci_low"] > chance]
        lines.append(f"- Above chance ({chance}) with 95% confidence: {', '.join(above) if above else 'no encoder'}.")
    return "\n".join(lines) or f"- fewer than two encoders: nothing to compare on {name}."


def place_between(table: Mapping[str, Mapping[str, Mapping]], name: str, lower_is_better: bool = False) -> str:
    """Markdown bullets placing each encoder between the floors (pixels, random) and the ceiling (supervised) on
    ``name``: "better than" / "worse than" = disjoint 95% intervals, "level with" = overlapping ones."""
    from raddino_lib.claims import interval

    def relation(a: Mapping, b: Mapping) -> str:
        ia, ib = interval(a), interval(b)
        if ia is None or ib is None:
            return "not comparable with"
        above, below = ia[1] > ib[2], ia[2] < ib[1]
        if lower_is_better:
            above, below = below, above
        return "better than" if above else "worse than" if below else "level with"

    def fmt(row: str) -> str:
        c = table[row][name]
        return f"{row} {c['value']:.3f}" if c.get("value") is not None else f"{row} –"

    bounds = [r for r in ("pixels", "random", "supervised") if r in table and name in table[r]]
    lines = []
    for enc in (e for e in table if e not in ("pixels", "random", "supervised") and name in table[e]):
        parts = [f"{relation(table[enc][name], table[b][name])} {fmt(b)}" for b in bounds]
        lines.append(f"- {name}: {fmt(enc)} is " + ", ".join(parts) + ".")
    if {"pixels", "supervised"} <= set(bounds) and relation(table["supervised"][name], table["pixels"][name]) \
            != "better than":
        lines.append(f"- The ceiling does not clear the raw-pixel floor on {name}: this measure cannot rank encoders.")
    return "\n".join(lines) or f"- no floor or ceiling row for {name}."


def manifest_findings(df: pd.DataFrame, findings: Sequence[str] | None = None) -> list[str]:
    """Findings with at least one known label; explicit ``findings`` must all have label columns with values."""
    if findings is None:
        return [f for f in FINDINGS if label_column(f) in df.columns and df[label_column(f)].notna().any()]
    for f in findings:
        if label_column(f) not in df.columns or not df[label_column(f)].notna().any():
            raise KeyError(f"manifest has no values in column '{label_column(f)}' for finding '{f}' "
                           f"(known findings: {', '.join(FINDINGS)})")
    return list(findings)


@dataclass
class ClassificationComparison:
    table: dict[str, dict[str, dict]]  # encoder -> "<probe>_macro_auroc|auprc" -> metric cell
    per_label: pd.DataFrame  # long: encoder, probe, finding, auroc(+ci), auprc(+ci), ...
    skipped: dict[str, str] = field(default_factory=dict)  # finding -> reason (same for every encoder)

    def per_label_of(self, probe: str = "cls") -> dict[str, pd.DataFrame]:
        """encoder -> per-finding table of one probe (for plot_label_metric)."""
        df = self.per_label[self.per_label["probe"] == probe]
        return {enc: part.reset_index(drop=True) for enc, part in df.groupby("encoder", sort=False)}

    def per_label_results(self) -> dict:
        """encoder -> probe -> finding -> {"auroc": cell, "auprc": cell} (for results.json)."""
        out: dict = {}
        for r in self.per_label.itertuples():
            out.setdefault(r.encoder, {}).setdefault(r.probe, {})[r.finding] = {
                "auroc": metric(r.auroc, r.auroc_ci_low, r.auroc_ci_high),
                "auprc": metric(r.auprc, r.auprc_ci_low, r.auprc_ci_high)}
        return out


def compare_classification(encoders: Mapping[str, str], manifest: str, cache_dir: str | None, image_size: int,
                           n_boot: int = 1000, seed: int = 0, device: str = "cpu",
                           findings: Sequence[str] | None = None, cs: Sequence[float] = DEFAULT_CS,
                           batch_size: int = 64, num_workers: int = 0, keep_grid: bool | None = None,
                           log: Callable[[str], None] = print) -> ClassificationComparison:
    """Linear (CLS, CLS+mean patch) and kNN probes of every encoder over the manifest's findings.

    keep_grid: also cache the patch grids (the segmentation probe then reuses the extraction); None = only when
    they are small (< GRID_CACHE_BYTES).
    """
    from raddino_lib.data.manifest import label_matrix, read_manifest

    df = read_manifest(manifest, check_files=False)
    names = manifest_findings(df, findings)
    labels, splits, pids = label_matrix(df, names), df["split"].to_numpy(), df["patient_id"].to_numpy()
    table, rows, skipped = {}, [], {}
    pixel_cfg = floor_config(encoders)

    def job(enc: str) -> tuple[dict, list[pd.DataFrame], dict]:
        """Every probe of one encoder: (table cells, per-label frames, skipped findings)."""
        fs = encoder_features(encoders[enc], manifest, cache_dir, image_size, batch_size, device, num_workers,
                              keep_grid, n_images=len(df), pixel_cfg=pixel_cfg)
        cells, frames, skipped = {}, [], {}
        for probe, (kind, feats) in CLASSIFICATION_PROBES.items():
            x = fs.features(feats)
            res = (linear_probe(x, labels, splits, pids, names, cs, n_boot, seed) if kind == "linear"
                   else knn_probe(x, labels, splits, pids, names, n_boot=n_boot, seed=seed))
            cells[f"{probe}_macro_auroc"] = estimate_cell(res.macro_auroc)
            cells[f"{probe}_macro_auprc"] = estimate_cell(res.macro_auprc)
            frames.append(res.per_label.assign(encoder=enc, probe=probe))
            skipped = res.skipped
        return cells, frames, skipped

    # every encoder is an independent job: on a CPU they run side by side, one core each
    order = list(encoders)
    done = map_jobs(job, order, names=order, log=None, device=resolve_device(device))
    for enc, (cells, frames, skipped_here) in zip(order, done, strict=True):
        table[enc], skipped = cells, skipped_here  # the same findings are skipped for every encoder
        rows.extend(frames)
        log(f"{enc}: cls macro AUROC {cells['cls_macro_auroc']['value']:.3f}, "
            f"kNN {cells['knn_macro_auroc']['value']:.3f}")
    front = ["encoder", "probe", "finding"]
    per_label = pd.concat(rows, ignore_index=True)
    return ClassificationComparison(table, per_label[front + [c for c in per_label if c not in front]], skipped)


# ===== segmentation =====

@dataclass
class SegmentationComparison:
    table: dict[str, dict[str, dict]]  # encoder -> "dice_mean[_upernet]" / "dice_<structure>[_upernet]" -> cell
    per_structure: dict[str, dict[str, pd.DataFrame]]  # head -> encoder -> structure, dice(+ci), n_images
    structures: list[str]
    images: np.ndarray  # (n, H, W) first test images, for overlays
    truth: np.ndarray  # (n, S, H, W)
    predictions: dict[str, dict[str, np.ndarray]]  # head -> encoder -> (n, S, H, W) probabilities
    heads: list[str] = field(default_factory=list)


HEAD_SUFFIX = {"linear": "", "upernet": "_upernet"}  # metric name suffix per head ("dice_mean_upernet")


def group_means(res, structures: Sequence[str], pids: np.ndarray, n_boot: int, seed: int) -> dict[str, dict]:
    """Mean Dice over the anatomy and over the findings' structures (bootstrapped jointly), when present."""
    out = {}
    for name, keep in (("anatomy", [not is_finding(s) for s in structures]),
                       ("findings", [is_finding(s) for s in structures])):
        cols = np.flatnonzero(keep)
        if len(cols) and np.isfinite(res.dice[:, cols]).any():
            est = patient_bootstrap(mean_over_structures, [res.dice[:, cols]], pids[res.test_index], n_boot,
                                    seed=seed)
            out[f"dice_{name}_mean"] = estimate_cell(est)
    return out


def compare_segmentation(encoders: Mapping[str, str], manifest: str, cache_dir: str | None, image_size: int,
                         epochs: int = 5, n_boot: int = 1000, seed: int = 0, device: str = "cpu",
                         structures: Sequence[str] | None = None, batch_size: int = 64, num_workers: int = 0,
                         keep_predictions: int = 4, heads: Sequence[str] = ("linear",), upernet_epochs: int = 0,
                         log: Callable[[str], None] = print) -> SegmentationComparison:
    """Segmentation heads per encoder on its frozen tokens; test Dice per structure and head.

    ``heads``: "linear" (1x1 conv on the last layer, ``epochs``) and/or "upernet" (decoder on 4 layers,
    ``upernet_epochs``, 0 = ``epochs``). Structures: every mask column with masks in train and test.
    """
    from raddino_lib.data.manifest import read_manifest

    df = read_manifest(manifest)
    names = mask_structures(df, structures)
    if not names:
        raise ValueError(f"{manifest}: no mask column has masks in both train and test; nothing to segment")
    masks, images = load_masks(df, names, image_size, num_workers)
    splits, pids = df["split"].to_numpy(), df["patient_id"].to_numpy()
    pixel_cfg = floor_config(encoders)
    result = SegmentationComparison({}, {h: {} for h in heads}, names, np.zeros(0), np.zeros(0),
                                    {h: {} for h in heads}, list(heads))

    def job(enc_head: tuple[str, str]) -> tuple[dict, pd.DataFrame, np.ndarray | None, float]:
        """One head on one encoder's frozen tokens: (table cells, per-structure table, predictions, mean Dice).
        Both heads of an encoder ask for the same cache level, so that they read one cache file."""
        enc, head = enc_head
        fs = encoder_features(encoders[enc], manifest, cache_dir, image_size, batch_size, device, num_workers,
                              keep_grid=True, keep_layers="upernet" in heads, pixel_cfg=pixel_cfg)
        cfg = SegConfig(epochs=head_epochs[head], head=head, seed=seed, device=device)
        tokens = fs.layers if head == "upernet" else fs.grid
        res = segmentation_probe(tokens, masks, splits, pids, names, cfg, n_boot, seed, keep_predictions)
        cells = {"dice_mean": estimate_cell(res.dice_mean), **group_means(res, names, pids, n_boot, seed)}
        cells.update({f"dice_{r.structure}": metric(r.dice, r.dice_ci_low, r.dice_ci_high)
                      for r in res.table.itertuples()})
        return cells, res.table, res.predictions, res.dice_mean.value

    # every (encoder, head) is an independent job: on a CPU they run side by side, one core each, longest first
    head_epochs = {h: (upernet_epochs or epochs) if h == "upernet" else epochs for h in heads}
    jobs = [(enc, head) for enc in encoders for head in heads]
    done = map_jobs(job, jobs, names=[f"{e} ({h})" for e, h in jobs], log=None, device=resolve_device(device),
                    cost=[head_epochs[h] * HEAD_EPOCH_COST.get(h, 1.0) for _, h in jobs])
    for (enc, head), (cells, table, predictions, mean) in zip(jobs, done, strict=True):
        result.table.setdefault(enc, {}).update({k + HEAD_SUFFIX[head]: v for k, v in cells.items()})
        result.per_structure[head][enc], result.predictions[head][enc] = table, predictions
        log(f"{enc} ({head}): mean Dice {mean:.3f}")
    test = np.flatnonzero(splits == "test")[:keep_predictions]
    result.images, result.truth = images[test], masks[test]
    return result
