"""`HeadModel`: a morphable head on a fixed topology (ICT-FaceKit, FLAME, or mediapipe's face
mesh as the last fallback).

Frame and units of every array here: metres, the head frame (+Y up, +Z out of the face, +X the
subject's left), which is also glTF's frame. Loaders convert once, at load.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class HeadModel:
    name: str                       # "ict_facekit", "flame", "mediapipe_face"
    vertices: np.ndarray            # (N, 3) float32, neutral template, metres
    polygons: np.ndarray            # (F, 4) int32 vertex indices; triangles padded with -1
    uvs: np.ndarray                 # (T, 2) float32 texture coordinates, origin bottom-left (OBJ/GL)
    polygon_uvs: np.ndarray         # (F, 4) int32 index into uvs, padded like polygons
    polygon_groups: np.ndarray      # (F,) int16 index into group_names
    group_names: list[str]          # material / sub-mesh names (ICT: M_Face, M_Teeth, ...)
    identity_basis: np.ndarray      # (K, N, 3) float32 offsets, metres; coefficients ~ N(0, 1)
    expression_basis: np.ndarray    # (E, N, 3) float32 offsets, metres; coefficients in 0..1
    expression_names: list[str]     # (E,) ARKit names (see arkit_name), same order as the basis
    landmarks68: np.ndarray | None = None      # (68,) int32 Multi-PIE 68 landmark vertices
    fitting_vertices: np.ndarray | None = None  # vertices the fitter may use
    rigid_vertices: np.ndarray | None = None    # vertices that move rigidly with the skull
    source: str = ""                # where it was loaded from (for the sidecar)
    extras: dict = field(default_factory=dict)

    def __post_init__(self):
        n = len(self.vertices)
        assert self.vertices.shape == (n, 3)
        assert self.polygons.ndim == 2 and self.polygons.shape[1] in (3, 4)
        assert self.identity_basis.ndim == 3 and self.identity_basis.shape[1:] == (n, 3)
        assert self.expression_basis.ndim == 3 and self.expression_basis.shape[1:] == (n, 3)
        assert len(self.expression_names) == len(self.expression_basis)

    @property
    def n_vertices(self) -> int:
        return len(self.vertices)

    @property
    def n_identity(self) -> int:
        return len(self.identity_basis)

    @property
    def n_expressions(self) -> int:
        return len(self.expression_basis)

    def posed(self, identity: np.ndarray | None = None,
              expression: np.ndarray | None = None) -> np.ndarray:
        """Vertices (N, 3) for identity coefficients (K,) and expression weights (E,)."""
        v = self.vertices.astype(np.float64, copy=True)
        if identity is not None and len(identity):
            k = len(identity)
            v += np.tensordot(np.asarray(identity, np.float64), self.identity_basis[:k], axes=1)
        if expression is not None and len(expression):
            e = len(expression)
            v += np.tensordot(np.asarray(expression, np.float64), self.expression_basis[:e], axes=1)
        return v.astype(np.float32)

    def group_index(self, name: str) -> int:
        return self.group_names.index(name)

    def polygon_mask(self, *group_names: str) -> np.ndarray:
        """(F,) bool: polygons whose group is one of `group_names`."""
        ids = [self.group_names.index(g) for g in group_names if g in self.group_names]
        return np.isin(self.polygon_groups, ids)

    def vertices_of_groups(self, *group_names: str) -> np.ndarray:
        """Sorted unique vertex indices used by the polygons of the given groups."""
        p = self.polygons[self.polygon_mask(*group_names)]
        v = np.unique(p)
        return v[v >= 0]

    def triangles(self, polygon_mask: np.ndarray | None = None):
        """Split polygons into triangles (fan: 0-1-2, 0-2-3).

        Returns (tri_vertices (T, 3) int, tri_uvs (T, 3) int, tri_polygon (T,) int: source
        polygon index of each triangle)."""
        polys, puvs = self.polygons, self.polygon_uvs
        idx = np.arange(len(polys))
        if polygon_mask is not None:
            polys, puvs, idx = polys[polygon_mask], puvs[polygon_mask], idx[polygon_mask]
        first = (polys[:, [0, 1, 2]], puvs[:, [0, 1, 2]], idx)
        if polys.shape[1] == 3:
            return first
        quad = polys[:, 3] >= 0
        second = (polys[quad][:, [0, 2, 3]], puvs[quad][:, [0, 2, 3]], idx[quad])
        return (np.concatenate([first[0], second[0]]), np.concatenate([first[1], second[1]]),
                np.concatenate([first[2], second[2]]))


def arkit_name(ict_name: str) -> str:
    """ICT-FaceKit's expression names use _L/_R (the subject's left/right); Apple ARKit's
    blend-shape locations spell them Left/Right: eyeBlink_L -> eyeBlinkLeft. ICT splits ARKit's
    browInnerUp into browInnerUp_L/_R, which become browInnerUpLeft/browInnerUpRight."""
    if ict_name.endswith("_L"):
        return ict_name[:-2] + "Left"
    if ict_name.endswith("_R"):
        return ict_name[:-2] + "Right"
    return ict_name
