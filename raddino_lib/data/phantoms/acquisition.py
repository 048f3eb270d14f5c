"""From attenuation to an 8-bit radiograph: blur, exposure recognition,
detector noise, each site's display curve, collimation border and side marker.

Exposure recognition does what a digital reader's histogram analysis does: it
maps the image's own grey-level distribution onto a fixed reference
distribution (with a random exposure jitter), so brightness and contrast say
nothing about the patient - a large, dense or old chest does not come out
globally brighter or darker; only its anatomy differs. Detector noise grows
with the patient's habitus (BMI) and differs by site.

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
    "site_a": Site((-0.02, 1.02), 1.00, 0.020, 0.7, 0.02, "L", (0.80, -0.85)),
    "site_b": Site((0.00, 1.10), 0.80, 0.035, 0.5, 0.05, "R", (-0.82, -0.86)),
    "site_c": Site((-0.06, 0.98), 1.30, 0.025, 1.1, 0.08, "L", (0.82, 0.86)),
    "site_d": Site((-0.03, 1.06), 1.10, 0.045, 0.9, 0.00, "R", (-0.80, 0.84)),
}

# Reference grey-level distribution of exposure recognition: the signal (0 = black, 1 = white) at the
# percentiles REFERENCE_PERCENTILES of a normal chest (the mean quantile curve of 169 normal phantoms, 112 px).
# Knots are denser in the tails, so that no part of the histogram is left free to vary with the patient.
REFERENCE_PERCENTILES = np.array([0, 0.1, 0.25, 0.5, 1, 2, 3, 4, 6, 8, 10, 13, 16, 20, 25, 30, 35, 40, 45, 50, 55,
                                  60, 65, 70, 75, 80, 84, 88, 91, 94, 96, 97.5, 98.5, 99, 99.5, 99.75, 99.9, 100])
REFERENCE_SIGNAL = np.array([0.000, 0.000, 0.000, 0.001, 0.002, 0.011, 0.032, 0.055, 0.094, 0.132, 0.161, 0.196,
                             0.225, 0.254, 0.286, 0.314, 0.341, 0.370, 0.398, 0.426, 0.455, 0.485, 0.519, 0.556,
                             0.583, 0.622, 0.655, 0.685, 0.708, 0.734, 0.756, 0.774, 0.792, 0.808, 0.840, 0.894,
                             0.932, 1.000])


def blur(attenuation: np.ndarray, site_name: str, size: int) -> np.ndarray:
    """System blur of a site, (S, S) float32 → (S, S) float32 (sigma given for 256 px images)."""
    sigma = SITES[site_name].blur_px * size / 256.0
    attenuation = attenuation.astype(np.float32, copy=False)
    return gaussian_filter(attenuation, sigma=sigma, mode="nearest") if sigma >= 0.3 else attenuation


def recognise_exposure(attenuation: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(s, s) attenuation → (s, s) signal in about [0, 1] whose distribution is the reference one, up to a
    random exposure jitter (gamma, gain, offset) that does not depend on the patient."""
    flat = np.sort(attenuation, axis=None)
    idx = np.round(REFERENCE_PERCENTILES / 100.0 * (flat.size - 1)).astype(int)
    knots = flat[idx] + np.arange(len(idx), dtype=np.float32) * np.float32(1e-6)  # strictly increasing
    target = REFERENCE_SIGNAL ** rng.lognormal(0.0, 0.08) * rng.uniform(0.93, 1.04) + rng.normal(0.0, 0.015)
    return np.interp(attenuation, knots, target).astype(np.float32)


def expose(signal: np.ndarray, site_name: str, rng: np.random.Generator, noise_scale: float = 1.0,
           noise_factor: float = 1.0) -> np.ndarray:
    """(S, S) signal from :func:`recognise_exposure` → (S, S) uint8 radiograph (bones and mediastinum bright,
    lungs dark). ``noise_factor``: the patient's habitus (BMI) multiplies the detector noise."""
    site = SITES[site_name]
    size = signal.shape[0]
    x = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
    a = signal + np.float32(0.03 * rng.uniform(-1, 1)) * x[None, :]  # heel effect
    noise = rng.standard_normal(a.shape, dtype=np.float32)
    noise *= np.float32(site.noise * noise_scale * noise_factor) * (0.6 + 0.6 * a)
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
