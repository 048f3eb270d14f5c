"""Rule-based report labeler: free text -> one label per finding (the 14 ChestX-ray14 findings, No Finding,
Support Devices).

A NegEx-style design (Chapman et al. 2001) following the conventions of the
NegBio and CheXpert labelers that produced the labels of public chest X-ray
datasets:

1. keep the report's findings / impression text (indication, history,
   comparison, technique and recommendation sections are dropped: "evaluate
   for pneumonia" is a question, not a finding), normalize it (lowercase,
   hyphens as spaces, laterality words removed) and split it into sentences;
2. find *mentions* of each finding (``report_lexicon.MENTIONS``), dropping
   look-alikes (``NOT_MENTIONS``: subcutaneous emphysema, calcified nodules,
   old granulomatous infection, hydropneumothorax, ...);
3. find *cues*: negation before the mention ("no", "without", "negative
   for", "no evidence of", "resolution of", "history of") or after it ("is
   not seen", "has resolved", "removed"); uncertainty before it ("possible",
   "may represent", "likely", "suspicious for", "?") or after it ("is
   possible", "cannot be excluded", "in the appropriate clinical setting");
   pseudo-cues are not cues ("no change in the effusion" states an effusion);
4. label each mention: an in-scope "cannot be excluded"-type hedge gives -1
   whatever else is there (CheXpert matches these first); otherwise the
   nearest in-scope cue before the mention decides, else the nearest after
   it: negation -> 0, uncertainty -> -1, none -> 1. A cue's scope ends at a
   terminator ("but", "however", "there is", ", the", ...), after
   ``PRE_NEGATION_WORDS`` words for a negation and ``CUE_WORDS`` for other
   cues, and at another mention unless the two form a list ("no effusion,
   pneumothorax, or edema"; after a negation, "no opacity to suggest
   pneumonia" also carries on). Two findings joined by "or" are both
   uncertain ("atelectasis or pneumonia"), as in CheXpert. Weak mentions
   (vascular congestion, costophrenic blunting, borderline heart size) are at
   most -1; Support Devices are never -1;
5. per finding over the report: positive beats uncertain beats negated; a
   finding never mentioned is 0. No Finding is 1 when the report has text and
   none of the 14 findings is 1 or -1 (the ChestX-ray14 convention: devices
   and abnormalities outside the 14, such as hyperinflation or a granuloma,
   leave it 1; CheXpert's No Finding also needs no fracture, lung opacity or
   lesion, enlarged cardiomediastinum, pleural abnormality or other listed
   abnormality).

The look-alike and wording policies are listed in ``report_lexicon``.
Summary phrases ("no acute cardiopulmonary process", "lungs are clear")
name no finding, so they leave every label at 0 without special cases, and
they do not cancel a finding stated elsewhere ("Stable cardiomegaly. No
acute cardiopulmonary process." -> Cardiomegaly 1).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from raddino_lib.data import report_lexicon as lex
from raddino_lib.data.schema import CXR14_FINDINGS, FINDINGS, reported_column

POSITIVE, NEGATIVE, UNCERTAIN = 1, 0, -1
DEVICES = "Support Devices"
LABELED = CXR14_FINDINGS + (DEVICES,)  # findings read from mentions; No Finding is derived from them

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


_MENTIONS = {f: re.compile(p) for f, p in lex.MENTIONS.items()}
_WEAK = {f: re.compile(p) for f, p in lex.WEAK_MENTIONS.items()}
_NOT_MENTIONS = {f: re.compile(p) for f, p in lex.NOT_MENTIONS.items()}
_CUES = tuple((re.compile(p), kind, side) for p, kind, side in (
    (lex.STRONG_PRE_UNCERTAIN, "strong", "pre"), (lex.STRONG_POST_UNCERTAIN, "strong", "post"),
    (lex.PRE_UNCERTAIN, UNCERTAIN, "pre"),
    (lex.POST_UNCERTAIN, UNCERTAIN, "post"), (lex.PRE_NEGATION, NEGATIVE, "pre"),
    (lex.POST_NEGATION, NEGATIVE, "post")))
_PSEUDO = re.compile(lex.PSEUDO_CUES)
_BRIDGES = re.compile(lex.BRIDGES)
_TERMINATORS = re.compile(lex.TERMINATORS)
_PRE_NEGATION = re.compile(lex.PRE_NEGATION)
_LIST_JOIN = re.compile(lex.LIST_JOIN)
_OR_JOIN = re.compile(lex.OR_JOIN)
_OR_AFTER = re.compile(lex.OR_AFTER)
_WORD = re.compile(r"[a-z0-9?/]+")
_HEADER = re.compile(r"\b([a-z][a-z ]{1,30}?)\s*:", re.IGNORECASE)
_LATERALITY = re.compile(lex.LATERALITY)
_SENTENCE = re.compile(r"\.(?!\d)|;|\n|(?<=[a-z0-9)]\?)")


@dataclass(frozen=True)
class Mention:
    """A finding named in a sentence: character span [start, end), weak = at most uncertain."""

    finding: str
    start: int
    end: int
    weak: bool = False


@dataclass(frozen=True)
class Cue:
    """A negation / uncertainty phrase: span, kind (NEGATIVE, UNCERTAIN or "strong"), side ("pre" or "post")."""

    start: int
    end: int
    kind: int | str
    side: str


def _section(header: str) -> str | None:
    """The known section name a ``header:`` ends with ("chest pa and lat history" -> "history"), else None."""
    header = " ".join(header.lower().split())
    return next((h for h in lex.SECTIONS if header == h or header.endswith(" " + h)), None)


def report_body(text: str) -> str:
    """The report without indication/history/comparison/technique/recommendation sections (they do not find)."""
    text = str(text)
    parts, keep, start = [], True, 0
    for m in _HEADER.finditer(text):
        section = _section(m.group(1))
        if section is None:
            continue
        if keep:
            parts.append(text[start:m.start()])
        keep, start = section not in lex.SKIP_SECTIONS, m.end()
    if keep:
        parts.append(text[start:])
    return " . ".join(parts)


def split_sentences(text: str) -> list[str]:
    """Normalized sentences: lowercase, hyphens as spaces, laterality words removed, split on . ; ? and newlines."""
    text = str(text).lower()
    for short, plain in lex.ABBREVIATIONS.items():
        text = text.replace(short, plain)
    text = _LATERALITY.sub("", text.replace("-", " "))
    return [re.sub(r"\s+", " ", s).strip() for s in _SENTENCE.split(text) if s.strip()]


def find_mentions(sentence: str) -> list[Mention]:
    """Mentions of every finding in one normalized sentence, in reading order (look-alikes removed)."""
    out = []
    for finding in LABELED:
        blocked = [m.span() for m in _NOT_MENTIONS[finding].finditer(sentence)] if finding in _NOT_MENTIONS else []
        for pattern, weak in ((_MENTIONS[finding], False), (_WEAK.get(finding), True)):
            for m in pattern.finditer(sentence) if pattern is not None else ():
                if not any(m.start() < be and bs < m.end() for bs, be in blocked):
                    out.append(Mention(finding, m.start(), m.end(), weak))
    return sorted(out, key=lambda m: (m.start, m.end))


def find_cues(sentence: str) -> list[Cue]:
    """Cue spans; pseudo-cues and bridges after a negation are dropped, hedges mask the negations inside them."""
    blocked = [m.span() for m in _PSEUDO.finditer(sentence)] + _active_bridges(sentence)
    found: list[Cue] = []
    for pattern, kind, side in _CUES:
        for m in pattern.finditer(sentence):
            s, e = m.span()
            if s == e or any(s < be and bs < e for bs, be in blocked):
                continue
            if kind == NEGATIVE and any(s < c.end and c.start < e for c in found if c.kind != NEGATIVE):
                continue
            found.append(Cue(s, e, kind, side))
    return found


def _active_bridges(sentence: str) -> list[tuple[int, int]]:
    """Bridge spans ("to suggest", "concerning for") preceded in their clause by a negation cue."""
    out = []
    for m in _BRIDGES.finditer(sentence):
        before = sentence[:m.start()]
        clause = before[max([t.end() for t in _TERMINATORS.finditer(before)], default=0):]
        if _PRE_NEGATION.search(clause) and _words(clause) <= lex.PRE_NEGATION_WORDS + 2:
            out.append(m.span())
    return out


def _words(text: str) -> int:
    return len(_WORD.findall(text))


def _joined(sentence: str, first: Mention, second: Mention, cues: list[Cue], bridges: list[tuple[int, int]]
            ) -> bool:
    """Whether two consecutive mentions form one list (or are bridged after a negation)."""
    if any(first.end <= bs and be <= second.start for bs, be in bridges):
        return True
    between = sentence[first.end:second.start]
    return (bool(_LIST_JOIN.fullmatch(between)) and bool(re.search(r",|/|\b(?:and|or|nor|as well as)\b", between))
            and not any(first.end <= c.start and c.end <= second.start for c in cues))


def _groups(sentence: str, mentions: list[Mention], cues: list[Cue]) -> list[int]:
    """Group index of each mention: consecutive mentions in one list share a group."""
    bridges = _active_bridges(sentence)
    group, out = 0, []
    for i, m in enumerate(mentions):
        if i and not (m.start < mentions[i - 1].end or _joined(sentence, mentions[i - 1], m, cues, bridges)):
            group += 1
        out.append(group)
    return out


def _in_scope(sentence: str, start: int, end: int, limit: int) -> bool:
    """No terminator between start and end, and at most ``limit`` words."""
    gap = sentence[start:end]
    return not _TERMINATORS.search(gap) and _words(gap) <= limit


def label_mention(sentence: str, mention: Mention, cues: list[Cue], first: int, last: int,
                  others: list[Mention]) -> int:
    """The label of one mention.

    ``first`` / ``last``: where its list begins and ends; a cue reaches the
    mention from outside the list only if no mention in ``others`` (those
    outside the list) stands between.
    """
    pre, post = [], []
    for c in cues:
        limit = lex.PRE_NEGATION_WORDS if c.kind == NEGATIVE else lex.CUE_WORDS
        if c.side == "pre" and c.end <= mention.end and (c.start >= mention.start or (
                c.end <= first and _in_scope(sentence, c.end, mention.start, limit)
                and not any(c.end <= o.start and o.end <= first for o in others))):
            pre.append(c)
        elif c.side == "post" and c.start >= mention.end and _in_scope(sentence, last, c.start,
                                                                                  lex.CUE_WORDS) \
                and not any(last <= o.start and o.end <= c.start for o in others):
            post.append(c)
    if any(c.kind == "strong" for c in pre + post):
        label = UNCERTAIN
    elif pre:
        label = max(pre, key=lambda c: c.end).kind
    elif post:
        label = min(post, key=lambda c: c.start).kind
    else:
        label = POSITIVE
    if mention.finding == DEVICES:
        return POSITIVE if label == UNCERTAIN else int(label)
    return UNCERTAIN if mention.weak and label == POSITIVE else int(label)


def label_sentence(sentence: str) -> dict[str, int]:
    """Labels of the findings mentioned in one normalized sentence (others absent from the dict)."""
    mentions = find_mentions(sentence)
    cues = find_cues(sentence)
    groups = _groups(sentence, mentions, cues)
    out: dict[str, int] = {}
    for i, m in enumerate(mentions):
        members = [k for k, g in enumerate(groups) if g == groups[i]]
        first, last = mentions[members[0]].start, max(mentions[k].end for k in members)
        others = [o for k, o in enumerate(mentions) if groups[k] != groups[i]]
        label = label_mention(sentence, m, cues, first, last, others)
        if label == POSITIVE and m.finding != DEVICES and _or_joined(sentence, mentions, i):
            label = UNCERTAIN
        out[m.finding] = _combine(out.get(m.finding), label)
    return out


def _or_joined(sentence: str, mentions: list[Mention], i: int) -> bool:
    """Whether mention i is one of alternatives: "A or B" with a mention of another finding, or "A or <anything>"."""
    if _OR_AFTER.match(sentence, mentions[i].end):
        return True
    for j in (i - 1, i + 1):
        if 0 <= j < len(mentions) and mentions[j].finding not in (mentions[i].finding, DEVICES):
            a, b = sorted((mentions[i], mentions[j]), key=lambda m: m.start)
            if b.start >= a.end and _OR_JOIN.fullmatch(sentence[a.end:b.start]):
                return True
    return False


def _combine(old: int | None, new: int) -> int:
    """Positive beats uncertain beats negated."""
    if old is None:
        return new
    rank = {POSITIVE: 2, UNCERTAIN: 1, NEGATIVE: 0}
    return old if rank[old] >= rank[new] else new


def label_report(text: str) -> dict[str, int]:
    """One label per finding in FINDINGS: 1 stated present, -1 uncertain, 0 negated or not mentioned.

    No Finding is 1 when the report has text and none of the 14 CXR14 findings is 1 or -1.
    """
    labels = dict.fromkeys(FINDINGS, NEGATIVE)
    if not isinstance(text, str) or not text.strip():
        return labels
    for sentence in split_sentences(report_body(text)):
        for finding, value in label_sentence(sentence).items():
            labels[finding] = _combine(labels[finding], value)
    labels["No Finding"] = int(all(labels[f] == NEGATIVE for f in CXR14_FINDINGS))
    return labels


def label_reports(texts: Iterable[str]) -> pd.DataFrame:
    """(N,) reports -> (N, 16) DataFrame of labels, columns FINDINGS."""
    return pd.DataFrame([label_report(t) for t in texts], columns=list(FINDINGS))


def labeler_agreement(manifest_df: pd.DataFrame) -> dict:
    """Accuracy of :func:`label_report` against the manifest's ``reported_<F>`` columns (phantoms).

    Returns {"n_reports", "macro_accuracy", "exact_match" (every compared label right), "accuracy": {F: acc},
    "n_positive": {F: count of reported 1}} over FINDINGS; findings without a ``reported_<F>`` column are
    skipped.
    """
    if "report" not in manifest_df.columns:
        raise ValueError("manifest has no 'report' column: labeler agreement needs reports "
                         "(phantom manifests have one; real manifests need a report per row)")
    findings = [f for f in FINDINGS if reported_column(f) in manifest_df.columns]
    if not findings:
        raise ValueError("manifest has no 'reported_<Finding>' columns to compare the labeler against")
    df = manifest_df[manifest_df["report"].fillna("").astype(str).str.strip() != ""]
    predicted = label_reports(df["report"].astype(str))
    truth = df[[reported_column(f) for f in findings]].apply(pd.to_numeric, errors="coerce").to_numpy()
    compared = compare_labels(predicted[findings].to_numpy(), truth, findings)
    return {
        "n_reports": int(len(df)),
        "macro_accuracy": float(np.nanmean(list(compared["per_finding"].values()))),
        "exact_match": compared["exact_match"],
        "accuracy": compared["per_finding"],
        "n_positive": {f: int((truth[:, i] == 1).sum()) for i, f in enumerate(findings)},
    }


def compare_labels(predicted: np.ndarray, truth: np.ndarray, findings: list[str]) -> dict:
    """Exact agreement of (N, F) labeler output with (N, F) recorded labels (NaN = not recorded, not compared):
    {"overall": share of compared labels right, "exact_match": share of rows with every compared label right,
    "per_finding": {F: share right}}."""
    correct = predicted == truth  # NaN truth compares False
    known = ~np.isnan(truth)
    return {
        "overall": float(correct[known].mean()) if known.any() else float("nan"),
        "exact_match": float((correct | ~known).all(axis=1).mean()) if len(truth) else float("nan"),
        "per_finding": {f: float(correct[known[:, i], i].mean()) if known[:, i].any() else float("nan")
                        for i, f in enumerate(findings)},
    }


def labeler_disagreements(manifest_df: pd.DataFrame, n: int = 5) -> pd.DataFrame:
    """Up to ``n`` (report, finding, labeler, reported) rows where the labeler and ``reported_<F>`` differ."""
    rows = []
    for text, (_, row) in zip(manifest_df["report"].fillna("").astype(str), manifest_df.iterrows(), strict=True):
        labels = label_report(text)
        for f in FINDINGS:
            truth = pd.to_numeric(row.get(reported_column(f), np.nan), errors="coerce")
            if text.strip() and not pd.isna(truth) and labels[f] != int(truth):
                rows.append({"report": text, "finding": f, "labeler": labels[f], "reported": int(truth)})
        if len(rows) >= n:
            break
    return pd.DataFrame(rows[:n], columns=["report", "finding", "labeler", "reported"])
