"""Foreground masks for readers whose source has none: the silhouette of a mesh seen by a
camera (triangles projected and filled; no depth test is needed for a silhouette).

Masks: HxW float32 in [0, 1]. Cameras: OpenCV w2c (4, 4) + K (3, 3), pixel centres at +0.5.
"""
from __future__ import annotations

import numpy as np


def project(points: np.ndarray, w2c: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 2) pixel coordinates (u right, v down, corner origin) and (N,) depths."""
    p = np.asarray(points, np.float64) @ np.asarray(w2c)[:3, :3].T + np.asarray(w2c)[:3, 3]
    z = p[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = (p[:, :2] / z[:, None]) * np.diag(k)[:2] + np.asarray(k)[:2, 2]
    return uv, z


def mesh_silhouette(vertices: np.ndarray, faces: np.ndarray, w2c: np.ndarray, k: np.ndarray,
                    width: int, height: int, supersample: int = 2) -> np.ndarray:
    from PIL import Image, ImageDraw
    uv, z = project(vertices, w2c, k)
    tri = np.asarray(faces)
    ok = (z[tri] > 1e-6).all(axis=1)
    pts = uv[tri[ok]] * supersample - 0.5      # (T, 3, 2); PIL's integer coords = pixel centres
    img = Image.new("L", (width * supersample, height * supersample), 0)
    draw = ImageDraw.Draw(img)
    lo = np.array([-1.0, -1.0])
    hi = np.array([width * supersample + 1.0, height * supersample + 1.0])
    inside = ((pts.max(axis=1) >= lo) & (pts.min(axis=1) <= hi)).all(axis=1)
    for t in pts[inside]:
        draw.polygon([tuple(p) for p in t], fill=255)
    if supersample > 1:
        img = img.resize((width, height), Image.BOX)
    return np.asarray(img, np.float32) / 255.0
