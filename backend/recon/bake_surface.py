"""Bake N posed views into the xatlas atlas of a free-form surface (the multi-view part the
head-model baker in backend/texture/ does not cover: that one bakes into a HeadModel's own
UV layout). Reuses backend/texture's UV rasteriser, per-sample view weighting
(`sample_views`: visibility by ray casting, cos^p view-angle weights, mask weights) and
island padding; adds the fill of unseen texels from the nearest seen ones.

Layouts: texture (size, size, 3) uint8 RGB, rows top-to-bottom, uv origin bottom-left;
confidence (size, size) float32 (accumulated view weight, 0 = unseen or outside islands).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..camera import View
from ..contracts import CancelToken
from ..geometry import vertex_normals
from ..render.mesh import TexturedMesh
from ..render.raycast import RayCaster
from ..texture.bake import TextureConfig, sample_views
from ..texture.fill import nearest_fill_outside
from ..texture.raster import rasterize_uv
from .meshing import SurfaceMesh


class _EmbreeOccluder:
    """`blocked(origins, directions)` as backend/texture's sampler expects, with embree."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray):
        self.caster = RayCaster(TexturedMesh(vertices, faces))

    def blocked(self, origins: np.ndarray, directions: np.ndarray) -> np.ndarray:
        if not len(origins):
            return np.zeros(0, bool)
        return self.caster.cast(origins, directions).hit


@dataclass
class SurfaceTexture:
    texture: np.ndarray
    confidence: np.ndarray
    seen_fraction: float        # of the atlas texels inside UV islands


def bake_surface(mesh: SurfaceMesh, views: list[View], size: int = 1024,
                 config: TextureConfig | None = None,
                 cancel: CancelToken | None = None) -> SurfaceTexture:
    if mesh.uvs is None or mesh.uv_faces is None:
        raise ValueError("the surface has no UVs: mesh it with atlas UVs first")
    cfg = config or TextureConfig(size=size, mirror_fill=False)
    check = cancel.raise_if_cancelled if cancel is not None else (lambda: None)
    raster = rasterize_uv(mesh.uvs[mesh.uv_faces], size, 1)
    cov = raster.covered
    tri = raster.tri[cov].astype(np.int64)
    bary = raster.bary[cov].astype(np.float64)
    f = mesh.faces[tri]
    v = mesh.vertices
    pts = np.einsum("mk,mkc->mc", bary, v[f]).astype(np.float32)
    vn = vertex_normals(v, mesh.faces)
    nrm = np.einsum("mk,mkc->mc", bary, vn[f])
    nrm = (nrm / np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-12)).astype(
        np.float32)
    occ = _EmbreeOccluder(v, mesh.faces)
    col, wsum = sample_views(views, pts, nrm, occ, cfg, check)
    tex = np.zeros((size, size, 3), np.float32)
    conf = np.zeros((size, size), np.float32)
    tex[cov] = col * 255.0
    conf[cov] = wsum
    seen = np.zeros_like(cov)
    seen[cov] = wsum > 0
    check()
    if seen.any():
        # unseen texels inside islands: grow the seen colours into them, then pad the islands
        filled = nearest_fill_outside(tex, seen, pad=64, check=check)
        tex = nearest_fill_outside(np.where(cov[..., None], filled, 0.0), cov, pad=8,
                                   check=check)
    return SurfaceTexture(texture=np.clip(np.round(tex), 0, 255).astype(np.uint8),
                          confidence=conf, seen_fraction=float(seen[cov].mean()) if cov.any()
                          else 0.0)
