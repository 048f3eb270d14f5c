"""Patient factors → the measurements of one chest, in millimetres of the film.

Every patient factor acts here, through anatomy, graded and with individual
variation so that groups overlap; no factor sets a global property of the image
(brightness, contrast, noise level are set by the acquisition, independently):

- age: lower bone density and thinner cortices, calcified costal cartilage and
  aortic knob (more likely and more extensive with age), an unfolded aorta
  (larger knob, pushed left and up; tortuous descending aorta), kyphosis
  (crowded upper ribs, lower clavicles, wedged upper vertebrae), vertebral
  osteophytes, slightly larger lungs and heart;
- sex: a chest frame about 3.5% smaller in women (distributions overlap),
  breast shadows whose size grows with BMI and which fall laterally and flatten
  on supine AP films; men with a high BMI get a faint chest-wall fat shadow;
- BMI: wider and thicker soft tissue (and, in the acquisition, more noise);
- view: AP films magnify the heart, project the scapulae over the lungs, raise
  the clavicles and are taken in shallower inspiration.

Findings that change the anatomy itself act here too: cardiomegaly enlarges the
heart, emphysema lowers and flattens the domes, atelectasis and fibrosis raise
the dome of their side (volume loss).

Coordinates: X from the film centre to the image right (the patient's left),
Y downwards, in mm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raddino_lib.data.phantoms.patients import Case

AGE_SPAN = (18.0, 88.0)  # ages over which the graded effects go from 0 to 1


@dataclass(frozen=True)
class Body:
    """Geometry and tissue properties of one chest (lengths in mm, factors dimensionless)."""

    mid: float  # X of the midline
    frame: float  # skeletal size factor (1 = average man)
    thorax_w: float  # inner half-width of the rib cage at its widest
    apex_y: float  # Y of the lung apices
    dome_right: float  # Y of the right hemidiaphragm dome (higher = smaller Y)
    dome_left: float  # Y of the left dome (lower than the right)
    cp_drop: float  # depth of the costophrenic recesses below each dome
    heart_right: float  # right heart border: distance right of the midline
    heart_left: float  # cardiac apex: distance left of the midline
    knob_x: float  # aortic knob centre, mm left of the midline
    knob_y: float
    knob_r: float  # knob radius
    aorta_x: float  # lateral wall of the descending aorta, mm left of the midline
    aorta_wave: float  # tortuosity (amplitude in mm) of the descending aorta
    carina_y: float
    bone_density: float  # attenuation of cancellous bone (1 = young adult)
    cortex: float  # cortical thickness factor
    cartilage_calcification: float  # 0..1 extent of calcified costal cartilage
    knob_calcification: float  # 0..1 extent of the calcified rim of the aortic knob
    kyphosis: float  # 0..1
    osteophytes: float  # 0..1
    rib_spacing: float  # mm between posterior ribs at mid-thorax
    body_w: float  # half-width of the soft-tissue outline
    soft_tissue: float  # soft-tissue thickness factor (BMI)
    breast: float  # breast shadow size factor (0 = none)
    breast_lateral: float  # lateral shift of the breasts (mm; supine AP films)
    breast_density: float  # density factor of the breast shadow
    scapula_x: float  # medial border of the scapula, mm from the midline at the level of the apex
    clavicle_y: float  # Y of the clavicles' medial ends
    noise_factor: float  # detector noise multiplier from body habitus (BMI)
    unfold: float = 0.0  # 0..1 unfolding of the aorta (knob, ascending and descending aorta)
    vascularity: float = 1.0  # prominence of the lung markings (normal variation)
    aeration: float = 1.0  # air content of the lungs (normal variation)


def sample_body(case: Case, rng: np.random.Generator) -> Body:
    """Draw one chest's measurements from the patient factors (see the module docstring)."""
    female, ap = case.sex == "F", case.view == "AP"
    f = case.findings
    emphysema = f["Emphysema"].severity if "Emphysema" in f else 0
    aging = float(np.clip((case.age - AGE_SPAN[0]) / (AGE_SPAN[1] - AGE_SPAN[0]), 0.0, 1.0))
    bmi = case.bmi
    frame = rng.normal(0.98 if female else 1.0, 0.045)
    thorax_w = 138.0 * frame
    inspiration = rng.normal(0.90, 0.04) if ap else rng.normal(1.0, 0.035)
    kyphosis = float(np.clip((case.age - 40.0) / 45.0, 0.0, 1.0) * rng.uniform(0.75, 1.15))
    apex_y = -168.0 + rng.normal(0.0, 5.0) + 15.0 * kyphosis
    lung_h = 245.0 * frame * inspiration * (1.0 + 0.03 * aging + 0.07 * emphysema)
    dome_right = apex_y + lung_h - _volume_loss(case, "right")
    dome_left = apex_y + lung_h + max(6.0, rng.normal(18.0, 5.0)) - _volume_loss(case, "left")
    ctr = rng.normal(0.445, 0.025) + 0.04 * aging  # cardiothoracic ratio
    if "Cardiomegaly" in f:
        ctr += 0.07 + 0.04 * f["Cardiomegaly"].severity
    heart_w = 2.0 * thorax_w * ctr * (1.12 if ap else 1.0)
    unfold = aging * rng.uniform(0.8, 1.1)
    knob_y = apex_y + 72.0 * frame - 6.0 * unfold + rng.normal(0.0, 4.0)
    post_menopause = float(np.clip((case.age - 50.0) / 25.0, 0.0, 1.0)) if female else 0.0
    volume, fat = rng.lognormal(0.0, 0.25), rng.uniform(0.5, 1.0)  # drawn for everyone: same stream for both sexes
    if female:
        breast = float(volume * np.clip(0.55 + 0.035 * (bmi - 20.0), 0.45, 1.4))
    else:  # a fat chest wall gives some men a faint shadow
        breast = float(0.3 * np.clip((bmi - 28.0) / 10.0, 0.0, 1.0) * fat)
    return Body(
        mid=float(rng.normal(0.0, 3.0)), frame=float(frame), thorax_w=float(thorax_w), apex_y=float(apex_y),
        dome_right=float(dome_right), dome_left=float(dome_left),
        cp_drop=float((42.0 * frame + rng.normal(0, 4)) * (1.0 - 0.25 * emphysema)),
        heart_right=float(0.36 * heart_w), heart_left=float(0.64 * heart_w),
        knob_x=float(21.0 + 12.0 * unfold + rng.normal(0.0, 2.0)), knob_y=float(knob_y),
        knob_r=float(12.0 + 7.0 * unfold + rng.normal(0.0, 1.0)),
        aorta_x=float(19.0 + 12.0 * unfold + rng.normal(0.0, 1.5)),
        aorta_wave=float(9.0 * unfold * rng.uniform(0.5, 1.0)),
        carina_y=float(knob_y + 28.0 + rng.normal(0.0, 4.0)),
        bone_density=float(1.15 - 0.12 * aging - 0.10 * post_menopause + rng.normal(0.0, 0.03)),
        cortex=float(1.0 - 0.25 * aging + rng.normal(0.0, 0.04)),
        cartilage_calcification=float(np.clip((case.age - 30.0) / 45.0 + rng.normal(0.0, 0.08), 0.0, 1.0)),
        knob_calcification=float(np.clip((case.age - 40.0) / 40.0 + rng.normal(0.0, 0.10), 0.0, 1.0)),
        kyphosis=kyphosis,
        osteophytes=float(np.clip((case.age - 35.0) / 45.0 + rng.normal(0.0, 0.08), 0.0, 1.0)),
        unfold=float(unfold), vascularity=float(rng.uniform(0.75, 1.3)), aeration=float(rng.uniform(0.9, 1.1)),
        rib_spacing=float(27.0 * frame * inspiration * rng.uniform(0.96, 1.04)),
        body_w=float(thorax_w + 22.0 + 3.0 * (bmi - 25.0)), soft_tissue=float(1.0 + 0.025 * (bmi - 25.0)),
        breast=breast, breast_lateral=float(25.0 if ap else 0.0) + rng.normal(0.0, 5.0),
        breast_density=float((0.6 if ap else 1.0) * rng.uniform(0.85, 1.15)),
        scapula_x=float((0.72 if ap else 1.02) * thorax_w + rng.normal(0.0, 4.0)),
        clavicle_y=float(apex_y + (10.0 if ap else 30.0) + 20.0 * kyphosis + rng.normal(0.0, 4.0)),
        noise_factor=float(np.clip(0.75 + 0.025 * (bmi - 20.0), 0.7, 1.4)),
    )


def _volume_loss(case: Case, side: str) -> float:
    """Elevation (mm) of one hemidiaphragm by atelectasis or fibrosis on that side."""
    out = 0.0
    for name, per_grade in (("Atelectasis", 7.0), ("Fibrosis", 4.0)):
        lesion = case.findings.get(name)
        if lesion is not None and lesion.side in (side, "bilateral"):
            out += per_grade * lesion.severity
    return out
