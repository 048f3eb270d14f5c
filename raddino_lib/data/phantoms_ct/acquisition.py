"""Acquisition per site: the voxel grid (field of view, slice spacing), slice thickness, reconstruction kernel,
quantum noise and the scanner table.

Three sites stand for CT-RATE's three scanner vendors (61.5%, 30.1%, 8.4% of its scans). They differ the way
real scanners and protocols do, so a probe can tell them apart from voxels alone (a shortcut real data offers
too): slice spacing relative to the in-plane pixel, slice thickness (blur along z, wider than the spacing for
overlapping reconstructions), kernel (soft, standard, or sharp with edge enhancement and grainier noise),
noise level (higher for larger patients), field-of-view margin, and the table's height and density.
The in-plane field of view fits the patient (as a technologist sets it), so ``size`` voxels always span the
body; the number of slices follows the scan length and the site's slice spacing (about ``size`` for site_a).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter, gaussian_filter1d

from raddino_lib.data.phantoms_ct.body import Body
from raddino_lib.data.phantoms_ct.canvas import F32, Canvas
from raddino_lib.data.volume_io import HU_AIR, HU_MAX


@dataclass(frozen=True)
class Site:
    slice_factor: float  # slice spacing / in-plane pixel size
    thickness: float  # slice thickness / slice spacing (> 1: overlapping slices)
    kernel: str  # "soft" | "standard" | "sharp"
    kernel_sigma: float  # in-plane blur of the kernel, voxels
    sharpen: float  # unsharp-mask amount of a sharp kernel (0 otherwise)
    noise_hu: float  # noise standard deviation in soft tissue of an average patient, HU
    fov_margin: float  # field of view beyond the body, mm (both sides together)
    table: tuple[float, float]  # table: gap under the patient (mm), density (HU)


SITES: dict[str, Site] = {
    "site_a": Site(0.85, 1.0, "soft", 0.55, 0.0, 14.0, 25.0, (0.0, 120.0)),
    "site_b": Site(1.10, 1.5, "sharp", 0.8, 0.7, 32.0, 45.0, (15.0, 220.0)),
    "site_c": Site(1.70, 1.25, "standard", 0.7, 0.0, 22.0, 35.0, (8.0, 60.0)),
}


def make_canvas(body: Body, site_name: str, size: int, rng: np.random.Generator) -> Canvas:
    """An empty canvas: S × S in-plane over the body's field of view, D slices over the scan length."""
    site = SITES[site_name]
    half = body.half_width + body.muscle + 30.0 * body.scale + body.fat * 1.2
    fov = 2.0 * half + site.fov_margin
    pixel = fov / size
    dz = pixel * site.slice_factor
    depth = max(8, int(round((body.z_top - body.z_bottom) / dz)))
    offset = rng.normal(0.0, 6.0, 2)  # the patient is not exactly centred (y, x)
    centre = (np.arange(size, dtype=np.float64) - (size - 1) / 2.0) * pixel
    z = (body.z_top + body.z_bottom) / 2.0 + (np.arange(depth) - (depth - 1) / 2.0) * dz
    return Canvas(z=z.astype(F32), y=(centre - offset[0] + 0.12 * body.half_depth).astype(F32),
                  x=(centre - offset[1]).astype(F32), spacing=(float(dz), float(pixel), float(pixel)))


def acquire(cv: Canvas, site_name: str, bmi: float, rng: np.random.Generator, noise_scale: float = 1.0
            ) -> np.ndarray:
    """Clean HU → (D, H, W) int16 as reconstructed: quantum noise, slice thickness and kernel, then the
    12-bit range [-1024, 3071]."""
    site = SITES[site_name]
    sigma_z = max(0.0, (site.thickness - 0.5)) * 0.6  # slice sensitivity profile, in slices
    sigma = (sigma_z, site.kernel_sigma, site.kernel_sigma)
    gain = _noise_gain(sigma, site.sharpen)
    target = site.noise_hu * noise_scale * (1.0 + 0.025 * (bmi - 26.5))
    image = cv.hu
    if target > 0:
        image = image + rng.standard_normal(cv.shape, dtype=F32) * F32(target / gain)
    blurred = gaussian_filter(image, sigma=sigma, mode="nearest", truncate=3.0)
    if site.sharpen:
        blurred += F32(site.sharpen) * (blurred - gaussian_filter1d(gaussian_filter1d(blurred, 1.2, 1, truncate=3.0),
                                                                    1.2, 2, truncate=3.0))
    np.clip(blurred, F32(HU_AIR), F32(HU_MAX), out=blurred)
    return np.rint(blurred).astype(np.int16)


@functools.lru_cache(maxsize=16)
def _noise_gain(sigma: tuple[float, float, float], sharpen: float) -> float:
    """Standard deviation of unit white noise after the site's filters (measured once on a noise volume)."""
    rng = np.random.default_rng(12345)
    noise = rng.standard_normal((48, 48, 48)).astype(F32)
    out = gaussian_filter(noise, sigma=sigma, mode="nearest", truncate=3.0)
    if sharpen:
        out += F32(sharpen) * (out - gaussian_filter1d(gaussian_filter1d(out, 1.2, 1, truncate=3.0), 1.2, 2,
                                                       truncate=3.0))
    return float(out[8:-8, 8:-8, 8:-8].std())
