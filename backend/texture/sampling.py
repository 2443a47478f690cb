"""Bilinear image sampling at arbitrary pixel coordinates (OpenCV remap, chunked).

Images (H, W[, C]) rows top-to-bottom; coordinates in pixels with the origin at the top-left
CORNER (pixel (i, j) centred at (i + 0.5, j + 0.5)); edges are clamped.
"""
from __future__ import annotations

import numpy as np

_ROW = 4096   # remap needs maps under 32767 on a side: lay the samples out as rows of this


def bilinear(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Sample img at pixel coordinates x, y (M,) -> (M,) or (M, C) float32."""
    import cv2

    m = len(x)
    src = np.ascontiguousarray(img, dtype=np.float32)
    if m == 0:
        return np.zeros((0,) + src.shape[2:], np.float32)
    rows = -(-m // _ROW)
    mx = np.zeros(rows * _ROW, np.float32)
    my = np.zeros(rows * _ROW, np.float32)
    mx[:m] = np.asarray(x, np.float64) - 0.5
    my[:m] = np.asarray(y, np.float64) - 0.5
    out = cv2.remap(src, mx.reshape(rows, _ROW), my.reshape(rows, _ROW), cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REPLICATE)
    return out.reshape((rows * _ROW,) + src.shape[2:])[:m]


def sample_uv(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear sample of a (H, W, C) texture at OBJ/GL uvs (M, 2) (v up)."""
    h, w = texture.shape[:2]
    uv = np.asarray(uv, np.float64)
    return bilinear(texture, uv[:, 0] * w, (1.0 - uv[:, 1]) * h)
