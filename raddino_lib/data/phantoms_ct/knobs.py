"""Generator settings of the CT phantoms: CT-RATE-like statistics and the difficulty and reporting knobs.

Default prevalence: the 18 labels of 1,000 CT-RATE reports labelled by hand, the training data of CT-RATE's
report classifier (CT-CLIP repository, ``text_classifier/data/train.csv`` and ``val.csv``, 800 + 200 reports),
as counted here: no abnormality in 11.2% of scans, 3.6 abnormalities per scan on average. Sex: 58.4% male
(CT-RATE paper). CT-RATE's ages span 18-102; its mean is not quoted in the sources read here, so the age
distribution below is an assumption. Sites: the shares of CT-RATE's three scanner vendors (61.5%, 30.1%, 8.4%).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from raddino_lib.data.schema import CT_FINDINGS

GENERATOR_VERSION = 1  # bump when the volumes or rows of an existing (n, size, seed, knobs) change

CT_RATE_PREVALENCE: dict[str, float] = {
    "Medical material": 0.154, "Arterial wall calcification": 0.287, "Cardiomegaly": 0.115,
    "Pericardial effusion": 0.078, "Coronary artery wall calcification": 0.222, "Hiatal hernia": 0.156,
    "Lymphadenopathy": 0.337, "Emphysema": 0.240, "Atelectasis": 0.281, "Lung nodule": 0.453, "Lung opacity": 0.307,
    "Pulmonary fibrotic sequela": 0.284, "Pleural effusion": 0.150, "Mosaic attenuation pattern": 0.090,
    "Peribronchial thickening": 0.095, "Consolidation": 0.160, "Bronchiectasis": 0.100,
    "Interlobular septal thickening": 0.082,
}
CT_RATE_NO_FINDING = 0.112  # share of the 1,000 labelled reports without any of the 18 abnormalities
BALANCED_PREVALENCE = 0.30  # every finding near 30% (for datasets of tens of volumes)

MALE_FRACTION = 0.584
AGE_MEAN, AGE_SD, AGE_RANGE = 56.0, 15.0, (18.0, 95.0)  # assumed (see the module docstring)
BMI_LOG_MEAN, BMI_LOG_SD, BMI_RANGE = 3.28, 0.17, (16.0, 45.0)  # log-normal around 26.5 kg/m²

# Patient factors act on the chance of each finding (log-odds per standard deviation of age or BMI, and for
# men): calcifications, emphysema, cardiomegaly and hiatal hernia rise with age; coronary calcification and
# emphysema are commoner in men; hiatal hernia and atelectasis with BMI. Intercepts are calibrated so the
# marginal prevalence stays the configured one (patients.py).
AGE_EFFECT: dict[str, float] = {
    "Arterial wall calcification": 1.6, "Coronary artery wall calcification": 1.3, "Emphysema": 0.6,
    "Cardiomegaly": 0.6, "Hiatal hernia": 0.7, "Pulmonary fibrotic sequela": 0.5, "Lung nodule": 0.3,
    "Atelectasis": 0.3, "Pleural effusion": 0.3, "Medical material": 0.4, "Lymphadenopathy": 0.2,
}
MALE_EFFECT: dict[str, float] = {"Coronary artery wall calcification": 0.6, "Emphysema": 0.5, "Hiatal hernia": -0.3}
BMI_EFFECT: dict[str, float] = {"Hiatal hernia": 0.4, "Atelectasis": 0.25, "Cardiomegaly": 0.3}
# Findings whose severity also grows with age (ordinal latent shifted by this many SD per SD of age).
AGE_SEVERITY: dict[str, float] = {"Arterial wall calcification": 0.8, "Coronary artery wall calcification": 0.8,
                                  "Emphysema": 0.6}

# Findings drawn with a lesion mask (label map 'lesions'); the others are diffuse or anatomical (cardiomegaly:
# the heart labels of the anatomy map).
LOCALIZED_FINDINGS: tuple[str, ...] = (
    "Medical material", "Arterial wall calcification", "Pericardial effusion", "Coronary artery wall calcification",
    "Hiatal hernia", "Lymphadenopathy", "Atelectasis", "Lung nodule", "Lung opacity", "Pulmonary fibrotic sequela",
    "Pleural effusion", "Consolidation", "Bronchiectasis",
)
# Findings with a side (right / left / bilateral) in the drawing and the report.
LATERAL_FINDINGS: dict[str, float] = {  # finding → chance of being bilateral
    "Atelectasis": 0.45, "Lung nodule": 0.3, "Lung opacity": 0.5, "Pulmonary fibrotic sequela": 0.55,
    "Pleural effusion": 0.4, "Consolidation": 0.25, "Bronchiectasis": 0.45, "Lymphadenopathy": 0.5,
}

assert set(CT_RATE_PREVALENCE) == set(CT_FINDINGS)


def lesion_label(finding: str) -> int:
    """Integer of a finding in the 'lesions' label map: its 1-based position in CT_FINDINGS."""
    return CT_FINDINGS.index(finding) + 1


@dataclass(frozen=True)
class CTPhantomKnobs:
    """Difficulty, statistics and reporting knobs (pass as ``generate(..., **knobs)``); saved in card.yaml."""

    lesion_scale: float = 1.0  # size multiplier of every lesion; < 1 makes findings harder to see
    lesion_contrast: float = 1.0  # HU-difference multiplier of every lesion; 0 draws labels without pixels
    unreported_fraction: float = 0.15  # present findings the report leaves out (report noise)
    hedged_fraction: float = 0.10  # reported findings stated with a hedge ("possible ...") → reported = -1
    noise_scale: float = 1.0  # multiplier of every site's quantum noise
    sites: int = 3  # acquisition sites used (1..3), each with its own slice spacing, kernel, noise and table
    prevalence: dict[str, float] = field(default_factory=dict)  # finding → prevalence, overriding the default

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "prevalence" and (not isinstance(value, int | float) or value < 0):
                raise ValueError(f"CT phantom knob '{f.name}' must be a non-negative number, got {value!r}")
        for name in ("unreported_fraction", "hedged_fraction"):
            if getattr(self, name) > 1:
                raise ValueError(f"CT phantom knob '{name}' is a fraction in [0, 1], got {getattr(self, name)}")
        if not 1 <= self.sites <= 3:
            raise ValueError(f"CT phantom knob 'sites' must be 1..3, got {self.sites}")
        for name, p in self.prevalence.items():
            if name not in CT_FINDINGS:
                raise ValueError(f"prevalence: unknown finding '{name}' (known: {', '.join(CT_FINDINGS)})")
            if not 0.0 <= float(p) <= 0.95:
                raise ValueError(f"prevalence of '{name}' must be in [0, 0.95], got {p}")

    @classmethod
    def from_kwargs(cls, knobs: dict[str, Any]) -> CTPhantomKnobs:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(knobs) - known)
        if unknown:
            raise TypeError(f"unknown CT phantom knob(s) {unknown}; known: {sorted(known)}")
        return cls(**knobs)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["prevalence"] = {k: float(v) for k, v in sorted(self.prevalence.items())}
        return out

    def targets(self, balanced: bool) -> dict[str, float]:
        """Per-finding prevalence the sampler aims at: CT-RATE (or balanced), then the overrides."""
        base = dict.fromkeys(CT_FINDINGS, BALANCED_PREVALENCE) if balanced else dict(CT_RATE_PREVALENCE)
        base.update({k: float(v) for k, v in self.prevalence.items()})
        return base


def parse_prevalence(text: str) -> dict[str, float]:
    """'Lung nodule=0.5;Emphysema=0.3' → {'Lung nodule': 0.5, 'Emphysema': 0.3} (the command line's form)."""
    out: dict[str, float] = {}
    for item in filter(None, (s.strip() for s in text.split(";"))):
        name, sep, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise ValueError(f"--prevalence item '{item}': expected 'Finding name=probability', e.g. 'Lung nodule=0.5'")
    return out
