"""Findings drawn into the anatomy's attenuation layers, with their masks.

Each finding edits ``base`` (added soft-tissue density), ``air`` (lung air
replaced by fluid or added), ``vessels`` and ``bone`` (metal of support
devices) of an :class:`Anatomy`, in place. Sizes scale with
``knobs.lesion_scale`` and the severity; densities with ``knobs.lesion_contrast``.
Cardiomegaly, emphysema and the volume loss of atelectasis and fibrosis are
drawn by the anatomy itself (they change the heart, lungs and diaphragm).
"""

from __future__ import annotations

import numpy as np

from raddino_lib.data.phantoms.anatomy import Anatomy
from raddino_lib.data.phantoms.knobs import PhantomKnobs
from raddino_lib.data.phantoms.patients import Case, Lesion
from raddino_lib.data.phantoms.shapes import band, disc, frac, polyline_distance, smooth_noise, step


def draw_findings(an: Anatomy, case: Case, rng: np.random.Generator, knobs: PhantomKnobs) -> dict[str, np.ndarray]:
    """Draw every finding of ``case``; return {finding: (S, S) bool mask} for localized ones."""
    masks: dict[str, np.ndarray] = {}
    c, z = knobs.lesion_contrast, knobs.lesion_scale
    for name in sorted(case.findings):
        lesion = case.findings[name]
        mask = _DRAW[name](an, lesion, rng, c, z)
        if mask is not None:
            masks[name] = mask
    if case.devices:
        an.bone += _devices(an, case.devices, rng)
    return masks


def _sides(lesion: Lesion) -> tuple[float, ...]:
    """Image-side signs (+1 = patient's left) the lesion touches."""
    return {"right": (-1.0,), "left": (1.0,), "bilateral": (-1.0, 1.0)}[lesion.side]


def _on(an: Anatomy, lesion: Lesion) -> np.ndarray:
    """Float (S, S): 1 on the lesion's side(s)."""
    return np.isin(an.sgn, _sides(lesion)).astype(np.float32)


def _point(an: Anatomy, rng: np.random.Generator, sgn: float, zone: np.ndarray | None = None) -> tuple[float, float]:
    """A random pixel centre inside the lung on one side (optionally within ``zone``)."""
    ok = an.lung & (an.sgn == sgn) & (an.lung_f > 0.25)
    if zone is not None and (ok & zone).any():
        ok &= zone
    idx = np.flatnonzero(ok)
    if idx.size == 0:
        return an.mid + sgn * 0.4, 0.0
    i = idx[rng.integers(idx.size)]
    return float(an.x.flat[i]), float(an.y.flat[i])


def _opacify(an: Anatomy, opacity: np.ndarray, c: float, density: float = 0.9) -> None:
    """Replace lung air by fluid/tissue where ``opacity`` (0..1) is high."""
    an.air *= 1.0 - np.clip(c * density * opacity, 0.0, 1.0)
    an.vessels *= 1.0 - np.clip(opacity, 0.0, 1.0)


def _nodule(an, lesion, rng, c, z):
    out = np.zeros_like(an.x)
    for _ in range(1 + (lesion.severity == 3)):
        px, py = _point(an, rng, float(rng.choice(_sides(lesion))))
        r = z * (0.022 + 0.008 * lesion.severity)
        out = np.maximum(out, disc(an.x, an.y, px, py, r, r * rng.uniform(0.85, 1.15), edge=0.3))
    an.base += c * 0.22 * out
    return (out > 0.5) & an.lung


def _mass(an, lesion, rng, c, z):
    px, py = _point(an, rng, float(rng.choice(_sides(lesion))))
    r = z * (0.065 + 0.025 * lesion.severity)
    theta = np.arctan2(an.y - py, an.x - px)
    lobes = 1.0 + 0.12 * np.cos(3 * theta + rng.uniform(0, 6.3)) + 0.06 * np.cos(5 * theta)
    d = np.hypot(an.x - px, an.y - py) / (r * lobes)
    mass = step(1.0 - d, 0.08)
    an.base += c * 0.28 * mass
    _opacify(an, mass, c, 0.3)
    return (mass > 0.5) & an.lung


def _effusion(an, lesion, rng, c, z):
    on = _on(an, lesion)
    level = an.diaphragm - z * (0.05 + 0.07 * lesion.severity)
    meniscus = level - 0.5 * np.clip(an.ax - 0.45, 0.0, None)  # climbs the lateral chest wall
    fluid = step(an.y - meniscus, 0.02) * on * step(an.lung_f + 0.05, 0.02)
    _opacify(an, fluid, c, 1.0)
    an.base += c * 0.12 * fluid
    return (fluid > 0.5) & an.lung


def _pneumothorax(an, lesion, rng, c, z):
    on = _on(an, lesion)
    depth = z * (0.10 + 0.09 * lesion.severity)
    rim = step(depth - an.lung_f, 0.01) * step(an.hilum_y + 0.35 - an.y, 0.08) * on * an.lung
    an.vessels *= 1.0 - rim
    an.air += c * 0.18 * rim
    line = band(an.lung_f - depth, 0.012, 0.005) * step(an.hilum_y + 0.35 - an.y, 0.08) * on * an.lung
    an.base += c * 0.14 * line
    return (rim > 0.5) & an.lung


def _pleural_thickening(an, lesion, rng, c, z):
    on = _on(an, lesion)
    width = z * (0.05 + 0.04 * lesion.severity)
    apical = rng.random() < 0.5
    zone = step(-0.35 - an.y, 0.05) if apical else step(an.ax - 0.35, 0.03) * step(an.y + 0.4, 0.05)
    peel = step(width - an.lung_f, 0.01) * on * zone * an.lung
    an.base += c * 0.20 * peel
    _opacify(an, peel, c, 0.5)
    return (peel > 0.5) & an.lung


def _airspace(an, lesion, rng, c, z, radius, edge, lower):
    """Patchy airspace opacity with air bronchograms (consolidation, pneumonia)."""
    out = np.zeros_like(an.x)
    for sgn in _sides(lesion):
        zone = an.y > 0.0 if lower else None
        px, py = _point(an, rng, sgn, zone)
        r = z * radius * (1.0 + 0.3 * lesion.severity)
        blob = step(1.0 - np.hypot(an.x - px, an.y - py) / r + 0.35 * smooth_noise(rng, an.x.shape[0], 5), edge)
        out = np.maximum(out, blob * an.lung)
    theta = np.arctan2(an.y + 0.05, an.ax - 0.17)
    bronchi = np.clip((np.cos(40 * theta) - 0.8) / 0.2, 0, 1) * step(0.8 - out, 0.2)
    _opacify(an, out * (1.0 - 0.7 * bronchi), c, 0.85)
    return out > 0.5


def _consolidation(an, lesion, rng, c, z):
    return _airspace(an, lesion, rng, c, z, radius=0.09, edge=0.08, lower=False)


def _pneumonia(an, lesion, rng, c, z):
    return _airspace(an, lesion, rng, c, z, radius=0.08, edge=0.25, lower=True)


def _infiltration(an, lesion, rng, c, z):
    noise = smooth_noise(rng, an.x.shape[0], 9)
    patches = step(noise - (1.6 - 0.25 * lesion.severity * z), 0.35) * _on(an, lesion) * an.lung
    _opacify(an, patches, c, 0.6)
    return (patches > 0.4) & an.lung


def _atelectasis(an, lesion, rng, c, z):
    out = np.zeros_like(an.x)
    for sgn in _sides(lesion):
        px, py = _point(an, rng, sgn, an.y > 0.05)
        half = z * (0.10 + 0.03 * lesion.severity)
        tilt = rng.uniform(-0.25, 0.1)
        d = polyline_distance(an.x, an.y, np.array([[px - half, py - tilt * half], [px + half, py + tilt * half]]))
        out = np.maximum(out, band(d, z * (0.012 + 0.006 * lesion.severity), 0.004) * an.lung)
    _opacify(an, out, c, 0.95)
    an.base += c * 0.08 * out
    return out > 0.5


def _edema(an, lesion, rng, c, z):
    r = np.hypot(an.ax - 0.15, an.y - 0.0)
    haze = np.exp(-r / (0.18 + 0.05 * lesion.severity * z)) * an.lung
    _opacify(an, haze, c, 0.35 + 0.15 * lesion.severity)
    kerley = band(frac(an.y * 28.0) - 0.5, 0.08, 0.03) * step(an.ax - an.thorax_w + 0.12, 0.02)
    an.base += c * 0.06 * (lesion.severity >= 2) * kerley * step(an.y - 0.15, 0.03) * an.lung
    an.vessels *= 1.0 + 0.5 * lesion.severity * c  # vascular redistribution
    return None


def _emphysema(an, lesion, rng, c, z):
    an.air *= 1.0 + 0.08 * lesion.severity * c
    if lesion.severity == 3:
        px, py = _point(an, rng, float(rng.choice((-1.0, 1.0))), an.y < -0.3)
        an.air += c * 0.12 * disc(an.x, an.y, px, py, 0.08 * z, 0.07 * z) * an.lung
    return None


def _fibrosis(an, lesion, rng, c, z):
    wobble = 0.02 * smooth_noise(rng, an.x.shape[0], 12)
    net = np.clip((np.cos(45 * (an.x + wobble)) - 0.75) / 0.25, 0, 1)
    net += np.clip((np.cos(45 * (an.y - wobble)) - 0.75) / 0.25, 0, 1)
    zone = step(0.35 - an.lung_f, 0.08) * step(an.y + 0.2, 0.1) * _on(an, lesion) * an.lung
    an.base += c * (0.08 + 0.04 * lesion.severity) * net * zone
    return None


def _hernia(an, lesion, rng, c, z):
    cx, cy, r = an.mid + 0.06, 0.30, z * (0.07 + 0.02 * lesion.severity)
    sac = disc(an.x, an.y, cx, cy, r, r * 0.85, edge=0.15)
    gas = disc(an.x, an.y, cx, cy, r * 0.8, r * 0.65) * step(cy - an.y, 0.005)
    an.base += c * 0.10 * sac
    an.air += c * 0.30 * gas
    return sac > 0.5


def _cardiomegaly(an, lesion, rng, c, z):
    return None  # drawn by the anatomy (heart size)


def _devices(an: Anatomy, devices: tuple[str, ...], rng: np.random.Generator) -> np.ndarray:
    """Metal density of lines, tubes and a pacemaker (added to ``bone``)."""
    x, y, m = an.x, an.y, an.mid
    metal = np.zeros_like(x)
    if "ett" in devices:
        tip = -0.40 + rng.normal(0, 0.03)
        metal += 0.5 * band(np.abs(x - m) - 0.02, 0.005, 0.003) * step(tip - y, 0.01)
    if "central_line" in devices:
        s = float(rng.choice((-1.0, 1.0)))
        pts = np.array([[m + s * 0.55, -0.78], [m + s * 0.15, -0.60], [m - 0.06, -0.35], [m - 0.07, -0.12]])
        metal += 0.55 * band(polyline_distance(x, y, pts), 0.007, 0.003)
    if "ng_tube" in devices:
        pts = np.array([[m + 0.01, -1.0], [m + 0.02, 0.35], [m + 0.25, 0.62], [m + 0.40, 0.66]])
        metal += 0.45 * band(polyline_distance(x, y, pts), 0.008, 0.003)
    if "pacemaker" in devices:
        gx, gy = m + 0.52, -0.62
        metal += 1.2 * step(0.07 - np.abs(x - gx), 0.004) * step(0.05 - np.abs(y - gy), 0.004)
        pts = np.array([[gx, gy], [m + 0.15, -0.55], [m - 0.05, -0.25], [m + 0.05, 0.20], [m + 0.25, 0.40]])
        metal += 0.6 * band(polyline_distance(x, y, pts), 0.006, 0.003)
    return metal


_DRAW = {
    "Atelectasis": _atelectasis, "Cardiomegaly": _cardiomegaly, "Consolidation": _consolidation,
    "Edema": _edema, "Effusion": _effusion, "Emphysema": _emphysema, "Fibrosis": _fibrosis, "Hernia": _hernia,
    "Infiltration": _infiltration, "Mass": _mass, "Nodule": _nodule, "Pleural_Thickening": _pleural_thickening,
    "Pneumonia": _pneumonia, "Pneumothorax": _pneumothorax,
}
