"""Generator settings: dataset statistics (ChestX-ray14) and difficulty knobs.

Every field has a default that reproduces the ChestX-ray14 label statistics
(PAPERS.md) with findings subtle enough that a linear probe on a randomly
initialised ViT does not already solve them. ``PhantomKnobs`` is saved in the
dataset's ``card.yaml``; two datasets with the same knobs, ``n``, ``size`` and
``seed`` are byte-identical.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from raddino_lib.data.schema import CXR14_FINDINGS

GENERATOR_VERSION = 2  # bump when pixels or rows of an existing (n, size, seed, knobs) change

# ChestX-ray14 prevalence per image (PAPERS.md), 112,120 images.
CXR14_PREVALENCE: dict[str, float] = {
    "Infiltration": 0.1774, "Effusion": 0.1188, "Atelectasis": 0.1031, "Nodule": 0.0565, "Mass": 0.0516,
    "Pneumothorax": 0.0473, "Consolidation": 0.0416, "Pleural_Thickening": 0.0302, "Cardiomegaly": 0.0248,
    "Emphysema": 0.0224, "Edema": 0.0205, "Fibrosis": 0.0150, "Pneumonia": 0.0128, "Hernia": 0.0020,
}
CXR14_NO_FINDING = 0.5384
# Labels per image (No Finding counts as one label): 1 → 81.5%, 2 → 12.8%, 3 → 4.3%, 4+ → 1.5%.
CXR14_LABELS_PER_IMAGE: dict[int, float] = {1: 0.815, 2: 0.128, 3: 0.043, 4: 0.015}

# Age and sex of ChestX-ray14 (PAPERS.md); view PA 60% / AP 40%. Ages are a normal truncated to AGE_RANGE
# whose parameters (42.1, 20.8) give the ChestX-ray14 mean 46.6 and sd 16.6 after truncation.
AGE_MEAN, AGE_SD, AGE_RANGE = 42.1, 20.8, (18.0, 95.0)
MALE_FRACTION = 0.565
AP_FRACTION = 0.40

# Balanced mode: every finding lands near 15% (for datasets of a few hundred images).
BALANCED_ABNORMAL = 0.85
BALANCED_FINDINGS_PER_IMAGE: dict[int, float] = {1: 0.15, 2: 0.30, 3: 0.35, 4: 0.20}

# Findings drawn with a mask (localized); the others are diffuse or anatomical.
LOCALIZED_FINDINGS: tuple[str, ...] = (
    "Atelectasis", "Consolidation", "Effusion", "Hernia", "Infiltration", "Mass", "Nodule",
    "Pleural_Thickening", "Pneumonia", "Pneumothorax",
)
# Findings that are always central or bilateral in the report and the drawing.
CENTRAL_FINDINGS: tuple[str, ...] = ("Cardiomegaly", "Edema", "Hernia", "Emphysema")

assert set(CXR14_PREVALENCE) == set(CXR14_FINDINGS)


@dataclass(frozen=True)
class PhantomKnobs:
    """Difficulty and reporting knobs of the phantom generator (pass as ``generate(..., **knobs)``)."""

    lesion_scale: float = 1.0  # size multiplier of every lesion; < 1 makes findings harder to see
    lesion_contrast: float = 1.0  # attenuation multiplier of every lesion; 0 draws labels without pixels
    unreported_fraction: float = 0.15  # present findings the report leaves out (report noise)
    hedged_fraction: float = 0.10  # reported findings stated with a hedge ("possible ...") → reported = -1
    support_devices_pa: float = 0.05  # Support Devices prevalence on PA films (outpatients)
    support_devices_ap: float = 0.25  # ... on AP films (bedside, ICU)
    noise_scale: float = 1.0  # multiplier of every site's detector noise
    sites: int = 3  # number of acquisition sites used (1..4); each has its own display curve, noise, marker

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int | float) or value < 0:
                raise ValueError(f"phantom knob '{f.name}' must be a non-negative number, got {value!r}")
        for name in ("unreported_fraction", "hedged_fraction", "support_devices_pa", "support_devices_ap"):
            if getattr(self, name) > 1:
                raise ValueError(f"phantom knob '{name}' is a fraction in [0, 1], got {getattr(self, name)}")
        if not 1 <= self.sites <= 4:
            raise ValueError(f"phantom knob 'sites' must be 1..4, got {self.sites}")

    @classmethod
    def from_kwargs(cls, knobs: dict[str, Any]) -> PhantomKnobs:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(knobs) - known)
        if unknown:
            raise TypeError(f"unknown phantom knob(s) {unknown}; known: {sorted(known)}")
        return cls(**knobs)

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) if isinstance(v, float) else v for k, v in asdict(self).items()}
