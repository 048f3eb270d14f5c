"""Rule-based labeler for chest CT reports: free text -> one label per CT-RATE finding (``schema.CT_FINDINGS``).

The CT counterpart of ``data.reports`` (same NegEx-style idea, a vocabulary of its own, written for the CT-RATE
wording of the CT phantom reports, ``data/phantoms_ct/reports.py``):

1. lowercase the text and cut it into sentences at full stops, semicolons, new lines and the ``FINDINGS:`` /
   ``IMPRESSION:`` headers;
2. find *mentions* of each finding (``_MENTIONS``). Look-alikes are kept apart by the patterns themselves:
   coronary calcification is not arterial (aortic) wall calcification, a pericardial effusion is not a pleural
   one, a lymph node is not a nodule and "thoracic aorta diameter is normal" names nothing;
3. find *cues*: negation before a mention ("no", "without", "negative for") or after it ("was not seen",
   "are normal", "unremarkable"); hedges before it ("possible", "questionable", "suspicious for") or after it
   ("cannot be excluded"). Negations inside a hedge ("not excluded") are not negations;
4. label each mention: a cue inside the mention ("the heart is not enlarged") decides; else an in-scope
   "cannot be excluded" gives -1; else the nearest in-scope cue before it, else the nearest after it:
   negation -> 0, hedge -> -1, none -> 1. A cue's scope is its sentence, cut at terminators ("but", "however",
   ", the", "and the", ...; not ", the largest ...", which still describes the mention);
5. per finding over the report: stated (1) beats hedged (-1) beats absent or negated (0).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from raddino_lib.data.reports import compare_labels
from raddino_lib.data.schema import CT_FINDINGS, reported_column

POSITIVE, NEGATIVE, UNCERTAIN = 1, 0, -1

# How a radiologist names each CT finding (zero-shot prompts).
CT_PHRASES: dict[str, str] = {
    "Medical material": "medical devices", "Arterial wall calcification": "aortic atherosclerosis",
    "Cardiomegaly": "cardiomegaly", "Pericardial effusion": "pericardial effusion",
    "Coronary artery wall calcification": "coronary artery calcification", "Hiatal hernia": "hiatal hernia",
    "Lymphadenopathy": "lymphadenopathy", "Emphysema": "emphysema", "Atelectasis": "atelectasis",
    "Lung nodule": "pulmonary nodule", "Lung opacity": "ground-glass opacity",
    "Pulmonary fibrotic sequela": "fibrotic sequelae", "Pleural effusion": "pleural effusion",
    "Mosaic attenuation pattern": "mosaic attenuation", "Peribronchial thickening": "peribronchial thickening",
    "Consolidation": "consolidation", "Bronchiectasis": "bronchiectasis",
    "Interlobular septal thickening": "interlobular septal thickening",
}
assert tuple(CT_PHRASES) == CT_FINDINGS


def ct_zero_shot_prompts(finding: str) -> tuple[str, str]:
    """(negative, positive) report sentences of a CT finding, e.g. ("No pleural effusion.", "Pleural effusion.")."""
    if finding not in CT_PHRASES:
        raise KeyError(f"no phrase for CT finding '{finding}'; known: {list(CT_PHRASES)}")
    phrase = CT_PHRASES[finding]
    return f"No {phrase}.", f"{phrase[0].upper()}{phrase[1:]}."


# Finding -> regular expressions over lowercase sentence text; any one is a mention.
_MENTIONS: dict[str, tuple[str, ...]] = {
    "Medical material": (
        r"\bmedical (?:devices?|materials?)\b", r"\bpacemakers?\b", r"\b(?:defibrillator|icd)\b", r"\bports?\b",
        r"\bcatheters?\b", r"\bsternotomy wires?\b", r"\b(?:nasogastric|endotracheal|tracheostomy|chest|feeding) "
        r"tubes?\b", r"\bsurgical clips?\b", r"\bstents?\b", r"\bcentral (?:venous )?lines?\b"),
    "Arterial wall calcification": (
        r"\b(?:aortic|aorta) (?:wall )?(?:atherosclerosis|calcifications?|atheroma(?:tosis)?)\b",
        r"\b(?:atherosclerotic )?calcifications? (?:in|of) the (?!coronary )(?:\w+ )?"
        r"(?:aorta|aortic (?:wall|arch)|arterial walls?)\b",
        r"\b(?:calcified )?(?:atherosclerotic )?plaques? in the (?:\w+ )?aorta\b",
        r"(?<!coronary )\barterial (?:wall )?calcifications?\b", r"\bvascular calcifications?\b"),
    "Cardiomegaly": (r"\bcardiomegaly\b", r"\bcardiac enlargement\b", r"\benlarged heart\b",
                     r"\bheart (?:size )?(?:is|appears) (?:\w+ )?enlarged\b"),
    "Pericardial effusion": (r"\bpericardial (?:effusions?|fluid)\b",
                             r"\bpericardial (?=(?:or|and) (?:pleural )?effusions?\b)"),
    "Coronary artery wall calcification": (
        r"\bcoronary (?:artery |arterial )?(?:wall )?(?:calcifications?|calcium|calcified plaques?|atherosclerosis)\b",
        r"\b(?:calcified |atherosclerotic )*plaques? in the coronary arter(?:y|ies)\b",
        r"\bcalcifications? (?:in|of) the coronary arter(?:y|ies|ial walls?)\b"),
    "Hiatal hernia": (r"\bhiat(?:al|us) hernia\b", r"\bherniation of the stomach\b"),
    "Lymphadenopathy": (r"\b(?:lymph)?adenopath(?:y|ies)\b", r"\benlarged (?:\w+ )?lymph nodes?\b",
                        r"\blymph nodes? of pathological size\b"),
    "Emphysema": (r"(?<!subcutaneous )\bemphysema(?:tous)?\b",),
    "Atelectasis": (r"\batelecta(?:sis|ses|tic)\b",),
    "Lung nodule": (r"\b(?:micro)?nodules?\b",),
    "Lung opacity": (r"\bground[- ]glass\b", r"\bopacit(?:y|ies)\b", r"\bdensity increases?\b"),
    "Pulmonary fibrotic sequela": (r"\bfibro(?:tic|sis)\b", r"\bsequelae?\b"),
    "Pleural effusion": (r"(?<!pericardial )\beffusions?\b", r"\bpleural (?=(?:or|and) pericardial effusions?\b)",
                         r"\bpleural fluid\b", r"\bhydrothorax\b"),
    "Mosaic attenuation pattern": (r"\bmosaic (?:attenuation|perfusion|pattern)\b",),
    "Peribronchial thickening": (r"\bperibronchial (?:wall )?(?:thickening|cuffing)\b",
                                 r"\bbronchial wall thickening\b", r"\bthickening of the bronchial walls?\b"),
    "Consolidation": (r"\bconsolidat(?:ion|ions|ed|ive)\b",),
    "Bronchiectasis": (r"\bbronchiecta(?:sis|ses|tic)\b",),
    "Interlobular septal thickening": (r"\b(?:interlobular )?septal thickening\b",
                                       r"\bthickening of the interlobular sept(?:a|um)\b",
                                       r"\binterlobular septa (?:are|is) thickened\b"),
}
assert tuple(_MENTIONS) == CT_FINDINGS
_MENTION_RE = {f: re.compile("|".join(f"(?:{p})" for p in ps)) for f, ps in _MENTIONS.items()}

# Cues: (pattern, kind, side). "strong" hedges give -1 whatever else is in scope.
_CUES: tuple[tuple[re.Pattern, int | str, str], ...] = tuple((re.compile(p), kind, side) for p, kind, side in (
    (r"\bcan ?not (?:be )?(?:entirely |completely )?(?:excluded|ruled out)\b|\bnot (?:be )?excluded\b",
     "strong", "post"),
    (r"\bcan ?not (?:entirely |completely )?(?:exclude|rule out)\b", "strong", "pre"),
    (r"\b(?:possible|possibly|probable|probably|questionable|suspicious for|suspected|suspect|suggestive of|"
     r"suggesting|likely|may represent|may be|could represent|could be|equivocal|concerning for|presumed)\b",
     UNCERTAIN, "pre"),
    (r"\b(?:is|are|was|were) (?:possible|probable|suspected|questionable|likely)\b", UNCERTAIN, "post"),
    (r"\b(?:no|without|absence of|negative for|free of|neither|nor)\b", NEGATIVE, "pre"),
    (r"\bnot\b|\babsent\b|\bunremarkable\b|\bresolved\b|\bexcluded\b|\bruled out\b|"
     r"\b(?:is|are|was|were) (?:within )?normal\b", NEGATIVE, "post"),
))
# Phrases that look like negations but state the finding ("no change in the effusion").
_PSEUDO = re.compile(r"\bno (?:significant |interval |appreciable )?(?:change|increase|decrease|progression)\b|"
                     r"\bnot only\b")
_TERMINATORS = re.compile(r"\b(?:but|however|although|though|whereas|except|apart from|aside from|other than)\b"
                          r"|, the\b(?! (?:largest|smallest|biggest)\b)|\band the\b|\bthere (?:is|are)\b|[:;]")
_HEADER = re.compile(r"\b(?:findings|impression)\s*:")
_SENTENCE = re.compile(r"\.(?!\d)|[;\n?!]")


@dataclass(frozen=True)
class _Cue:
    start: int
    end: int
    kind: int | str
    side: str


def _sentences(text: str) -> list[str]:
    """Lowercase sentences of a report, headers removed."""
    text = _HEADER.sub(".", str(text).lower())
    return [" ".join(s.split()) for s in _SENTENCE.split(text) if s.strip()]


def _mentions(sentence: str) -> list[tuple[str, int, int]]:
    return [(f, m.start(), m.end()) for f, pattern in _MENTION_RE.items() for m in pattern.finditer(sentence)]


def _cues(sentence: str) -> list[_Cue]:
    blocked = [m.span() for m in _PSEUDO.finditer(sentence)]
    found: list[_Cue] = []
    for pattern, kind, side in _CUES:  # hedges first: a negation inside one is dropped
        for m in pattern.finditer(sentence):
            s, e = m.span()
            if any(s < be and bs < e for bs, be in blocked):
                continue
            if kind == NEGATIVE and any(s < c.end and c.start < e for c in found):
                continue
            found.append(_Cue(s, e, kind, side))
    return found


def _label_mention(sentence: str, start: int, end: int, cues: list[_Cue]) -> int:
    """1, 0 or -1 for the mention at sentence[start:end]."""
    inside = [c for c in cues if c.start < end and start < c.end]
    if inside:
        return UNCERTAIN if any(c.kind != NEGATIVE for c in inside) else NEGATIVE
    pre = [c for c in cues if c.side == "pre" and c.end <= start and not _TERMINATORS.search(sentence[c.end:start])]
    post = [c for c in cues if c.side == "post" and c.start >= end and not _TERMINATORS.search(sentence[end:c.start])]
    if any(c.kind == "strong" for c in pre + post):
        return UNCERTAIN
    if pre:
        return int(max(pre, key=lambda c: c.end).kind)
    if post:
        return int(min(post, key=lambda c: c.start).kind)
    return POSITIVE


def _combine(old: int, new: int) -> int:
    """Stated beats hedged beats absent."""
    rank = {POSITIVE: 2, UNCERTAIN: 1, NEGATIVE: 0}
    return old if rank[old] >= rank[new] else new


def label_ct_report(text: str) -> dict[str, int]:
    """One label per finding in CT_FINDINGS: 1 stated, -1 hedged, 0 negated or not mentioned."""
    labels = dict.fromkeys(CT_FINDINGS, NEGATIVE)
    if not isinstance(text, str) or not text.strip():
        return labels
    for sentence in _sentences(text):
        cues = _cues(sentence)
        for finding, start, end in _mentions(sentence):
            labels[finding] = _combine(labels[finding], _label_mention(sentence, start, end, cues))
    return labels


def label_ct_reports(texts: Iterable[str]) -> pd.DataFrame:
    """(N,) reports -> (N, 18) DataFrame of labels, columns CT_FINDINGS."""
    return pd.DataFrame([label_ct_report(t) for t in texts], columns=list(CT_FINDINGS))


def ct_labeler_agreement(manifest_df: pd.DataFrame) -> dict:
    """Exact agreement of :func:`label_ct_report` with a CT phantom manifest's ``reported_<F>`` columns.

    Returns {"n_reports", "overall" (share of compared labels right), "exact_match" (share of reports with every
    label right), "per_finding": {F: share right}}; findings without a ``reported_<F>`` column are skipped and
    empty cells are not compared.
    """
    if "report" not in manifest_df.columns:
        raise ValueError("manifest has no 'report' column: labeler agreement needs reports (CT phantom manifests "
                         "have one)")
    findings = [f for f in CT_FINDINGS if reported_column(f) in manifest_df.columns]
    if not findings:
        raise ValueError("manifest has no 'reported_<Finding>' columns of CT findings to compare the labeler with")
    predicted = label_ct_reports(manifest_df["report"].tolist())[findings].to_numpy()
    truth = manifest_df[[reported_column(f) for f in findings]].apply(pd.to_numeric, errors="coerce").to_numpy()
    return {"n_reports": int(len(manifest_df)), **compare_labels(predicted, truth, findings)}
