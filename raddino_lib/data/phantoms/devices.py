"""Support devices: endotracheal tube, central venous line, enteric tube, pacemaker, chest tube.

Devices are radio-opaque (added to the ``bone`` layer) and have one mask,
"Support Devices", the union of their footprints widened to at least
``MASK_RADIUS_MM`` so that thin lines survive downsampling. A chest tube goes
in on the side of a pneumothorax when there is one.
"""

from __future__ import annotations

import numpy as np

from raddino_lib.data.phantoms.anatomy import Anatomy
from raddino_lib.data.phantoms.shapes import tube

METAL_PER_MM = 0.25  # attenuation of 1 mm of radio-opaque line
MASK_RADIUS_MM = 3.0


def draw_devices(an: Anatomy, devices: tuple[str, ...], rng: np.random.Generator, side: int | None = None
                 ) -> np.ndarray | None:
    """Add the devices' metal to ``an.bone`` in place; return their (S, S) bool mask (None without devices).

    ``side``: +1 / -1 puts a chest tube on the patient's left / right (random when None).
    """
    if not devices:
        return None
    metal, footprint = np.zeros_like(an.U), np.zeros_like(an.U)
    for name in devices:
        for points, radius, density in _paths(an, name, rng, side):
            for p0, p1 in zip(points[:-1], points[1:], strict=True):
                tube(metal, an.grid, p0, p1, radius, radius, density)
                tube(footprint, an.grid, p0, p1, max(radius, MASK_RADIUS_MM), max(radius, MASK_RADIUS_MM), 1.0)
    an.bone += metal
    return footprint > 0


def _paths(an: Anatomy, name: str, rng: np.random.Generator, side: int | None
           ) -> list[tuple[list[tuple[float, float]], float, float]]:
    """(polyline (mm), radius (mm), attenuation per mm) of each part of one device."""
    b, m = an.body, an.body.mid
    if name == "ett":
        tip = b.carina_y - 45.0 + rng.normal(0.0, 12.0)
        return [([(m - 1.0, -230.0), (m - 3.0, tip)], 2.5, METAL_PER_MM)]
    if name == "central_line":
        s = float(rng.choice((-1.0, 1.0)))
        return [([(m + s * 110.0, b.clavicle_y + 18.0), (m + s * 40.0, b.clavicle_y + 28.0),
                  (m - 12.0, b.knob_y), (m - 14.0, b.carina_y + 25.0 + rng.normal(0.0, 8.0))], 1.8, METAL_PER_MM)]
    if name == "ng_tube":
        return [([(m + 2.0, -230.0), (m + 6.0, b.dome_left + 10.0), (m + 60.0, b.dome_left + 40.0),
                  (m + 90.0, b.dome_left + 42.0)], 2.2, METAL_PER_MM)]
    if name == "pacemaker":
        gx, gy = m + 95.0, b.clavicle_y + 40.0
        box = [([(gx - 18.0, gy), (gx + 18.0, gy)], 13.0, 0.04)]
        return box + [([(gx, gy), (m + 40.0, gy + 15.0), (m - 12.0, b.carina_y + 20.0), (m + 10.0, b.dome_left - 40.0),
                        (m + 45.0, b.dome_left - 15.0)], 1.0, METAL_PER_MM)]
    if name == "chest_tube":
        s = side if side is not None else int(rng.choice((-1, 1)))
        dome = b.dome_left if s > 0 else b.dome_right
        return [([(m + s * (b.thorax_w + 20.0), dome - 30.0), (m + s * (b.thorax_w - 20.0), b.carina_y + 10.0),
                  (m + s * 60.0, b.apex_y + 35.0)], 2.5, METAL_PER_MM)]
    raise ValueError(f"unknown support device '{name}'")
