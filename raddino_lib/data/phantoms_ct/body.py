"""The geometry of one patient's chest: sizes, landmarks, centrelines and vessel and airway trees, in mm.

Everything here is numbers, no voxels: ``anatomy.py`` paints it. Patient factors act here: men are larger than
women (``scale``); BMI thickens subcutaneous and epicardial fat; age unfolds and widens the aorta, lowers bone
density and calcifies costal cartilage; emphysema widens the chest (barrel chest) and flattens the diaphragm;
cardiomegaly enlarges the heart; atelectasis raises its hemidiaphragm. Coordinates: (z, y, x) = (towards the
head, towards the back, towards the patient's left), origin at the centre of the scanned chest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from raddino_lib.data.phantoms_ct.canvas import frame
from raddino_lib.data.phantoms_ct.patients import Case

Segment = tuple[np.ndarray, np.ndarray, float, float]  # (p0, p1, r0, r1) in mm


def P(z: float, y: float, x: float) -> np.ndarray:
    return np.array([z, y, x], dtype=float)


@dataclass
class Body:
    scale: float  # overall size (1 = average man)
    aging: float  # 0 at 18 years, 1 at 88
    half_width: float  # rib cage half-width A at its widest, mm
    half_depth: float  # rib cage half-depth B, mm
    muscle: float  # body-wall muscle thickness laterally, mm
    fat: float  # subcutaneous fat thickness, mm
    z_top: float  # top of the scan
    z_bottom: float  # bottom of the scan
    z_apex: float  # lung apices
    z_carina: float
    z_arch: float  # top of the aortic arch
    z_recess: float  # lowest point of the costophrenic recesses
    dome: dict[str, float]  # hemidiaphragm dome height per side ("right", "left")
    heart_centre: np.ndarray
    heart_frame: np.ndarray  # rows: long axis (base → apex), towards left-posterior, third axis
    heart_semi: tuple[float, float, float]
    aorta: list[np.ndarray]  # centreline points
    aorta_radius: tuple[float, float]  # ascending, descending
    trachea: tuple[np.ndarray, np.ndarray]  # top, carina
    trachea_radius: float
    bronchi: dict[str, np.ndarray]  # main bronchus end per side
    hila: dict[str, np.ndarray]  # pulmonary artery end per side
    oesophagus: list[np.ndarray]
    spine_y: float  # centre of the vertebral bodies (y)
    bone_hu: float  # cancellous bone density
    vessels: list[tuple[str, int, Segment]] = field(default_factory=list)  # (side, generation, segment)
    airways: list[tuple[str, int, Segment]] = field(default_factory=list)

    def width_profile(self, z: np.ndarray) -> np.ndarray:
        """Rib-cage size relative to its widest, per z: narrow at the thoracic inlet, full from mid-chest down."""
        t = np.clip((z - self.z_recess) / (self.z_apex - self.z_recess), 0.0, 1.25)
        return np.where(t <= 1.0, 1.0 - 0.42 * t ** 3, 0.58 - 0.3 * (t - 1.0))

    def cage_centre_y(self, w: np.ndarray) -> np.ndarray:
        """The cage narrows towards the apex mostly from the front: its centre moves back (y) as it narrows."""
        return 0.8 * self.half_depth * (1.0 - w)

    def diaphragm(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Height (z) of the diaphragm under each (y, x): two domes falling to the recesses, deeper at the back."""
        out = []
        for side, cx in (("right", -0.42), ("left", 0.42)):
            dome = self.dome[side]
            d2 = ((x - cx * self.half_width) / (0.75 * self.half_width)) ** 2 + (y / (0.95 * self.half_depth)) ** 2
            out.append(dome - (dome - self.z_recess) * d2 - 0.25 * np.maximum(y, 0.0))
        return np.where(x < 0, out[0], out[1])

    def lung_top(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        return self.z_apex - 0.006 * ((np.abs(x) - 0.4 * self.half_width) ** 2 + (y - 0.2 * self.half_depth) ** 2)

    def mediastinum_half_width(self, z: np.ndarray) -> np.ndarray:
        return 20.0 * self.scale + 12.0 * self.scale * np.clip((self.z_carina - z) / 60.0, 0.0, 1.0)

    def inside_lung(self, p: np.ndarray, margin: float = 6.0) -> bool:
        """Whether a point lies well inside a lung (for growing the vessel and airway trees)."""
        z, y, x = (float(v) for v in p)
        w = float(self.width_profile(np.array(z)))
        yc = float(self.cage_centre_y(np.array(w)))
        r = np.hypot(x / (self.half_width * w), (y - yc) / (self.half_depth * w))
        return bool(r < 1.0 - (14.0 + margin) / (self.half_depth * w)
                    and z > float(self.diaphragm(np.array(y), np.array(x))) + margin
                    and z < float(self.lung_top(np.array(y), np.array(x))) - margin
                    and abs(x) > float(self.mediastinum_half_width(np.array(z))) + margin)


def make_body(case: Case, rng: np.random.Generator, voxel_mm: float = 1.0) -> Body:
    """The patient's geometry; tree branches thinner than half a voxel (``voxel_mm``) are not grown."""
    f = case.findings
    female = case.sex == "F"
    s = (0.91 if female else 1.0) * float(rng.uniform(0.95, 1.05))
    aging = float(np.clip((case.age - 18.0) / 70.0, 0.0, 1.0))
    emph = f["Emphysema"].severity if "Emphysema" in f else 0
    cardio = {0: 1.0, 1: 1.14, 2: 1.26, 3: 1.38}[f["Cardiomegaly"].severity if "Cardiomegaly" in f else 0]
    fat = float(np.clip(6.0 + 2.4 * (case.bmi - 20.0), 3.0, 70.0)) * (1.25 if female else 1.0)
    z_apex, z_recess = 132.0 * s, -140.0 * s
    elevation = {side: 0.0 for side in ("right", "left")}
    if "Atelectasis" in f:
        for side in (("right", "left") if f["Atelectasis"].side == "bilateral" else (f["Atelectasis"].side,)):
            elevation[side] = 6.0 * f["Atelectasis"].severity
    dome = {"right": -68.0 * s - 7.0 * emph + elevation["right"] + float(rng.normal(0, 4)),
            "left": -84.0 * s - 7.0 * emph + elevation["left"] + float(rng.normal(0, 4))}
    z_carina = 55.0 * s + float(rng.normal(0, 4))
    z_arch = 80.0 * s + 10.0 * aging
    hc = P(-35.0 * s, -22.0 * s, 22.0 * s) + rng.normal(0, 3, 3)
    long_axis = P(-0.55, -0.45, 0.70) + rng.normal(0, 0.05, 3)
    towards_lp = P(0.0, 0.55, 0.85)
    u = long_axis / np.linalg.norm(long_axis)
    v = towards_lp - (towards_lp @ u) * u
    v /= np.linalg.norm(v)
    heart_frame = np.stack([u, v, np.cross(u, v)])
    semi = tuple(float(a * s * cardio * (1.0 + 0.02 * (case.bmi - 26.5) / 5)) for a in (60.0, 47.0, 44.0))
    z_base = hc[0] + 42.0 * s
    unfold = aging * float(rng.uniform(0.6, 1.2))
    aorta = [P(z_base, -14 * s, 6 * s), P(z_arch - 35, -34 * s, -10 * s), P(z_arch - 8, -20 * s, -2 * s),
             P(z_arch, 5 * s, (12 + 6 * unfold) * s), P(z_arch - 15, 32 * s, (26 + 4 * unfold) * s),
             P(z_arch - 60, 44 * s, 28 * s), P(-175.0 * s, 46 * s, 22 * s)]
    widen = max(case.age - 40.0, 0.0)
    body = Body(
        scale=s, aging=aging, half_width=138.0 * s, half_depth=98.0 * s * (1.0 + 0.05 * emph), muscle=10.0 * s,
        fat=fat, z_top=z_apex + 28.0 * s, z_bottom=-168.0 * s, z_apex=z_apex, z_carina=z_carina, z_arch=z_arch,
        z_recess=z_recess, dome=dome, heart_centre=hc, heart_frame=heart_frame, heart_semi=semi, aorta=aorta,
        aorta_radius=(15.5 * s + 0.07 * widen, 12.0 * s + 0.05 * widen),
        trachea=(P(z_apex + 40, 2 * s, 0.0), P(z_carina, 8 * s, -2 * s)), trachea_radius=(8.0 if female else 9.5) * s,
        bronchi={"right": P(z_carina - 22 * s, 12 * s, -38 * s), "left": P(z_carina - 35 * s, 18 * s, 42 * s)},
        hila={"right": P(z_carina - 18 * s, 6 * s, -58 * s), "left": P(z_carina - 5 * s, 16 * s, 56 * s)},
        oesophagus=[P(z_apex + 40, 28 * s, 6 * s), P(z_carina, 30 * s, 10 * s), P(dome["left"] + 15, 30 * s, 18 * s),
                    P(dome["left"] - 25, 8 * s, 38 * s)],
        spine_y=60.0 * s, bone_hu=float(300.0 - 170.0 * aging * (1.15 if female else 1.0)),
    )
    body.vessels = _tree(body, rng, body.hila, 7.5 * s, 48.0 * s, generations=_generations(7.5 * s, voxel_mm, 4))
    body.airways = _tree(body, rng, body.bronchi, 5.5 * s, 42.0 * s, generations=_generations(5.5 * s, voxel_mm, 3),
                         jitter=0.15)
    return body


def _generations(radius: float, voxel_mm: float, most: int) -> int:
    """Generations whose radius (× 0.72 each) stays at least half a voxel (at least the lobar one)."""
    return max(1, min(most, 1 + int(np.log(max(voxel_mm, 1e-3) / (2.0 * radius)) / np.log(0.72))))


LOBE_DIRECTIONS: dict[str, tuple[np.ndarray, ...]] = {  # (z, y, x) with x towards the lateral side
    "right": (P(1.0, 0.1, 0.45), P(-0.35, -0.75, 0.55), P(-1.0, 0.45, 0.35)),
    "left": (P(0.9, -0.2, 0.5), P(-1.0, 0.4, 0.35)),
}


def _tree(body: Body, rng: np.random.Generator, roots: dict[str, np.ndarray], radius: float, length: float,
          generations: int, jitter: float = 0.35) -> list[tuple[str, int, Segment]]:
    """Branching tubes from each root, two children per branch (length × 0.7, radius × 0.72), kept in the lung."""
    out: list[tuple[str, int, Segment]] = []
    for side, root in roots.items():
        lateral = -1.0 if side == "right" else 1.0
        stack = [(root, d * P(1.0, 1.0, lateral), 0, radius, length) for d in LOBE_DIRECTIONS[side]]
        while stack:
            p0, direction, gen, r, L = stack.pop()
            d = direction / np.linalg.norm(direction) + rng.normal(0, jitter, 3)
            d /= np.linalg.norm(d)
            for shrink in (1.0, 0.6, 0.35):
                p1 = p0 + d * L * shrink
                if body.inside_lung(p1, margin=3.0) or gen == 0:
                    break
            else:
                continue
            out.append((side, gen, (p0, p1, r, r * 0.85)))
            if gen + 1 < generations:
                axes = frame(d)
                for sign in (-1.0, 1.0):
                    child = d + sign * 0.6 * axes[1 + int(rng.integers(2))]
                    stack.append((p1, child, gen + 1, r * 0.72, L * 0.7))
    return out
