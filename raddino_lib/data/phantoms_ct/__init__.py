"""Synthetic chest CT volumes with ground truth: the 3D counterpart of ``data.phantoms`` (COLIPRI's ground).

``generate(out_dir, n, size, seed, balanced=False, workers=1, overwrite=False, **knobs)`` writes
``volumes/``, ``masks/``, ``legend.json``, ``manifest.csv`` and ``card.yaml``; ``raddino phantoms-ct`` does the
same from the command line. Modules: ``knobs`` (CT-RATE statistics, difficulty and report knobs), ``patients``
(cases and the calibrated finding model), ``body`` (geometry of one chest), ``canvas`` (voxel grid and painting
primitives), ``anatomy`` (normal anatomy and its label map), ``findings`` (the 18 abnormalities and their
masks), ``acquisition`` (sites: spacing, slice thickness, kernel, noise), ``render`` (one volume), ``reports``
(CT-RATE-style text), ``generate`` (a dataset), ``stats`` (summaries), ``cli``.
"""

from raddino_lib.data.phantoms_ct.generate import generate
from raddino_lib.data.phantoms_ct.knobs import CTPhantomKnobs

__all__ = ["CTPhantomKnobs", "generate"]
