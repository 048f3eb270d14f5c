"""COLIPRI's ablation: which objectives make a better 3D encoder, and do they help most when reports are scarce?

Arms cross three objective sets — contrastive only (a CT-CLIP-like baseline), + report generation, + vision-only
masked modelling (the full COLIPRI recipe) — with the share of training volumes that keep their report (e.g. 25%
and 100%; the other volumes are image-only, used only by the masked-modelling objective). Every arm has the same
encoder, steps, batch and seed, and is evaluated the same way (``probe.colipri``). Each arm's record is
``ROOT/<arm>/arm.json``; an arm whose record matches its settings is read back instead of retrained.

References beside the arms: the same untrained Primus probed linearly (the floor of a 3D encoder), a small 3D
CNN trained end to end on the labels (the ceiling at this data size), chance for zero-shot AUROC (0.5) and for
retrieval (k / N), and the most frequent training report for generation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from raddino_lib import atomic
from raddino_lib.data.schema import CT_FINDINGS, label_column
from raddino_lib.probe import colipri as ev
from raddino_lib.probe.ct_difficulty import auroc_summary, cnn_scores, usable_findings
from raddino_lib.probe.report_generation import most_frequent_report
from raddino_lib.train.colipri import COLIPRIConfig, Tokenizers, build_model, build_tokenizers, load_run, train_colipri

OBJECTIVE_SETS: dict[str, tuple[str, ...]] = {
    "contrastive": ("contrastive",),
    "+generation": ("contrastive", "generation"),
    "+vision": ("contrastive", "generation", "mim"),
}
SET_LABELS = {"contrastive": "contrastive only (CT-CLIP-like)", "+generation": "+ report generation",
              "+vision": "+ vision-only (COLIPRI)"}
RECORD = "arm.json"


@dataclass(frozen=True)
class ColipriArm:
    objectives: str  # an OBJECTIVE_SETS key
    paired_fraction: float  # share of training volumes with their report

    @property
    def name(self) -> str:
        return f"{self.objectives} @ {self.paired_fraction:.0%} reports"

    @property
    def slug(self) -> str:
        return f"{self.objectives.strip('+')}_{round(100 * self.paired_fraction)}pct"

    def config(self, base: COLIPRIConfig, root: Path) -> COLIPRIConfig:
        used = OBJECTIVE_SETS[self.objectives]
        weights = {o: (getattr(base, o) or 1.0) if o in used else 0.0 for o in ("contrastive", "generation", "mim")}
        # the base config's weight of each objective the arm uses (1 where the base switched it off)
        return dataclasses.replace(base, out_dir=str(root / self.slug), paired_fraction=self.paired_fraction,
                                   **weights)


def build_arms(fractions: Sequence[float] = (0.25, 1.0), sets: Sequence[str] = tuple(OBJECTIVE_SETS)
               ) -> list[ColipriArm]:
    unknown = [s for s in sets if s not in OBJECTIVE_SETS]
    if unknown:
        raise ValueError(f"unknown objective sets {unknown}; choose from {list(OBJECTIVE_SETS)}")
    if not fractions or any(not 0 < f <= 1 for f in fractions):
        raise ValueError(f"paired fractions {list(fractions)} must be in (0, 1]")
    return [ColipriArm(s, float(f)) for f in sorted(fractions) for s in sets]


def parse_fractions(text: str) -> list[float]:
    """"25%,100%" or "0.25,1" → [0.25, 1.0]."""
    out = []
    for part in (p.strip() for p in str(text).split(",") if p.strip()):
        out.append(float(part[:-1]) / 100 if part.endswith("%") else float(part))
    return out


@dataclass
class EvalSettings:
    n_boot: int = 200
    max_new_tokens: int = 160  # longest generated report, in decoder tokens
    n_examples: int = 4  # test volumes whose generated and retrieved reports are kept in the record
    seg_epochs: int = 3  # epochs of the segmentation probe's head (0 = no segmentation probe)
    seed: int = 0
    device: str = "cpu"


@dataclass
class Data:
    """The manifest, its preprocessed volumes and the arrays every evaluation needs."""
    df: pd.DataFrame
    volumes: torch.Tensor
    labels: np.ndarray  # (N, 18) bool ground truth
    train: np.ndarray  # (N,) bool
    test: np.ndarray
    usable: list[int]  # findings with positives and negatives in train and test
    groups: np.ndarray  # (N,) identical reports share an id
    targets: torch.Tensor | None = None  # (N, D, H, W) structure classes for the segmentation probe

    @classmethod
    def from_frame(cls, df: pd.DataFrame, volumes: torch.Tensor, targets: torch.Tensor | None = None) -> Data:
        labels = np.stack([df[label_column(f)].to_numpy(dtype=float) == 1 for f in CT_FINDINGS], 1)
        train, test = (df["split"] == "train").to_numpy().copy(), (df["split"] == "test").to_numpy().copy()
        usable = usable_findings(labels, train, test)
        if not test.any() or not usable:
            raise ValueError("the manifest needs a test split with positive and negative cases of some finding")
        return cls(df, volumes, labels, train, test, usable, pd.factorize(df["report"])[0], targets)

    @property
    def test_pids(self) -> np.ndarray:
        return self.df.loc[self.test, "patient_id"].to_numpy()


def evaluate(model, tok: Tokenizers, data: Data, ev_cfg: EvalSettings) -> dict:
    """Every metric of one model (trained or not) on the test split, with intervals and a few examples."""
    emb = ev.encode_volumes(model, data.volumes, device=ev_cfg.device)
    reports = data.df["report"].tolist()
    te = np.flatnonzero(data.test)
    text = ev.encode_texts(model, tok.text, [reports[i] for i in te], device=ev_cfg.device)
    neg, pos = ev.prompt_embeddings(model, tok.text, device=ev_cfg.device)
    zs = ev.zero_shot_scores(emb.embedding[te], neg, pos)
    pids = data.test_pids
    generation, generated = {}, [""] * len(te)
    if model.decoder is not None:  # only arms trained to write reports have a decoder
        metrics, generated = ev.generation_eval(model, tok.decoder, emb.prefix[te], [reports[i] for i in te],
                                                data.labels[te], pids, ev_cfg.max_new_tokens, ev_cfg.n_boot,
                                                ev_cfg.seed, ev_cfg.device)
        generation = {k: v.as_dict() for k, v in metrics.items()}
    retrieved = (text @ emb.embedding[te].T).argmax(0)  # each test volume's best-matching test report
    examples = [{"row": int(i), "image_id": str(data.df.loc[i, "image_id"]), "reference": reports[i],
                 "generated": generated[k], "retrieved": reports[te[retrieved[k]]]}
                for k, i in enumerate(te[: ev_cfg.n_examples])]
    segmentation = {}
    if data.targets is not None and ev_cfg.seg_epochs > 0:
        segmentation = ev.segmentation_eval(model, data.volumes, data.targets, data.train, data.test, pids,
                                            epochs=ev_cfg.seg_epochs, n_boot=ev_cfg.n_boot, seed=ev_cfg.seed,
                                            device=ev_cfg.device)
    return {
        "segmentation": segmentation,
        "zero_shot": ev.zero_shot_eval(zs, data.labels[te], data.usable, pids, ev_cfg.n_boot, ev_cfg.seed),
        "zero_shot_scores": zs[: ev_cfg.n_examples].tolist(),
        "retrieval": ev.retrieval_eval(emb.embedding[te], text, data.groups[te], pids, n_boot=ev_cfg.n_boot,
                                       seed=ev_cfg.seed),
        "linear_probe": ev.linear_probe_eval(emb.features, data.labels, data.train, data.test, data.usable,
                                             pids, ev_cfg.n_boot, ev_cfg.seed),
        "generation": generation,
        "examples": examples,
    }


def _digest(cfg: COLIPRIConfig, ev_cfg: EvalSettings) -> str:
    keep = {k: v for k, v in asdict(cfg).items() if k not in ("device", "out_dir")}
    keep["eval"] = {k: v for k, v in asdict(ev_cfg).items() if k != "device"}
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


def run_arm(arm: ColipriArm, base: COLIPRIConfig, data: Data, root: str | Path, ev_cfg: EvalSettings,
            rerun: bool = False, progress: bool = True, log=print) -> dict:
    """Train (or resume) one arm, evaluate it, write and return its record."""
    cfg = arm.config(base, Path(root))
    record_path = Path(cfg.out_dir) / RECORD
    digest = _digest(cfg, ev_cfg)
    if not rerun and record_path.is_file():
        record = json.loads(record_path.read_text())
        if record.get("digest") == digest:
            return record
    if rerun and Path(cfg.out_dir).exists():
        import shutil

        shutil.rmtree(cfg.out_dir)
    result = train_colipri(cfg, data.volumes, progress=progress, log=log)
    model, tok, _ = load_run(cfg.out_dir, ev_cfg.device)
    metrics = pd.read_csv(result.metrics_path)
    record = {"arm": arm.name, "objectives": arm.objectives, "paired_fraction": arm.paired_fraction,
              "digest": digest, "out_dir": str(cfg.out_dir), "encoder": str(result.encoder_dir),
              "n_paired": result.n_paired, "n_image_only": result.n_image_only, "train_seconds": result.seconds,
              "final_losses": {c: float(metrics[c].tail(10).mean()) for c in metrics.columns if c.endswith("_loss")},
              "temperature": float(metrics["temperature"].iloc[-1]),
              **evaluate(model, tok, data, ev_cfg)}
    atomic.write_json(record_path, record)
    return record


def run_arms(arms: Sequence[ColipriArm], base: COLIPRIConfig, data: Data, root: str | Path, ev_cfg: EvalSettings,
             workers: int = 0, log=print) -> list[dict]:
    """``run_arm`` for every arm, in order; on a CPU side by side, one core each (``parallel.map_jobs``).

    Each arm seeds every part of itself (``train.colipri.SEED_OFFSETS``), so its record does not depend on which
    arms ran beside it.
    """
    from raddino_lib.device import resolve_device
    from raddino_lib.parallel import map_jobs

    def job(arm: ColipriArm) -> dict:
        return run_arm(arm, base, data, root, ev_cfg, progress=False, log=lambda *_: None)

    return map_jobs(job, list(arms), workers, names=[a.name for a in arms], log=log,
                    device=resolve_device(ev_cfg.device),
                    cost=[relative_cost(a.config(base, Path(root))) for a in arms])


def relative_cost(cfg: COLIPRIConfig) -> float:
    """A rough training cost of one arm, for handing out the longest arms first.

    Per step: each volume with its report costs one contrastive pass, and as much again with the report decoder;
    an image-only volume half of that; masked image modelling 0.3 per volume. (cpu profile, 200 steps of 16: 66 s
    contrastive only, 125 s with generation, 83 s and 146 s with everything at 25% and 100% of the reports.)
    """
    both = cfg.mim > 0 and cfg.paired_fraction < 1  # then batches mix paired and image-only volumes
    paired = round(cfg.batch_size * cfg.batch_paired) if both else cfg.batch_size
    per_paired = 1.0 + (cfg.generation > 0)
    return cfg.steps * (paired * per_paired + 0.5 * (cfg.batch_size - paired) + 0.3 * cfg.batch_size * (cfg.mim > 0))


def reference_rows(base: COLIPRIConfig, data: Data, ev_cfg: EvalSettings, cnn_epochs: int = 6) -> dict:
    """{"random_init": evaluate() of the untrained towers, "supervised_cnn3d": its test macro AUROC summary,
    "most_frequent_report": generation metrics of always writing the commonest training report}."""
    reports = data.df["report"].tolist()
    paired = [reports[i] for i in np.flatnonzero(data.train) if reports[i].strip()]
    cfg = dataclasses.replace(base, contrastive=1.0, generation=0.0, mim=0.0)
    tok = build_tokenizers(cfg, paired)
    random_record = evaluate(build_model(cfg, tok), tok, data, ev_cfg)
    cnn = cnn_scores(data.volumes, data.labels.astype(np.float32), data.train, data.test, cnn_epochs, ev_cfg.seed,
                     ev_cfg.device)
    te = np.flatnonzero(data.test)
    common = most_frequent_report(paired)
    frequent = ev.report_metrics([common] * len(te), [reports[i] for i in te], data.labels[te], data.test_pids,
                                 ev_cfg.n_boot, ev_cfg.seed)
    return {"random_init": random_record,
            "supervised_cnn3d": auroc_summary(cnn, data.labels[te], data.usable, data.test_pids, ev_cfg.n_boot,
                                              ev_cfg.seed),
            "most_frequent_report": {k: v.as_dict() for k, v in frequent.items()}}


# ===== the table =====

COLUMNS: dict[str, tuple[str, ...]] = {
    "zero-shot AUROC": ("zero_shot", "macro_auroc"),
    "image→report R@5": ("retrieval", "image_to_report", "R@5"),
    "report→image R@5": ("retrieval", "report_to_image", "R@5"),
    "linear-probe AUROC": ("linear_probe", "macro_auroc"),
    "Dice (mean of structures)": ("segmentation", "mean"),
    "BLEU-4": ("generation", "bleu4"),
    "ROUGE-L": ("generation", "rouge_l"),
    "clinical F1 (macro, vs truth)": ("generation", "clinical_f1_macro_gt"),
}


def _get(record: dict, path: tuple[str, ...]) -> dict | None:
    for key in path:
        if not isinstance(record, dict) or key not in record:
            return None
        record = record[key]
    return record if isinstance(record, dict) and "value" in record else None


def results_frame(records: Sequence[dict], references: dict) -> pd.DataFrame:
    """Long frame: row, kind (arm | floor | ceiling | chance), metric, value, ci_low, ci_high."""
    rows = []
    for r in records:
        for metric, path in COLUMNS.items():
            est = _get(r, path)
            if est:
                rows.append({"row": r["arm"], "kind": "arm", "metric": metric, **est})
    for name, kind, record in (("random init", "floor", references.get("random_init", {})),
                               ("most frequent report", "floor", {"generation": references.get(
                                   "most_frequent_report", {})}),
                               ("supervised 3D CNN", "ceiling", {"linear_probe": references.get(
                                   "supervised_cnn3d", {})})):
        for metric, path in COLUMNS.items():
            est = _get(record, path)
            if est:
                rows.append({"row": name, "kind": kind, "metric": metric, **est})
    n = next((r["retrieval"]["n"] for r in records), None)
    if n:
        for metric in ("image→report R@5", "report→image R@5"):
            rows.append({"row": "chance", "kind": "chance", "metric": metric, "value": min(1.0, 5 / n),
                         "ci_low": None, "ci_high": None})
    rows.append({"row": "chance", "kind": "chance", "metric": "zero-shot AUROC", "value": 0.5, "ci_low": None,
                 "ci_high": None})
    return pd.DataFrame(rows)


def results_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows × metrics, each cell "value [low, high]"."""
    def cell(r) -> str:
        if r["ci_low"] is None or pd.isna(r["ci_low"]):
            return f"{r['value']:.3f}"
        return f"{r['value']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"

    frame = frame.assign(cell=frame.apply(cell, axis=1))
    order = list(dict.fromkeys(frame["row"]))
    table = frame.pivot(index="row", columns="metric", values="cell").reindex(order)
    return table[[c for c in COLUMNS if c in table.columns]].fillna("–")


def above_chance(record: dict) -> dict[str, bool]:
    """Whether the zero-shot macro AUROC and both retrieval R@5 intervals exclude chance."""
    out = {}
    zs = _get(record, COLUMNS["zero-shot AUROC"])
    out["zero-shot AUROC"] = bool(zs and zs["ci_low"] > 0.5)
    chance = record["retrieval"]["chance"]["R@5"]
    for metric in ("image→report R@5", "report→image R@5"):
        est = _get(record, COLUMNS[metric])
        out[metric] = bool(est and est["ci_low"] > chance)
    return out


def objective_gains(records: Sequence[dict], metric: str = "linear-probe AUROC") -> pd.DataFrame:
    """Per paired fraction, each objective set's value and whether its interval clears the previous set's."""
    rows = []
    for fraction in sorted({r["paired_fraction"] for r in records}):
        previous = None
        for key in OBJECTIVE_SETS:
            r = next((x for x in records if x["paired_fraction"] == fraction and x["objectives"] == key), None)
            est = _get(r, COLUMNS[metric]) if r else None
            if est is None:
                continue
            verdict = "–" if previous is None else (
                "better" if est["ci_low"] > previous["ci_high"] else
                "worse" if est["ci_high"] < previous["ci_low"] else "overlapping")
            rows.append({"reports": f"{fraction:.0%}", "objectives": SET_LABELS[key], metric: est["value"],
                         "vs previous row": verdict})
            previous = est
    return pd.DataFrame(rows)


def results_dict(frame: pd.DataFrame) -> dict[str, dict[str, dict]]:
    """row -> metric -> {"value", "ci_low", "ci_high"}: the ``table`` of results.json."""
    out: dict[str, dict[str, dict]] = {}
    for r in frame.to_dict(orient="records"):
        lo, hi = r["ci_low"], r["ci_high"]
        out.setdefault(r["row"], {})[r["metric"]] = {
            "value": float(r["value"]), "ci_low": None if lo is None or pd.isna(lo) else float(lo),
            "ci_high": None if hi is None or pd.isna(hi) else float(hi)}
    return out
