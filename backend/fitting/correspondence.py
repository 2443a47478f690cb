"""mediapipe landmark -> head-model surface point (triangle + barycentric coordinates).

The data file is written by scripts/derive_landmark_correspondence.py (read its docstring for
how it is derived). Each of the 478 landmarks maps to a point
    p = sum_k barycentric[k] * vertices[triangle[k]]
of the posed head, so the mapping follows identity and expression changes.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATA_DIR = Path(__file__).resolve().parent / "data"
ICT_CORRESPONDENCE = DATA_DIR / "mediapipe_to_ict.json"


@dataclass(frozen=True)
class LandmarkMapping:
    landmark_ids: np.ndarray   # (L,) int   mediapipe landmark index of each row
    triangles: np.ndarray      # (L, 3) int  head-model vertex indices
    barycentric: np.ndarray    # (L, 3) float64, rows sum to 1
    contour: np.ndarray        # (L,) bool  face-oval landmark (outline: view dependent)
    iris: np.ndarray           # (L,) bool  maps onto an eyeball
    head_model: str
    n_vertices: int

    def __len__(self) -> int:
        return len(self.landmark_ids)

    def points(self, vertices: np.ndarray) -> np.ndarray:
        """(L, 3) landmark points on posed vertices (N, 3) (or bases (..., N, 3))."""
        v = np.asarray(vertices)
        return np.einsum("lk,...lkc->...lc", self.barycentric, v[..., self.triangles, :])


def load_mapping(path: str | Path = ICT_CORRESPONDENCE) -> LandmarkMapping:
    d = json.loads(Path(path).read_text())
    rows = d["landmarks"]
    return LandmarkMapping(
        landmark_ids=np.array([r["landmark"] for r in rows], np.int64),
        triangles=np.array([r["vertices"] for r in rows], np.int64),
        barycentric=np.array([r["barycentric"] for r in rows], np.float64),
        contour=np.array([r["contour"] for r in rows], bool),
        iris=np.array([r["region"] == "eye" for r in rows], bool),
        head_model=str(d["head_model"]),
        n_vertices=int(d["n_vertices"]),
    )
