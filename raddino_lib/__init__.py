"""raddino: reproduce and extend image-only (RAD-DINO) and language-supervised
encoders for radiographs, on synthetic phantoms by default."""

__version__ = "0.1.0"
