"""A small ray-cast renderer (trimesh + embreex) for previews, README pictures and tests.

Layouts: output image HxWx3 uint8 RGB rows top-to-bottom, plus an HxW float32 coverage mask.
Cameras: OpenCV w2c (world = head frame, metres) and pixel intrinsics; pixel (i, j) is
centred at (i + 0.5, j + 0.5). Textures are (H, W, 3) uint8 rows top-to-bottom, sampled with
OBJ/GL uvs (v up), i.e. texel row = (1 - v) * H.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..texture.sampling import sample_uv


@dataclass
class RenderPart:
    vertices: np.ndarray                 # (N, 3) metres
    triangles: np.ndarray                # (T, 3) int
    corner_uvs: np.ndarray | None = None  # (T, 3, 2) OBJ/GL uvs of each triangle corner
    texture: np.ndarray | None = None    # (H, W, 3) uint8
    color: tuple = (0.8, 0.8, 0.8)       # used when there is no texture


def sample_texture(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear sample of an (H, W, 3) uint8 texture at OBJ/GL uvs (M, 2) -> (M, 3) [0, 1]."""
    return sample_uv(texture, uv) / 255.0


def render(parts: list[RenderPart], w2c: np.ndarray, fx: float, fy: float, cx: float,
           cy: float, width: int, height: int, shading: float = 0.0,
           background=(1.0, 1.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """Render parts seen from a camera. shading = 0 gives unlit texture colours (what a photo of
    an evenly lit object would record); shading > 0 mixes in a head-light Lambert term."""
    import trimesh
    from trimesh.triangles import points_to_barycentric

    verts, tris, owner, offsets = [], [], [], 0
    for k, p in enumerate(parts):
        verts.append(np.asarray(p.vertices, np.float64))
        tris.append(np.asarray(p.triangles, np.int64) + offsets)
        owner.append(np.full(len(p.triangles), k))
        offsets += len(p.vertices)
    v = np.concatenate(verts)
    t = np.concatenate(tris)
    owner = np.concatenate(owner)
    local = np.concatenate([np.arange(len(p.triangles)) for p in parts])
    mesh = trimesh.Trimesh(v, t, process=False)
    w2c = np.asarray(w2c, np.float64)
    r, tr = w2c[:3, :3], w2c[:3, 3]
    centre = -r.T @ tr
    jj, ii = np.mgrid[0:height, 0:width]
    d_cam = np.stack([(ii.ravel() + 0.5 - cx) / fx, (jj.ravel() + 0.5 - cy) / fy,
                      np.ones(ii.size)], 1)
    d = d_cam @ r                                          # = (R^T d_cam^T)^T
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    o = np.tile(centre, (len(d), 1))
    tri_id, ray_id, loc = mesh.ray.intersects_id(o, d, multiple_hits=False, return_locations=True)
    img = np.tile(np.asarray(background, np.float64), (width * height, 1))
    mask = np.zeros(width * height, np.float32)
    if len(tri_id):
        bary = points_to_barycentric(v[t[tri_id]], loc)
        fn = mesh.face_normals[tri_id]
        lam = np.abs(np.einsum("ij,ij->i", fn, d[ray_id]))
        for k, p in enumerate(parts):
            sel = owner[tri_id] == k
            if not sel.any():
                continue
            if p.texture is not None and p.corner_uvs is not None:
                uv = (np.asarray(p.corner_uvs)[local[tri_id[sel]]] * bary[sel][..., None]).sum(1)
                col = sample_texture(p.texture, uv)
            else:
                col = np.tile(np.asarray(p.color, np.float64), (sel.sum(), 1))
            shade = (1 - shading) + shading * lam[sel]
            img[ray_id[sel]] = col * shade[:, None]
        mask[ray_id] = 1.0
    img = np.clip(img.reshape(height, width, 3) * 255 + 0.5, 0, 255).astype(np.uint8)
    return img, mask.reshape(height, width)
