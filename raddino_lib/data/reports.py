"""Rule-based report labeler: free text -> one label per ChestX-ray14 finding.

A NegEx-style design (Chapman et al. 2001), in the spirit of the CheXpert and
NegBio labelers that produced the labels of public chest X-ray datasets:

1. keep the report's findings/impression text (indication, history, comparison
   and technique sections are dropped: "evaluate for pneumonia" is a question,
   not a finding), lowercase it, drop laterality words, split into sentences;
2. find *mentions* of each finding with a synonym lexicon (``LEXICON``);
3. find *cues* in the sentence: negation before the mention ("no", "without",
   "negative for", "free of", "no evidence of") or after it ("is not seen",
   "has resolved"); uncertainty before ("possible", "may represent", "rule
   out", "suspicious for") or after ("cannot be excluded", "is likely", "?").
   A cue's scope ends at a terminator ("but", "however", "although", "there is"
   ...). Pseudo-negations ("no change in", "no increase in") are not cues;
4. a mention takes the nearest cue in scope (a preceding cue first): negation
   -> 0, uncertainty -> -1, none -> 1; per finding, positive beats uncertain
   beats negated, and a finding never mentioned is 0.

Summary phrases ("no acute cardiopulmonary process", "lungs are clear") name
no finding, so they leave every label at 0 without special cases, and they do
not cancel a finding stated elsewhere ("Stable cardiomegaly. No acute
cardiopulmonary process." -> Cardiomegaly 1).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np
import pandas as pd

from raddino_lib.data.schema import CXR14_FINDINGS, reported_column

POSITIVE, NEGATIVE, UNCERTAIN = 1, 0, -1

# Synonyms per finding (regular expressions over lowercased text with hyphens as spaces).
LEXICON: dict[str, str] = {
    "Atelectasis": r"atelecta\w*|(?<!vertebral )(?<!vertebral body )\bcollapsed?\b",
    "Cardiomegaly": r"cardiomegaly|cardiac enlargement|enlarge(?:d|ment of)(?: the)? (?:heart|cardiac)"
                    r"|(?:heart|cardiac)(?: size| silhouette| contour)?(?: is| are| appears| remains| has)?"
                    r"(?: not| become| been)?(?: \w+ly)? enlarged|enlarged heart",
    "Consolidation": r"consolidat\w*",
    "Edema": r"(?<!soft tissue )(?<!subcutaneous )(?<!facial )\bo?edema\w*|vascular congestion"
             r"|pulmonary congestion|kerley b|congestive heart failure|\bchf\b|fluid overload",
    "Effusion": r"(?<!pericardial )effusions?|pleural fluid|hydro(?:pneumo)?thorax"
                r"|fluid in the (?:\w+ )?(?:costophrenic|pleural)"
                r"|blunt(?:ing|ed)(?: of)?(?: the)?(?: \w+)? costophrenic|costophrenic (?:angle )?blunting",
    "Emphysema": r"(?<!subcutaneous )(?<!soft tissue )(?<!mediastinal )emphysema\w*|bullae|bullous"
                 r"|hyperinflat\w*|hyperexpan\w*",
    "Fibrosis": r"fibros\w*|fibrotic|honeycomb\w*|(?:parenchymal|pulmonary|lung|interstitial) scarring",
    "Hernia": r"hernia\w*",
    "Infiltration": r"infiltrat\w*|airspace (?:opacit\w*|disease)|patchy opacit\w*|ill defined (?:lung )?opacit\w*",
    "Mass": r"(?<!body )\bmass(?:es)?\b(?! effect)|\btumou?r\w*|neoplas\w*",
    "Nodule": r"nodul\w*",
    "Pleural_Thickening": r"pleural (?:\w+ )?thickening|thicken\w* (?:of )?(?:the )?pleura\w*|pleural scarring"
                          r"|apical (?:pleural )?cap|pleural plaques?",
    "Pneumonia": r"pneumoni\w*|infectio\w*|infectious process",
    "Pneumothorax": r"pneumothora(?:x|ces)|\bptx\b",
}

# How a radiologist names each finding (zero-shot prompts, report templates).
FINDING_PHRASES: dict[str, str] = {
    "Atelectasis": "atelectasis", "Cardiomegaly": "cardiomegaly", "Consolidation": "consolidation",
    "Edema": "pulmonary edema", "Effusion": "pleural effusion", "Emphysema": "emphysema",
    "Fibrosis": "pulmonary fibrosis", "Hernia": "hiatal hernia", "Infiltration": "infiltrate",
    "Mass": "lung mass", "Nodule": "pulmonary nodule", "Pleural_Thickening": "pleural thickening",
    "Pneumonia": "pneumonia", "Pneumothorax": "pneumothorax",
}


def zero_shot_prompts(finding: str) -> tuple[str, str]:
    """(negative, positive) report sentences for zero-shot classification, e.g. ("No pleural effusion.",
    "Pleural effusion.")."""
    if finding not in FINDING_PHRASES:
        raise KeyError(f"no phrase for finding '{finding}'; known: {sorted(FINDING_PHRASES)}")
    phrase = FINDING_PHRASES[finding]
    return f"No {phrase}.", f"{phrase[0].upper()}{phrase[1:]}."


# Cue patterns. Pre-cues reach forward to a mention, post-cues back to one, both stopped by a terminator.
# "likely" is uncertain (as in CheXpert and RadGraph): "opacity, likely atelectasis" -> -1.
PRE_NEGATION = (r"\bno\b|\bnot\b|\bwithout\b|negative for|free of|clear of|absence of|\babsent\b"
                r"|resolution of|resolved\b|\bnor\b|\bneither\b|rather than")
POST_NEGATION = (r"(?:is|are|was|were)? ?not (?:\w+ )?(?:seen|identified|present|evident|appreciated|visualized"
                 r"|demonstrated|detected|noted|visible)|(?:is|are)? ?absent|(?:has|have)? ?resolved|(?:has|have)"
                 r" cleared|no longer \w+|(?:is|are) unlikely|(?:has been|is|are|was) (?:ruled out|excluded)")
PRE_UNCERTAIN = (r"\bmay\b|\bmight\b|\bcould\b|possibl[ey]|probabl[ey]|\blikely\b|questionabl[ey]|question of"
                 r"|suspicious|suspicion|suspected|suggest\w*|concern(?:ing)? for|can ?not (?:be )?(?:excluded|ruled"
                 r" out|exclude|rule out)|can't (?:exclude|rule out)|not (?:be )?(?:excluded|ruled out)"
                 r"|(?:difficult|hard) to exclude|rule out|\br/o\b|evaluate for|assess for|borderline|equivocal"
                 r"|indeterminate|presum\w+|\bversus\b|\bvs\b|differential|potential\w*|\bpossibility\b|\?")
POST_UNCERTAIN = (r"can ?not (?:be )?(?:entirely |completely )?(?:excluded|ruled out)|can't be (?:excluded|ruled out)"
                  r"|(?:is|are)? ?not (?:entirely |completely )?(?:excluded|ruled out)|(?:is|are) (?:possible|likely|"
                  r"probable|suspected|questioned|not certain)|\bversus\b|\bvs\b|(?:may|might|could) (?:also )?be\b|\?")
PSEUDO_NEGATION = (r"no (?:(?:significant|interval|substantial|appreciable) )*"
                   r"(?:change|increase|decrease|worsening|improvement)|not (?:significantly )?changed|not only"
                   r"|to suggest")  # "no opacity to suggest pneumonia": the negation carries on
TERMINATORS = (r"\bbut\b|however|although|\bthough\b|\bexcept\b|aside from|apart from|other than"
               r"|with the exception of|\bwhich\b|\bthat\b|whereas|\bwhile\b|\byet\b|there (?:is|are)\b"
               r"|(?:is|are) (?:present|noted|seen|identified)\b|\bnow\b|,? and (?:a|an|the)\b")

SKIP_SECTIONS = ("indication", "history", "clinical history", "clinical information", "reason for exam",
                 "reason for examination", "comparison", "comparisons", "technique", "examination", "exam")
SECTIONS = SKIP_SECTIONS + ("findings", "impression", "conclusion", "recommendation", "recommendations", "report")
_HEADER = re.compile(r"\b([a-z][a-z ]{1,30}?)\s*:", re.IGNORECASE)
_LATERALITY = re.compile(r"\b(?:left|right|bilateral(?:ly)?|unilateral|bibasilar|bibasal)\b\s*")
_SENTENCE = re.compile(r"\.(?!\d)|;|\n|(?<=\?)")
_MENTIONS = {f: re.compile(p) for f, p in LEXICON.items()}
_CUES = tuple((re.compile(p), kind, side) for p, kind, side in (
    (PRE_UNCERTAIN, UNCERTAIN, "pre"), (POST_UNCERTAIN, UNCERTAIN, "post"),
    (PRE_NEGATION, NEGATIVE, "pre"), (POST_NEGATION, NEGATIVE, "post")))
_PSEUDO = re.compile(PSEUDO_NEGATION)
_TERMINATORS = re.compile(TERMINATORS)


def _section(header: str) -> str | None:
    """The known section name a ``header:`` ends with ("chest pa and lat history" -> "history"), else None."""
    header = " ".join(header.lower().split())
    return next((h for h in SECTIONS if header == h or header.endswith(" " + h)), None)


def report_body(text: str) -> str:
    """The report without indication/history/comparison/technique sections (those ask, they do not find)."""
    text = str(text)
    parts, keep, start = [], True, 0
    for m in _HEADER.finditer(text):
        section = _section(m.group(1))
        if section is None:
            continue
        if keep:
            parts.append(text[start:m.start()])
        keep, start = section not in SKIP_SECTIONS, m.end()
    if keep:
        parts.append(text[start:])
    return " . ".join(parts)


def split_sentences(text: str) -> list[str]:
    """Normalized sentences: lowercase, hyphens as spaces, laterality words removed, split on . ; ? and newlines."""
    text = str(text).lower().replace("-", " ")
    text = _LATERALITY.sub("", text)
    return [re.sub(r"\s+", " ", s).strip() for s in _SENTENCE.split(text) if s.strip()]


def _cues(sentence: str) -> list[tuple[int, int, int, str]]:
    """(start, end, kind, side) cue spans; uncertainty masks negation inside it; pseudo-negations are dropped."""
    blocked = [m.span() for m in _PSEUDO.finditer(sentence)]
    found: list[tuple[int, int, int, str]] = []
    for pattern, kind, side in _CUES:
        for m in pattern.finditer(sentence):
            s, e = m.span()
            if s == e or any(s < be and bs < e for bs, be in blocked):
                continue
            if kind == NEGATIVE and any(s < fe and fs < e for fs, fe, k, _ in found if k == UNCERTAIN):
                continue
            found.append((s, e, kind, side))
    return found


def _label_mention(start: int, end: int, cues: list[tuple[int, int, int, str]], stops: list[int]) -> int:
    """The label of one mention span: the nearest in-scope preceding cue, else the nearest following cue."""
    pre = [(ce, k) for cs, ce, k, side in cues if side == "pre" and cs < end and ce <= end
           and not any(ce <= t < start for t in stops)]
    if pre:
        return max(pre)[1]
    post = [(cs, k) for cs, ce, k, side in cues if side == "post" and cs >= end
            and not any(end <= t < cs for t in stops)]
    return min(post)[1] if post else POSITIVE


def label_sentence(sentence: str) -> dict[str, int]:
    """Labels of the findings mentioned in one normalized sentence (others absent from the dict)."""
    cues = _cues(sentence)
    stops = [m.start() for m in _TERMINATORS.finditer(sentence)]
    out: dict[str, int] = {}
    for finding, pattern in _MENTIONS.items():
        for m in pattern.finditer(sentence):
            out[finding] = _combine(out.get(finding), _label_mention(m.start(), m.end(), cues, stops))
    return out


def _combine(old: int | None, new: int) -> int:
    """Positive beats uncertain beats negated."""
    if old is None:
        return new
    rank = {POSITIVE: 2, UNCERTAIN: 1, NEGATIVE: 0}
    return old if rank[old] >= rank[new] else new


def label_report(text: str) -> dict[str, int]:
    """One label per CXR14 finding: 1 stated present, -1 uncertain, 0 negated or not mentioned."""
    labels = dict.fromkeys(CXR14_FINDINGS, NEGATIVE)
    seen: dict[str, int] = {}
    if not isinstance(text, str) or not text.strip():
        return labels
    for sentence in split_sentences(report_body(text)):
        for finding, value in label_sentence(sentence).items():
            seen[finding] = _combine(seen.get(finding), value)
    labels.update(seen)
    return labels


def label_reports(texts: Iterable[str]) -> pd.DataFrame:
    """(N,) reports -> (N, 14) DataFrame of labels, columns CXR14_FINDINGS."""
    return pd.DataFrame([label_report(t) for t in texts], columns=list(CXR14_FINDINGS))


def labeler_agreement(manifest_df: pd.DataFrame) -> dict:
    """Accuracy of :func:`label_report` against the manifest's ``reported_<F>`` columns (phantoms).

    Returns {"n_reports", "macro_accuracy", "exact_match" (all 14 right), "accuracy": {F: acc},
    "n_positive": {F: count of reported 1}}; findings without a ``reported_<F>`` column are skipped.
    """
    if "report" not in manifest_df.columns:
        raise ValueError("manifest has no 'report' column: labeler agreement needs reports "
                         "(phantom manifests have one; real manifests need a report per row)")
    findings = [f for f in CXR14_FINDINGS if reported_column(f) in manifest_df.columns]
    if not findings:
        raise ValueError("manifest has no 'reported_<Finding>' columns to compare the labeler against")
    df = manifest_df[manifest_df["report"].fillna("").astype(str).str.strip() != ""]
    predicted = label_reports(df["report"].astype(str))
    truth = df[[reported_column(f) for f in findings]].apply(pd.to_numeric, errors="coerce").to_numpy()
    correct = predicted[findings].to_numpy() == truth  # (N, F); nan truth compares False
    known = ~np.isnan(truth)
    acc = {f: float(correct[known[:, i], i].mean()) if known[:, i].any() else float("nan")
           for i, f in enumerate(findings)}
    return {
        "n_reports": int(len(df)),
        "macro_accuracy": float(np.nanmean(list(acc.values()))),
        "exact_match": float((correct | ~known).all(axis=1).mean()) if len(df) else float("nan"),
        "accuracy": acc,
        "n_positive": {f: int((truth[:, i] == 1).sum()) for i, f in enumerate(findings)},
    }


def labeler_disagreements(manifest_df: pd.DataFrame, n: int = 5) -> pd.DataFrame:
    """Up to ``n`` (report, finding, labeler, reported) rows where the labeler and ``reported_<F>`` differ."""
    rows = []
    for text, (_, row) in zip(manifest_df["report"].fillna("").astype(str), manifest_df.iterrows(), strict=True):
        labels = label_report(text)
        for f in CXR14_FINDINGS:
            truth = pd.to_numeric(row.get(reported_column(f), np.nan), errors="coerce")
            if text.strip() and not pd.isna(truth) and labels[f] != int(truth):
                rows.append({"report": text, "finding": f, "labeler": labels[f], "reported": int(truth)})
        if len(rows) >= n:
            break
    return pd.DataFrame(rows[:n], columns=["report", "finding", "labeler", "reported"])
