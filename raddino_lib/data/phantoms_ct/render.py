"""One CT phantom: case → (HU volume, anatomy label map, lesion label map, spacing). Pure function of
(case, size, rng, knobs); the render order decides what hides what (see ``anatomy.py`` and ``findings.py``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raddino_lib.data.phantoms_ct import anatomy
from raddino_lib.data.phantoms_ct.acquisition import SITES, acquire, make_canvas
from raddino_lib.data.phantoms_ct.anatomy import L
from raddino_lib.data.phantoms_ct.body import make_body
from raddino_lib.data.phantoms_ct.findings import Painter
from raddino_lib.data.phantoms_ct.knobs import CTPhantomKnobs, lesion_label
from raddino_lib.data.phantoms_ct.patients import Case


@dataclass
class Rendered:
    hu: np.ndarray  # (D, H, W) int16, Hounsfield units as reconstructed
    anatomy: np.ndarray  # (D, H, W) uint8, anatomy.ANATOMY_LABELS
    lesions: np.ndarray  # (D, H, W) uint8, 1 + index in CT_FINDINGS (0 none)
    spacing: tuple[float, float, float]  # (z, y, x) mm
    clean: np.ndarray  # (D, H, W) float32 HU before noise and kernel (for tests and figures)
    kernel: str  # the site's reconstruction kernel


def render_ct(case: Case, size: int, rng: np.random.Generator, knobs: CTPhantomKnobs) -> Rendered:
    body = make_body(case, rng, voxel_mm=400.0 / size)  # about the in-plane voxel of the field of view
    cv = make_canvas(body, case.site, size, rng)
    f = case.findings
    fields = anatomy.paint_body(cv, body, case, SITES[case.site].table)
    painter = Painter(cv, body, fields, case, rng, knobs)
    painter.parenchyma()
    blood = 44.0 + (6.0 if case.sex == "M" else 0.0) + float(rng.normal(0, 2))  # haematocrit
    anatomy.paint_vessels(cv, body, fields, blood)
    painter.dense_lung()
    wall = 1.2 + (1.2 * f["Peribronchial thickening"].severity * knobs.lesion_scale
                  if "Peribronchial thickening" in f else 0.0)
    dilate = {}
    if "Bronchiectasis" in f:
        sides = painter.sides("Bronchiectasis")
        dilate = {side: 1.0 + 0.7 * f["Bronchiectasis"].severity * knobs.lesion_scale for side in sides}
    anatomy.paint_airways(cv, body, fields, wall, dilate)
    pericardial = f["Pericardial effusion"].sizes_mm[0] * knobs.lesion_scale if "Pericardial effusion" in f else 0.0
    anatomy.paint_mediastinum(cv, body, fields, case, blood, pericardial)
    painter.mediastinal()
    if dilate:
        _mark_bronchiectasis(cv, body, dilate)
    anatomy.paint_bones(cv, body, fields, case, rng)
    painter.dense()
    painter.keep_visible()
    clean = cv.hu.copy()
    hu = acquire(cv, case.site, case.bmi, rng, knobs.noise_scale)
    return Rendered(hu=hu, anatomy=cv.anatomy, lesions=cv.lesions, spacing=cv.spacing, clean=clean,
                    kernel=SITES[case.site].kernel)


def _mark_bronchiectasis(cv, body, dilate: dict[str, float]) -> None:
    """The dilated airways of the affected side(s), below the carina, are the bronchiectasis mask."""
    label = lesion_label("Bronchiectasis")
    z, _, x = cv.grids()
    low = z < np.float32(body.z_carina - 20.0)
    marked = False
    for side in dilate:
        region = (cv.anatomy == L["airways"]) & low & ((x > 0) == (side == "left"))
        if region.any():
            cv.lesions[region] = label
            marked = True
    if not marked:  # airways thinner than a voxel: the lung voxel nearest the middle of each dilated segment
        lung = np.isin(cv.anatomy, (L["lung_right"], L["lung_left"], L["pulmonary_vessels"]))
        d, h, w = np.nonzero(lung)
        first = 1 if any(gen >= 1 for _, gen, _ in body.airways) else 0
        for side, gen, (p0, p1, _, _) in body.airways:
            if side in dilate and gen >= first and d.size:
                mid = (p0 + p1) / 2
                k = int(np.argmin((cv.z[d] - mid[0]) ** 2 + (cv.y[h] - mid[1]) ** 2 + (cv.x[w] - mid[2]) ** 2))
                cv.lesions[d[k], h[k], w[k]] = label
