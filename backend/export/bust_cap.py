"""Close the bust's open bottom with a flat cap (pure numpy: no glTF, no bpy).

ICT-FaceKit's skin (face + back of the head) is closed everywhere but at the bottom of the
bust, where the shoulders are cut by one loop of 54 edges. The cut slopes (its back is higher
than its front), so from behind and above the open bottom shows the inside of the chest, with
the photo's chest painted on it, and an engine that culls back faces shows a hole. The cap is
a fan of triangles from the loop's centroid, wound like the mesh around it (so its front side
faces out, down), on copies of the loop's vertices: its own flat normal, and one texture
coordinate for all of them (a skin texel beside the cut at the back), so it is one even skin
tone with a hard edge at the rim, and the bust's own vertices, normals and UVs stay as they
were.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry import boundary_loops


@dataclass(frozen=True)
class BustCap:
    loop: np.ndarray       # (k,) int: the open boundary's vertex ids, in the mesh's own order
    faces: np.ndarray      # (k, 3) int: cap triangles over [loop copies 0..k-1, centroid k]
    edge_triangle: int     # a row of the mesh's triangles that borders the loop at its back


def bust_cap(tris: np.ndarray, vertices: np.ndarray) -> BustCap | None:
    """The cap of the lowest open boundary (+Y up), or None when the mesh has none."""
    v = np.asarray(vertices, np.float64)
    loops = boundary_loops(tris)
    if not loops:
        return None
    loop = min(loops, key=lambda lp: float(v[lp, 1].mean()))
    k = len(loop)
    i = np.arange(k)
    # the mesh runs the rim a -> b, so the cap beside it runs b -> a: same orientation
    faces = np.stack([(i + 1) % k, i, np.full(k, k)], 1)
    back = int(np.argmin(v[loop, 2] + v[loop[(i + 1) % k], 2]))   # the edge furthest back
    a, b = loop[back], loop[(back + 1) % k]
    t = np.asarray(tris)
    edge_tri = int(np.flatnonzero(((t == a) | (t == b)).sum(1) == 2)[0])
    return BustCap(loop=loop, faces=faces, edge_triangle=edge_tri)


def cap_vertices(cap: BustCap, vertices: np.ndarray) -> np.ndarray:
    """(k + 1, 3): the loop's vertices of `vertices` (any pose or morph delta), then their
    mean (the centroid, which follows the loop)."""
    p = np.asarray(vertices, np.float64)[cap.loop]
    return np.concatenate([p, p.mean(0, keepdims=True)])


def cap_normal(cap: BustCap, vertices: np.ndarray) -> np.ndarray:
    """(3,) the cap's unit normal: the area-weighted mean of its triangles' (outward)."""
    p = cap_vertices(cap, vertices)
    a, b, c = (p[cap.faces[:, j]] for j in range(3))
    n = np.cross(b - a, c - a).sum(0)
    return n / max(float(np.linalg.norm(n)), 1e-12)
