"""CT reports in CT-RATE's style: FINDINGS organised by organ, then an IMPRESSION.

Like CT-RATE's reports, the findings walk through the airways, heart and great vessels, mediastinal lymph
nodes, oesophagus, lung parenchyma, pleura, devices, upper abdomen and bones, stating normal organs with stock
sentences. Reports describe findings only, never age, sex, BMI or site (patient factors an image-only encoder can
learn and a report-supervised one cannot). Like the 2D reports (``data/phantoms/reports.py``) they are noisy: a
fraction of present findings goes unreported (the organ may even be called normal), some are hedged ("possible
...", "cannot be excluded"). ``reported`` records what the text states: 1 stated, -1 hedged, 0 not stated.
The text is one line (the manifest stays one row per line).
"""

from __future__ import annotations

import numpy as np

from raddino_lib.data.phantoms_ct.knobs import CTPhantomKnobs
from raddino_lib.data.phantoms_ct.patients import Case, Finding
from raddino_lib.data.schema import CT_FINDINGS

LOBE_NAMES = {"RUL": "right upper lobe", "RML": "right middle lobe", "RLL": "right lower lobe",
              "LUL": "left upper lobe", "LLL": "left lower lobe"}
DEGREE = {1: ("mild", "minimal"), 2: ("moderate",), 3: ("severe", "marked", "extensive")}
SIDE = {"right": "right", "left": "left", "bilateral": "bilateral", "": ""}

# Organ → (its findings, stock sentences when nothing is reported there).
ORGANS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("airways", (), ("Trachea and both main bronchi are patent.",
                     "Trachea and both main bronchi are open and no obstructive lesion is seen in their lumen.")),
    ("heart", ("Cardiomegaly", "Pericardial effusion", "Arterial wall calcification",
               "Coronary artery wall calcification"),
     ("Heart contour and size are normal. No pericardial effusion or thickening. Thoracic aorta diameter is normal.",
      "Mediastinal main vascular structures, heart contour and size are normal. Pericardial effusion was not seen.")),
    ("nodes", ("Lymphadenopathy",), ("No enlarged lymph nodes are seen in the mediastinum or the hila.",
                                     "No lymph node of pathological size in the mediastinal or hilar stations.")),
    ("oesophagus", ("Hiatal hernia",), ("Thoracic esophagus calibre is normal.",
                                        "The thoracic esophagus is of normal calibre without wall thickening.")),
    ("lungs", ("Emphysema", "Lung nodule", "Lung opacity", "Consolidation", "Atelectasis",
               "Pulmonary fibrotic sequela", "Mosaic attenuation pattern", "Peribronchial thickening",
               "Bronchiectasis", "Interlobular septal thickening"),
     ("In the lung parenchyma window, aeration of both lungs is normal and no nodular or infiltrative lesion is seen.",
      "Both lungs are clear; no mass, nodule or infiltrate is detected.")),
    ("pleura", ("Pleural effusion",), ("No pleural effusion or thickening.", "Pleural spaces are clear.")),
    ("devices", ("Medical material",), ()),
    ("abdomen", (), ("Upper abdominal organs included in the sections are unremarkable.",)),
    ("bones", (), ("Bone structures in the study area are unremarkable.",
                   "Bony structures within the field of view are natural.")),
)
assert {f for _, fs, _ in ORGANS for f in fs} == set(CT_FINDINGS)

HEDGES = ("possible {}", "{} cannot be excluded", "findings suspicious for {}", "questionable {}")
NORMAL_IMPRESSION = ("No significant thoracic abnormality.", "Thoracic CT examination within normal limits.",
                     "Unremarkable chest CT.")
DEVICE_TEXT = {"pacemaker": "a left chest wall pacemaker with its lead in the right heart",
               "port catheter": "a right chest wall port with its catheter tip at the cavoatrial junction",
               "sternotomy wires": "median sternotomy wires", "nasogastric tube": "a nasogastric tube in the esophagus",
               "surgical clips": "surgical clips in the hilar region"}


def write_report(case: Case, rng: np.random.Generator, knobs: CTPhantomKnobs) -> tuple[str, dict[str, int]]:
    """(one-line report, {finding: 1 | 0 | -1} for all 18 CT findings)."""
    reported = dict.fromkeys(CT_FINDINGS, 0)
    findings_text, impression = [], []
    for _, names, normal in ORGANS:
        stated = []
        for name in names:
            if name not in case.findings or rng.random() < knobs.unreported_fraction:
                continue
            phrase = describe(name, case.findings[name], rng)
            if rng.random() < knobs.hedged_fraction:
                phrase, reported[name] = _pick(rng, HEDGES).format(phrase), -1
            else:
                reported[name] = 1
            stated.append(phrase)
            impression.append(_short(name, case.findings[name], reported[name], rng))
        if stated:
            findings_text += [_sentence(s) for s in stated]
        elif normal and rng.random() < 0.9:
            findings_text.append(_pick(rng, normal))
    if not impression:
        impression = [_pick(rng, NORMAL_IMPRESSION)]
    text = " ".join(findings_text)
    return f"FINDINGS: {text} IMPRESSION: {' '.join(_sentence(s) for s in impression)}", reported


def describe(name: str, f: Finding, rng: np.random.Generator) -> str:
    """The findings-section phrase of one finding (its details: side, lobes, sizes, severity)."""
    deg = _pick(rng, DEGREE[f.severity])
    lobes = _join([LOBE_NAMES[lobe] for lobe in dict.fromkeys(f.where) if lobe in LOBE_NAMES])
    if name == "Lung nodule":
        sizes = ", ".join(f"{d:.0f}" for d in f.sizes_mm)
        noun = "nodules" if len(f.sizes_mm) > 1 else "a nodule"
        return _pick(rng, (f"{noun} measuring {sizes} mm in the {lobes}",
                           f"{'solid pulmonary ' + noun if len(f.sizes_mm) > 1 else 'a solid pulmonary nodule'} "
                           f"({sizes} mm) in the {lobes}"))
    if name == "Lung opacity":
        return _pick(rng, (f"ground-glass opacities in the {lobes}",
                           f"{deg} ground-glass density increase in the {lobes}"))
    if name == "Consolidation":
        return _pick(rng, (f"consolidation in the {lobes}",
                           f"{deg} consolidation with air bronchograms in the {lobes}"))
    if name == "Atelectasis":
        return _pick(rng, (f"{'subsegmental' if f.severity == 1 else 'segmental'} atelectasis in the {lobes}",
                           f"{deg} atelectatic changes in the {lobes}"))
    if name == "Pulmonary fibrotic sequela":
        return _pick(rng, (f"fibrotic sequelae in the {lobes}",
                           f"linear fibrotic bands and sequelae changes in the {lobes}"))
    if name == "Bronchiectasis":
        where = "both lower lobes" if f.side == "bilateral" else f"the {f.side} lower lobe"
        return _pick(rng, (f"bronchiectasis in {where}", f"{deg} cylindrical bronchiectasis in {where}"))
    if name == "Pleural effusion":
        side = "bilateral pleural effusions" if f.side == "bilateral" else f"{f.side} pleural effusion"
        return _pick(rng, (f"{deg} {side}", f"{side} measuring {f.sizes_mm[0]:.0f} mm in its thickest part"))
    if name == "Lymphadenopathy":
        stations = _join(list(f.where))
        return _pick(rng, (f"enlarged lymph nodes in the {stations} station{'s' if len(f.where) > 1 else ''}, the "
                           f"largest {max(f.sizes_mm):.0f} mm in short axis",
                           f"lymphadenopathy ({stations}) up to {max(f.sizes_mm):.0f} mm"))
    if name == "Medical material":
        return _pick(rng, ("{} is seen", "{} in place")).format(_join([DEVICE_TEXT[d] for d in f.where]))
    size = f.sizes_mm[0] if f.sizes_mm else 0.0
    return _pick(rng, {
        "Cardiomegaly": (f"{deg} cardiomegaly", "the heart is enlarged"),
        "Pericardial effusion": (f"pericardial effusion up to {size:.0f} mm thick", f"{deg} pericardial effusion"),
        "Arterial wall calcification": ("atherosclerotic calcifications in the aortic wall",
                                        f"{deg} calcified atherosclerotic plaques in the thoracic aorta"),
        "Coronary artery wall calcification": ("calcified plaques in the coronary arteries",
                                               f"{deg} coronary artery calcification"),
        "Hiatal hernia": (f"a {'small ' if f.severity == 1 else 'large ' if f.severity == 3 else ''}hiatal hernia",
                          "herniation of the stomach through the esophageal hiatus (hiatal hernia)"),
        "Emphysema": (f"{deg} centrilobular emphysema", "emphysematous changes in both lungs"),
        "Mosaic attenuation pattern": ("a mosaic attenuation pattern in both lungs", "mosaic attenuation"),
        "Peribronchial thickening": ("peribronchial thickening", "bronchial wall thickening in both lungs"),
        "Interlobular septal thickening": ("interlobular septal thickening",
                                           "thickening of the interlobular septa in the periphery of both lungs"),
    }[name])


SHORT = {"Medical material": "medical devices in place", "Arterial wall calcification": "aortic atherosclerosis",
         "Cardiomegaly": "cardiomegaly", "Pericardial effusion": "pericardial effusion",
         "Coronary artery wall calcification": "coronary artery calcification", "Hiatal hernia": "hiatal hernia",
         "Lymphadenopathy": "mediastinal lymphadenopathy", "Emphysema": "emphysema", "Atelectasis": "atelectasis",
         "Lung nodule": "pulmonary nodule", "Lung opacity": "ground-glass opacities",
         "Pulmonary fibrotic sequela": "fibrotic sequelae", "Pleural effusion": "pleural effusion",
         "Mosaic attenuation pattern": "mosaic attenuation",
         "Peribronchial thickening": "peribronchial thickening", "Consolidation": "consolidation",
         "Bronchiectasis": "bronchiectasis", "Interlobular septal thickening": "interlobular septal thickening"}


def _short(name: str, f: Finding, said: int, rng: np.random.Generator) -> str:
    side = f"{f.side} " if f.side in ("right", "left") and name != "Lymphadenopathy" else ""
    text = side + SHORT[name]
    return _pick(rng, HEDGES).format(text) if said == -1 else text


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _join(items: list[str]) -> str:
    if not items:
        return ""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")
