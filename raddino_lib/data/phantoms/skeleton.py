"""Bones of the chest: ribs (with their mask), costal cartilage, clavicles, scapulae, spine, humeral heads.

Ribs follow the textbook projection of a PA film. Posterior ribs leave the
spine nearly horizontally, arch slightly upwards, then bend down along the
lateral chest wall; anterior ribs run from the lateral wall obliquely down and
medially to the costochondral junctions, some 4-5 cm from the midline, where
the (normally invisible) costal cartilage takes over. Rib spacing widens from
the apex down. Age thins the cortices and lowers the density of the marrow
space, calcifies costal cartilage (the first ribs' first), wedges the upper
vertebrae and crowds the upper ribs (kyphosis), and grows osteophytes at the
vertebral end plates.

Each rib is found by inverting its centreline family: a pixel's "rib
coordinate" k (fractional rib number) comes from its height above the first
rib once the curve of the rib has been subtracted, so all ribs cost a few
array operations whatever their number.
"""

from __future__ import annotations

import numpy as np

from raddino_lib.data.phantoms.body import Body
from raddino_lib.data.phantoms.shapes import Grid, band, disc, frac, smooth_noise, step

N_RIBS = 12


def draw_skeleton(b: Body, grid: Grid, U: np.ndarray, A: np.ndarray, Y: np.ndarray, rng: np.random.Generator
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(bone attenuation (S, S) float32, rib mask (S, S) bool)."""
    post, post_mask, ant, ant_mask, cartilage = _ribs(b, A, Y, rng, grid.size)
    bone = 0.12 * post + 0.06 * ant + 0.12 * cartilage
    m, tw = b.mid, b.thorax_w
    # the other bones are drawn on the pixels of their bounding boxes only
    s = grid.window(m - 45.0, m + 45.0, -250.0, 250.0)
    bone[s] += _spine(b, U[s], Y[s], rng)
    s = grid.window(m - tw - 60.0, m + tw + 60.0, b.clavicle_y - 50.0, b.clavicle_y + 25.0)
    bone[s] += _clavicles(b, A[s], Y[s])
    s = grid.window(m - tw - 60.0, m + tw + 60.0, b.apex_y - 15.0, b.apex_y + 140.0)
    bone[s] += _scapulae(b, A[s], Y[s])
    for side in (-1.0, 1.0):  # humeral heads
        cx = m + side * (tw + 48.0)
        s = grid.window(cx - 30.0, cx + 30.0, b.apex_y - 25.0, b.apex_y + 40.0)
        bone[s] += 0.35 * disc(U[s], Y[s], side * (tw + 48.0), b.apex_y + 8.0, 27.0, 30.0, edge=0.1)
    return bone, post_mask | ant_mask


def _profile(position: np.ndarray, height: np.ndarray, b: Body) -> np.ndarray:
    """Cross-section of a tubular bone: bright cortices at both edges, marrow in between (0..1)."""
    cortex = 1.7 * b.cortex
    inside = step(position, 0.6) * step(height - position, 0.6)
    edge = np.minimum(position, height - position)
    return inside * (0.75 * b.bone_density + (1.0 - 0.75 * b.bone_density) * step(cortex - edge, 0.5))


def _spacing(b: Body) -> tuple[float, float]:
    """(spacing of the first two ribs in mm, growth c2): rib k lies sp0 * (k + c2 k²) below the first."""
    return 0.63 * b.rib_spacing * (1.0 - 0.15 * b.kyphosis), 0.04 + 0.05 * b.kyphosis  # kyphosis crowds the top


def _rib_number(Y_rel: np.ndarray, b: Body) -> tuple[np.ndarray, np.ndarray]:
    """(k fractional rib number, local spacing in mm) from the height below the first rib's curve."""
    sp0, c2 = _spacing(b)
    k = (np.sqrt(np.maximum(1.0 + 4.0 * c2 * Y_rel / sp0, 0.0)) - 1.0) / (2.0 * c2)
    return k, sp0 * (1.0 + 2.0 * c2 * k)


def _curve(b: Body, tau: np.ndarray | float, anterior: bool) -> np.ndarray | float:
    """Height (mm) of a rib's centre line above its medial level, at tau = distance from the midline /
    thorax half-width: posterior ribs arch slightly up then bend down at the wall; anterior ribs slope down
    medially (more so with kyphosis)."""
    tw = b.thorax_w
    if anterior:
        return tw * (0.26 + (0.60 + 0.15 * b.kyphosis) * (1.0 - tau) * (1.0 - 0.25 * (1.0 - tau)))
    return tw * (-0.12 * tau + 0.38 * tau ** 3)


def rib_centre(b: Body, number: int, tau: float, anterior: bool = False) -> float:
    """Y (mm) of the centre of rib ``number`` (0 = first rib) at ``tau`` (see ``_curve``)."""
    sp0, c2 = _spacing(b)
    height = (13.0 if anterior else 10.0) * b.frame
    return b.apex_y + 2.0 + sp0 * (number + c2 * number * number) + float(_curve(b, tau, anterior)) + height / 2


def _ribs(b: Body, A: np.ndarray, Y: np.ndarray, rng: np.random.Generator, size: int):
    tw = b.thorax_w
    tau = A / tw
    top = b.apex_y + 2.0
    # posterior ribs: centreline Y = top + level(k) + g_post(tau)
    k, spacing = _rib_number(Y - top - _curve(b, tau, anterior=False), b)
    height = 10.0 * b.frame
    pos = frac(k) * spacing  # mm below the rib's upper edge
    number = np.floor(k)
    inside = (number >= 0) & (number < N_RIBS) & (tau > 0.13) & (tau < 1.03)
    post = _profile(pos, np.float32(height), b) * inside
    post_mask = inside & (pos < height)
    # anterior ribs: from the lateral wall obliquely down and medially
    ka, spacing_a = _rib_number(Y - top - _curve(b, tau, anterior=True), b)
    height_a = 13.0 * b.frame
    pos_a = frac(ka) * spacing_a
    number_a = np.floor(ka)
    junction = 0.33
    rib_a = (number_a >= 0) & (number_a < 10) & (tau < 1.0)
    ant = _profile(pos_a, np.float32(height_a), b) * (rib_a & (tau > junction)) * step(1.0 - tau, 0.02)
    ant_mask = rib_a & (tau > junction) & (pos_a < height_a)
    # costal cartilage of ribs 1-7 (to the sternum), calcified in flecks that spread with age
    cartilage = np.zeros_like(A)
    if b.cartilage_calcification > 0:
        flecks = smooth_noise(rng, size, 12)
        threshold = 1.6 - 2.2 * b.cartilage_calcification
        on = (number_a < 7) & (number_a >= 0) & (tau > 0.12) & (tau < junction + 0.02)
        first = 1.0 + 1.5 * (number_a == 0)  # the first costal cartilage calcifies first and most
        cartilage = band(pos_a - 0.5 * height_a, 0.35 * height_a, 1.0) * step(flecks * first - threshold, 0.3) * on
    return post, post_mask, ant, ant_mask, cartilage


def _spine(b: Body, U: np.ndarray, Y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Vertebral bodies with end plates and disc spaces, pedicles, spinous processes, osteophytes."""
    half = 19.0 * b.frame
    level = 27.0 * b.frame
    upper = step(b.apex_y + 110.0 - Y, 20.0)
    height = level * (1.0 - 0.15 * b.kyphosis * upper)  # wedged (shorter) upper thoracic vertebrae
    v = (Y - b.apex_y + rng.uniform(0.0, 20.0)) / height
    pos = frac(v) * height
    body = step(half - np.abs(U), 1.5) * _profile(pos, 0.82 * height, b)
    pedicle = band(np.hypot((np.abs(U) - 13.0 * b.frame) / 4.5, (pos - 0.3 * height) / 6.0) - 1.0, 0.25, 0.15)
    spinous = disc(U, pos, 0.0, 0.75 * height, 3.0, 7.0, edge=0.3)
    spur = 0.0
    if b.osteophytes > 0:  # beaks growing laterally from the end plates
        reach = 2.0 + 10.0 * b.osteophytes
        near_plate = step(3.0 - np.minimum(pos, np.abs(0.82 * height - pos)), 1.0)
        spur = near_plate * step(half + reach - np.abs(U), 1.0) * step(np.abs(U) - half + 1.0, 1.0) * b.osteophytes
    return 0.10 * body + 0.06 * pedicle * step(half - np.abs(U), 1.0) + 0.05 * spinous + 0.15 * spur


def _clavicles(b: Body, A: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """S-shaped clavicles from the sternal notch to the acromion, rising laterally (less on AP)."""
    u = np.clip((A - 12.0) / (0.95 * b.thorax_w), 0.0, 1.2)
    centre = b.clavicle_y - 16.0 * u + 6.0 * np.sin(2.0 * np.pi * u)
    half = 8.5 * b.frame
    on = step(A - 12.0, 2.0) * step(1.08 * b.thorax_w + 10.0 - A, 3.0)
    return 0.36 * _profile(Y - centre + half, np.float32(2.0 * half), b) * on


def _scapulae(b: Body, A: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Thin scapular blades with denser borders; the medial border over the lung on AP films."""
    t = (Y - b.apex_y + 5.0) / 130.0  # 0 at the top of the medial border, 1 at the inferior angle
    medial = b.scapula_x + 12.0 * t
    lateral = b.thorax_w + 35.0 - (b.thorax_w + 35.0 - medial) * np.clip(t, 0.0, 1.0) ** 1.5
    inside = step(A - medial, 1.5) * step(lateral - A, 2.0) * step(t, 0.02) * step(1.0 - t, 0.02)
    rim = band(A - medial, 2.0, 1.0) * step(t, 0.02) * step(1.0 - t, 0.02)
    return 0.07 * inside + 0.08 * rim
