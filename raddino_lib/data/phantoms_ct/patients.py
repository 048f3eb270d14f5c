"""One case = one CT phantom's ground truth: patient factors and findings, each with its details.

Patient factors (age, sex, BMI, site) shape the anatomy, the acquisition and the chance of each finding, but
never enter the report. Each finding carries a severity (1 mild, 2 moderate, 3 severe), a side where it has one,
and the details both the drawing and the report use (lobes, lymph-node stations, sizes in mm, device kinds), so
the text and the pixels agree.

Finding probabilities follow a logistic model: log-odds = intercept + patient effects (knobs.AGE_EFFECT, ...)
+ loading × a latent "burden" shared by all findings of a patient (abnormalities cluster in real patients). The
intercepts are calibrated by quadrature so each marginal prevalence is the configured one, and the loading so
that the share of scans without any finding matches CT-RATE's 11.2%.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
from scipy.special import expit
from scipy.stats import norm

from raddino_lib.data.phantoms_ct import knobs as K
from raddino_lib.data.schema import CT_FINDINGS

SITE_NAMES: tuple[str, ...] = ("site_a", "site_b", "site_c")
SITE_WEIGHTS: tuple[float, ...] = (0.615, 0.301, 0.084)
LOBES: dict[str, tuple[str, ...]] = {"right": ("RUL", "RML", "RLL"), "left": ("LUL", "LLL")}
LN_STATIONS: dict[str, tuple[str, ...]] = {
    "central": ("right paratracheal", "subcarinal", "prevascular", "aortopulmonary window"),
    "right": ("right hilar", "right axillary"), "left": ("left hilar", "left axillary"),
}
DEVICES: tuple[str, ...] = ("pacemaker", "port catheter", "sternotomy wires", "nasogastric tube", "surgical clips")
SEVERITY_PROBS = (0.45, 0.35, 0.20)


@dataclass(frozen=True)
class Finding:
    name: str
    severity: int  # 1 mild, 2 moderate, 3 severe
    side: str = ""  # "right" | "left" | "bilateral" | "" (central or diffuse)
    where: tuple[str, ...] = ()  # lobes, lymph-node stations or device kinds
    sizes_mm: tuple[float, ...] = ()  # per item of ``where`` (nodule diameter, node short axis) or one extent


@dataclass
class Case:
    age: float  # years
    sex: str  # "M" | "F"
    bmi: float  # kg/m²
    site: str  # one of SITE_NAMES
    burden: float  # latent disease burden shared by the findings (not in the manifest)
    findings: dict[str, Finding] = field(default_factory=dict)

    def labels(self) -> dict[str, int]:
        """All 18 CT-RATE labels as 0/1."""
        return {f: int(f in self.findings) for f in CT_FINDINGS}


def sample_case(rng: np.random.Generator, balanced: bool, knobs: K.CTPhantomKnobs) -> Case:
    """Draw the patient, then each finding with probability given the patient, then its details."""
    age = float(np.clip(_truncnorm(rng, K.AGE_MEAN, K.AGE_SD, *K.AGE_RANGE), *K.AGE_RANGE))
    male = rng.random() < K.MALE_FRACTION
    bmi = float(np.clip(rng.lognormal(K.BMI_LOG_MEAN, K.BMI_LOG_SD), *K.BMI_RANGE))
    weights = np.asarray(SITE_WEIGHTS[: knobs.sites])
    site = SITE_NAMES[int(rng.choice(len(weights), p=weights / weights.sum()))]
    burden = float(rng.standard_normal())
    model = finding_model(tuple(sorted(knobs.targets(balanced).items())))
    p = model.probabilities(_std_age(age), float(male), _std_bmi(bmi), burden)
    present = rng.random(len(CT_FINDINGS)) < p
    findings = {f: _details(rng, f, _std_age(age)) for f, yes in zip(CT_FINDINGS, present, strict=True) if yes}
    return Case(age=round(age, 1), sex="M" if male else "F", bmi=round(bmi, 1), site=site, burden=burden,
                findings=findings)


def _truncnorm(rng: np.random.Generator, mean: float, sd: float, lo: float, hi: float) -> float:
    for _ in range(100):
        x = rng.normal(mean, sd)
        if lo <= x <= hi:
            return float(x)
    return mean


def _std_age(age: float) -> float:
    return (age - K.AGE_MEAN) / K.AGE_SD


def _std_bmi(bmi: float) -> float:
    return (np.log(bmi) - K.BMI_LOG_MEAN) / K.BMI_LOG_SD


# ----------------------------------------------------------------------------- the finding model


@dataclass(frozen=True)
class FindingModel:
    intercepts: np.ndarray  # (F,) log-odds at mean age and BMI, sex centred, burden 0
    loading: float  # log-odds per SD of the latent burden, shared by all findings

    def probabilities(self, age_z: float, male: float, bmi_z: float, burden: float) -> np.ndarray:
        return expit(self.intercepts + _effects(age_z, male, bmi_z) + self.loading * burden)


def _effects(age_z, male, bmi_z) -> np.ndarray:
    """Patient log-odds terms, broadcast over arrays of patients; (..., F)."""
    a = np.array([K.AGE_EFFECT.get(f, 0.0) for f in CT_FINDINGS])
    m = np.array([K.MALE_EFFECT.get(f, 0.0) for f in CT_FINDINGS])
    b = np.array([K.BMI_EFFECT.get(f, 0.0) for f in CT_FINDINGS])
    age_z, male, bmi_z = (np.asarray(v, dtype=float)[..., None] for v in (age_z, male, bmi_z))
    return age_z * a + (male - K.MALE_FRACTION) * m + bmi_z * b


@functools.lru_cache(maxsize=16)
def finding_model(targets: tuple[tuple[str, float], ...]) -> FindingModel:
    """Calibrated intercepts (each marginal = its target) and burden loading (P(no finding) = CT-RATE's)."""
    wanted = np.array([dict(targets)[f] for f in CT_FINDINGS])
    nodes = _quadrature()
    lo, hi = 0.0, 3.0
    for _ in range(16):  # P(no finding) grows with the loading: bisection
        mid = (lo + hi) / 2
        p0 = _no_finding(nodes, _intercepts(nodes, wanted, mid), mid)
        lo, hi = (lo, mid) if p0 > K.CT_RATE_NO_FINDING else (mid, hi)
    loading = (lo + hi) / 2 if _no_finding(nodes, _intercepts(nodes, wanted, 3.0), 3.0) > K.CT_RATE_NO_FINDING \
        else 3.0
    return FindingModel(_intercepts(nodes, wanted, loading), loading)


def _quadrature() -> tuple[np.ndarray, np.ndarray]:
    """(P, 4) nodes (age_z, male, bmi_z, burden) and (P,) weights of the patient distribution."""
    q = (np.arange(24) + 0.5) / 24
    lo, hi = ((r - K.AGE_MEAN) / K.AGE_SD for r in K.AGE_RANGE)
    age = norm.ppf(norm.cdf(lo) + q * (norm.cdf(hi) - norm.cdf(lo)))
    bmi = norm.ppf((np.arange(8) + 0.5) / 8)
    burden, w_b = np.polynomial.hermite_e.hermegauss(16)
    grid = np.stack(np.meshgrid(age, [0.0, 1.0], bmi, burden, indexing="ij"), -1).reshape(-1, 4)
    w = np.einsum("i,j,k,l->ijkl", np.full(24, 1 / 24), [1 - K.MALE_FRACTION, K.MALE_FRACTION], np.full(8, 1 / 8),
                  w_b / w_b.sum()).reshape(-1)
    return grid, w


def _intercepts(nodes, wanted: np.ndarray, loading: float) -> np.ndarray:
    grid, w = nodes
    base = _effects(grid[:, 0], grid[:, 1], grid[:, 2]) + loading * grid[:, 3:4]  # (P, F)
    a = np.log(wanted / (1 - wanted))
    for _ in range(12):  # Newton on the marginal prevalence (monotone in the intercept)
        p = expit(base + a)
        a = np.clip(a - (w @ p - wanted) / np.maximum(w @ (p * (1 - p)), 1e-6), -15.0, 15.0)
    return a


def _no_finding(nodes, intercepts: np.ndarray, loading: float) -> float:
    grid, w = nodes
    p = expit(intercepts + _effects(grid[:, 0], grid[:, 1], grid[:, 2]) + loading * grid[:, 3:4])
    return float(w @ np.prod(1 - p, axis=1))


# ----------------------------------------------------------------------------- details of one finding


def _details(rng: np.random.Generator, name: str, age_z: float) -> Finding:
    shift = K.AGE_SEVERITY.get(name, 0.0)
    latent = rng.standard_normal() + shift * age_z
    cuts = norm.ppf(np.cumsum(SEVERITY_PROBS)[:2]) * np.sqrt(1 + shift ** 2)
    severity = 1 + int(latent > cuts[0]) + int(latent > cuts[1])
    side = ""
    if name in K.LATERAL_FINDINGS:
        side = "bilateral" if rng.random() < K.LATERAL_FINDINGS[name] else ("right" if rng.random() < 0.55 else "left")
    if name == "Lung nodule":
        count = {1: int(rng.integers(1, 4)), 2: int(rng.integers(1, 3)), 3: 1}[severity]
        lobes = _lobes(rng, side, max(count, 2 if side == "bilateral" else 1))
        lo, hi = {1: (4.0, 6.0), 2: (6.0, 10.0), 3: (12.0, 25.0)}[severity]
        return Finding(name, severity, side, lobes, tuple(round(float(rng.uniform(lo, hi)), 1) for _ in lobes))
    if name in ("Lung opacity", "Consolidation", "Atelectasis", "Pulmonary fibrotic sequela", "Bronchiectasis"):
        lower = name in ("Atelectasis", "Bronchiectasis", "Consolidation")
        lobes = _lobes(rng, side, 2 if side == "bilateral" else 1, prefer_lower=lower,
                       prefer_upper=name == "Pulmonary fibrotic sequela")
        extent = {1: 25.0, 2: 45.0, 3: 70.0}[severity] * float(rng.uniform(0.85, 1.15))
        return Finding(name, severity, side, lobes, (round(extent, 1),))
    if name == "Pleural effusion":
        return Finding(name, severity, side, (), (round({1: 12.0, 2: 30.0, 3: 55.0}[severity]
                                                        * float(rng.uniform(0.85, 1.15)), 1),))
    if name == "Pericardial effusion":
        return Finding(name, severity, "", (), (round({1: 6.0, 2: 12.0, 3: 22.0}[severity]
                                                     * float(rng.uniform(0.85, 1.15)), 1),))
    if name == "Lymphadenopathy":
        pools = {"right": ("central", "right"), "left": ("central", "left"), "bilateral": ("right", "left")}[side]
        stations = tuple(sorted({str(rng.choice(LN_STATIONS[pool])) for pool in pools for _ in range(severity)}))
        sizes = tuple(round(float(rng.uniform(11, 14) + 5 * (severity - 1) * rng.random()), 1) for _ in stations)
        return Finding(name, severity, side, stations, sizes)
    if name == "Hiatal hernia":
        return Finding(name, severity, "", (), (round({1: 25.0, 2: 40.0, 3: 60.0}[severity]
                                                     * float(rng.uniform(0.85, 1.15)), 1),))
    if name == "Medical material":
        k = 1 + int(rng.random() < 0.25)
        kinds = tuple(sorted(str(d) for d in rng.choice(DEVICES, size=k, replace=False)))
        return Finding(name, severity, "", kinds, ())
    return Finding(name, severity, "bilateral" if name in ("Emphysema", "Mosaic attenuation pattern",
                                                           "Interlobular septal thickening",
                                                           "Peribronchial thickening") else "")


def _lobes(rng: np.random.Generator, side: str, count: int, prefer_lower: bool = False,
           prefer_upper: bool = False) -> tuple[str, ...]:
    sides = ("right", "left") if side == "bilateral" else (side,)
    out = []
    for k in range(count):
        lobes = LOBES[sides[k % len(sides)]]
        if prefer_lower:
            w = np.array([0.2 if lobe.endswith("UL") else 0.3 if lobe == "RML" else 0.8 for lobe in lobes])
        elif prefer_upper:
            w = np.array([0.8 if lobe.endswith("UL") else 0.3 for lobe in lobes])
        else:
            w = np.ones(len(lobes))
        out.append(str(rng.choice(lobes, p=w / w.sum())))
    return tuple(out)
