"""The bust's cap (backend/export/bust_cap.py) on small meshes made here: an open-bottomed
box and a closed one."""
from __future__ import annotations

import numpy as np

from gen3dface.backend.export.bust_cap import bust_cap, cap_normal, cap_vertices
from gen3dface.backend.geometry import boundary_loops


def _open_box():
    """A unit cube (+Y up) without its bottom face, triangles wound outward; its bottom rim
    slopes like ICT's cut (the back, -Z, higher)."""
    v = np.array([[0, 0, 1], [1, 0, 1], [1, 0.3, 0], [0, 0.3, 0],
                  [0, 1, 1], [1, 1, 1], [1, 1, 0], [0, 1, 0]], np.float64)
    quads = [(4, 5, 6, 7),            # top (+Y)
             (0, 1, 5, 4),            # front (+Z)
             (1, 2, 6, 5),            # right (+X)
             (2, 3, 7, 6),            # back (-Z)
             (3, 0, 4, 7)]            # left (-X)
    tris = []
    for a, b, c, d in quads:
        tris += [(a, b, c), (a, c, d)]
    return v, np.array(tris)


def _signed_volume(v, tris):
    a, b, c = v[tris[:, 0]], v[tris[:, 1]], v[tris[:, 2]]
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def test_the_cap_closes_the_lowest_loop_wound_like_the_mesh():
    v, tris = _open_box()
    loops = boundary_loops(tris)
    assert len(loops) == 1 and sorted(loops[0]) == [0, 1, 2, 3]
    cap = bust_cap(tris, v)
    p = np.concatenate([v, cap_vertices(cap, v)[-1:]])
    # the cap on the rim's own vertices (as the GLB has them, welded): closed and oriented
    ids = np.concatenate([cap.loop, [len(v)]])
    closed = np.concatenate([tris, ids[cap.faces]])
    directed = np.concatenate([closed[:, [0, 1]], closed[:, [1, 2]], closed[:, [2, 0]]])
    assert len(np.unique(directed, axis=0)) == len(directed)
    _, counts = np.unique(np.sort(directed, 1), axis=0, return_counts=True)
    assert (counts == 2).all()
    assert _signed_volume(p, closed) > 0.5              # outward: a positive volume
    n = cap_normal(cap, v)
    assert n[1] < -0.9 and n[2] < 0                      # down, and back: the rim rises there
    assert set(tris[cap.edge_triangle]) >= {2, 3}        # the triangle at the rim's back
    np.testing.assert_allclose(cap_vertices(cap, v)[-1], v[:4].mean(0))


def test_the_lowest_of_several_loops_is_capped_and_a_closed_mesh_has_none():
    v, tris = _open_box()
    top_open = np.array([t for t in tris if not set(t) <= {4, 5, 6, 7}])   # a tube
    assert len(boundary_loops(top_open)) == 2
    cap = bust_cap(top_open, v)
    assert sorted(cap.loop) == [0, 1, 2, 3]
    closed = np.concatenate([tris, [(0, 3, 2), (0, 2, 1)]])
    assert boundary_loops(closed) == [] and bust_cap(closed, v) is None
