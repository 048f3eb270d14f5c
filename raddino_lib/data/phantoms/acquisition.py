"""From attenuation to an 8-bit radiograph: blur, detector noise, exposure,
each site's display curve, collimation border and the side marker.

Sites differ in display curve (window and gamma), noise, blur, collimation and
where the technologist puts the "L"/"R" marker, so a probe can tell them apart
from pixels alone (a shortcut real datasets also offer).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter


@dataclass(frozen=True)
class Site:
    window: tuple[float, float]  # attenuation mapped to black and to white
    gamma: float  # display gamma (> 1 darker mid-tones)
    noise: float  # detector noise std in attenuation units
    blur_px: float  # system blur (Gaussian sigma, pixels at 256 px)
    collimation: float  # width of the collimated border (normalised units)
    marker: str  # "L" or "R"
    marker_at: tuple[float, float]  # marker centre (x, y), normalised


SITES: dict[str, Site] = {
    "site_a": Site((0.02, 1.45), 1.00, 0.020, 0.7, 0.02, "L", (0.80, -0.85)),
    "site_b": Site((0.05, 1.60), 0.80, 0.035, 0.5, 0.05, "R", (-0.82, -0.86)),
    "site_c": Site((-0.05, 1.35), 1.30, 0.025, 1.1, 0.08, "L", (0.82, 0.86)),
    "site_d": Site((0.00, 1.55), 1.10, 0.045, 0.9, 0.00, "R", (-0.80, 0.84)),
}


def blur(attenuation: np.ndarray, site_name: str, size: int) -> np.ndarray:
    """System blur of a site, (S, S) float32 → (S, S) float32 (sigma given for 256 px images)."""
    sigma = SITES[site_name].blur_px * size / 256.0
    attenuation = attenuation.astype(np.float32, copy=False)
    return gaussian_filter(attenuation, sigma=sigma, mode="nearest") if sigma >= 0.3 else attenuation


def expose(attenuation: np.ndarray, site_name: str, view: str, rng: np.random.Generator,
           noise_scale: float = 1.0) -> np.ndarray:
    """(S, S) attenuation → (S, S) uint8 radiograph (bones and mediastinum bright, lungs dark)."""
    site = SITES[site_name]
    size = attenuation.shape[0]
    x = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
    exposure = rng.uniform(0.9, 1.1) * (1.08 if view == "AP" else 1.0)  # AP: less penetrated
    a = attenuation * np.float32(exposure) + (0.04 * rng.uniform(-1, 1)) * x[None, :]  # exposure, heel effect
    noise = rng.standard_normal(a.shape, dtype=np.float32)
    noise *= np.float32(site.noise * noise_scale) * (0.6 + 0.6 * a)
    a += noise
    lo, hi = site.window
    v = np.clip((a - lo) * np.float32((LUT_SIZE - 1) / (hi - lo)), 0.0, LUT_SIZE - 1).astype(np.uint16)
    v = _display_lut(site.gamma)[v]  # (S, S) uint8: the site's gamma curve
    _collimate(v, site.collimation + rng.uniform(0, 0.02))
    _marker(v, site, rng)
    return v


LUT_SIZE = 4096


@functools.lru_cache(maxsize=8)
def _display_lut(gamma: float) -> np.ndarray:
    """(LUT_SIZE,) uint8: normalised attenuation → display grey level."""
    t = np.linspace(0.0, 1.0, LUT_SIZE) ** gamma
    return np.clip(t * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _collimate(v: np.ndarray, width: float) -> None:
    """Unexposed (light grey) border of ``width`` (normalised units) on every side, in place."""
    m = int(round(width * v.shape[0] / 2))
    if m > 0:
        v[:m], v[-m:], v[:, :m], v[:, -m:] = 217, 217, 217, 217  # light grey


def _marker(v: np.ndarray, site: Site, rng: np.random.Generator) -> None:
    """A radio-opaque letter, in place: vertical bar plus a foot ("L") or a bowl and leg ("R")."""
    size = v.shape[0]
    h = max(3, int(round(0.05 * size)))  # letter half-height in pixels
    cx = int(round((site.marker_at[0] + rng.normal(0, 0.02) + 1) / 2 * size))
    cy = int(round((site.marker_at[1] + rng.normal(0, 0.02) + 1) / 2 * size))
    cx, cy = min(max(cx, h + 1), size - h - 2), min(max(cy, h + 1), size - h - 2)
    t = max(1, h // 4)  # stroke width
    patch = np.zeros((2 * h + 1, 2 * h + 1), dtype=bool)
    patch[:, h // 2: h // 2 + t] = True  # stem
    if site.marker == "L":
        patch[-t:, h // 2:] = True
    else:
        patch[:t, h // 2: h + h // 2], patch[h - t // 2: h - t // 2 + t, h // 2: h + h // 2] = True, True
        patch[:h, h + h // 2 - t: h + h // 2] = True
        for r in range(h, 2 * h + 1):
            c = h // 2 + (r - h) * (h // 2 + 2) // h + t
            patch[r, c: c + t] = True
    region = v[cy - h: cy + h + 1, cx - h: cx + h + 1]
    region[patch] = 247
