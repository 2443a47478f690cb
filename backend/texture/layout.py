"""Which parts of a head model get the baked photo texture, and how its UVs map onto the atlas.

ICT-FaceKit lays its UVs out in unit tiles along u: tile 0 the face (M_Face), tile 1 the back
of the head, neck, mouth and eye sockets (M_BackHead), tiles 2.. the mouth, teeth, eyelashes;
the eyes (M_Sclera*, M_Iris*) reuse tile 0 with their own textures. The skin atlas holds the
skin groups' tiles side by side: `n_tiles` tiles of `size` x `size` texels (see raster.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..headmodel.model import HeadModel

ICT_SKIN_GROUPS = ("M_Face", "M_BackHead")
EYE_GROUP_PREFIXES = ("M_Sclera", "M_Iris")
DROPPED_GROUPS = ("M_EyeBlend", "M_EyeLashes", "M_EyeOcclusion", "M_LacrimalFluid")
MOUTH_GROUPS = ("M_Teeth", "M_GumsTongue")


def skin_groups(model: HeadModel) -> list[str]:
    """Groups that carry the baked skin texture: ICT's face and back of head; for models
    without ICT's groups (FLAME, mediapipe's face mesh), every group."""
    named = [g for g in ICT_SKIN_GROUPS if g in model.group_names]
    if named:
        return named
    return [g for g in model.group_names
            if not g.startswith(EYE_GROUP_PREFIXES) and g not in DROPPED_GROUPS + MOUTH_GROUPS]


def eye_groups(model: HeadModel) -> list[str]:
    return [g for g in model.group_names if g.startswith(EYE_GROUP_PREFIXES)]


@dataclass
class SkinLayout:
    """Triangles of the skin groups, their UVs and the atlas tiles they use."""

    polygon_mask: np.ndarray   # (F,) bool: skin polygons of the model
    tri_vertices: np.ndarray   # (T, 3) int vertex indices
    tri_uvs: np.ndarray        # (T, 3, 2) float64 OBJ/GL uvs, shifted so the first tile is 0
    tile_offset: int           # integer u subtracted from the model's uvs
    n_tiles: int

    @classmethod
    def of(cls, model: HeadModel, groups: list[str] | None = None) -> "SkinLayout":
        groups = list(groups) if groups is not None else skin_groups(model)
        mask = model.polygon_mask(*groups)
        if not mask.any():
            raise ValueError(f"head model {model.name!r} has no polygons in groups {groups}")
        tv, tu, _ = model.triangles(mask)
        uv = model.uvs[tu].astype(np.float64)                      # (T, 3, 2)
        tile = np.floor(uv[..., 0].mean(1) + 1e-6)                 # tile of each triangle
        first = int(tile.min())
        n_tiles = int(tile.max()) - first + 1
        uv[..., 0] -= first
        return cls(mask, tv.astype(np.int64), uv, first, n_tiles)

    def atlas_uv(self, uv: np.ndarray) -> np.ndarray:
        """Model uvs of skin polygons (..., 2) -> uvs in [0, 1]^2 of the whole atlas image
        (still OBJ/GL, v up)."""
        uv = np.asarray(uv, np.float64).copy()
        uv[..., 0] = (uv[..., 0] - self.tile_offset) / self.n_tiles
        return uv
