"""Normal chest anatomy as attenuation layers, drawn from a :class:`Body` in millimetres.

The image is composed in attenuation units (0 = air outside the body, about
1 = soft tissue through the chest, bone and metal above): ``base`` (soft
tissue, mediastinum, heart, abdomen, breasts), ``air`` (lung, tracheal and
bowel gas, subtracted), ``vessels`` (pulmonary arteries), ``bone``. Findings
edit these layers before the acquisition turns them into pixels.

What a reader should recognise: lungs with rounded apices, a lateral border
that widens towards sharp costophrenic angles, domed hemidiaphragms (the right
one higher); a cardiac silhouette with a right atrial border and the apex to
the left, resting on the left dome; the aortic knob, the pulmonary trunk and
the descending aorta on the left of the mediastinum; the trachea, carina and
main bronchi; hila from which tapering arteries branch to the periphery
(``vessels``); ribs, clavicles, scapulae and spine (``skeleton``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raddino_lib.data.phantoms.body import Body
from raddino_lib.data.phantoms.shapes import Grid, disc, step, tube
from raddino_lib.data.phantoms.skeleton import draw_skeleton
from raddino_lib.data.phantoms.vessels import draw_vessels

AIR_PER_MM = 0.011  # attenuation of 1 mm of air-filled airway relative to the soft tissue it replaces


@dataclass
class Anatomy:
    """Layers and geometry of one image; every array is (S, S) float32 (mm or attenuation) unless noted."""

    grid: Grid
    body: Body
    U: np.ndarray  # X - midline (mm); > 0 on the patient's left (image right)
    A: np.ndarray  # |U|
    side: np.ndarray  # +1 patient's left, -1 patient's right
    pleura: np.ndarray  # distance (mm) inside the lung from its outline (lateral, apical, diaphragmatic); < 0 outside
    diaphragm: np.ndarray  # Y (mm) of the hemidiaphragm below each pixel
    base: np.ndarray
    air: np.ndarray
    vessels: np.ndarray
    bone: np.ndarray
    lung: np.ndarray  # bool: either lung (the part not hidden by heart and mediastinum)
    heart: np.ndarray  # bool: cardiac silhouette
    ribs: np.ndarray  # bool: posterior and anterior ribs
    hila: dict[int, tuple[float, float]]  # side → (X, Y) of the hilum


def render_anatomy(body: Body, grid: Grid, rng: np.random.Generator) -> Anatomy:
    b = body
    X, Y = grid.X, grid.Y
    U = X - np.float32(b.mid)
    A = np.abs(U)
    side = np.where(U > 0, np.float32(1.0), np.float32(-1.0))
    left = U > 0

    # ---- diaphragm: domes at 42% of the thorax width, steep lateral recesses (sharp costophrenic angles)
    dome = np.where(left, np.float32(b.dome_left), np.float32(b.dome_right))
    u_dome = 0.42 * b.thorax_w
    medial = np.clip((u_dome - A) / u_dome, 0.0, 1.0)
    lateral = np.clip((A - u_dome) / (b.thorax_w - u_dome), 0.0, 1.3)
    diaphragm = dome + 22.0 * medial * medial + b.cp_drop * lateral ** 2.4

    # ---- lung outline: rounded apex, lateral border widening towards the costophrenic angle
    apex_c, apex_r = 58.0 * b.frame, 34.0 * b.frame
    cp_y = (b.dome_right + b.dome_left) / 2 + b.cp_drop
    dy = np.clip(b.apex_y + apex_r - Y, 0.0, apex_r)
    cap = np.sqrt(np.maximum(apex_r * apex_r - dy * dy, 0.0))  # half-width of the apical dome
    tau = np.clip((Y - b.apex_y - apex_r) / (cp_y - b.apex_y - apex_r), 0.0, 1.0)
    lateral_border = apex_c + cap + (b.thorax_w - 5.0 - apex_c - apex_r) * (1.0 - (1.0 - tau) ** 2.2)
    right_border, left_border = _right_border(b, Y), _left_border(b, Y)
    medial_border = np.maximum(apex_c - cap, np.where(left, left_border, right_border))

    # ---- heart: right atrial and left ventricular borders, resting on the diaphragm
    heart_top = _heart_top(b)
    inside = np.minimum(U + right_border, left_border - U)  # mm inside the mediastinal borders
    heart = (Y > heart_top) & (Y < diaphragm + 3.0) & (inside > 0)
    knob = disc(U, Y, b.knob_x, b.knob_y, b.knob_r, b.knob_r, edge=0.15)

    pleura = np.minimum(np.minimum(lateral_border - A, A - medial_border), np.minimum(diaphragm - Y, Y - b.apex_y))
    lung = (pleura > 0) & ~heart & (knob < 0.5)
    lung_soft = step(pleura, 3.0) * (1.0 - knob) * np.where(heart, np.float32(0.0), np.float32(1.0))
    depth = np.sqrt(np.clip(pleura / 45.0, 0.0, 1.0)) * lung_soft  # AP thickness of aerated lung, 0..1

    # ---- soft tissue: body outline (shoulders, chest wall, abdomen), mediastinum, heart, breasts
    width = np.interp(Y, [-215.0, b.apex_y - 40.0, b.apex_y + 10.0, 215.0],
                      [0.45 * b.body_w, 0.5 * b.body_w, b.body_w + 25.0, b.body_w]).astype(np.float32)
    thickness = np.sqrt(np.clip(1.0 - (A / width) ** 2, 0.0, 1.0))
    base = thickness * np.float32(0.70 * b.soft_tissue)
    base += 0.10 * step(Y - diaphragm, 4.0) * thickness  # abdomen: liver and spleen below the domes
    mediastinum = step(inside, 2.5) * step(heart_top - Y, 3.0)
    cardiac = heart * (0.7 + 0.3 * np.sqrt(np.clip(inside / 30.0, 0.0, 1.0)))  # thicker centrally
    base += 0.18 * mediastinum + 0.22 * cardiac + 0.06 * knob
    base += 0.05 * step(b.aorta_x + b.aorta_wave * np.sin(Y / 40.0) - U, 2.0) * step(U + 5.0, 2.0) * (Y > b.knob_y)
    if b.breast > 0:
        s = grid.window(b.mid - b.thorax_w - 60.0, b.mid + b.thorax_w + 60.0, b.dome_right - 125.0, b.dome_right + 70.0)
        base[s] += _breasts(b, U[s], Y[s])

    # ---- air: lungs, trachea and main bronchi, gastric bubble
    air = np.float32(min(0.60 * b.aeration, 0.60 * b.soft_tissue)) * depth * thickness  # never more than the body
    airways = np.zeros_like(U)
    _airways(b, grid, airways)
    air += airways * (1.0 - lung_soft)  # lucent against the mediastinum, not added to the lung's own air
    cx, cy = b.mid + 0.55 * b.thorax_w, b.dome_left + 22.0
    s = grid.window(cx - 32.0, cx + 32.0, cy - 18.0, cy + 18.0)
    air[s] += 0.22 * disc(U[s], Y[s], 0.55 * b.thorax_w, cy, 30.0, 16.0) * step(Y[s] - diaphragm[s] - 4.0, 2.0)

    hila = {-1: (b.mid - 52.0 * b.frame, b.carina_y + 40.0), 1: (b.mid + 55.0 * b.frame, b.carina_y + 28.0)}
    vessels = draw_vessels(b, grid, hila, lung_soft, rng) * np.float32(b.vascularity)
    bone, ribs = draw_skeleton(b, grid, U, A, Y, rng)
    if b.knob_calcification > 0:  # calcified rim along the upper-lateral wall of the knob
        kx, ky, kr = b.mid + b.knob_x, b.knob_y, b.knob_r + 3.0
        s = grid.window(kx - kr, kx + kr, ky - kr, ky + kr)
        r = np.hypot(U[s] - b.knob_x, Y[s] - ky)
        angle = np.arctan2(Y[s] - ky, U[s] - b.knob_x)  # -pi/2 = top
        arc = step(b.knob_calcification * 1.6 - np.abs(angle + 0.9), 0.15)
        bone[s] += 0.30 * arc * step(1.6 - np.abs(r - b.knob_r + 1.0), 0.6)
    return Anatomy(grid=grid, body=b, U=U, A=A, side=side, pleura=pleura, diaphragm=diaphragm, base=base, air=air,
                   vessels=vessels, bone=bone, lung=lung, heart=heart, ribs=ribs, hila=hila)


def _right_border(b: Body, Y: np.ndarray) -> np.ndarray:
    """Right mediastinal border (mm right of the midline): superior vena cava, then the right atrium."""
    top = _heart_top(b) + 0.25 * (b.dome_right - _heart_top(b))
    t = np.clip((Y - top) / (b.dome_right - top), 0.0, 1.0)
    bulge = np.sqrt(np.clip(1.0 - ((t - 0.6) / 0.6) ** 2, 0.0, 1.0)) * (Y > top)
    ascending = np.clip(1.0 - np.abs(Y - (b.knob_y + top) / 2) / (0.6 * (top - b.knob_y) + 1.0), 0.0, 1.0)
    return 27.0 * b.frame + 18.0 * b.unfold * ascending + (b.heart_right - 27.0 * b.frame) * bulge


def _left_border(b: Body, Y: np.ndarray) -> np.ndarray:
    """Left mediastinal border (mm left of the midline): subclavian artery, aortic knob, pulmonary trunk,
    left atrial appendage, then the left ventricle bulging out to the apex on the left dome."""
    k, top = b.knob_y, _heart_top(b)
    ys = [-215.0, k - 20.0, k, k + 22.0, k + 36.0, top + 10.0]
    us = [18.0, 20.0, b.knob_x + b.knob_r - 4.0, 33.0, 40.0, 37.0]
    upper = np.interp(Y, ys, us).astype(np.float32)
    start = top + 0.2 * (b.dome_left - top)
    t = np.clip((Y - start) / (b.dome_left - start), 0.0, 1.2)
    bulge = np.sqrt(np.clip(1.0 - ((t - 0.8) / 0.8) ** 2, 0.0, 1.0)) * (Y > start)
    return np.maximum(upper, 37.0 + (b.heart_left - 37.0) * bulge)


def _heart_top(b: Body) -> float:
    """Y where the cardiac silhouette begins (the left atrium, below the carina)."""
    return b.carina_y + 22.0


def _airways(b: Body, grid: Grid, air: np.ndarray) -> None:
    """Trachea (deviated slightly right by the knob), carina and main bronchi, subtracted as air."""
    m, cy = b.mid, b.carina_y
    tube(air, grid, (m - 1.0, -230.0), (m - 3.0, b.knob_y), 9.0, 9.0, AIR_PER_MM)
    tube(air, grid, (m - 3.0, b.knob_y), (m, cy), 9.0, 8.0, AIR_PER_MM)
    tube(air, grid, (m, cy), (m - 24.0 * b.frame, cy + 24.0), 7.5, 6.0, AIR_PER_MM)  # right: steeper
    tube(air, grid, (m, cy), (m + 40.0 * b.frame, cy + 30.0), 6.5, 5.0, AIR_PER_MM)  # left: longer, flatter


def _breasts(b: Body, U: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Breast shadows over the lower zones: hemi-ellipsoids with a sharp inferior margin."""
    size = b.breast ** (1.0 / 3.0)
    rx, ry = 62.0 * size * b.frame, 52.0 * size
    cy = b.dome_right - 20.0 + 0.4 * ry
    out = np.zeros_like(U)
    for s in (-1.0, 1.0):
        cx = s * (0.50 * b.thorax_w + b.breast_lateral)
        r2 = ((U - cx) / rx) ** 2 + ((Y - cy) / np.where(Y < cy, np.float32(1.8 * ry), np.float32(ry))) ** 2
        out += np.sqrt(np.clip(1.0 - r2, 0.0, 1.0))
    return np.float32(0.12 * b.breast_density * min(b.breast, 1.6) ** 0.5) * out
