"""Findings drawn into the anatomy's attenuation layers, with their masks, sized in millimetres of the film.

Each finding edits ``base`` (added soft-tissue density), ``air`` (lung air
replaced by fluid, or added), ``vessels`` and ``bone`` of an :class:`Anatomy`,
in place. Sizes are millimetres of the 35 x 43 cm film (``SIZES_MM``), so a
lesion covers the same share of the image at any pixel size; they scale with
``knobs.lesion_scale`` and densities with ``knobs.lesion_contrast``.
Cardiomegaly, emphysema's low flat domes and the volume loss of atelectasis
and fibrosis are drawn by the body itself (``body.py``).

Sizes sit at the upper end of each finding's clinical range so that, at the cpu
profile's probe resolution (64 px, 8 px patches = 44 x 54 mm of film), every
localized finding overlaps at least two patches: nodules come as two to four
nodules of 18-30 mm at least 75 mm apart (a patch's diagonal is 69 mm).
"""

from __future__ import annotations

import numpy as np

from raddino_lib.data.phantoms.anatomy import Anatomy
from raddino_lib.data.phantoms.knobs import PhantomKnobs
from raddino_lib.data.phantoms.patients import Case, Lesion
from raddino_lib.data.phantoms.shapes import band, frac, polyline_distance, smooth_noise, step

TISSUE_PER_MM = 0.009  # attenuation of 1 mm of soft tissue or fluid replacing aerated lung
# Size ranges (mm) per severity 1, 2, 3: diameters, extents or depths as each drawing function documents.
SIZES_MM: dict[str, tuple[tuple[float, float], ...]] = {
    "Nodule": ((18.0, 23.0), (22.0, 26.0), (25.0, 30.0)),  # diameter of each nodule
    "Mass": ((50.0, 60.0), (60.0, 75.0), (75.0, 90.0)),  # diameter
    "Consolidation": ((60.0, 75.0), (75.0, 95.0), (95.0, 120.0)),  # diameter of the opacity
    "Pneumonia": ((65.0, 80.0), (80.0, 95.0), (95.0, 115.0)),
    "Atelectasis": ((60.0, 75.0), (75.0, 95.0), (95.0, 115.0)),  # length of the plate
    "Effusion": ((35.0, 50.0), (50.0, 80.0), (80.0, 120.0)),  # height of the meniscus above the recess
    "Pneumothorax": ((10.0, 18.0), (18.0, 30.0), (30.0, 45.0)),  # depth of the apical-lateral rim
    "Pleural_Thickening": ((8.0, 11.0), (11.0, 15.0), (15.0, 20.0)),  # thickness of the peel
    "Hernia": ((55.0, 65.0), (65.0, 80.0), (80.0, 95.0)),  # diameter of the retrocardiac sac
    "Infiltration": ((0.10, 0.14), (0.14, 0.20), (0.20, 0.28)),  # share of the lung covered (not mm)
}
NODULE_SEPARATION_MM = 75.0


def draw_findings(an: Anatomy, case: Case, rng: np.random.Generator, knobs: PhantomKnobs) -> dict[str, np.ndarray]:
    """Draw every finding of ``case``; return {finding: (S, S) bool mask} for localized ones."""
    masks: dict[str, np.ndarray] = {}
    for name in sorted(case.findings):
        lesion = case.findings[name]
        mask = _DRAW[name](an, lesion, rng, knobs.lesion_contrast, knobs.lesion_scale)
        if mask is not None:
            masks[name] = mask
    return masks


def size_mm(name: str, lesion: Lesion, rng: np.random.Generator, scale: float = 1.0) -> float:
    lo, hi = SIZES_MM[name][lesion.severity - 1]
    return scale * float(rng.uniform(lo, hi))


def _sides(lesion: Lesion) -> tuple[int, ...]:
    """Sides (+1 = patient's left) the lesion touches."""
    return {"right": (-1,), "left": (1,), "bilateral": (-1, 1)}[lesion.side]


def _on(an: Anatomy, lesion: Lesion) -> np.ndarray:
    """Float (S, S): 1 on the lesion's side(s)."""
    return np.isin(an.side, _sides(lesion)).astype(np.float32)


def _point(an: Anatomy, rng: np.random.Generator, side: int, zone: np.ndarray | None = None,
           inset: float = 12.0) -> tuple[float, float]:
    """A random pixel centre (X, Y in mm) at least ``inset`` mm inside the lung on one side (in ``zone``)."""
    ok = an.lung & (an.side == side) & (an.pleura > inset)
    if zone is not None and (ok & zone).any():
        ok &= zone
    idx = np.flatnonzero(ok)
    if idx.size == 0:
        return an.body.mid + side * 0.5 * an.body.thorax_w, (an.body.apex_y + an.body.dome_right) / 2
    i = idx[rng.integers(idx.size)]
    return float(an.grid.X.flat[i]), float(an.grid.Y.flat[i])


def _ball(an: Anatomy, cx: float, cy: float, r: float, lobes: np.ndarray | float = 1.0) -> np.ndarray:
    """Projected thickness profile of a sphere of radius ``r`` mm (0..1, 1 at the centre)."""
    d2 = ((an.grid.X - cx) ** 2 + (an.grid.Y - cy) ** 2) / (r * lobes) ** 2
    return np.sqrt(np.clip(1.0 - d2, 0.0, 1.0))


def _opacify(an: Anatomy, opacity: np.ndarray, c: float, density: float = 0.9) -> None:
    """Replace lung air by fluid or tissue where ``opacity`` (0..1) is high."""
    an.air *= 1.0 - np.clip(c * density * opacity, 0.0, 1.0)
    an.vessels *= 1.0 - np.clip(opacity, 0.0, 1.0)


def _nodule(an, lesion, rng, c, z):
    count = (2, 2 + int(rng.random() < 0.5), 3 + int(rng.random() < 0.5))[lesion.severity - 1]
    out, centres = np.zeros_like(an.U), []
    for _ in range(count):
        for _try in range(30):
            p = _point(an, rng, int(rng.choice(_sides(lesion))), inset=8.0)
            if all(np.hypot(p[0] - q[0], p[1] - q[1]) >= NODULE_SEPARATION_MM for q in centres):
                break
        else:
            continue
        centres.append(p)
        out = np.maximum(out, _ball(an, *p, 0.5 * size_mm("Nodule", lesion, rng, z)))
    an.base += c * 0.60 * out
    return (out > 0.3) & an.lung


def _mass(an, lesion, rng, c, z):
    px, py = _point(an, rng, int(rng.choice(_sides(lesion))), inset=20.0)
    theta = np.arctan2(an.grid.Y - py, an.grid.X - px)
    lobes = 1.0 + 0.12 * np.cos(3 * theta + rng.uniform(0, 6.3)) + 0.06 * np.cos(5 * theta)
    mass = _ball(an, px, py, 0.5 * size_mm("Mass", lesion, rng, z), lobes)
    an.base += c * 0.40 * mass
    _opacify(an, np.sqrt(mass), c, 0.6)
    return (mass > 0.2) & an.lung


def _effusion(an, lesion, rng, c, z):
    on = _on(an, lesion)
    level = an.diaphragm - size_mm("Effusion", lesion, rng, z)
    meniscus = level - 0.45 * np.clip(an.A - 0.55 * an.body.thorax_w, 0.0, None)  # climbs the lateral wall
    fluid = step(an.grid.Y - meniscus, 4.0) * on * step(an.pleura + 4.0, 3.0)
    _opacify(an, fluid, c, 1.0)
    an.base += c * 0.20 * fluid
    return (fluid > 0.5) & an.lung


def _pneumothorax(an, lesion, rng, c, z):
    on = _on(an, lesion)
    depth = size_mm("Pneumothorax", lesion, rng, z)
    upper = step(an.body.carina_y + 60.0 - an.grid.Y, 15.0)  # apical and upper lateral
    rim = step(depth - an.pleura, 1.5) * upper * on * an.lung
    an.vessels *= 1.0 - rim
    an.air += c * 0.30 * rim
    line = band(an.pleura - depth, 1.2, 0.6) * upper * on * an.lung
    an.base += c * 0.25 * line
    return (rim > 0.5) & an.lung


def _pleural_thickening(an, lesion, rng, c, z):
    on = _on(an, lesion)
    width = size_mm("Pleural_Thickening", lesion, rng, z)
    apical = rng.random() < 0.5
    b = an.body
    zone = (step(b.apex_y + 70.0 - an.grid.Y, 8.0) if apical else
            step(an.A - 0.55 * b.thorax_w, 5.0) * step(an.grid.Y - b.carina_y, 10.0))
    peel = step(width - an.pleura, 1.5) * on * zone * an.lung
    an.base += c * 0.50 * peel
    _opacify(an, peel, c, 0.9)
    return (peel > 0.5) & an.lung


def _airspace(an, lesion, rng, c, z, name, edge, lower):
    """Patchy airspace opacity with air bronchograms (consolidation, pneumonia)."""
    out = np.zeros_like(an.U)
    b = an.body
    for side in _sides(lesion):
        zone = an.grid.Y > b.carina_y + 60.0 if lower else None
        px, py = _point(an, rng, side, zone, inset=25.0)
        r = 0.5 * size_mm(name, lesion, rng, z)
        wobble = 0.25 * smooth_noise(rng, an.grid.size, 5) + 0.05
        blob = step(1.0 - np.hypot(an.grid.X - px, an.grid.Y - py) / r + wobble, edge)
        out = np.maximum(out, blob * an.lung)
    hx, hy = an.hila[1] if lesion.side == "left" else an.hila[-1]
    theta = np.arctan2(an.grid.Y - hy, an.A - abs(hx - b.mid))
    bronchi = np.clip((np.cos(40 * theta) - 0.8) / 0.2, 0, 1) * step(0.8 - out, 0.2)
    _opacify(an, out * (1.0 - 0.7 * bronchi), c, 1.0)
    an.base += c * 0.10 * out
    return out > 0.5


def _consolidation(an, lesion, rng, c, z):
    return _airspace(an, lesion, rng, c, z, "Consolidation", edge=0.08, lower=False)


def _pneumonia(an, lesion, rng, c, z):
    return _airspace(an, lesion, rng, c, z, "Pneumonia", edge=0.25, lower=True)


def _infiltration(an, lesion, rng, c, z):
    noise = smooth_noise(rng, an.grid.size, 9)
    region = an.lung & (_on(an, lesion) > 0)
    if not region.any():
        return None
    share = min(size_mm("Infiltration", lesion, rng, z), 0.9)
    level = float(np.quantile(noise[region], 1.0 - share))  # the top ``share`` of the lung, in patches
    patches = step(noise - level, 0.25) * region
    _opacify(an, patches, c, 1.0)
    an.base += c * 0.12 * patches
    return (patches > 0.5) & an.lung


def _atelectasis(an, lesion, rng, c, z):
    out = np.zeros_like(an.U)
    for side in _sides(lesion):
        px, py = _point(an, rng, side, an.grid.Y > an.body.carina_y + 90.0, inset=20.0)
        half = 0.5 * size_mm("Atelectasis", lesion, rng, z)
        tilt = rng.uniform(-0.25, 0.1)
        d = polyline_distance(an.grid.X, an.grid.Y, np.array([[px - half, py - tilt * half],
                                                              [px + half, py + tilt * half]]))
        out = np.maximum(out, band(d, z * (5.0 + 2.0 * lesion.severity), 1.5) * an.lung)
    _opacify(an, out, c, 1.0)
    an.base += c * 0.20 * out
    return out > 0.5


def _edema(an, lesion, rng, c, z):
    r = np.hypot(an.A - 45.0, an.grid.Y - an.body.carina_y - 40.0)
    haze = np.exp(-r / ((50.0 + 15.0 * lesion.severity) * z)) * an.lung
    _opacify(an, haze, c, 0.5 + 0.15 * lesion.severity)
    kerley = band(frac(an.grid.Y / 8.0) - 0.5, 0.08, 0.03) * step(25.0 - an.pleura, 3.0)
    an.base += c * 0.15 * (lesion.severity >= 2) * kerley * step(an.grid.Y - an.body.carina_y - 80.0, 5.0) * an.lung
    an.vessels *= 1.0 + 0.3 * lesion.severity * c  # vascular redistribution
    return None


def _emphysema(an, lesion, rng, c, z):
    an.air *= 1.0 + 0.15 * lesion.severity * c
    an.vessels *= 1.0 - 0.2 * lesion.severity
    if lesion.severity == 3:  # an apical bulla
        px, py = _point(an, rng, int(rng.choice((-1, 1))), an.grid.Y < an.body.carina_y, inset=15.0)
        an.air += c * 0.12 * _ball(an, px, py, 25.0 * z) * an.lung
    return None


def _fibrosis(an, lesion, rng, c, z):
    wobble = 3.0 * smooth_noise(rng, an.grid.size, 12)
    net = np.clip((np.cos((an.grid.X + wobble) / 4.0) - 0.75) / 0.25, 0, 1)
    net += np.clip((np.cos((an.grid.Y - wobble) / 5.0) - 0.75) / 0.25, 0, 1)
    zone = step(40.0 - an.pleura, 8.0) * step(an.grid.Y - an.body.carina_y - 40.0, 15.0) * _on(an, lesion) * an.lung
    an.base += c * (0.22 + 0.08 * lesion.severity) * net * zone
    return None


def _hernia(an, lesion, rng, c, z):
    b = an.body
    r = 0.5 * size_mm("Hernia", lesion, rng, z)
    cx, cy = b.mid + 15.0, b.dome_left - 0.6 * r
    sac = _ball(an, cx, cy, r)
    gas = _ball(an, cx, cy, 0.8 * r) * step(cy - an.grid.Y, 1.0)
    an.base += c * 0.25 * sac
    an.air += c * 0.40 * gas
    return sac > 0.2


def _cardiomegaly(an, lesion, rng, c, z):
    return None  # drawn by the body (heart size)


_DRAW = {
    "Atelectasis": _atelectasis, "Cardiomegaly": _cardiomegaly, "Consolidation": _consolidation,
    "Edema": _edema, "Effusion": _effusion, "Emphysema": _emphysema, "Fibrosis": _fibrosis, "Hernia": _hernia,
    "Infiltration": _infiltration, "Mass": _mass, "Nodule": _nodule, "Pleural_Thickening": _pleural_thickening,
    "Pneumonia": _pneumonia, "Pneumothorax": _pneumothorax,
}
