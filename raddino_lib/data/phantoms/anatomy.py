"""Normal chest anatomy as attenuation layers, shaped by the patient factors.

The image is composed in attenuation units (0 = air outside the body, about
1 = soft tissue through the chest, bone and metal above): ``base`` (soft
tissue, mediastinum, heart, abdomen), ``air`` (lung and bowel gas, subtracted),
``vessels`` (lung markings), ``bone``. Findings edit these layers before the
acquisition turns them into pixels (``acquisition.py``).

Patient factors: women have a smaller thorax and breast shadows; age lowers
bone density, unfolds and calcifies the aortic knob and calcifies costal
cartilage; BMI thickens the soft tissue; AP films magnify the heart, project
the scapulae over the lungs and are taken in shallower inspiration.
Sides: ``sgn`` is +1 on the image right = the patient's left.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raddino_lib.data.phantoms.patients import Case
from raddino_lib.data.phantoms.shapes import band, disc, ellipse, frac, smooth_noise, step, where


@dataclass
class Anatomy:
    """Layers and geometry of one image; every array is (S, S) float32 unless noted."""

    x: np.ndarray
    y: np.ndarray
    ax: np.ndarray  # |x - mid|: distance from the midline (lateral > 0)
    sgn: np.ndarray  # +1 patient's left (image right), -1 patient's right
    lung_f: np.ndarray  # lung implicit function: > 0 inside the lung envelope, ~1 at its centre
    diaphragm: np.ndarray  # y of the hemidiaphragm below each pixel
    base: np.ndarray
    air: np.ndarray
    vessels: np.ndarray
    bone: np.ndarray
    lung: np.ndarray  # bool: either lung
    heart: np.ndarray  # bool
    mid: float  # x of the midline
    hilum_y: float
    thorax_w: float  # half-width of the rib cage


def render_anatomy(case: Case, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> Anatomy:
    size = x.shape[0]
    f = case.findings
    female, ap = case.sex == "F", case.view == "AP"
    aging = float(np.clip((case.age - 18.0) / 70.0, 0.0, 1.0))
    scale = (0.93 if female else 1.0) * rng.uniform(0.96, 1.04)
    bone_density = (1.2 - 0.7 * aging) * (0.85 if female and case.age > 50 else 1.0)
    mid = float(rng.normal(0.0, 0.015))
    ax = np.abs(x - mid)
    sgn = where(x > mid, 1.0, -1.0)
    left = x > mid

    # ---- lungs and diaphragm (volume changes from findings)
    emph = f["Emphysema"].severity if "Emphysema" in f else 0
    d0 = 0.53 + 0.07 * aging + 0.07 * emph / 3 - (0.06 if ap else 0.0) - (0.04 if "Fibrosis" in f else 0.0)
    d_right = d0 - _volume_loss(f, "right") + rng.normal(0, 0.015)
    d_left = d0 + 0.04 - _volume_loss(f, "left") + rng.normal(0, 0.015)
    dome = 0.20 * (1.0 - 0.22 * emph) * (0.85 if ap else 1.0)
    cx, a, cy, b = 0.41 * scale, 0.345 * scale, -0.04 + 0.02 * emph, 0.70 + 0.03 * emph
    widen = 0.72 + 0.28 * np.clip((y - cy + b) / (1.4 * b), 0.0, 1.0)  # lungs widen towards the bases
    u = np.abs(ax - cx * (0.85 + 0.15 * widen)) / (a * widen)
    lung_f = 1.0 - u * u * np.sqrt(u) - ((y - cy) / b) ** 2  # superellipse, exponents 2.5 and 2
    diaphragm = where(left, d_left, d_right) - dome * (1.0 - np.clip(((ax - 0.33 * scale) / 0.5) ** 2, 0, 1))
    unfold = aging * rng.uniform(0.6, 1.2)
    med_w = 0.085 * scale + 0.025 * step(y + 0.35, 0.05) + 0.035 * step(y + 0.1, 0.12)  # widens towards the heart
    med_w = med_w + where(left, 0.07 * unfold * step(y + 0.45, 0.04), 0.0)

    # ---- heart, aortic knob
    hs = (1.0 + 0.14 * f["Cardiomegaly"].severity if "Cardiomegaly" in f else 1.0) * (1.13 if ap else 1.0)
    hs *= rng.uniform(0.94, 1.06) * scale
    hx, hy = mid + 0.10 * hs, 0.31 + 0.04 * (hs - 1.0)
    heart_e = ellipse(x, y, hx, hy, 0.35 * hs, 0.24 * hs, angle=-0.30)
    heart_soft = step(1.0 - heart_e, 0.08) * step(diaphragm + 0.03 - y, 0.015)  # the heart sits on the diaphragm
    knob_x, knob_r = mid + 0.075 * scale + 0.07 * unfold, 0.055 + 0.035 * unfold
    knob = disc(x, y, knob_x, -0.36 - 0.04 * unfold, knob_r, knob_r, edge=0.2)

    inside_med = step(ax - med_w, 0.012)
    cut = step(diaphragm - y, 0.012) * inside_med * (1.0 - heart_soft) * (1.0 - knob)
    lung_depth = np.sqrt(np.clip(lung_f * 2.5, 0.0, 1.0)) * cut
    lung = (lung_f > 0) & (y < diaphragm) & (ax > med_w) & (heart_e > 1.0) & (knob < 0.5)
    heart = (heart_e < 1.0) & (y < diaphragm + 0.03)

    # ---- soft tissue: body, neck, abdomen, breasts
    body_w = (0.90 + 0.008 * (case.bmi - 25.0)) * scale
    width = 0.24 * scale + (body_w + 0.08 - 0.24 * scale) * step(y + 0.84, 0.04)
    thickness = np.sqrt(np.clip(1.0 - (ax / width) ** 2, 0.0, 1.0))
    base = thickness * (0.72 + 0.012 * (case.bmi - 25.0))
    base += 0.10 * step(y - diaphragm, 0.02) * thickness  # abdomen
    base += 0.10 * step(med_w - ax, 0.02) * step(y + 0.9, 0.05) + 0.12 * heart_soft + 0.10 * knob
    if female:
        base += _breasts(x, y, mid, scale, case.bmi)

    # ---- air: lungs, trachea and main bronchi, gastric bubble
    air = (0.58 + 0.06 * emph) * lung_depth
    air += 0.22 * step(0.028 - np.abs(x - mid), 0.006) * step(-0.28 - y, 0.02)
    bubble_y = d_left - dome + 0.16
    air += 0.28 * disc(x, y, mid + 0.36 * scale, bubble_y, 0.10, 0.055) * step(y - diaphragm - 0.02, 0.01)

    vessels = _vessels(rng, x, y, ax, mid, size) * (0.35 + 0.55 * lung_depth + 0.4 * aging)
    vessels *= cut * (1.0 - 0.5 * emph / 3)
    bone = bone_density * _bones(x, y, ax, mid, scale, ap, aging, rng)
    calcified = aging > 0.45 and rng.random() < 0.4 + 0.6 * aging
    if calcified:  # calcified rim of the aortic knob
        rim = band(np.sqrt(ellipse(x, y, knob_x, -0.36 - 0.04 * unfold, knob_r, knob_r)) - 1.0, 0.07, 0.03)
        bone += 0.3 * rim * step(-0.36 - 0.04 * unfold - y + 0.02, 0.02)
    return Anatomy(x=x, y=y, ax=ax, sgn=sgn, lung_f=lung_f, diaphragm=diaphragm, base=base, air=air,
                   vessels=vessels, bone=bone, lung=lung, heart=heart, mid=mid, hilum_y=-0.05, thorax_w=0.78 * scale)


def _volume_loss(findings: dict, side: str) -> float:
    """Elevation of a hemidiaphragm from atelectasis on that side."""
    lesion = findings.get("Atelectasis")
    if lesion is None or lesion.side not in (side, "bilateral"):
        return 0.0
    return 0.035 * lesion.severity


def _breasts(x: np.ndarray, y: np.ndarray, mid: float, scale: float, bmi: float) -> np.ndarray:
    """Breast shadows over the lower zones: denser towards their sharp inferior margin."""
    size = float(np.clip(0.85 + 0.025 * (bmi - 25.0), 0.7, 1.3))
    out = np.zeros_like(x)
    for s in (-1.0, 1.0):
        e = ellipse(x, y, mid + s * 0.45 * scale, 0.36, 0.34 * size * scale, 0.27 * size)
        out += step(1.0 - e, 0.05) * (0.4 + 0.6 * step(y - 0.30, 0.08))
    return 0.20 * size * out


def _vessels(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, ax: np.ndarray, mid: float, size: int
             ) -> np.ndarray:
    """Lung markings radiating from the hila, thick centrally, fading to the periphery."""
    dx, dy = ax - 0.17, y + 0.05
    r = np.sqrt(dx * dx + dy * dy) + 1e-3
    theta = 1.6 * dy / (r + np.abs(dx)) + 0.25 * smooth_noise(rng, size, 6)  # pseudo-angle around the hilum
    out = np.zeros_like(x)
    for n, t, w in ((7, 0.80, 1.0), (13, 0.86, 0.8), (23, 0.90, 0.6)):
        phase = where(x > mid, rng.uniform(0, 2 * np.pi), rng.uniform(0, 2 * np.pi))
        out += w * np.clip((np.cos(n * theta + phase + 2.0 * r) - t) / (1.0 - t), 0.0, 1.0)
    hila = np.exp(-(r / 0.07) ** 2)
    return 0.13 * out * np.exp(-r / 0.35) + 0.18 * hila


def _bones(x: np.ndarray, y: np.ndarray, ax: np.ndarray, mid: float, scale: float, ap: bool, aging: float,
           rng: np.random.Generator) -> np.ndarray:
    """Spine, posterior and anterior ribs, clavicles, scapulae, humeral heads (before bone density)."""
    tw = 0.80 * scale
    a = ax / scale
    # spine: vertebral bodies separated by disc spaces, cortical edges brighter
    v_phase = frac((y - rng.uniform(0, 0.1)) / 0.105)
    spine = step(0.065 - ax, 0.008) * (0.55 + 0.45 * step(0.38 - np.abs(v_phase - 0.5), 0.03))
    spine += 0.4 * band(ax - 0.062, 0.012, 0.006)
    # posterior ribs: arcs convex upwards from the spine; anterior ribs sloping down medially
    spacing = 0.128 * scale * rng.uniform(0.95, 1.05)
    lateral = step(tw + 0.03 - ax, 0.02)
    p_phase = (y + 0.80 - (-0.12 * a + 0.55 * a * a)) / spacing
    p_frac = frac(p_phase)
    post = step(0.40 - p_frac, 0.04) * (0.7 + 0.6 * (p_frac / 0.40 - 0.5) ** 2)
    post *= step(ax - 0.05, 0.01) * lateral * step(p_phase, 0.05) * step(10.5 - p_phase, 0.1)
    a_phase = (y + 0.62 - 0.50 * (0.78 - a)) / (spacing * 1.05)
    a_frac = frac(a_phase)
    ant = step(0.45 - a_frac, 0.05) * step(a - 0.26, 0.04) * lateral * step(a_phase, 0.05) * step(6.5 - a_phase, 0.1)
    cartilage = 0.0
    if aging > 0.35:  # calcified costal cartilage at the anterior rib ends
        cartilage = step(0.45 - a_frac, 0.05) * np.exp(-(((a - 0.24) / 0.05) ** 2)) * step(a_phase, 0.05)
        cartilage *= step(6.5 - a_phase, 0.1) * (aging - 0.35) * 1.6
    # clavicles: S-shaped, higher and more horizontal on AP
    cy0 = -0.70 - (0.06 if ap else 0.0)
    clav_c = cy0 - (0.18 if ap else 0.32) * a + 0.35 * (a - 0.25) ** 2
    clav = band(y - clav_c, 0.03, 0.008) * step(0.62 - a, 0.02) * step(ax - 0.07, 0.01)
    # scapulae: medial border over the lungs on AP, rotated out of the lung fields on PA
    m0 = 0.50 if ap else 0.80
    medial = m0 + 0.2 * (y + 0.8)
    scap = step(a - medial, 0.01) * step(y + 0.80, 0.02) * step(-0.05 - y - 1.2 * (a - medial), 0.02)
    scap = scap * (0.6 + 0.6 * band(a - medial, 0.015, 0.006))
    humerus = disc(ax, y, 0.95 * scale, -0.80, 0.13, 0.13, edge=0.1)
    return 0.30 * spine + 0.12 * post + 0.06 * ant + 0.25 * cartilage + 0.32 * clav + 0.13 * scap + 0.40 * humerus
