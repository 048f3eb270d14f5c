"""Normal chest anatomy painted in Hounsfield units, with an anatomy label map.

Painted from the outside in (``canvas.py``): air, the scanner table, subcutaneous fat (and breasts), the body
wall muscles, mediastinal fat filling the rib cage, the upper abdomen below the diaphragm (liver, stomach with
its gas, spleen), the lungs (denser towards the back, as in any supine scan), the pulmonary vessel and airway
trees, the mediastinum (heart with four chambers and coronary arteries in epicardial fat, aorta and its
branches, superior vena cava, pulmonary arteries, trachea and main bronchi, oesophagus), then bone (vertebrae
with the spinal canal, ribs with costal cartilage, sternum). The render order interleaves the findings
(``render.py``). Non-contrast values: blood 40-55 HU, myocardium slightly below blood.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raddino_lib.data.phantoms_ct.body import Body
from raddino_lib.data.phantoms_ct.canvas import F32, Canvas
from raddino_lib.data.phantoms_ct.patients import Case

ANATOMY_LABELS: tuple[str, ...] = (
    "background", "subcutaneous_fat", "muscle", "breast", "mediastinal_fat", "lung_right", "lung_left",
    "pulmonary_vessels", "airways", "trachea", "main_bronchi", "heart_myocardium", "left_ventricle",
    "right_ventricle", "left_atrium", "right_atrium", "coronary_arteries", "aorta", "great_vessels",
    "pulmonary_artery", "oesophagus", "vertebrae", "spinal_canal", "ribs", "costal_cartilage", "sternum", "liver",
    "stomach", "upper_abdomen", "table",
)
L = {name: i for i, name in enumerate(ANATOMY_LABELS)}

# Nominal HU per tissue (before noise, partial volume and the kernel); tests check the rendered medians.
TISSUE_HU: dict[str, float] = {
    "air": -1000.0, "fat": -100.0, "mediastinal_fat": -90.0, "breast": -45.0, "muscle": 45.0, "lung": -855.0,
    "blood": 48.0, "myocardium": 40.0, "liver": 58.0, "abdomen": 42.0, "oesophagus": 40.0, "csf": 15.0,
    "disc": 80.0, "rib": 620.0, "cortex": 900.0, "cartilage": 110.0, "table": 120.0,
}


@dataclass
class Fields:
    """Full-volume fields later paints reuse."""

    rho: np.ndarray  # (D, H, W) mm outside the rib cage's outer surface (< 0 inside)
    lungs: np.ndarray  # (D, H, W) lung occupancy in [0, 1] (both lungs)
    left: np.ndarray  # (1, 1, W) bool: the patient's left half
    diaphragm: np.ndarray  # (H, W) z of the diaphragm
    phi: np.ndarray  # (H, W) angle from the posterior midline around the cage, [0, pi]
    free: np.ndarray | None = None  # (D, H, W) lung still free for placing a lesion (findings.py updates it)


def paint_body(cv: Canvas, body: Body, case: Case, site_table: tuple[float, float]) -> Fields:
    """Table, fat, breasts, muscle, mediastinal fat, upper abdomen and lungs; returns the reusable fields."""
    z, y, x = cv.grids()
    w = body.width_profile(z).astype(F32)  # (D, 1, 1)
    yc = body.cage_centre_y(w).astype(F32)
    a, b = body.half_width, body.half_depth
    r3 = np.sqrt((x / (a * w)) ** 2 + ((y - yc) / (b * w)) ** 2)  # normalised cage radius
    theta = np.arctan2((y[0] / b), (x[0] / a))  # (H, W) around the cage
    r_theta = (1.0 / np.sqrt((np.cos(theta) / a) ** 2 + (np.sin(theta) / b) ** 2)).astype(F32)
    rho = (r3 - F32(1.0)) * (r_theta[None] * w)
    sin = np.sin(theta).astype(F32)
    muscle = body.muscle + F32(30.0 * body.scale) * np.maximum(sin, 0) ** 3 + F32(8.0) * np.maximum(-sin, 0) ** 2
    fat = F32(body.fat) * (F32(0.75) + F32(0.5) * np.abs(np.cos(theta)).astype(F32))
    # the table: a curved slab under the patient, its height and density a property of the site
    back = float(body.half_depth + body.muscle + 30.0 * body.scale + body.fat)
    table_y = y[0] - F32(back + site_table[0]) - F32(0.0012) * x[0] ** 2
    cv.paint(np.broadcast_to(cv.soft(F32(6.0) - np.abs(table_y - F32(6.0))), cv.shape), site_table[1], L["table"])
    cv.paint(cv.soft((muscle + fat)[None] - rho), TISSUE_HU["fat"], L["subcutaneous_fat"])
    if case.sex == "F":
        _breasts(cv, body, case, float(np.mean(muscle + fat)))
    cv.paint(cv.soft(muscle[None] - rho), TISSUE_HU["muscle"], L["muscle"])
    inside = cv.soft(-rho - F32(2.0))
    cv.paint(inside, TISSUE_HU["mediastinal_fat"], L["mediastinal_fat"])
    zd = body.diaphragm(y[0], x[0]).astype(F32)  # (H, W)
    below = cv.soft(zd[None] - z) * cv.soft(-rho)
    liver = x[0] < F32(35.0 * body.scale)
    cv.paint(below, np.where(liver, F32(TISSUE_HU["liver"]), F32(TISSUE_HU["abdomen"]))[None],
             0, 0)
    inside_below = below >= 0.5
    cv.anatomy[inside_below & np.broadcast_to(liver[None], cv.shape)] = L["liver"]
    cv.anatomy[inside_below & ~np.broadcast_to(liver[None], cv.shape)] = L["upper_abdomen"]
    stomach = np.array([body.dome["left"] - 40.0 * body.scale, -15.0 * body.scale, 70.0 * body.scale])
    cv.ellipsoid(stomach, np.eye(3), (40.0 * body.scale, 35.0 * body.scale, 38.0 * body.scale), 28.0, L["stomach"])
    cv.ellipsoid(stomach + np.array([22.0 * body.scale, 0, 0]), np.eye(3), (12.0, 22.0, 24.0), -1000.0, L["stomach"])
    lungs = _lungs(cv, body, case, rho, zd)
    _keep_out(cv, body, lungs)
    phi = np.arccos(np.clip(np.sin(theta), -1, 1)).astype(F32)  # 0 at the back, pi at the front
    return Fields(rho=rho, lungs=lungs, left=x > 0, diaphragm=zd, phi=phi, free=lungs.copy())


def _breasts(cv: Canvas, body: Body, case: Case, wall: float) -> None:
    size = float(np.clip(0.8 + 0.03 * (case.bmi - 25.0), 0.6, 1.5))
    for side in (-1.0, 1.0):
        centre = np.array([-10.0 * body.scale, -(body.half_depth + wall) - 10.0 * size,
                           side * 0.5 * body.half_width])
        cv.ellipsoid(centre, np.eye(3), (55.0 * size, 38.0 * size, 50.0 * size), TISSUE_HU["breast"], L["breast"])


def _lungs(cv: Canvas, body: Body, case: Case, rho: np.ndarray, zd: np.ndarray) -> np.ndarray:
    z, y, x = cv.grids()
    occ = cv.soft(F32(-14.0 * body.scale) - rho)  # inside the ribs and intercostal muscles
    occ *= cv.soft(z - zd[None])
    occ *= cv.soft(body.lung_top(y[0], x[0]).astype(F32)[None] - z)
    occ *= cv.soft(np.abs(x) - body.mediastinum_half_width(z).astype(F32))
    base = F32(-855.0 - 0.8 * (case.age - 50.0))
    value = base + F32(45.0) * np.clip(y / F32(body.half_depth), -1, 1)  # (1, H, 1): denser where dependent
    cv.paint(occ, value, 0)
    inside = occ >= 0.5
    left = np.broadcast_to(x > 0, cv.shape)
    cv.anatomy[inside & left] = L["lung_left"]
    cv.anatomy[inside & ~left] = L["lung_right"]
    return occ


def _keep_out(cv: Canvas, body: Body, lungs: np.ndarray) -> None:
    """Remove from the lung field (not the pixels) what the mediastinum will cover later: the heart in its fat
    and the hila, so lung lesions are placed where they stay visible."""
    grow = 12.0 + 0.4 * 20.0
    res = cv.ellipsoid(body.heart_centre, body.heart_frame, tuple(a + grow for a in body.heart_semi), None)
    if res is not None:
        lungs[res[0]] *= F32(1.0) - res[1]
    for hilum in body.hila.values():
        res = cv.ellipsoid(hilum, np.eye(3), (30.0, 30.0, 30.0), None)
        if res is not None:
            lungs[res[0]] *= F32(1.0) - res[1]
    for p0, p1 in zip(body.aorta[3:-1], body.aorta[4:], strict=True):
        res = cv.tube(p0, p1, body.aorta_radius[1] + 8.0, body.aorta_radius[1] + 8.0, None)
        if res is not None:
            lungs[res[0]] *= F32(1.0) - res[1]


def paint_vessels(cv: Canvas, body: Body, fields: Fields, hematocrit_hu: float) -> None:
    """Pulmonary arteries and veins as one branching tree per lung, clipped to the lungs."""
    for _, _, (p0, p1, r0, r1) in body.vessels:
        cv.tube(p0, p1, r0, r1, hematocrit_hu, L["pulmonary_vessels"], within=fields.lungs)


def paint_airways(cv: Canvas, body: Body, fields: Fields, wall_mm: float, dilate: dict[str, float]) -> None:
    """Bronchi beside their arteries: a soft-tissue wall, then the air lumen. ``dilate``: side → lumen factor of
    the lower generations (bronchiectasis)."""
    for side, gen, (p0, p1, r0, r1) in body.airways:
        k = dilate.get(side, 1.0) if gen >= 1 else 1.0
        offset = np.array([0.0, 0.0, 0.0]) if gen == 0 else np.cross(p1 - p0, [1.0, 0, 0])
        if gen:
            offset *= (r0 + 2.0) / max(np.linalg.norm(offset), 1e-6)
        q0, q1 = p0 + offset, p1 + offset
        within = fields.lungs if gen else None
        cv.tube(q0, q1, r0 * 0.75 * k + wall_mm, r1 * 0.75 * k + wall_mm, TISSUE_HU["muscle"], L["airways"],
                within=within)
        cv.tube(q0, q1, r0 * 0.75 * k, r1 * 0.75 * k, TISSUE_HU["air"], L["airways"], within=within)


def paint_mediastinum(cv: Canvas, body: Body, fields: Fields, case: Case, blood: float, pericardial_mm: float
                      ) -> None:
    """Mediastinal fat band, heart (epicardial fat, optional pericardial fluid, chambers, coronaries), great
    vessels, trachea and main bronchi, oesophagus."""
    s = body.scale
    z, y, x = cv.grids()
    band = cv.soft(body.mediastinum_half_width(z).astype(F32) - np.abs(x)) * cv.soft(F32(-4.0) - fields.rho)
    band *= cv.soft(z - fields.diaphragm[None])
    cv.paint(band, TISSUE_HU["mediastinal_fat"], L["mediastinal_fat"])
    hc, axes, semi = body.heart_centre, body.heart_frame, body.heart_semi
    epicardial = 4.0 + 0.4 * max(case.bmi - 20.0, 0.0)
    grow = pericardial_mm + epicardial
    cv.ellipsoid(hc, axes, tuple(a + grow for a in semi), TISSUE_HU["mediastinal_fat"], L["mediastinal_fat"])
    if pericardial_mm > 0:
        cv.ellipsoid(hc, axes, tuple(a + pericardial_mm for a in semi), 12.0)  # fluid; its mask: findings.py
    cv.ellipsoid(hc, axes, semi, TISSUE_HU["myocardium"], L["heart_myocardium"])
    a, b, c = semi
    u, v, n = axes
    for name, (du, dv, dn), (fa, fb, fc) in (
            ("left_ventricle", (0.18, 0.28, 0.0), (0.55, 0.33, 0.42)),
            ("right_ventricle", (0.05, -0.38, 0.05), (0.52, 0.30, 0.42)),
            ("left_atrium", (-0.62, 0.28, -0.05), (0.30, 0.35, 0.38)),
            ("right_atrium", (-0.52, -0.40, 0.12), (0.32, 0.30, 0.36))):
        centre = hc + du * a * u + dv * b * v + dn * c * n
        cv.ellipsoid(centre, axes, (fa * a, fb * b, fc * c), blood, L[name])
    for path in coronary_paths(body):
        for p0, p1 in zip(path[:-1], path[1:], strict=True):
            cv.tube(p0, p1, 2.2 * s, 1.8 * s, blood, L["coronary_arteries"])
    ra, rd = body.aorta_radius
    pts = body.aorta
    for k, (p0, p1) in enumerate(zip(pts[:-1], pts[1:], strict=True)):
        r0 = ra if k < 3 else rd
        r1 = ra if k < 2 else rd
        cv.tube(p0, p1, r0, r1, blood, L["aorta"])
    top = body.z_top + 10.0
    arch = pts[3]
    for start, end, r in ((arch + [2, -16 * s, -10 * s], [top, -22 * s, -28 * s], 6.5 * s),
                          (arch + [4, -6 * s, 0.0], [top, -14 * s, 20 * s], 4.0 * s),
                          (arch + [0, 6 * s, 8 * s], [top, -2 * s, 46 * s], 5.0 * s),
                          (np.array([top, -22 * s, -30 * s]), hc + [48 * s, -5 * s, -38 * s], 9.0 * s)):  # SVC
        cv.tube(np.asarray(start, float), np.asarray(end, float), r, r, blood, L["great_vessels"])
    bif = np.array([body.z_carina - 14 * s, -8 * s, 8 * s])
    rv_out = hc + np.array([40 * s, -22 * s, 2 * s])
    for p0, p1, r in ((rv_out, bif, 13.0 * s), (bif, body.hila["right"], 10.0 * s), (bif, body.hila["left"], 10.0 * s)):
        cv.tube(p0, p1, r, r * 0.9, blood, L["pulmonary_artery"])
    top_t, carina = body.trachea
    rt = body.trachea_radius
    for p0, p1, r, label in ((top_t, carina, rt, "trachea"), (carina, body.bronchi["right"], 0.75 * rt, "main_bronchi"),
                             (carina, body.bronchi["left"], 0.7 * rt, "main_bronchi")):
        cv.tube(p0, p1, r + 2.0, r + 2.0, TISSUE_HU["muscle"], L[label])
        cv.tube(p0, p1, r, r, TISSUE_HU["air"], L[label])
    for p0, p1 in zip(body.oesophagus[:-1], body.oesophagus[1:], strict=True):
        cv.tube(p0, p1, 8.5 * s, 8.5 * s, TISSUE_HU["oesophagus"], L["oesophagus"])


def coronary_paths(body: Body) -> list[list[np.ndarray]]:
    """Right coronary artery and circumflex in the atrioventricular groove, LAD down the interventricular groove;
    each a polyline just outside the heart surface."""
    hc, (u, v, n), (a, b, c) = body.heart_centre, body.heart_frame, body.heart_semi

    def surface(t: float, angle: float) -> np.ndarray:
        ring = np.sqrt(max(1.0 - t * t, 0.05)) * 1.06
        return hc + t * a * u + ring * (np.cos(angle) * b * v + np.sin(angle) * c * n)

    rca = [surface(-0.38, ang) for ang in np.linspace(2.2, 4.3, 6)]
    lcx = [surface(-0.38, ang) for ang in np.linspace(0.9, -0.9, 5)]
    lad = [surface(t, 1.9) for t in np.linspace(-0.35, 0.85, 6)]
    return [rca, lcx, lad]


def paint_bones(cv: Canvas, body: Body, fields: Fields, case: Case, rng: np.random.Generator) -> None:
    """Vertebrae (bodies, discs, arches, spinal canal), ribs with costal cartilage, sternum."""
    s = body.scale
    blk = cv.block((body.z_bottom - 50, body.spine_y - 30 * s, -48 * s), (body.z_top + 50, body.spine_y + 80 * s,
                                                                          48 * s))
    if blk is not None:
        z, y, x = cv.grids(blk)
        period = 27.0 * s
        phase = (z - F32(rng.uniform(0, period))) * F32(1.0 / period)
        frac = phase - np.floor(phase)
        body_z = cv.soft((F32(0.39) - np.abs(frac - F32(0.5))) * F32(period))  # vertebral body, not the disc
        ell = np.sqrt((x / F32(20 * s)) ** 2 + ((y - F32(body.spine_y)) / F32(17 * s)) ** 2)
        column = cv.soft((F32(1.0) - ell) * F32(17 * s))
        cv.paint(column, TISSUE_HU["disc"], L["vertebrae"], block=blk)
        cv.paint(column * body_z, body.bone_hu, L["vertebrae"], block=blk)
        rim = cv.soft(F32(2.0) - np.abs((F32(1.0) - ell) * F32(17 * s) - F32(1.5)))
        cv.paint(rim * column * body_z, TISSUE_HU["cortex"], 0, block=blk)
        canal_y = F32(body.spine_y + 30 * s)
        d_canal = np.sqrt(x * x + (y - canal_y) ** 2)
        arch = cv.soft(F32(15 * s) - d_canal) + cv.soft(F32(5 * s) - np.abs(x)) * cv.soft(
            F32(28 * s) - np.abs(y - canal_y - F32(28 * s)))
        arch += cv.soft(F32(6 * s) - np.abs(y - canal_y)) * cv.soft(F32(42 * s) - np.abs(x))
        arch = np.minimum(arch, F32(1.0)) * body_z
        cv.paint(arch, 600.0, L["vertebrae"], block=blk)
        cv.paint(np.broadcast_to(cv.soft(F32(8 * s) - d_canal), arch.shape), TISSUE_HU["csf"], L["spinal_canal"],
                 block=blk)
    _ribs(cv, body, fields, case, rng)


def _ribs(cv: Canvas, body: Body, fields: Fields, case: Case, rng: np.random.Generator) -> None:
    """Twelve ribs falling from the spine to the front, costal cartilage to the sternum, and the sternum; computed
    on the voxels of the cage shell only (about a sixth of the volume)."""
    s = body.scale
    shell_rho = fields.rho + F32(7.0 * s)
    idx = np.flatnonzero(np.abs(shell_rho) < F32(5.0 * s) + cv.edge)
    d, h, w = np.unravel_index(idx, cv.shape)
    rho, phi = shell_rho.ravel()[idx], fields.phi[h, w]
    z, x = cv.z[d], cv.x[w]
    spacing = 24.0 * s
    drop = F32(85.0 * s) * (phi / F32(np.pi)) ** F32(1.4)  # ribs fall towards the front
    z0 = body.z_apex - 12.0 * s - 11.5 * spacing + float(rng.normal(0, 3))
    phase = (z - F32(z0) + drop) * F32(1.0 / spacing)
    k = np.floor(phase)
    along = cv.soft((F32(0.23) - np.abs(phase - k - F32(0.5))) * F32(spacing))
    shell = cv.soft(F32(5.0 * s) - np.abs(rho))
    bone_end = np.where(k < 7, F32(0.78 * np.pi), np.where(k < 10, F32(0.70 * np.pi), F32(0.52 * np.pi)))
    rib = along * shell * ((k >= 0) & (k < 12))
    cartilage = rib * (phi >= bone_end) * (phi < F32(0.93 * np.pi)) * (k < 10)
    rib *= np.clip((phi - F32(0.1 * np.pi)) * F32(8.0), 0, 1) * (phi < bone_end)
    sternum = cv.soft(F32(13.0 * s) - np.abs(x)) * cv.soft(F32(6.0 * s) - np.abs(rho)) * (phi > F32(0.9 * np.pi))
    sternum *= (z < F32(body.z_carina + 45 * s)) & (z > F32(body.heart_centre[0] - 45 * s))
    flat = cv.hu.reshape(-1)  # a view
    labels = cv.anatomy.reshape(-1)
    calcified = TISSUE_HU["cartilage"] + 260.0 * max(body.aging - 0.4, 0.0)
    for occ, value, label in ((rib, 620.0 - 180.0 * body.aging, "ribs"), (cartilage, calcified, "costal_cartilage"),
                              (sternum, 450.0 - 100.0 * body.aging, "sternum")):
        flat[idx] += occ * (F32(value) - flat[idx])
        labels[idx[occ >= 0.5]] = L[label]
