"""Minimal 8-bit grayscale PNG encoder (no filtering): fast, and byte-stable across Pillow versions.

Radiographs carry detector noise that no PNG filter compresses, so images are stored with zlib level 0;
masks (mostly zeros) compress well at level 1.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def encode_gray8(array: np.ndarray, level: int = 0) -> bytes:
    """(H, W) uint8 → PNG file bytes (colour type 0, bit depth 8)."""
    if array.dtype != np.uint8 or array.ndim != 2:
        raise ValueError(f"encode_gray8 needs a 2-D uint8 array, got {array.dtype} {array.shape}")
    h, w = array.shape
    raw = np.zeros((h, w + 1), dtype=np.uint8)  # each row starts with filter type 0 (none)
    raw[:, 1:] = array
    header = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw.tobytes(), level)) + _chunk(
        b"IEND", b"")


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
