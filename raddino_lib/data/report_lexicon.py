"""What the report labeler (``reports.py``) reads: finding phrases, cue phrases and the policies they encode.

Every pattern is a regular expression over *normalized* sentence text:
lowercase, hyphens as spaces, laterality words removed, single spaces
("right-sided pleural effusion" → "sided pleural effusion").

Policies (each a deliberate choice; see ``data_manifests/README.md``):

* **Mentions.** A finding is mentioned by the phrases in ``MENTIONS``. Spans
  in ``NOT_MENTIONS`` cancel an overlapping mention of that finding (the
  look-alikes below). ``WEAK_MENTIONS`` are at most uncertain (-1).
* **Emphysema** is named ("emphysema", "emphysematous"). Hyperinflation,
  hyperexpansion, flattened diaphragms and COPD are not emphysema;
  subcutaneous, soft-tissue, mediastinal, interstitial and surgical
  emphysema are air outside the lung, not the disease.
* **Nodule** is "nodule(s)" or "micronodule(s)". "Nodular" patterns
  (nodular opacity, reticulonodular, micronodular, nodularity) are not
  nodules; a calcified nodule is a granuloma (as in CheXpert), not a Nodule.
* **Pneumonia** is "pneumonia", "bronchopneumonia", "infection",
  "infectious (process)". An old, healed, remote, prior or granulomatous
  infection (and its sequelae) is not a pneumonia; "pneumonitis" is not.
* **Pneumothorax** is matched as a whole word: a hydro-, hemo- or
  pyopneumothorax is labelled Effusion (fluid in the pleural space), not
  Pneumothorax.
* **Edema**: pulmonary, interstitial, alveolar edema, Kerley B lines, CHF /
  heart failure, fluid or volume overload. Vascular or pulmonary (venous)
  congestion, engorgement, indistinctness or prominence count as Edema at
  most uncertain (-1): the CheXpert labeler's convention, kept as a policy.
  Soft-tissue, subcutaneous and other non-pulmonary edema are not Edema.
* **Effusion**: effusion(s), pleural fluid, fissural fluid, hydro- /
  hemothorax, empyema; not pericardial or joint effusions. Blunting of a
  costophrenic angle is at most uncertain (-1), and not an effusion at all
  when the report attributes it to pleural thickening or scarring.
* **Cardiomegaly** needs the word or an enlarged heart / cardiac silhouette;
  "heart size is normal / top normal / at the upper limits of normal" names
  no finding. A borderline heart size is uncertain.
* **Infiltration**: infiltrate(s), infiltration, infiltrative, ill-defined
  opacities. A plain "opacity" or "airspace opacity" (CheXpert's Lung
  Opacity, which no card maps to Infiltration) is not.
* **Support Devices**: tubes, catheters and named lines, pacemakers /
  defibrillators and their leads, pacing wires, drains, ports, valve
  prostheses, balloon pumps, assist devices. Sternotomy wires, surgical clips
  and orthopedic hardware are not. A device is present or removed: hedges
  around a device concern its position, so Support Devices is never -1.
* **Time words.** "resolved", "resolution of", "cleared", "no longer seen",
  "removed", "history of" negate; "resolving", "improving", "decreased",
  "chronic", "stable", "unchanged", "persistent" keep a finding present.
  "No new X" negates X (a finding that persists is stated elsewhere; the
  CheXpert labeler reads it as uncertain).
"""

from __future__ import annotations

# ----------------------------------------------------------------------------- mentions

MENTIONS: dict[str, str] = {
    "Atelectasis": r"\batelecta\w*|\bcollapsed?\b",
    "Cardiomegaly": r"\bcardiomegaly\b|\bcardiac enlargement\b|\benlarge(?:d|ment of)(?: the)? (?:heart|cardiac)"
                    r"|\b(?:heart|cardiac)(?: size| silhouette| contour| shadow)?"
                    r"(?: is| are| appears| remains| has| appear| remain)?(?: not| become| been)?"
                    r"(?: (?:\w+ly|borderline))? enlarged|\benlarged (?:heart|cardiac)"
                    r"|\b(?:heart|cardiac) size (?:is )?(?:\w+ly )?increased|\bincreased (?:heart|cardiac) size",
    "Consolidation": r"\bconsolidat\w*",
    "Edema": r"\bo?edema(?:tous)?\b|\bkerley b\b|\bheart failure\b|\bchf\b|\b(?:fluid|volume) overload\b",
    "Effusion": r"\beffusions?\b|\bpleural fluid\b|\bfissural fluid\b|\bempyemas?\b"
                r"|\b(?:hydro|h[a]?emo|pyo) ?(?:pneumo)?thora(?:x|ces)\b"
                r"|\bfluid (?:\w+ ){0,3}(?:in|within|along|into) the (?:\w+ )?(?:fissure|costophrenic|pleural)",
    "Emphysema": r"\bemphysema\w*",
    "Fibrosis": r"\bfibros[ie]s\b|\bfibrotic\b|\bhoneycomb\w*|\b(?:parenchymal|pulmonary|lung|interstitial) scarring",
    "Hernia": r"\bhernia\w*",
    "Infiltration": r"\binfiltrat\w*|\bill defined (?:\w+ ){0,2}opacit\w*",
    "Mass": r"\bmass(?:es)?\b|\btumou?rs?\b|\bneoplasms?\b|\bcarcinomas?\b",
    "Nodule": r"\b(?:micro)?nodules?\b",
    "Pleural_Thickening": r"\bpleural (?:\w+ )?thickening\b|\bthicken\w* of the pleura\b"
                          r"|\bpleural (?:parenchymal )?scar\w*|\bpleuro ?parenchymal scar\w*"
                          r"|\bapical (?:pleural )?caps?\b|\bpleural plaques?\b|\bfibrothorax\b",
    "Pneumonia": r"\b(?:broncho)?pneumonias?\b|\binfections?\b|\binfectious\b(?: process)?",
    "Pneumothorax": r"\bpneumothora(?:x|ces)\b|\bptx\b",
    "Support Devices": r"\btubes?\b|\bett\b|\bcatheters?\b|\bpicc\b|\bcvc\b|\bswan ganz\b"
                       r"|\b(?:central|venous|arterial|ij|jugular|subclavian|femoral|dialysis|midline)"
                       r" (?:venous )?lines?\b"
                       r"|\bpace ?makers?\b|\bpacer\b|\ba?icds?\b|\bdefibrillators?\b"
                       r"|\b(?:pacing|pacer|pacemaker) (?:leads?|wires?)\b|\bleads? (?=terminat|in the|project|extend)"
                       r"|\bdrains?\b|\bports?\b|\bport a cath\b|\bmediport\b|\bvalve (?:replacement|prosthesis)\b"
                       r"|\bprosthetic (?:\w+ )?valves?\b|\bballoon pump\b|\biabp\b|\bassist device\b|\blvad\b"
                       r"|\bcannula\w*|\bsheaths?\b|\bsupport devices?\b|\bdevices?\b",
}

# Mentions that are at most uncertain (-1) even when stated plainly.
WEAK_MENTIONS: dict[str, str] = {
    "Edema": r"\b(?:pulmonary|vascular|venous) congestion\b|\bvascular (?:engorgement|indistinctness|prominence)\b"
             r"|\bindistinct (?:pulmonary )?(?:vessels|vasculature|vascular markings)\b"
             r"|\bprominen\w* (?:of the )?(?:pulmonary )?vascula\w*"
             r"|\bvascula\w* (?:is |are |appears? |remains? )?(?:engorged|congested|indistinct)\b"
             r"|\bengorged (?:pulmonary )?(?:vessels|vasculature)\b",
    "Effusion": r"\bblunt\w* (?:of )?(?:the )?(?:\w+ )?(?:costophrenic|cp) (?:angles?|sulc\w*|recess\w*)"
                r"|\b(?:costophrenic|cp) (?:angles? |sulc\w* )?(?:is |are )?blunt\w*",
    "Cardiomegaly": r"\bborderline (?:heart|cardiac) size\b|\b(?:heart|cardiac) size (?:is )?borderline\b(?! normal)",
}

# Spans that cancel an overlapping mention of the finding (look-alikes).
NOT_MENTIONS: dict[str, str] = {
    "Atelectasis": r"\b(?:compression|vertebral|spinal)\b[^.;]{0,30}\bcollapse|\bcollapse\b[^.;]{0,30}\bvertebra\w*",
    "Edema": r"\b(?:soft tissue|subcutaneous|chest wall|body wall|facial|scalp|periorbital|airway|laryngeal"
             r"|mediastinal|bowel|mucosal|extremity) (?:\w+ )?o?edema\b|\bo?edema (?:of|in) the (?:\w+ )?"
             r"(?:soft tissues?|chest wall|neck|face)",
    "Effusion": r"\b(?:pericardial|joint|shoulder|knee) effusions?\b"
                r"|\bblunt[^.;]{0,60}?(?:due to|from|secondary to|related to|reflect\w*|represent\w*|likely) "
                r"(?:\w+ ){0,3}(?:pleural thickening|scarring|scar)\b",
    "Emphysema": r"\b(?:subcutaneous|soft tissue|mediastinal|interstitial|surgical|chest wall|subcutaneous tissue)"
                 r" emphysema\b|\bemphysema (?:in|of|along|within) the (?:\w+ ){0,2}(?:soft tissues?|chest wall|neck)",
    "Fibrosis": r"\bcystic fibrosis\b|\bretroperitoneal fibrosis\b|\bpleur\w* ?parenchymal scar\w*",
    "Mass": r"\bmass effect\b|\bmass like\b|\bbody mass\b",
    "Nodule": r"\bcalcified (?:\w+ ){0,2}(?:micro)?nodules?\b",
    "Pneumonia": r"\b(?:old|healed|remote|prior|previous|past|granulomatous|chronic|resolved)(?: \w+){0,2} "
                 r"(?:granulomatous )?(?:infections?|infectious|pneumonias?)\b"
                 r"|\bsequela\w* of (?:\w+ ){0,2}(?:infections?|pneumonias?)\b",
    "Pneumothorax": r"\b(?:hydro|h[a]?emo|pyo) ?pneumothora(?:x|ces)\b",
}

# ----------------------------------------------------------------------------- cues

# Negation before a mention ("no effusion") and after it ("effusion has resolved").
PRE_NEGATION = (r"\bno\b|\bnot\b|\bwithout\b|\bnegative for\b|\bfree of\b|\bclear of\b|\babsence of\b|\babsent\b"
                r"|\bresolution of\b|\bresolved\b|\bremoval of\b|\bhistory of\b|\bdisappearance of\b|\bclearing of\b"
                r"|\bnor\b|\bneither\b|\brather than\b|\bnothing\b")
POST_NEGATION = (r"(?:(?:is|are|was|were|has been|have been) )?not (?:\w+ )?(?:seen|identified|present|evident"
                 r"|appreciated|visualized|demonstrated|detected|noted|visible|apparent|found|redemonstrated)\b"
                 r"|(?:(?:has|have) (?:\w+ )?)?(?:resolved|cleared)\b|\bno longer (?:\w+ )?(?:seen|visible|present"
                 r"|evident|identified|apparent|visualized|demonstrated|appreciated)\b|\bremov(?:ed|al)\b"
                 r"|(?:is|are|was|were) absent\b|(?:is|are) unlikely\b"
                 r"|(?:has been|have been|is|are|was|were) (?:ruled out|excluded)\b")
# Uncertainty that wins over negation ("cannot be excluded" contains a negation but hedges), before / after.
STRONG_PRE_UNCERTAIN = (r"\bcan ?not (?:entirely |completely )?(?:exclude|rule out)\b|\bcan't (?:exclude|rule out)\b"
                        r"|\b(?:difficult|hard) to (?:exclude|rule out)\b|\bnot rule out\b")
STRONG_POST_UNCERTAIN = (r"\bcan ?not (?:be )?(?:entirely |completely |totally |definitely )?(?:excluded|ruled out)\b"
                         r"|\bcan't be (?:excluded|ruled out)\b"
                         r"|\bnot (?:be )?(?:entirely |completely |totally |definitely )?(?:excluded|ruled out)\b")
# Hedges before a mention ("possible effusion", "may represent atelectasis").
PRE_UNCERTAIN = (r"\bpossibl[ey]\b|\bprobabl[ey]\b|\blikely\b|\bpresum\w+|\bquestionabl[ey]\b|\bquestion of\b"
                 r"|\bsuspicious for\b|\bsuspicion (?:of|for)\b|\bsuspect\w*|\bsuggest\w*|\bconcern(?:ing)? for\b"
                 r"|\bworrisome for\b"
                 r"|\bmay\b|\bmight\b|\bcould\b|\bevaluate for\b|\bassess for\b|\bborderline\b|\bequivocal\b"
                 r"|\bversus\b|\bvs\b|\bdifferential\b|\bconsider(?:ed)?\b|\bfavou?r(?:ed|s)?\b|\bapparent\b"
                 r"|\bperhaps\b|\bmaybe\b|\brule out\b|\br/o\b|\bpotential\w*|\buncertain\b|\?")
# Hedges after a mention ("pneumonia is possible", "pneumothorax?").
POST_UNCERTAIN = (r"\b(?:is|are|was|were) (?:also )?(?:possible|probable|suspected|questioned|questionable"
                  r"|favou?red|considered|a (?:possibility|consideration|concern))\b"
                  r"|\b(?:is|are) (?:most |more )?likely(?= *(?:$|,|and\b|but\b|in\b|given\b|as\b))"
                  r"|\b(?:may|might|could) (?:also )?be (?:present|seen|considered)\b|\bversus\b|\bvs\b|\?"
                  r"|\bin the (?:appropriate|right|correct|proper) clinical (?:setting|context)\b"
                  r"|\b(?:is|are) not (?:well|clearly|fully) (?:seen|visualized|evaluated|assessed)\b"
                  # the mention may be a shadow, not a finding ("nodule ... likely represents a nipple shadow")
                  r"|\b(?:most |more )?(?:likely|probably|possibly|may|might|could) (?:\w+ ){0,3}(?:nipple shadows?"
                  r"|vessels?|vascular shadows?|overlapping|overlying|artifact\w*|skin folds?|summation|end on)\b")
# Phrases that look like cues but are not ("no change in the effusion" states an effusion).
PSEUDO_CUES = (r"\bno (?:(?:significant|interval|substantial|appreciable|definite|major|marked|other) )*"
               r"(?:change|increase|decrease|worsening|improvement|progression)\b"
               r"|\bnot (?:significantly |substantially )?(?:changed|increased|decreased|worsened|improved)\b"
               r"|\bwithout (?:(?:significant|interval) )*(?:change|worsening)\b|\bno more than\b|\bnot only\b"
               r"|\bnot (?:\w+ )?(?:seen|visible|present|evident|apparent) on (?:the )?(?:prior|previous|earlier|recent"
               r"|preceding)\b|\bgram negative\b")
# After a negated phrase these carry the negation on to the next mention ("no opacity to suggest pneumonia").
BRIDGES = (r"\b(?:to|that would|which would|that could|which could|that might) (?:suggest|indicate|represent|explain)\b"
           r"|\bsuggestive of\b|\bconcerning for\b|\bworrisome for\b|\bsuspicious for\b|\bto account for\b")
# Where a cue's scope ends.
TERMINATORS = (r"\bbut\b|\bhowever\b|\balthough\b|\bthough\b|\bexcept\b|\baside from\b|\bapart from\b|\bother than\b"
               r"|\bwith the exception of\b|\bwhereas\b|\bwhile\b|\byet\b|\bthere (?:is|are|has|have)\b"
               r"|\b(?:is|are|was|were) (?:present|noted|seen|identified|again)\b|, now\b|\bnow (?:with|there|shows?"
               r"|demonstrates?)\b|,? and (?:a|an|the|there)\b|, (?:a|an|the)\b")
# Text between two mentions that makes them one list ("effusion, pneumothorax, or edema").
_MODIFIER = (r"(?!(?:with|without|due|to|from|related|of|in|on|at|by|for|after|following|secondary|is|are|was|were"
             r"|has|have|which|that|likely|possibly|probably)\b)[a-z0-9]+")  # a word inside a list item
LIST_JOIN = (rf"\s*(?:(?:,|/|and/or|and|or|nor|as well as|(?:other )?(?:evidence|signs?|findings?) of|{_MODIFIER})"
             rf"\s*){{0,6}}")
OR_AFTER = r"\s*,?\s*(?:or|and/or|/)\s+[a-z]"  # "atelectasis or scarring": the mention is one alternative
OR_JOIN = rf"\s*,?\s*(?:or|and/or|/)\s*(?:{_MODIFIER}\s+){{0,3}}"  # "... or pleural thickening"

PRE_NEGATION_WORDS = 12  # a pre-negation reaches this many words forward ("no focal consolidation, ... edema")
CUE_WORDS = 8  # other cues reach this many words

# ----------------------------------------------------------------------------- sections and text

SKIP_SECTIONS = ("indication", "history", "clinical history", "clinical information", "reason for exam",
                 "reason for examination", "comparison", "comparisons", "technique", "examination", "exam",
                 "recommendation", "recommendations", "notification")
SECTIONS = SKIP_SECTIONS + ("findings", "impression", "conclusion", "report")
LATERALITY = r"\b(?:left|right|bilateral(?:ly)?|unilateral|bibasilar|bibasal)\b\s*"
ABBREVIATIONS = {"vs.": "vs", "e.g.": "eg", "i.e.": "ie", "approx.": "approx", "dr.": "dr"}
