"""One phantom: case → (8-bit image, masks). Pure function of (case, size, rng, knobs)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from raddino_lib.data.phantoms.acquisition import blur, expose, recognise_exposure
from raddino_lib.data.phantoms.anatomy import render_anatomy
from raddino_lib.data.phantoms.body import sample_body
from raddino_lib.data.phantoms.devices import draw_devices
from raddino_lib.data.phantoms.knobs import PhantomKnobs
from raddino_lib.data.phantoms.lesions import draw_findings
from raddino_lib.data.phantoms.masks import lung_zones
from raddino_lib.data.phantoms.patients import Case
from raddino_lib.data.phantoms.shapes import Grid, make_grid

DEVICE_MASK = "Support Devices"


def jittered_grid(size: int, rng: np.random.Generator, magnification: float) -> Grid:
    """Pixel grid under a small random rotation, scale and shift (patient positioning)."""
    angle = rng.normal(0.0, 0.03)
    scale = magnification * rng.uniform(0.95, 1.04)
    return make_grid(size, angle, scale, (rng.normal(0.0, 0.025), rng.normal(0.0, 0.025)))


def render_phantom(case: Case, size: int, rng: np.random.Generator, knobs: PhantomKnobs
                   ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(S, S) uint8 radiograph and {structure or finding: (S, S) bool mask}.

    Structures: "right_lung", "left_lung" (the patient's sides; the left lung is on the image right),
    "heart", "ribs", the six lung zones (``schema.LUNG_ZONES``); the localized findings present in ``case``;
    "Support Devices" when the case has devices.
    """
    inner = internal_size(size)
    body = sample_body(case, rng)
    grid = jittered_grid(inner, rng, 1.05 if case.view == "AP" else 1.0)
    an = render_anatomy(body, grid, rng)
    finding_masks = draw_findings(an, case, rng, knobs)
    ptx = case.findings.get("Pneumothorax")
    devices = draw_devices(an, case.devices, rng, {"left": 1, "right": -1}.get(ptx.side) if ptx else None)
    attenuation = blur(an.base - an.air + an.vessels + an.bone, case.site, inner)
    signal = recognise_exposure(attenuation, rng)
    image = expose(_resize(signal, size), case.site, rng, knobs.noise_scale, body.noise_factor)
    left = an.side > 0
    masks = {"left_lung": an.lung & left, "right_lung": an.lung & ~left, "heart": an.heart, "ribs": an.ribs,
             **finding_masks}
    if devices is not None:
        masks[DEVICE_MASK] = devices
    if inner != size:
        masks = _resize_masks(masks, size)
    masks.update(lung_zones(masks["right_lung"], masks["left_lung"]))
    return image, masks


def internal_size(size: int) -> int:
    """Anatomy is drawn at up to ~128 px and upsampled: 4x fewer pixels at 224 px, same look after the
    system blur (detector noise is added at full size)."""
    return size if size <= 128 else (size + 1) // 2


def _resize_masks(masks: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    """{name: (s, s) bool} → {name: (size, size) bool}: pixel doubling when size = 2 s (edges within a pixel),
    otherwise bilinear, four masks per RGBA resize."""
    if all(m.shape[0] * 2 == size for m in masks.values()):
        return {k: m.repeat(2, axis=0).repeat(2, axis=1) for k, m in masks.items()}
    names = list(masks)
    out = {}
    for start in range(0, len(names), 4):
        group = names[start:start + 4]
        stack = np.zeros((*masks[group[0]].shape, 4), dtype=np.uint8)
        for c, name in enumerate(group):
            stack[..., c] = masks[name] * np.uint8(255)
        big = np.asarray(Image.fromarray(stack).resize((size, size), Image.Resampling.BILINEAR)) > 127
        out.update({name: big[..., c] for c, name in enumerate(group)})
    return out


def _resize(field: np.ndarray, size: int) -> np.ndarray:
    """(s, s) float32 → (size, size) float32, bicubic (pixel areas aligned, like the base grids)."""
    if field.shape[0] == size:
        return field
    return np.asarray(Image.fromarray(field).resize((size, size), Image.Resampling.BICUBIC))
