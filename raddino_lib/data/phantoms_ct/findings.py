"""CT-RATE's 18 abnormalities drawn into a phantom, each localized one with its voxels in the lesion label map.

Parenchymal patterns go in before the vessels (ground glass leaves vessels visible; emphysema, mosaic
attenuation and septal thickening are diffuse, no mask); dense lung disease after them (consolidation,
atelectasis and effusion hide vessels; airways painted later give air bronchograms); mediastinal, vascular and
device findings after the mediastinum. Sizes come from the case (``patients.py``), so the report quotes what is
drawn; ``lesion_scale`` and ``lesion_contrast`` (knobs) make everything smaller or fainter. Every localized
finding marks at least one voxel, even when smaller than a voxel (its mask is then that voxel).
"""

from __future__ import annotations

import numpy as np

from raddino_lib.data.phantoms_ct.anatomy import Fields, L, coronary_paths
from raddino_lib.data.phantoms_ct.body import Body
from raddino_lib.data.phantoms_ct.canvas import F32, Block, Canvas, smooth_field
from raddino_lib.data.phantoms_ct.knobs import CTPhantomKnobs, lesion_label
from raddino_lib.data.phantoms_ct.patients import Case


class Painter:
    """Draws one case's findings onto a canvas; each method is one stage of the render order."""

    def __init__(self, cv: Canvas, body: Body, fields: Fields, case: Case, rng: np.random.Generator,
                 knobs: CTPhantomKnobs) -> None:
        self.cv, self.body, self.fields, self.case, self.rng = cv, body, fields, case, rng
        self.f = case.findings
        self.scale, self.contrast = knobs.lesion_scale, knobs.lesion_contrast
        self.anchors: dict[str, tuple[int, int, int]] = {}  # finding → its fullest voxel when drawn

    # ------------------------------------------------------------------ helpers

    def mark(self, name: str, occ: np.ndarray, value: float, blk: Block) -> None:
        """Paint ``value`` with the contrast knob; label the voxels > half inside (at least the fullest one)."""
        self.cv.paint(occ * F32(self.contrast), value, block=blk)
        inside = occ >= 0.5
        if not inside.any() and occ.size and occ.max() > 0:
            inside = occ >= occ.max() * 0.999
        self.cv.lesions[blk][inside] = lesion_label(name)
        if name not in self.anchors and occ.size and occ.max() > 0:
            local = np.unravel_index(int(np.argmax(np.broadcast_to(occ, inside.shape))), inside.shape)
            self.anchors[name] = tuple(int(i + b.start) for i, b in zip(local, _full(blk, self.cv.shape), strict=True))

    def lobe_point(self, lobe: str, deep: bool = True, posterior: bool = False, low: bool = False) -> np.ndarray:
        """A random voxel centre (mm) in a lobe (deep inside the lung when ``deep``)."""
        cv, b = self.cv, self.body
        z, y, x = cv.grids()
        side = lobe[0]  # "R" or "L"
        lung = cv.anatomy == (L["lung_right"] if side == "R" else L["lung_left"])
        lung &= self.fields.free >= (0.999 if deep else 0.5)
        upper_cut = b.z_carina - (15.0 if side == "R" else 35.0) * b.scale
        anterior = y < F32(-0.15 * b.half_depth)
        region = {"RUL": z > upper_cut, "RML": (z <= upper_cut) & anterior & (z > b.dome["right"] + 10),
                  "LUL": (z > upper_cut) | (anterior & (z > b.dome["left"] + 20))}
        if lobe in region:
            lung &= region[lobe]
        else:  # lower lobes: the rest
            lung &= ~np.broadcast_to(region["RML"] if side == "R" else region["LUL"], lung.shape)
            lung &= z <= upper_cut
        idx = np.flatnonzero(lung)
        if idx.size == 0:
            idx = np.flatnonzero(cv.anatomy == (L["lung_right"] if side == "R" else L["lung_left"]))
        if idx.size == 0:
            return np.array([0.0, 0.0, -60.0 if side == "R" else 60.0])
        if posterior or low:
            d, h, _ = np.unravel_index(idx, cv.shape)
            key = (h if posterior else 0) - (d if low else 0)
            idx = idx[key >= np.quantile(key, 0.75)]
        d, h, w = np.unravel_index(int(self.rng.choice(idx)), cv.shape)
        return np.array([cv.z[d], cv.y[h], cv.x[w]], dtype=float)

    def blob(self, name: str, centre: np.ndarray, semi: tuple[float, float, float], value: float,
             clip_to_lungs: bool = True, bumps: int = 4) -> None:
        rng = self.rng
        axes = np.linalg.qr(rng.standard_normal((3, 3)))[0]
        lob = np.column_stack([rng.standard_normal((bumps, 3)), rng.uniform(0.05, 0.25, bumps)]) if bumps else None
        res = self.cv.ellipsoid(centre, axes, tuple(max(s * self.scale, 0.5) for s in semi), None, lobulation=lob)
        if res is None:
            return
        blk, occ = res
        if clip_to_lungs:
            occ = occ * self.fields.lungs[blk]
        self.mark(name, occ, value, blk)
        self.fields.free[blk] *= F32(1.0) - occ  # later lesions are placed elsewhere

    def keep_visible(self) -> None:
        """Last: a localized finding hidden everywhere by what was painted after it keeps its fullest voxel."""
        for name, index in self.anchors.items():
            if not (self.cv.lesions == lesion_label(name)).any():
                self.cv.lesions[index] = lesion_label(name)

    def sides(self, name: str) -> tuple[str, ...]:
        side = self.f[name].side
        return ("right", "left") if side == "bilateral" else (side,)

    # ------------------------------------------------------------------ stage 1: before the vessels

    def parenchyma(self) -> None:
        cv, f, lungs = self.cv, self.f, self.fields.lungs
        if "Emphysema" in f:
            sev = f["Emphysema"].severity
            field = smooth_field(self.rng, cv.shape, 14.0, cv.spacing)
            z = cv.grids()[0]
            upper = np.clip((z - F32(self.body.z_recess)) / F32(self.body.z_apex - self.body.z_recess), 0, 1)
            holes = np.clip((field + F32(1.2) * upper - F32({1: 1.9, 2: 1.5, 3: 1.0}[sev])) * F32(3.0), 0, 1)
            cv.paint(holes * lungs * F32(self.contrast), -975.0)
            if sev == 3:
                for lobe in ("RUL", "LUL"):
                    c = self.lobe_point(lobe)
                    r = float(self.rng.uniform(14, 24))
                    cv.ellipsoid(c, np.eye(3), (r, r, r), -995.0)
        if "Mosaic attenuation pattern" in f:
            field = smooth_field(self.rng, cv.shape, 24.0, cv.spacing)
            delta = F32(60.0 + 20.0 * f["Mosaic attenuation pattern"].severity) * np.tanh(field * F32(2.0))
            cv.hu += lungs * delta * F32(self.contrast)
        if "Interlobular septal thickening" in f:
            field = smooth_field(self.rng, cv.shape, 11.0, cv.spacing)
            sheets = np.clip(F32(1.0) - np.abs(field) * F32(5.0), 0, 1)
            peripheral = np.clip((self.fields.rho + F32(45.0 * self.body.scale)) / F32(25.0), 0, 1)
            cv.paint(sheets * peripheral * lungs * F32(0.25 + 0.15 * f["Interlobular septal thickening"].severity
                                                          ) * F32(self.contrast), 60.0)
        if "Lung opacity" in f:
            o = f["Lung opacity"]
            for lobe in o.where:
                r = o.sizes_mm[0] / 2
                self.blob("Lung opacity", self.lobe_point(lobe), (r, r * 0.8, r * 0.9), -560.0)

    # ------------------------------------------------------------------ stage 2: after the vessels

    def dense_lung(self) -> None:
        f = self.f
        if "Pleural effusion" in f:  # first: the lesions below are placed in the lung it leaves free
            self.effusion()
        if "Consolidation" in f:
            c = f["Consolidation"]
            for lobe in c.where:
                r = c.sizes_mm[0] / 2
                self.blob("Consolidation", self.lobe_point(lobe, low=True), (r * 0.8, r * 0.75, r), 32.0)
        if "Atelectasis" in f:
            a = f["Atelectasis"]
            for lobe in a.where:
                r = a.sizes_mm[0] / 2
                thin = {1: 0.18, 2: 0.3, 3: 0.45}[a.severity]
                self.blob("Atelectasis", self.lobe_point(lobe, deep=False, posterior=True, low=True),
                          (r * thin, r * 0.5, r), 28.0, bumps=0)
        if "Pulmonary fibrotic sequela" in f:
            s = f["Pulmonary fibrotic sequela"]
            for lobe in s.where:
                for _ in range(1 + 2 * s.severity):
                    length = float(self.rng.uniform(12, 30))
                    self.blob("Pulmonary fibrotic sequela", self.lobe_point(lobe, deep=False),
                              (length, 2.5, 3.5), -80.0, bumps=0)
        if "Lung nodule" in f:
            n = f["Lung nodule"]
            for lobe, d in zip(n.where, n.sizes_mm, strict=True):
                value = -480.0 if (n.severity == 1 and self.rng.random() < 0.2) else 38.0
                self.blob("Lung nodule", self.lobe_point(lobe), (d / 2, d / 2 * 0.95, d / 2 * 1.05), value,
                          clip_to_lungs=False, bumps=3 if n.severity == 3 else 0)

    def effusion(self) -> None:
        cv, b = self.cv, self.body
        e = self.f["Pleural effusion"]
        z, y, x = cv.grids()
        w = b.width_profile(z).astype(F32)
        back = b.cage_centre_y(w).astype(F32) + F32(b.half_depth) * w - F32(14.0 * b.scale)  # (D, 1, 1)
        depth = F32(e.sizes_mm[0] * self.scale)
        for side in self.sides("Pleural effusion"):
            top = b.dome[side] + 2.2 * float(depth)
            profile = depth * np.sqrt(np.clip((F32(top) - z) / F32(top - b.z_recess), 0, 1))
            occ = cv.soft(y - (back - profile)) * self.fields.lungs * ((x > 0) == (side == "left"))
            self.mark("Pleural effusion", occ, 12.0, (slice(None),) * 3)
            self.fields.free *= F32(1.0) - occ
            self.fields.lungs *= F32(1.0) - occ  # the lung is displaced by the fluid

    # ------------------------------------------------------------------ stage 3: after the mediastinum

    def mediastinal(self) -> None:
        cv, b, f, s = self.cv, self.body, self.f, self.body.scale
        if "Pericardial effusion" in f:
            t = f["Pericardial effusion"].sizes_mm[0]
            outer = cv.ellipsoid(b.heart_centre, b.heart_frame, tuple(a + t for a in b.heart_semi), None)
            inner = cv.ellipsoid(b.heart_centre, b.heart_frame, b.heart_semi, None, margin=t)
            if outer is not None and inner is not None:
                blk = outer[0]
                inner_occ = _crop(inner, blk)
                shell = np.clip(outer[1] - inner_occ, 0, 1)
                cv.lesions[blk][shell >= 0.5] = lesion_label("Pericardial effusion")
                if not (shell >= 0.5).any():
                    cv.lesions[blk][shell >= shell.max() * 0.999] = lesion_label("Pericardial effusion")
        if "Lymphadenopathy" in f:
            ln = f["Lymphadenopathy"]
            for station, short in zip(ln.where, ln.sizes_mm, strict=True):
                r = short / 2
                self.blob("Lymphadenopathy", self._station(station), (r * 1.4, r, r * 1.1), 42.0,
                          clip_to_lungs=False, bumps=0)
        if "Hiatal hernia" in f:
            size = f["Hiatal hernia"].sizes_mm[0] * self.scale
            c = np.array([b.dome["left"] + 0.35 * size, 14.0 * s, 26.0 * s])
            self.blob("Hiatal hernia", c, (size / 2, size / 2.4, size / 2), 30.0, clip_to_lungs=False, bumps=0)
            self.blob("Hiatal hernia", c + [size * 0.22, 0, 0], (size / 6, size / 3.5, size / 3.2), -1000.0,
                      clip_to_lungs=False, bumps=0)

    def _station(self, name: str) -> np.ndarray:
        b, s = self.body, self.body.scale
        chest = b.half_width + b.muscle + 18.0
        table = {
            "right paratracheal": [b.z_carina + 22 * s, 2 * s, -(b.trachea_radius + 12 * s)],
            "subcarinal": [b.z_carina - 22 * s, 22 * s, 2 * s],
            "prevascular": [b.z_arch - 22 * s, -42 * s, 4 * s],
            "aortopulmonary window": [b.z_arch - 30 * s, 4 * s, 22 * s],
            "right hilar": list(b.hila["right"] + [0.0, -12 * s, -6 * s]),
            "left hilar": list(b.hila["left"] + [4 * s, -12 * s, 6 * s]),
            "right axillary": [b.z_carina - 5 * s, 5 * s, -chest * 0.92],
            "left axillary": [b.z_carina - 5 * s, 5 * s, chest * 0.92],
        }
        return np.asarray(table[name], dtype=float) + self.rng.normal(0, 2.0, 3)

    # ------------------------------------------------------------------ stage 4: calcium and metal, last

    def dense(self) -> None:
        cv, b, f, rng = self.cv, self.body, self.f, self.rng
        if "Arterial wall calcification" in f:
            count = {1: 3, 2: 8, 3: 18}[f["Arterial wall calcification"].severity]
            pts = b.aorta[2:]
            for _ in range(count):
                k = int(rng.integers(len(pts) - 1))
                t = float(rng.random())
                centre = pts[k] + t * (pts[k + 1] - pts[k])
                direction = rng.standard_normal(3)
                direction /= np.linalg.norm(direction)
                wall = centre + direction * (b.aorta_radius[1] - 1.0)
                cv.dense_sphere(wall, float(rng.uniform(1.5, 3.5)) * self.scale, self._metal(900.0),
                                lesion=lesion_label("Arterial wall calcification"))
        if "Coronary artery wall calcification" in f:
            count = {1: 2, 2: 5, 3: 11}[f["Coronary artery wall calcification"].severity]
            paths = coronary_paths(b)
            for _ in range(count):
                path = paths[int(rng.choice(3, p=[0.25, 0.2, 0.55]))]
                k = int(rng.integers(len(path) - 1))
                centre = path[k] + float(rng.random()) * (path[k + 1] - path[k])
                cv.dense_sphere(centre, float(rng.uniform(1.2, 3.0)) * self.scale, self._metal(950.0),
                                lesion=lesion_label("Coronary artery wall calcification"))
        if "Medical material" in f:
            for kind in f["Medical material"].where:
                self._device(kind)

    def _metal(self, value: float) -> float:
        """Dense lesion value after the contrast knob (relative to soft tissue at 40 HU)."""
        return 40.0 + self.contrast * (value - 40.0)

    def _device(self, kind: str) -> None:
        cv, b, s, rng = self.cv, self.body, self.body.scale, self.rng
        label = lesion_label("Medical material")
        metal = self._metal(2800.0)
        wall_y = -(b.half_depth + b.muscle + b.fat * 0.6)
        svc_top, ra = np.array([b.z_top, -22 * s, -30 * s]), b.heart_centre + [30 * s, -10 * s, -40 * s]
        if kind in ("pacemaker", "port catheter"):
            x = 62 * s if kind == "pacemaker" else -62 * s
            box = np.array([b.z_carina + 38 * s, wall_y * 0.92, x])
            semi = (22.0, 6.0, 18.0) if kind == "pacemaker" else (12.0, 7.0, 12.0)
            res = cv.ellipsoid(box, np.eye(3), semi, None)
            if res is not None:
                self.mark("Medical material", res[1], metal, res[0])
            end = b.heart_centre + 0.55 * b.heart_semi[0] * b.heart_frame[0] if kind == "pacemaker" else ra
            path = [box, svc_top + [-30 * s, 0, 0], svc_top + [-80 * s, 2 * s, 0], ra, end]
            for p0, p1 in zip(path[:-1], path[1:], strict=True):
                res = cv.tube(p0, p1, 1.3, 1.3, None)
                if res is not None:
                    self.mark("Medical material", res[1], self._metal(1800.0), res[0])
        elif kind == "sternotomy wires":
            for k in range(6):
                zc = b.z_carina + 30 * s - k * 16 * s
                w = float(b.width_profile(np.array(zc)))
                y = float(b.cage_centre_y(np.array(w))) - b.half_depth * w + 7 * s
                cv.dense_sphere(np.array([zc, y, 0.0]), 3.0, metal, lesion=label)
        elif kind == "nasogastric tube":
            for p0, p1 in zip(b.oesophagus[:-1], b.oesophagus[1:], strict=True):
                res = cv.tube(p0, p1, 2.5, 2.5, None)
                if res is not None:
                    self.mark("Medical material", res[1], self._metal(300.0), res[0])
        else:  # surgical clips
            for _ in range(4):
                c = b.hila["right" if rng.random() < 0.5 else "left"] + rng.normal(0, 12, 3)
                cv.dense_sphere(c, 3.0, metal, lesion=label)


def _full(blk: Block, shape: tuple[int, int, int]) -> tuple[slice, ...]:
    return tuple(slice(*b.indices(n)[:2]) for b, n in zip(blk, shape, strict=True))


def _crop(res: tuple[Block, np.ndarray], target: Block) -> np.ndarray:
    """Occupancy of ``res`` resampled onto the (larger or equal) block ``target`` (zeros outside ``res``)."""
    blk, occ = res
    out = np.zeros(tuple(t.stop - t.start for t in target), dtype=F32)
    src, dst = [], []
    for b_, t_ in zip(blk, target, strict=True):
        lo, hi = max(b_.start, t_.start), min(b_.stop, t_.stop)
        src.append(slice(lo - b_.start, max(hi - b_.start, lo - b_.start)))
        dst.append(slice(lo - t_.start, max(hi - t_.start, lo - t_.start)))
    out[tuple(dst)] = occ[tuple(src)]
    return out
