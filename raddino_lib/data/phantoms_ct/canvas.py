"""The voxel grid a phantom is painted on, and the vectorised primitives that paint it.

Coordinates are millimetres in the patient's frame, centred on the scan: ``z`` towards the head, ``y``
towards the back, ``x`` towards the patient's left; arrays are (D, H, W) = (z, y, x), the canonical order of
``raddino_lib.data.volume_io``. Structures are painted in order, like a painter's canvas: each paint blends
the Hounsfield units towards the structure's value by its soft occupancy (the fraction of the voxel inside
it, a linear ramp one voxel wide, so edges are anti-aliased at any resolution) and gives the voxels more than
half inside the structure's label. Compact structures are painted in the sub-block of their bounding box only,
which keeps a 64³ volume at a few milliseconds per structure.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

Block = tuple[slice, slice, slice]
F32 = np.float32


@dataclass
class Canvas:
    """HU volume and label maps of one phantom, (D, H, W) each, with the axis coordinates in mm."""

    z: np.ndarray  # (D,) float32, mm, increasing towards the head
    y: np.ndarray  # (H,) float32, mm, increasing towards the back
    x: np.ndarray  # (W,) float32, mm, increasing towards the patient's left
    spacing: tuple[float, float, float]  # (z, y, x) mm
    hu: np.ndarray = field(init=False)  # (D, H, W) float32
    anatomy: np.ndarray = field(init=False)  # (D, H, W) uint8, ANATOMY_LABELS
    lesions: np.ndarray = field(init=False)  # (D, H, W) uint8, lesion labels (0 = none)

    def __post_init__(self) -> None:
        shape = (self.z.size, self.y.size, self.x.size)
        self.hu = np.full(shape, F32(-1000.0), dtype=F32)
        self.anatomy = np.zeros(shape, dtype=np.uint8)
        self.lesions = np.zeros(shape, dtype=np.uint8)
        self.edge = F32(float(np.mean(self.spacing)))  # ramp width of soft occupancies (one voxel)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.hu.shape  # type: ignore[return-value]

    def grids(self, block: Block = (slice(None),) * 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable coordinates of a block: z (d, 1, 1), y (1, h, 1), x (1, 1, w)."""
        bz, by, bx = block
        return self.z[bz][:, None, None], self.y[by][None, :, None], self.x[bx][None, None, :]

    def block(self, lo: tuple[float, float, float], hi: tuple[float, float, float]) -> Block | None:
        """Index slices of the voxels whose centres lie in the mm box [lo, hi] (z, y, x); None if empty."""
        out = []
        for axis, a, b in zip((self.z, self.y, self.x), lo, hi, strict=True):
            i0, i1 = int(np.searchsorted(axis, a, "left")), int(np.searchsorted(axis, b, "right"))
            if i1 <= i0:
                return None
            out.append(slice(i0, i1))
        return tuple(out)  # type: ignore[return-value]

    def soft(self, signed: np.ndarray, width: float | None = None) -> np.ndarray:
        """Occupancy in [0, 1] from a signed distance in mm (> 0 inside), a ramp ``width`` mm wide (a voxel)."""
        w = F32(width) if width is not None else self.edge
        out = signed * (F32(1.0) / w)
        out += F32(0.5)
        np.clip(out, F32(0.0), F32(1.0), out=out)
        return out

    def paint(self, occ: np.ndarray, value: float | np.ndarray, label: int = 0, lesion: int = 0,
              block: Block = (slice(None),) * 3) -> None:
        """Blend ``hu[block]`` towards ``value`` by ``occ``; set the labels where occ ≥ 0.5. A structure painted
        over a lesion hides it there: its anatomy label clears the lesion label."""
        target = self.hu[block]  # a view: painted in place
        target += occ * (value - target)
        if label or lesion:
            inside = np.broadcast_to(occ >= 0.5, target.shape)
            if label:
                self.anatomy[block][inside] = label
                self.lesions[block][inside] = lesion
            elif lesion:
                self.lesions[block][inside] = lesion

    # ------------------------------------------------------------------ primitives on blocks

    def ellipsoid(self, centre: np.ndarray, axes: np.ndarray, semi: tuple[float, float, float],
                  value: float | None, label: int = 0, lesion: int = 0, margin: float = 0.0,
                  lobulation: np.ndarray | None = None) -> tuple[Block, np.ndarray] | None:
        """Paint an ellipsoid (centre (z, y, x) mm, ``axes`` rows = its unit axes in (z, y, x), ``semi`` mm).

        ``lobulation``: (K, 4) rows (dz, dy, dx, amplitude) add a bumpy outline (radius × (1 + Σ a cos-like)).
        Returns (block, occupancy) so callers can reuse them, or None when it is outside the volume.
        ``value`` None computes the occupancy without painting.
        """
        r = max(semi) * (1.3 if lobulation is not None else 1.0) + margin + float(self.edge)
        blk = self.block(tuple(centre - r), tuple(centre + r))
        if blk is None:
            return None
        z, y, x = self.grids(blk)
        dz, dy, dx = z - F32(centre[0]), y - F32(centre[1]), x - F32(centre[2])
        rho2 = np.zeros(np.broadcast_shapes(dz.shape, dy.shape, dx.shape), dtype=F32)
        for k in range(3):
            a = axes[k]
            u = F32(a[0]) * dz + F32(a[1]) * dy + F32(a[2]) * dx
            rho2 += (u * F32(1.0 / semi[k])) ** 2
        rho = np.sqrt(rho2)
        radius = F32(1.0)
        if lobulation is not None:
            n = np.maximum(rho, F32(1e-3))
            bump = np.zeros_like(rho)
            for ddz, ddy, ddx, amp in lobulation:
                cos = (F32(ddz) * dz + F32(ddy) * dy + F32(ddx) * dx) / (n * F32(min(semi)))
                bump += F32(amp) * cos * cos
            radius = F32(1.0) + bump
        occ = self.soft((radius - rho) * F32(min(semi)))
        if value is not None:
            self.paint(occ, value, label, lesion, blk)
        return blk, occ

    def tube(self, p0: np.ndarray, p1: np.ndarray, r0: float, r1: float, value: float | None, label: int = 0,
             lesion: int = 0, within: np.ndarray | None = None) -> tuple[Block, np.ndarray] | None:
        """Paint a tapered cylinder from p0 to p1 (mm, (z, y, x)) with radii r0 → r1 and round ends.

        ``within``: a full-volume occupancy (e.g. the lungs) that clips the tube.
        """
        r = max(r0, r1) + float(self.edge)
        lo, hi = np.minimum(p0, p1) - r, np.maximum(p0, p1) + r
        blk = self.block(tuple(lo), tuple(hi))
        if blk is None:
            return None
        z, y, x = self.grids(blk)
        e = p1 - p0
        length2 = max(float(e @ e), 1e-6)
        dz, dy, dx = z - F32(p0[0]), y - F32(p0[1]), x - F32(p0[2])
        t = (F32(e[0]) * dz + F32(e[1]) * dy + F32(e[2]) * dx) * F32(1.0 / length2)
        np.clip(t, F32(0.0), F32(1.0), out=t)
        d2 = (dz - t * F32(e[0])) ** 2 + (dy - t * F32(e[1])) ** 2 + (dx - t * F32(e[2])) ** 2
        radius = F32(r0) + t * F32(r1 - r0)
        occ = self.soft(radius - np.sqrt(d2))
        if within is not None:
            occ *= within[blk]
        if value is not None:
            self.paint(occ, value, label, lesion, blk)
        return blk, occ

    def dense_sphere(self, centre: np.ndarray, radius: float, value: float, label: int = 0, lesion: int = 0
                     ) -> None:
        """A small dense sphere (calcification, metal) with its partial volume preserved: the occupancies add up
        to the sphere's volume in voxels. Spheres are drawn at least 0.6 voxel in radius, so calcium stays
        above 130 HU at coarse resolutions (like the 2D phantoms, whose lesions scale with the image)."""
        radius = max(radius, 0.6 * float(self.edge))
        res = self.ellipsoid(centre, np.eye(3), (radius, radius, radius), None)
        if res is None:
            return
        blk, occ = res
        total = float(occ.sum())
        if total > 0:
            occ *= F32(min(1.0, (4.0 / 3.0 * np.pi * radius ** 3 / np.prod(self.spacing)) / total))
            peak = float(occ.max())
            self.paint(occ, value, label, 0, blk)
            if lesion:
                keep = occ >= min(0.5, peak * 0.999)  # at least the voxel holding most of it carries the label
                self.lesions[blk][keep] = lesion
            if label:
                self.anatomy[blk][occ >= min(0.5, peak * 0.999)] = label


def smooth_field(rng: np.random.Generator, shape: tuple[int, int, int], cell_mm: float,
                 spacing: tuple[float, float, float]) -> np.ndarray:
    """Low-frequency noise (D, H, W) float32, ~unit std: a coarse normal grid (one value per ``cell_mm``)
    interpolated linearly, one matrix product per axis."""
    out = None
    coarse = [max(2, int(np.ceil(n * s / cell_mm)) + 1) for n, s in zip(shape, spacing, strict=True)]
    grid = rng.standard_normal(coarse).astype(F32)
    mats = [_interp_matrix(n, c) for n, c in zip(shape, coarse, strict=True)]
    out = np.tensordot(mats[0], grid, axes=(1, 0))  # (D, c1, c2)
    out = np.matmul(out, mats[2].T)  # (D, c1, W)
    out = np.matmul(mats[1], out)  # (D, H, W)
    return np.ascontiguousarray(out, dtype=F32) * F32(1.6)  # linear interpolation shrinks the std by ~0.6


def _interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    pos = (np.arange(n_out) + 0.5) / n_out * (n_in - 1)
    i0 = np.minimum(np.floor(pos).astype(int), n_in - 2)
    w = (pos - i0).astype(F32)
    m = np.zeros((n_out, n_in), dtype=F32)
    m[np.arange(n_out), i0] = 1 - w
    m[np.arange(n_out), i0 + 1] = w
    return m


def frame(u: np.ndarray) -> np.ndarray:
    """(3, 3) rows: the unit vector ``u`` and two unit vectors perpendicular to it (a right-handed frame)."""
    u = u / np.linalg.norm(u)
    helper = np.array([1.0, 0.0, 0.0]) if abs(u[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    v = helper - (helper @ u) * u
    v /= np.linalg.norm(v)
    return np.stack([u, v, np.cross(u, v)])
