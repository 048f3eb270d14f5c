"""Synthetic frontal chest radiographs with ground truth: the default dataset of every notebook.

``generate(out_dir, n, size, seed, balanced=False, workers=1, overwrite=False, **knobs)`` writes
``images/``, ``masks/``, ``manifest.csv`` and ``card.yaml``; ``raddino phantoms`` does the same
from the command line. Modules: ``patients`` (case sampling), ``anatomy`` and ``lesions``
(attenuation layers), ``acquisition`` (sites, noise, display), ``reports`` (text),
``render`` (one image), ``png`` (fast byte-stable PNG files), ``generate`` (a dataset),
``stats`` (summaries), ``difficulty`` (how hard the findings are for simple models), ``cli``.
Knobs and ChestX-ray14 statistics: ``knobs``; drawing primitives: ``shapes``.
"""

from raddino_lib.data.phantoms.generate import generate
from raddino_lib.data.phantoms.knobs import PhantomKnobs

__all__ = ["PhantomKnobs", "generate"]
