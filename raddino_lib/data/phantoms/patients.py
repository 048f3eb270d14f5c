"""One case = one phantom image's ground truth: patient factors and findings.

Patient factors (age, sex, BMI, view, site) change the anatomy and the
acquisition but never enter the report. Findings carry a laterality and a
severity that both the drawing and the report use.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from raddino_lib.data.phantoms import knobs as K
from raddino_lib.data.schema import CXR14_FINDINGS

SIDES = ("right", "left", "bilateral")  # the patient's side (right = image left on PA and AP)
SEVERITIES = (1, 2, 3)  # mild, moderate, severe
SITE_NAMES = ("site_a", "site_b", "site_c", "site_d")
SITE_WEIGHTS = (0.40, 0.30, 0.20, 0.10)
DEVICES = ("ett", "central_line", "ng_tube", "pacemaker", "chest_tube")
CHEST_TUBE_WITH_PNEUMOTHORAX = 0.3  # share of pneumothoraces already drained when filmed


@dataclass(frozen=True)
class Lesion:
    side: str  # one of SIDES
    severity: int  # one of SEVERITIES


@dataclass
class Case:
    age: float  # years, 18..95
    sex: str  # "M" | "F"
    bmi: float  # kg/m², 16..45
    view: str  # "PA" | "AP"
    site: str  # one of SITE_NAMES
    findings: dict[str, Lesion] = field(default_factory=dict)  # CXR14 finding → lesion
    devices: tuple[str, ...] = ()  # subset of DEVICES; non-empty ⇔ "Support Devices"

    def labels(self) -> dict[str, int]:
        """All 16 labels (FINDINGS order) as 0/1."""
        out = {f: int(f in self.findings) for f in CXR14_FINDINGS}
        out["No Finding"] = int(not self.findings)
        out["Support Devices"] = int(bool(self.devices))
        return out


def sample_case(rng: np.random.Generator, balanced: bool, knobs: K.PhantomKnobs) -> Case:
    """Draw patient factors, then findings with ChestX-ray14 (or balanced) statistics."""
    age = _truncated_normal(rng, K.AGE_MEAN, K.AGE_SD, *K.AGE_RANGE)
    sex = "M" if rng.random() < K.MALE_FRACTION else "F"
    bmi = float(np.clip(rng.lognormal(np.log(26.5), 0.18), 16.0, 45.0))
    view = "AP" if rng.random() < K.AP_FRACTION else "PA"
    sites = np.asarray(SITE_WEIGHTS[: knobs.sites])
    site = SITE_NAMES[int(rng.choice(len(sites), p=sites / sites.sum()))]
    findings = {name: _lesion(rng, name) for name in _sample_findings(rng, balanced)}
    p_dev = knobs.support_devices_ap if view == "AP" else knobs.support_devices_pa
    if balanced:
        p_dev = max(p_dev, 0.2)
    devices: tuple[str, ...] = ()
    if rng.random() < p_dev:
        k = 1 + int(rng.random() < 0.35)
        devices = tuple(sorted(rng.choice(DEVICES, size=k, replace=False).tolist()))
    if "Pneumothorax" in findings and "chest_tube" not in devices and rng.random() < CHEST_TUBE_WITH_PNEUMOTHORAX:
        devices = tuple(sorted((*devices, "chest_tube")))
    return Case(age=round(age, 1), sex=sex, bmi=round(bmi, 1), view=view, site=site, findings=findings,
                devices=devices)


def _truncated_normal(rng: np.random.Generator, mean: float, sd: float, lo: float, hi: float) -> float:
    for _ in range(100):
        x = rng.normal(mean, sd)
        if lo <= x <= hi:
            return float(x)
    return float(np.clip(mean, lo, hi))


# Weights for sampling k distinct findings. Sampling without replacement inflates rare findings; raising the
# prevalences to the power 1.15 compensates (marginals within ~0.5 points of CXR14, see tests/test_phantoms.py).
def _finding_weights() -> np.ndarray:
    return np.array([K.CXR14_PREVALENCE[f] for f in CXR14_FINDINGS]) ** 1.15


_WEIGHTS = _finding_weights()
# P(k findings | abnormal): labels per image with the "No Finding" share of 1-label images removed.
_ABNORMAL_K = {k: p - (K.CXR14_NO_FINDING if k == 1 else 0.0) for k, p in K.CXR14_LABELS_PER_IMAGE.items()}


def _sample_findings(rng: np.random.Generator, balanced: bool) -> list[str]:
    if balanced:
        if rng.random() >= K.BALANCED_ABNORMAL:
            return []
        ks, ps = zip(*K.BALANCED_FINDINGS_PER_IMAGE.items(), strict=True)
        weights = np.ones(len(CXR14_FINDINGS))
    else:
        if rng.random() < K.CXR14_NO_FINDING:
            return []
        ks, ps = zip(*_ABNORMAL_K.items(), strict=True)
        weights = _WEIGHTS
    ps = np.asarray(ps) / np.sum(ps)
    k = int(ks[int(rng.choice(len(ks), p=ps))])
    idx = rng.choice(len(CXR14_FINDINGS), size=k, replace=False, p=weights / weights.sum())
    return sorted(CXR14_FINDINGS[i] for i in idx)


def _lesion(rng: np.random.Generator, name: str) -> Lesion:
    severity = int(rng.choice(SEVERITIES, p=(0.45, 0.35, 0.20)))
    if name in K.CENTRAL_FINDINGS:
        return Lesion("bilateral", severity)
    p_bilateral = {"Infiltration": 0.3, "Effusion": 0.3, "Fibrosis": 0.7, "Atelectasis": 0.2}.get(name, 0.08)
    if rng.random() < p_bilateral:
        return Lesion("bilateral", severity)
    return Lesion("right" if rng.random() < 0.55 else "left", severity)
