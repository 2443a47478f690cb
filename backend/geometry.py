"""Small geometry every stage shares (pure numpy; imports nothing of the project): vertex
normals of a triangle mesh, its open boundary loops, the least-squares rigid / similarity transform between two point
sets (Kabsch / Umeyama), and bilinear sampling of an image at pixel coordinates.

Conventions: points (N, 3) float; triangles (F, 3) int, counter-clockwise seen from outside;
images (H, W[, C]) rows top-to-bottom, pixel coordinates with the origin at the top-left
CORNER (pixel (i, j) centred at (i + 0.5, j + 0.5)), like `gen3dface.protocol.cameras`.

The texture baker's photo sampling (`texture/sampling.py::bilinear`) is the same lookup done
by OpenCV's remap, which rounds the sub-pixel position to 1/32 pixel; it stays there because
it is several times faster on the millions of texels a bake samples.
"""
from __future__ import annotations

import numpy as np


def vertex_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals (N, 3) float64; zero for vertices of no triangle
    (or whose triangles have no area). Each vertex sums its triangles' cross products corner
    by corner (all first corners in triangle order, then the second, then the third)."""
    v = np.asarray(vertices, np.float64)
    t = np.asarray(triangles, np.int64)
    fn = np.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]])   # length = 2 * area
    idx = t.T.ravel()                                                  # corner-major order
    n = np.stack([np.bincount(idx, np.tile(fn[:, c], 3), minlength=len(v))
                  for c in range(3)], axis=1) if len(t) else np.zeros_like(v)
    ln = np.linalg.norm(n, axis=1, keepdims=True)
    return np.divide(n, ln, out=np.zeros_like(n), where=ln > 0)


def boundary_loops(faces: np.ndarray) -> list[np.ndarray]:
    """Closed boundary loops (vertex ids in order) of a triangle mesh: its edges used by one
    triangle, each walked the way its triangle runs it (a -> b for a triangle (a, b, c))."""
    faces = np.asarray(faces, np.int64)
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    key = np.sort(e, axis=1)
    key = key[:, 0] * (int(faces.max(initial=0)) + 1) + key[:, 1]     # one integer per edge
    _, inv, cnt = np.unique(key, return_inverse=True, return_counts=True)
    border = e[cnt[inv] == 1]                  # directed edges on the boundary
    nxt = {int(a): int(b) for a, b in border}
    loops, seen = [], set()
    for start in list(nxt):
        if start in seen:
            continue
        loop, cur = [], start
        while cur not in seen and cur in nxt:
            seen.add(cur)
            loop.append(cur)
            cur = nxt[cur]
        if cur == start and len(loop) >= 3:
            loops.append(np.array(loop, np.int64))
    return loops


def similarity_transform(src: np.ndarray, dst: np.ndarray, scale: bool = True
                         ) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares s, R (3, 3) proper rotation, t (3,) with dst ~ s * R @ src + t for
    corresponding rows of src and dst (N, 3) (Umeyama 1991; Kabsch when `scale` is False,
    then s = 1)."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    cs, cd = src.mean(0), dst.mean(0)
    a, b = src - cs, dst - cd
    H = a.T @ b
    U, S, Vt = np.linalg.svd(H)
    D = np.diag([1, 1, np.sign(np.linalg.det(Vt.T @ U.T))])
    R = Vt.T @ D @ U.T
    if not scale:
        return 1.0, R, cd - R @ cs
    s = float((S * np.diag(D)).sum() / (a * a).sum())
    return s, R, cd - s * R @ cs


def rigid_transform(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kabsch: R (3, 3), t (3,) with dst ~ R @ src + t (least squares, proper rotation)."""
    _, R, t = similarity_transform(src, dst, scale=False)
    return R, t


def similarity_align(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """src (N, 3) moved by its least-squares similarity onto dst."""
    s, R, t = similarity_transform(src, dst)
    return s * np.asarray(src, np.float64) @ R.T + t


def bilinear(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear lookup of img (H, W[, C]) at pixel coordinates x, y (any matching shapes;
    corner origin), edges clamped: (...) or (..., C), float64 unless img is float32 and x, y
    are too."""
    img = np.asarray(img)
    h, w = img.shape[:2]
    xs = np.clip(np.asarray(x) - 0.5, 0, w - 1)
    ys = np.clip(np.asarray(y) - 0.5, 0, h - 1)
    x0 = np.minimum(xs.astype(np.int64), max(w - 2, 0))
    y0 = np.minimum(ys.astype(np.int64), max(h - 2, 0))
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = xs - x0, ys - y0
    if img.ndim == 3:
        fx, fy = fx[..., None], fy[..., None]
    top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
    bottom = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
    return top * (1 - fy) + bottom * fy
