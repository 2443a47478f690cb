"""Rasterise triangles given in texture space: which triangle covers each texel, and where.

Layout: a texture atlas is an (H, W) grid of texels, rows top-to-bottom; texel (col i, row j)
has its centre at (i + 0.5, j + 0.5) in pixel units. UVs are OBJ/GL style (origin bottom-left,
v up) and may span several unit tiles along u (ICT-FaceKit puts the face in u in [0, 1), the
back of the head in [1, 2), ...): an atlas of `n_tiles` tiles of `size` x `size` texels maps
uv (u, v) to pixel (u * size, (1 - v) * size) and is `n_tiles * size` texels wide.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class UVRaster:
    """Per texel: the covering triangle (-1: none) and barycentric weights inside it."""

    tri: np.ndarray       # (H, W) int32, index into the triangles given to `rasterize_uv`
    bary: np.ndarray      # (H, W, 3) float32 barycentric coordinates (0 where tri == -1)

    @property
    def covered(self) -> np.ndarray:
        return self.tri >= 0

    @property
    def shape(self) -> tuple[int, int]:
        return self.tri.shape


def uv_to_pixels(uv: np.ndarray, size: int) -> np.ndarray:
    """OBJ/GL uv (..., 2) -> atlas pixel coordinates (x right, y down)."""
    uv = np.asarray(uv, np.float64)
    return np.stack([uv[..., 0] * size, (1.0 - uv[..., 1]) * size], axis=-1)


def rasterize_uv(tri_uv: np.ndarray, size: int, n_tiles: int = 1) -> UVRaster:
    """Rasterise (T, 3, 2) UV triangles into an atlas of height `size`, width `n_tiles*size`.

    Each triangle is scan-converted with OpenCV (sub-pixel vertex positions; where triangles
    overlap, the later one wins); barycentric coordinates of the texel centres are then
    computed in one vectorised pass (clamped to the triangle for border texels)."""
    import cv2

    tri_uv = np.asarray(tri_uv, np.float64)
    if tri_uv.ndim != 3 or tri_uv.shape[1:] != (3, 2):
        raise ValueError(f"tri_uv must be (T, 3, 2), got {tri_uv.shape}")
    h, w = size, size * n_tiles
    px = uv_to_pixels(tri_uv, size)                        # (T, 3, 2), corner origin
    shift = 4
    pts = np.round((px - 0.5) * (1 << shift)).astype(np.int32)   # OpenCV: centres at integers
    tri = np.full((h, w), -1, np.int32)
    for k in range(len(pts)):
        cv2.fillConvexPoly(tri, pts[k], int(k), lineType=cv2.LINE_8, shift=shift)
    # Barycentrics are affine in the texel centre: per triangle, l_i = ax_i * x + ay_i * y + c_i
    # (computed once per triangle in float64), then evaluated per texel in float32.
    a, b, c = px[:, 0], px[:, 1], px[:, 2]
    den = (b[:, 1] - c[:, 1]) * (a[:, 0] - c[:, 0]) + (c[:, 0] - b[:, 0]) * (a[:, 1] - c[:, 1])
    den = np.where(np.abs(den) < 1e-12, 1e-12, den)
    ax0, ay0 = (b[:, 1] - c[:, 1]) / den, (c[:, 0] - b[:, 0]) / den
    ax1, ay1 = (c[:, 1] - a[:, 1]) / den, (a[:, 0] - c[:, 0]) / den
    c0 = -(ax0 * c[:, 0] + ay0 * c[:, 1])
    c1 = -(ax1 * c[:, 0] + ay1 * c[:, 1])
    coef = np.stack([ax0, ay0, c0, ax1, ay1, c1], 1)
    bary = np.zeros((h, w, 3), np.float32)
    for r0 in range(0, h, 256):                      # bands: bounded temporaries at 2048+
        band = tri[r0:r0 + 256]
        rows, cols = np.nonzero(band >= 0)
        k = coef[band[rows, cols]]
        qx, qy = cols + 0.5, rows + (r0 + 0.5)
        l0 = k[:, 0] * qx + k[:, 1] * qy + k[:, 2]
        l1 = k[:, 3] * qx + k[:, 4] * qy + k[:, 5]
        lam = np.clip(np.stack([l0, l1, 1.0 - l0 - l1], 1), 0.0, 1.0)
        lam /= np.maximum(lam.sum(1, keepdims=True), 1e-12)
        bary[r0:r0 + 256][rows, cols] = lam
    return UVRaster(tri, bary)
