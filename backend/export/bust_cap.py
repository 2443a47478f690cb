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


@dataclass(frozen=True)
class BustCap:
    loop: np.ndarray       # (k,) int: the open boundary's vertex ids, in the mesh's own order
    faces: np.ndarray      # (k, 3) int: cap triangles over [loop copies 0..k-1, centroid k]
    edge_triangle: int     # a row of the mesh's triangles that borders the loop at its back


def boundary_loops(tris: np.ndarray) -> list[np.ndarray]:
    """The mesh's open boundaries as ordered vertex loops: each edge used by one triangle,
    walked in the direction the triangle runs it (a -> b for a triangle (a, b, c)). Edges that
    do not close into a simple loop (a non-manifold rim) are left out."""
    tris = np.asarray(tris, np.int64)
    directed = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])
    und = np.sort(directed, 1)
    key = und[:, 0] * (int(tris.max(initial=0)) + 1) + und[:, 1]    # one integer per edge
    _, inv, counts = np.unique(key, return_inverse=True, return_counts=True)
    rim = directed[counts[inv] == 1]
    nxt: dict[int, int] = {}
    for a, b in rim:
        if a in nxt:                     # two rim edges leave one vertex: not a simple loop
            nxt[a] = -1
        else:
            nxt[int(a)] = int(b)
    loops, done = [], set()
    for start in list(nxt):
        if start in done or nxt[start] < 0:
            continue
        loop, cur = [start], nxt[start]
        while cur != start and cur in nxt and nxt[cur] >= 0 and cur not in done \
                and len(loop) <= len(nxt):
            loop.append(cur)
            cur = nxt[cur]
        done.update(loop)
        if cur == start and len(loop) >= 3:
            loops.append(np.asarray(loop, np.int64))
    return loops


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
    t = np.asarray(tris, np.int64)
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
