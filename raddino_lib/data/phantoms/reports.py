"""Free-text reports for phantoms: FINDINGS + IMPRESSION describing findings only.

Reports never mention age, sex, view or site (the metadata RAD-DINO shows
image-only encoders capture and text-supervised ones miss). Like real reports
they are noisy: a fraction of present findings goes unreported, some are
hedged, phrasing varies (synonyms, negations, severity, laterality).
``reported`` records what the text states: 1 stated, -1 hedged, 0 negated or
not mentioned. Hedges use the standard uncertainty phrasings report labelers
know ("possible", "may represent", "cannot be excluded", "likely"); a stated
finding is never worded with them, and a hedged finding stays hedged in the
IMPRESSION. The text is one line (the CSV stays one row per line).
"""

from __future__ import annotations

import numpy as np

from raddino_lib.data.phantoms.knobs import PhantomKnobs
from raddino_lib.data.phantoms.lesions import SIZES_MM
from raddino_lib.data.phantoms.patients import Case, Lesion
from raddino_lib.data.schema import CXR14_FINDINGS, FINDINGS

SIZE = {1: ("small", "trace", "minimal"), 2: ("moderate", "moderate-sized"), 3: ("large", "extensive")}
DEGREE = {1: ("mild", "minimal"), 2: ("moderate",), 3: ("severe", "marked")}
ADVERB = {1: ("mildly", "slightly"), 2: ("moderately",), 3: ("markedly", "severely")}

# Noun phrases per finding ({side}, {size}, {degree}, {mm}, {cm} are filled in); the first ones are the plainest.
PHRASES: dict[str, tuple[str, ...]] = {
    "Atelectasis": ("{side} basilar atelectasis", "plate-like atelectasis at the {side} base",
                    "{degree} {side} lower lobe atelectasis", "linear opacity at the {side} base consistent with "
                    "atelectasis"),
    "Cardiomegaly": ("cardiomegaly", "{degree} cardiomegaly", "enlarged cardiac silhouette",
                     "{adverb} enlarged heart"),
    "Consolidation": ("{side} lung consolidation", "{degree} airspace consolidation in the {side} lung",
                      "focal consolidation in the {side} lung with air bronchograms"),
    "Edema": ("pulmonary edema", "{degree} pulmonary edema", "perihilar haziness consistent with {degree} edema",
              "interstitial edema"),
    "Effusion": ("{side} pleural effusion", "{size} {side} pleural effusion",
                 "blunting of the {side} costophrenic angle from a {size} effusion"),
    "Emphysema": ("emphysema", "hyperinflated lungs with flattened hemidiaphragms", "emphysematous changes"),
    "Fibrosis": ("{side} pulmonary fibrosis", "peripheral reticular opacities in the {side} lung compatible with "
                 "fibrosis", "{side} fibrotic changes"),
    "Hernia": ("hiatal hernia", "retrocardiac soft tissue density with an air-fluid level, a hiatal hernia"),
    "Infiltration": ("{side} lung infiltrate", "ill-defined {side} lung opacities", "patchy {side} infiltrates"),
    "Mass": ("{side} lung mass", "{cm} cm mass in the {side} lung", "{size} {side} pulmonary mass"),
    "Nodule": ("{side} lung nodules", "multiple nodules in the {side} lung, the largest {mm} mm",
               "several {side} pulmonary nodules"),
    "Pleural_Thickening": ("{side} pleural thickening", "{degree} {side} pleural thickening"),
    "Pneumonia": ("{side} pneumonia", "patchy {side} lower lung opacity consistent with pneumonia",
                  "{side} lower lobe pneumonia"),
    "Pneumothorax": ("{side} pneumothorax", "{size} {side} pneumothorax",
                     "{side} pneumothorax with a visible pleural line"),
}
DEVICE_PHRASES: dict[str, tuple[str, ...]] = {
    "ett": ("endotracheal tube terminating above the carina", "ET tube in satisfactory position"),
    "central_line": ("central venous catheter with the tip in the SVC", "central line in place"),
    "ng_tube": ("enteric tube coursing below the diaphragm", "nasogastric tube in the stomach"),
    "pacemaker": ("left chest wall pacemaker with leads projecting over the heart", "cardiac pacemaker"),
    "chest_tube": ("chest tube in place", "pleural drain with its tip towards the apex"),
}
NEGATIONS: dict[str, tuple[str, ...]] = {
    "Effusion": ("no pleural effusion", "no effusion", "costophrenic angles are sharp"),
    "Pneumothorax": ("no pneumothorax", "no evidence of pneumothorax"),
    "Consolidation": ("no focal consolidation", "no consolidation"),
    "Cardiomegaly": ("heart size is normal", "normal cardiac silhouette", "no cardiomegaly"),
    "Edema": ("no pulmonary edema", "no edema"),
}
HEDGES = ("possible {}", "{} cannot be excluded", "findings may represent {}", "likely {}")
UNCERTAIN_WORDS = ("possible", "cannot be excluded", "may represent", "likely", "questionable", "cannot exclude",
                   "probable", "concerning for", "suspicious for", "suggestive of")  # never in a stated phrase
NORMAL = ("no acute cardiopulmonary process", "no acute cardiopulmonary abnormality", "normal chest radiograph")
SIDE_WORDS = {"right": ("right",), "left": ("left",), "bilateral": ("bilateral",)}


def write_report(case: Case, rng: np.random.Generator, knobs: PhantomKnobs) -> tuple[str, dict[str, int]]:
    """(one-line report, {finding: 1 | 0 | -1} for all FINDINGS)."""
    reported = dict.fromkeys(FINDINGS, 0)
    sentences, impression = [], []
    for name in sorted(case.findings):
        if rng.random() < knobs.unreported_fraction:
            continue
        phrase = _phrase(rng, PHRASES[name], case.findings[name])
        short = phrase if len(phrase) < 40 else _phrase(rng, PHRASES[name][:1], case.findings[name])
        if rng.random() < knobs.hedged_fraction:  # the IMPRESSION keeps the same hedge
            hedge = _pick(rng, HEDGES)
            phrase, short, reported[name] = hedge.format(phrase), hedge.format(short), -1
        else:
            reported[name] = 1
        sentences.append(phrase)
        impression.append(short)
    if case.devices and rng.random() >= knobs.unreported_fraction:
        sentences += [_pick(rng, DEVICE_PHRASES[d]) for d in case.devices]
        reported["Support Devices"] = 1
    absent = [f for f in NEGATIONS if f not in case.findings]
    for name in sorted(rng.choice(absent, size=min(len(absent), int(rng.integers(1, 4))), replace=False)):
        sentences.append(_pick(rng, NEGATIONS[name]))
    if not any(reported[f] for f in CXR14_FINDINGS):
        reported["No Finding"] = 1
        impression = [_pick(rng, NORMAL)]
        if rng.random() < 0.5:
            sentences.insert(0, "the lungs are clear")
    order = rng.permutation(len(sentences)) if rng.random() < 0.3 else np.arange(len(sentences))
    findings_text = " ".join(_sentence(sentences[i]) for i in order)
    impression_text = " ".join(_sentence(s) for s in impression)
    return f"FINDINGS: {findings_text} IMPRESSION: {impression_text}", reported


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _phrase(rng: np.random.Generator, options: tuple[str, ...], lesion: Lesion) -> str:
    sev = lesion.severity
    return _pick(rng, options).format(
        side=_pick(rng, SIDE_WORDS[lesion.side]), size=_pick(rng, SIZE[sev]), degree=_pick(rng, DEGREE[sev]),
        adverb=_pick(rng, ADVERB[sev]), mm=int(rng.uniform(*SIZES_MM["Nodule"][sev - 1])),
        cm=round(rng.uniform(*SIZES_MM["Mass"][sev - 1]) / 10.0),
    )


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + "."
