"""`TexturedMesh`: what the CPU renderer draws. Triangles in the head frame (metres) with ONE
colour source: per-vertex colours, a UV texture, or a procedural solid texture evaluated at
the surface's reference position (seam-free; used by the synthetic ground truth).

Layouts: vertices (N, 3) float; faces (F, 3) int, counter-clockwise seen from outside;
vertex_colors (N, 3) float in [0, 1]; corner_uvs (F, 3, 2) float, origin bottom-left
(OBJ/GL, like HeadModel.uvs); texture (H, W, 3|4) uint8 rows top-to-bottom, so uv v = 1 is
row 0; solid_texture: callable (M, 3) reference points -> (M, 3) float RGB in [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..geometry import bilinear, vertex_normals

SolidTexture = Callable[[np.ndarray], np.ndarray]


@dataclass
class TexturedMesh:
    vertices: np.ndarray
    faces: np.ndarray
    vertex_colors: np.ndarray | None = None
    corner_uvs: np.ndarray | None = None
    texture: np.ndarray | None = None
    solid_texture: SolidTexture | None = None
    reference_vertices: np.ndarray | None = None   # (N, 3) where the solid texture is read
    name: str = ""

    def __post_init__(self):
        self.vertices = np.asarray(self.vertices, np.float64)
        self.faces = np.asarray(self.faces, np.int64)
        n = len(self.vertices)
        if self.vertices.ndim != 2 or self.vertices.shape[1] != 3:
            raise ValueError(f"vertices must be (N, 3), got {self.vertices.shape}")
        if self.faces.ndim != 2 or self.faces.shape[1] != 3:
            raise ValueError(f"faces must be (F, 3) triangles, got {self.faces.shape}")
        if len(self.faces) and (self.faces.min() < 0 or self.faces.max() >= n):
            raise ValueError("faces index outside the vertex array")
        sources = sum(x is not None for x in (self.vertex_colors, self.texture,
                                              self.solid_texture))
        if sources > 1:
            raise ValueError("give one colour source: vertex_colors, texture or solid_texture")
        if self.vertex_colors is not None:
            self.vertex_colors = np.asarray(self.vertex_colors, np.float64)[:, :3]
            if len(self.vertex_colors) != n:
                raise ValueError("vertex_colors must have one row per vertex")
        if self.texture is not None:
            if self.corner_uvs is None:
                raise ValueError("a texture needs corner_uvs (F, 3, 2)")
            self.corner_uvs = np.asarray(self.corner_uvs, np.float64)
            if self.corner_uvs.shape != (len(self.faces), 3, 2):
                raise ValueError(f"corner_uvs must be (F, 3, 2), got {self.corner_uvs.shape}")
            if self.texture.dtype != np.uint8 or self.texture.ndim != 3:
                raise ValueError("texture must be an HxWx3 or HxWx4 uint8 image")
        if self.reference_vertices is not None:
            self.reference_vertices = np.asarray(self.reference_vertices, np.float64)
            if self.reference_vertices.shape != self.vertices.shape:
                raise ValueError("reference_vertices must match vertices")

    def vertex_normals(self) -> np.ndarray:
        """(N, 3) area-weighted unit vertex normals."""
        return vertex_normals(self.vertices, self.faces)

    def colors_at(self, face_ids: np.ndarray, bary: np.ndarray) -> np.ndarray:
        """(M, 3) float RGB for hits on faces `face_ids` (M,) at barycentrics (M, 3)."""
        f = self.faces[face_ids]
        if self.vertex_colors is not None:
            return np.einsum("mk,mkc->mc", bary, self.vertex_colors[f])
        if self.texture is not None:
            uv = np.einsum("mk,mkc->mc", bary, self.corner_uvs[face_ids])
            return sample_texture(self.texture, uv)[:, :3]
        if self.solid_texture is not None:
            ref = self.reference_vertices if self.reference_vertices is not None else self.vertices
            p = np.einsum("mk,mkc->mc", bary, ref[f])
            return np.clip(np.asarray(self.solid_texture(p), np.float64), 0.0, 1.0)
        return np.full((len(face_ids), 3), 0.7)


def sample_texture(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear lookup (edges clamped): texture (H, W, C) uint8, uv (M, 2) origin bottom-left,
    wrapping.
    Returns (M, C) float in [0, 1]."""
    h, w = texture.shape[:2]
    return bilinear(texture.astype(np.float64) / 255.0, np.mod(uv[:, 0], 1.0) * w,
                    (1.0 - np.mod(uv[:, 1], 1.0)) * h)
