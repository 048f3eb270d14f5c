"""Synthetic frontal chest radiographs with ground truth: the default dataset of every notebook.

``generate(out_dir, n, size, seed, balanced=False, workers=1, overwrite=False, **knobs)`` writes
``images/``, ``masks/``, ``manifest.csv`` and ``card.yaml``; ``raddino phantoms`` does the same
from the command line. Modules: ``patients`` (case sampling), ``body`` (patient factors → measurements
in mm), ``anatomy``, ``skeleton``, ``vessels``, ``lesions`` and ``devices`` (attenuation layers and
masks), ``masks`` (lung zones, patch coverage), ``acquisition`` (exposure recognition, sites, noise,
display), ``reports`` (text), ``render`` (one image), ``atlas`` (named landmarks), ``png`` (fast
byte-stable PNG files), ``generate`` (a dataset), ``stats`` (summaries), ``leakage`` (global-statistic
shortcuts), ``difficulty`` (floor and ceiling), ``segmentation_ceiling`` (a supervised U-Net's Dice),
``cli``. Knobs and ChestX-ray14 statistics: ``knobs``; drawing primitives and the mm grid: ``shapes``.
"""

from raddino_lib.data.phantoms.generate import generate
from raddino_lib.data.phantoms.knobs import PhantomKnobs

__all__ = ["PhantomKnobs", "generate"]
