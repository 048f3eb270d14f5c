"""Where the named landmarks of one phantom lie: the labels of an anatomy figure.

``anatomy_atlas(case, size, seed)`` renders a phantom exactly as the generator
does (same random stream) and returns, beside the image and its masks, the
pixel position of each landmark a reader should find on a frontal film.
"""

from __future__ import annotations

import numpy as np

from raddino_lib.data.phantoms.body import Body, sample_body
from raddino_lib.data.phantoms.knobs import PhantomKnobs
from raddino_lib.data.phantoms.patients import Case
from raddino_lib.data.phantoms.render import internal_size, jittered_grid, render_phantom
from raddino_lib.data.phantoms.skeleton import rib_centre


def landmarks_mm(b: Body) -> dict[str, tuple[float, float]]:
    """{landmark: (X, Y) in mm}; "right"/"left" are the patient's sides (the left is on the image right)."""
    m, tw = b.mid, b.thorax_w
    heart_top = b.carina_y + 22.0
    ra_top = heart_top + 0.25 * (b.dome_right - heart_top)
    out = {
        "trachea": (m - 2.0, b.knob_y - 25.0),
        "carina": (m, b.carina_y),
        "aortic knob": (m + b.knob_x + 0.5 * b.knob_r, b.knob_y),
        "descending aorta": (m + b.aorta_x - 3.0, 0.5 * (heart_top + b.dome_left) - 10.0),
        "right atrial border": (m - b.heart_right, ra_top + 0.6 * (b.dome_right - ra_top)),
        "cardiac apex": (m + 0.93 * b.heart_left, b.dome_left - 12.0),
        "right hilum": (m - 52.0 * b.frame, b.carina_y + 40.0),
        "left hilum": (m + 55.0 * b.frame, b.carina_y + 28.0),
        "right hemidiaphragm": (m - 0.42 * tw, b.dome_right),
        "left hemidiaphragm": (m + 0.78 * tw, b.dome_left + 0.35 * b.cp_drop),
        "costophrenic angle": (m - tw + 9.0, b.dome_right + 0.92 * b.cp_drop),
        "clavicle": (m - 0.45 * tw, b.clavicle_y - 0.45 * 16.0 + 6.0),
        "posterior rib": (m - 0.35 * tw, rib_centre(b, 4, 0.35)),
        "anterior rib": (m - 0.7 * tw, rib_centre(b, 1, 0.7, anterior=True)),
        "scapula": (m + b.scapula_x + 12.0, b.apex_y + 60.0),
        "spine": (m, b.dome_right + 45.0),
        "gastric bubble": (m + 0.55 * tw, b.dome_left + 22.0),
    }
    if b.breast > 0.3:
        out["breast shadow"] = (m - 0.5 * tw - b.breast_lateral, b.dome_right + 10.0)
    return out


def anatomy_atlas(case: Case, size: int, seed: int = 0, knobs: PhantomKnobs | None = None
                  ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, tuple[float, float]]]:
    """(image (S, S) uint8, masks, {landmark: (row, col) in pixels}) of one phantom."""
    image, masks = render_phantom(case, size, np.random.default_rng(seed), knobs or PhantomKnobs())
    rng = np.random.default_rng(seed)  # replay the generator's first draws: the same body and positioning
    body = sample_body(case, rng)
    inner = internal_size(size)
    grid = jittered_grid(inner, rng, 1.05 if case.view == "AP" else 1.0)
    scale = size / inner
    points = {}
    for name, (x, y) in landmarks_mm(body).items():
        row, col = grid.to_pixel(x, y)
        points[name] = ((row + 0.5) * scale - 0.5, (col + 0.5) * scale - 0.5)
    return image, masks, points
