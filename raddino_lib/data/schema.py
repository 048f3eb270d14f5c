"""The common vocabulary every manifest speaks: findings, anatomy, columns.

Real dataset builders map their own label names onto ``FINDINGS``; the
phantom generator writes them directly. Nothing downstream reads any other
label names.
"""

from __future__ import annotations

# The 14 ChestX-ray14 findings, in the order of the NIH release.
CXR14_FINDINGS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Effusion",
    "Emphysema",
    "Fibrosis",
    "Hernia",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pleural_Thickening",
    "Pneumonia",
    "Pneumothorax",
)

# Every label a manifest may carry: the 14 findings, "No Finding" and
# "Support Devices" (CheXpert / MIMIC vocabulary, also drawn by the phantoms).
FINDINGS: tuple[str, ...] = CXR14_FINDINGS + ("No Finding", "Support Devices")

# Anatomy masks the phantoms provide for segmentation probing: organs, ribs and lung zones (RAD-DINO segments
# lungs, lung zones and ribs). Each lung is split into upper, middle and lower zones of equal height that tile it.
ORGANS: tuple[str, ...] = ("left_lung", "right_lung", "heart")
LUNG_ZONES: tuple[str, ...] = tuple(f"{side}_{zone}_zone" for side in ("right", "left")
                                    for zone in ("upper", "middle", "lower"))
ANATOMY: tuple[str, ...] = ORGANS + ("ribs",) + LUNG_ZONES

SPLITS: tuple[str, ...] = ("train", "val", "test")
SEXES: tuple[str, ...] = ("M", "F")
VIEWS: tuple[str, ...] = ("PA", "AP", "LATERAL")

AGE_RANGE: tuple[float, float] = (0.0, 120.0)  # valid ages in years

# Columns every manifest has (values may be empty where a dataset lacks them,
# except image_id, path, patient_id and split).
REQUIRED_COLUMNS: tuple[str, ...] = (
    "image_id",  # unique within the manifest
    "path",  # image path, relative to the manifest's folder (or absolute)
    "patient_id",
    "study_id",
    "split",  # one of SPLITS; patient-level
    "age",  # years, float; empty if unknown
    "sex",  # one of SEXES; empty if unknown
    "view",  # one of VIEWS; empty if unknown
    "site",  # acquisition site / source dataset
)

# Optional columns with a fixed meaning.
OPTIONAL_COLUMNS: tuple[str, ...] = (
    "bmi",  # body-mass index, phantoms only
    "report",  # free-text report (FINDINGS + IMPRESSION)
    "original_labels",  # the source dataset's own label string, kept verbatim
    "dataset",  # name of the dataset card that produced the row
)


def label_column(finding: str) -> str:
    """Manifest column of a finding's label: 1 present, 0 absent, -1 uncertain, empty unknown."""
    return f"label_{finding}"


def reported_column(finding: str) -> str:
    """Manifest column of what the report states about a finding (phantoms): 1, 0 or -1."""
    return f"reported_{finding}"


def mask_column(structure: str) -> str:
    """Manifest column holding a mask path (relative, like ``path``) or empty."""
    return f"mask_{structure}"


LABEL_COLUMNS: tuple[str, ...] = tuple(label_column(f) for f in FINDINGS)


# ----------------------------------------------------------------------------- chest CT (volumes)

# CT-RATE's 18 abnormality labels, in the order of its labels CSV (docs/PAPERS.md). Atelectasis, Cardiomegaly,
# Consolidation and Emphysema share their label column with the radiograph findings of the same name.
CT_FINDINGS: tuple[str, ...] = (
    "Medical material",
    "Arterial wall calcification",
    "Cardiomegaly",
    "Pericardial effusion",
    "Coronary artery wall calcification",
    "Hiatal hernia",
    "Lymphadenopathy",
    "Emphysema",
    "Atelectasis",
    "Lung nodule",
    "Lung opacity",
    "Pulmonary fibrotic sequela",
    "Pleural effusion",
    "Mosaic attenuation pattern",
    "Peribronchial thickening",
    "Consolidation",
    "Bronchiectasis",
    "Interlobular septal thickening",
)

# Every finding name a manifest column may carry: radiograph findings, then the CT-only ones.
ALL_FINDINGS: tuple[str, ...] = FINDINGS + tuple(f for f in CT_FINDINGS if f not in FINDINGS)

# Label-map masks of a volume (one integer per voxel; the legend is a JSON file beside the dataset).
VOLUME_MASKS: tuple[str, ...] = ("anatomy", "lesions")

MODALITIES: tuple[str, ...] = ("CT",)  # the 'modality' column of volume manifests (empty = radiograph)
