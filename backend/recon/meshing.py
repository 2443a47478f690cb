"""Mesh clean-up for the free-form surface: marching cubes of a sampled field, main
connected component, small-hole fill, decimation to a target face count, xatlas UVs.

Meshes are (vertices (V, 3) float64 metres head frame, faces (F, 3) int64 CCW seen from
outside). UVs: (V', 2) float32, origin bottom-left, with `uv_faces` indexing them and
`vmapping` (V',) the source vertex of each UV vertex (xatlas splits vertices at seams).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ..geometry import boundary_loops  # noqa: F401  (recon's callers import it from here)


@dataclass
class MeshingConfig:
    target_faces: int = 40000
    max_hole_edges: int = 64          # holes with a boundary this long or shorter get filled
    uv_padding_px: int = 2
    uv_resolution: int = 1024


@dataclass
class SurfaceMesh:
    vertices: np.ndarray               # (V, 3) float64
    faces: np.ndarray                  # (F, 3) int64
    uvs: np.ndarray | None = None      # (V', 2) float32
    uv_faces: np.ndarray | None = None # (F, 3) int64 into uvs
    vmapping: np.ndarray | None = None # (V',) int64 into vertices


def largest_component(vertices: np.ndarray, faces: np.ndarray):
    """Keep the connected component (by shared vertices) with the most faces."""
    faces = np.asarray(faces, np.int64)
    if len(faces) == 0:
        raise ValueError("empty mesh")
    n = len(vertices)
    rows = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2]])
    cols = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0]])
    adj = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    _, label = connected_components(adj, directed=False)
    face_label = label[faces[:, 0]]
    best = np.bincount(face_label).argmax()
    keep = faces[face_label == best]
    used = np.unique(keep)
    remap = -np.ones(n, np.int64)
    remap[used] = np.arange(len(used))
    return np.asarray(vertices, np.float64)[used], remap[keep]


def loop_plane(points: np.ndarray, inside: np.ndarray):
    """(centre, unit normal) of the plane fitted to a boundary loop's points (least squares),
    the normal pointing to the side of `inside` (for a head's neck opening: the head)."""
    points = np.asarray(points, np.float64)
    centre = points.mean(axis=0)
    normal = np.linalg.svd(points - centre)[2][-1]
    return centre, (normal if (np.asarray(inside) - centre) @ normal >= 0 else -normal)


def fill_small_holes(vertices: np.ndarray, faces: np.ndarray, max_edges: int):
    """Close every boundary loop with at most `max_edges` edges by a fan around its centroid
    (one new vertex per hole), oriented consistently with the surrounding faces."""
    vertices = np.asarray(vertices, np.float64)
    new_v, new_f = [vertices], [faces]
    n = len(vertices)
    for loop in boundary_loops(faces):
        if len(loop) > max_edges:
            continue
        c = vertices[loop].mean(axis=0)
        a, b = loop, np.roll(loop, -1)
        # boundary edge a->b belongs to a face with a->b; the cap uses b->a
        new_f.append(np.stack([b, a, np.full(len(loop), n)], axis=1))
        new_v.append(c[None])
        n += 1
    return np.concatenate(new_v), np.concatenate(new_f)


def keep_faces(vertices: np.ndarray, faces: np.ndarray, keep: np.ndarray):
    """The mesh with only the faces where `keep` (F,) is true, then its main component."""
    f = np.asarray(faces, np.int64)[np.asarray(keep, bool)]
    if len(f) == 0:
        raise ValueError("no face left to keep")
    return largest_component(vertices, f)


def decimate(vertices: np.ndarray, faces: np.ndarray, target_faces: int):
    """Reduce to about `target_faces` faces. Uses manifold3d's error-bounded simplification
    (bisecting its tolerance) on watertight meshes; otherwise returns the mesh unchanged if
    it is already small enough, or falls back to trimesh vertex clustering."""
    if len(faces) <= target_faces:
        return vertices, faces
    try:
        import manifold3d as m3d

        mesh = m3d.Mesh(vert_properties=np.asarray(vertices, np.float32),
                        tri_verts=np.asarray(faces, np.uint32))
        man = m3d.Manifold(mesh)
        if man.status() != m3d.Error.NoError or man.num_tri() == 0:
            raise ValueError("not a manifold")
        extent = float(np.ptp(vertices, axis=0).max())
        lo, hi = 0.0, extent * 0.02
        best = None
        for _ in range(14):
            tol = 0.5 * (lo + hi)
            out = man.simplify(tol)
            nt = out.num_tri()
            if nt > target_faces:
                lo = tol
            else:
                hi, best = tol, out
            if best is not None and nt <= target_faces and nt > 0.9 * target_faces:
                break
        if best is None:
            best = man.simplify(hi)
        r = best.to_mesh()
        return np.asarray(r.vert_properties[:, :3], np.float64), np.asarray(r.tri_verts, np.int64)
    except (ImportError, ValueError):
        tm = trimesh.Trimesh(vertices, faces, process=False)
        pitch = np.sqrt(tm.area / max(target_faces, 1) * 2.0)
        grid = np.round(tm.vertices / pitch).astype(np.int64)
        _, label = np.unique(grid, axis=0, return_inverse=True)
        label = label.ravel()
        nv = label.max() + 1
        cnt = np.bincount(label, minlength=nv)[:, None]
        newv = np.stack([np.bincount(label, tm.vertices[:, k], nv) for k in range(3)], 1) / cnt
        f = label[faces]
        ok = (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 2] != f[:, 0])
        return newv, f[ok]


def atlas_uvs(vertices: np.ndarray, faces: np.ndarray, config: MeshingConfig) -> SurfaceMesh:
    """xatlas parametrisation; UV v flipped to origin bottom-left (OBJ/GL)."""
    import xatlas

    po = xatlas.PackOptions()
    po.padding = int(config.uv_padding_px)
    po.resolution = int(config.uv_resolution)
    atlas = xatlas.Atlas()
    atlas.add_mesh(np.asarray(vertices, np.float32), np.asarray(faces, np.uint32))
    atlas.generate(pack_options=po)
    vmap, idx, uvs = atlas[0]
    uvs = np.asarray(uvs, np.float32).copy()
    return SurfaceMesh(np.asarray(vertices, np.float64), np.asarray(faces, np.int64),
                       uvs=uvs, uv_faces=np.asarray(idx, np.int64),
                       vmapping=np.asarray(vmap, np.int64))


def field_to_mesh(field: np.ndarray, origin: np.ndarray, voxel: float,
                  config: MeshingConfig | None = None, level: float = 0.0,
                  with_uvs: bool = True, trim=None) -> SurfaceMesh:
    """Marching cubes (negative inside) -> main component -> small holes filled ->
    decimated -> trimmed (`trim(vertices, faces)` -> (F,) bool, the faces to keep; e.g. to
    open the surface at the template's neck) -> xatlas UVs."""
    from skimage.measure import marching_cubes

    config = config or MeshingConfig()
    f = np.pad(np.asarray(field, np.float32), 1, constant_values=float(np.max(field)))
    if not (f.min() < level < f.max()):
        raise ValueError("the field has no zero crossing: nothing to mesh")
    verts, faces, _, _ = marching_cubes(f, level=level)
    verts = (verts - 1.0) * voxel + np.asarray(origin, np.float64)
    faces = faces.astype(np.int64)      # skimage winding is already outward here
    v, fc = largest_component(verts, faces)
    v, fc = fill_small_holes(v, fc, config.max_hole_edges)
    v, fc = decimate(v, fc, config.target_faces)
    if trim is not None:
        v, fc = keep_faces(v, fc, trim(v, fc))
    if with_uvs:
        return atlas_uvs(v, fc, config)
    return SurfaceMesh(v, fc)
