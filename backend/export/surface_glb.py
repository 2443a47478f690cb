"""The free-form surface (backend/recon: marching cubes, xatlas UVs, texture baked into the
atlas) as a glTF mesh: node/mesh "Surface", one primitive, material "SurfaceSkin" with the
baked atlas as its base-colour texture, no morph targets. Metres, head frame (= glTF frame,
see head_glb.py), so it sits exactly where the rigged head sits.

Input layouts (backend/recon/meshing.py SurfaceMesh): vertices (V, 3) metres, faces (F, 3)
into vertices (CCW seen from outside); uvs (V', 2) OBJ/GL style (origin bottom-left, v up),
uv_faces (F, 3) into uvs, vmapping (V',) the source vertex of each UV vertex (xatlas splits
vertices at seams). texture (S, S, 3) uint8 RGB, rows top-to-bottom (what bake_surface
makes). glTF wants one UV per vertex with its origin at the top-left of the image, so the
written vertices are `vertices[vmapping]`, the triangles `uv_faces` and v_gltf = 1 - v.
Normals are the area-weighted normals of the unsplit mesh, so seams do not show in shading.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..geometry import vertex_normals
from .gltf import ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER, GltfBuilder
from .head_glb import ExportConfig, _encode_image

SURFACE_NODE = "Surface"
SURFACE_MATERIAL = "SurfaceSkin"
SURFACE_ROLE = "free_form_surface"      # node extras["gen3dface_role"]: tells it from the rig


@dataclass
class SurfaceAsset:
    """A free-form surface to export. `texture` None: a plain skin-coloured material (and no
    UVs are needed)."""
    vertices: np.ndarray                   # (V, 3) metres, head frame
    faces: np.ndarray                      # (F, 3) int
    uvs: np.ndarray | None = None          # (V', 2) origin bottom-left
    uv_faces: np.ndarray | None = None     # (F, 3) into uvs
    vmapping: np.ndarray | None = None     # (V',) into vertices
    texture: np.ndarray | None = None      # (S, S, 3) uint8 RGB, rows top-to-bottom
    extras: dict = field(default_factory=dict)   # written to the node's extras

    @classmethod
    def from_mesh(cls, mesh, texture: np.ndarray | None = None,
                  extras: dict | None = None) -> "SurfaceAsset":
        """From a backend.recon.meshing.SurfaceMesh (or anything with the same fields)."""
        return cls(mesh.vertices, mesh.faces, getattr(mesh, "uvs", None),
                   getattr(mesh, "uv_faces", None), getattr(mesh, "vmapping", None), texture,
                   dict(extras or {}))


def _checked(s: SurfaceAsset):
    """(positions (W, 3), glTF uvs (W, 2) or None, triangles (F, 3), source vertex (W,))."""
    v = np.asarray(s.vertices, np.float64)
    f = np.asarray(s.faces, np.int64)
    if v.ndim != 2 or v.shape[1] != 3 or not len(v):
        raise ValueError(f"surface vertices must be (V, 3), got {v.shape}")
    if f.ndim != 2 or f.shape[1] != 3 or not len(f):
        raise ValueError(f"surface faces must be (F, 3), got {f.shape}")
    if f.min() < 0 or f.max() >= len(v):
        raise ValueError("surface faces index outside the vertices")
    if not np.isfinite(v).all():
        raise ValueError("surface vertices are not finite")
    has_uv = s.uvs is not None and s.uv_faces is not None
    if not has_uv:
        if s.texture is not None:
            raise ValueError("a surface texture needs UVs (uvs, uv_faces, vmapping)")
        return v, None, f, np.arange(len(v))
    uv = np.asarray(s.uvs, np.float64)
    uf = np.asarray(s.uv_faces, np.int64)
    vmap = (np.asarray(s.vmapping, np.int64) if s.vmapping is not None
            else np.arange(len(uv)))
    if uv.ndim != 2 or uv.shape[1] != 2 or len(vmap) != len(uv):
        raise ValueError(f"surface uvs {uv.shape} / vmapping {vmap.shape} do not match")
    if uf.shape != f.shape or uf.min() < 0 or uf.max() >= len(uv):
        raise ValueError("surface uv_faces must be (F, 3) into uvs, like faces")
    if vmap.min() < 0 or vmap.max() >= len(v) or not np.array_equal(vmap[uf], f):
        raise ValueError("surface vmapping does not map uv_faces onto faces")
    guv = np.stack([uv[:, 0], 1.0 - uv[:, 1]], axis=1)
    return v[vmap], guv, uf, vmap


def add_surface(b: GltfBuilder, surface: SurfaceAsset, config: ExportConfig | None = None,
                check=None) -> int:
    """Add mesh + root node "Surface" (material "SurfaceSkin") to `b`; returns the node."""
    config = config or ExportConfig()
    check = check or (lambda: None)
    pos, guv, tri, src = _checked(surface)
    check()
    nrm = vertex_normals(np.asarray(surface.vertices, np.float64),
                         np.asarray(surface.faces, np.int64))[src]
    bad = np.linalg.norm(nrm, axis=1) < 0.5          # unused / degenerate-only vertices
    nrm[bad] = (0.0, 0.0, 1.0)
    attrs = {"POSITION": b.accessor(pos.astype(np.float32), ARRAY_BUFFER, minmax=True),
             "NORMAL": b.accessor(nrm.astype(np.float32), ARRAY_BUFFER)}
    if guv is not None:
        attrs["TEXCOORD_0"] = b.accessor(guv.astype(np.float32), ARRAY_BUFFER)
    idx_t = np.uint16 if len(pos) <= 65535 else np.uint32
    ind = b.accessor(tri.ravel().astype(idx_t), ELEMENT_ARRAY_BUFFER)
    check()
    if surface.texture is not None:
        tex = np.asarray(surface.texture)
        if tex.ndim != 3 or tex.shape[2] != 3 or tex.dtype != np.uint8:
            raise ValueError(f"surface texture must be (S, S, 3) uint8, got {tex.shape} "
                             f"{tex.dtype}")
        data, mime = _encode_image(tex, config.skin_image_format, config.jpeg_quality)
        t = b.texture(b.image(data, mime, f"{SURFACE_MATERIAL}_baseColor"))
        mat = b.material(SURFACE_MATERIAL, texture=t, roughness=0.55)
    else:
        mat = b.material(SURFACE_MATERIAL, base_color=(0.8, 0.62, 0.52, 1.0), roughness=0.55)
    mesh = b.mesh(SURFACE_NODE, [{"attributes": attrs, "indices": ind, "material": mat,
                                  "mode": 4}])
    return b.node(SURFACE_NODE, mesh,
                  extras={"gen3dface_role": SURFACE_ROLE, **surface.extras})
