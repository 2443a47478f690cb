"""Silhouette re-picking for the face-oval ("contour") landmarks (pure numpy).

A detector puts the face-oval landmarks on the VISIBLE outline of the cheeks and jaw, which
slides over the 3D surface as the head turns: at 45 degrees of yaw the far-side outline is
near the cheekbone, not at the jaw. As in standard 3DMM fitting, each contour landmark owns a
"line" of candidate vertices across the cheek at its height (head frame), and at each
iteration the candidate that lies on the silhouette (furthest outward in the image, along the
projected direction of the head's +-X axis) becomes its correspondence.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ContourLines:
    rows: np.ndarray          # (C,) row index into the LandmarkMapping of each re-picked landmark
    side: np.ndarray          # (C,) +1 (subject's left, +X) or -1
    candidates: np.ndarray    # (C, M) int vertex indices, padded with -1
    vertex_set: np.ndarray    # (V,) sorted unique candidate vertices (for posing only these)
    local: np.ndarray         # (C, M) index into vertex_set, padded with -1


def build_contour_lines(neutral: np.ndarray, region_vertices: np.ndarray, anchors: np.ndarray,
                        rows: np.ndarray, band_m: float = 0.004, min_abs_x_m: float = 0.025,
                        inner_fraction: float = 0.35, back_margin_m: float = 0.002) -> ContourLines:
    """Candidate lines for the contour landmarks at `rows` with neutral positions `anchors`
    (R, 3). Landmarks closer than `min_abs_x_m` to the mid-plane (chin, top of forehead) keep
    their fixed correspondence and are left out. A line holds the region vertices within
    `band_m` of the anchor's height on its side, from `inner_fraction` of its |x| outward, and
    no further back than the anchor (+ `back_margin_m`): on the side turned toward the camera
    the detector keeps the oval on the cheek/jaw boundary rather than following the outline
    back to the ear, so the correspondence may slide forward (far side) but not backward."""
    v = neutral[region_vertices]
    keep_rows, sides, cands = [], [], []
    for r, a in zip(rows, anchors):
        if abs(a[0]) < min_abs_x_m:
            continue
        s = 1.0 if a[0] > 0 else -1.0
        sel = ((np.abs(v[:, 1] - a[1]) < band_m) & (v[:, 0] * s > inner_fraction * abs(a[0]))
               & (v[:, 2] >= a[2] - back_margin_m))
        if sel.sum() < 3:
            continue
        keep_rows.append(r)
        sides.append(s)
        cands.append(region_vertices[sel])
    m = max((len(c) for c in cands), default=1)
    cand = np.full((len(cands), m), -1, np.int64)
    for i, c in enumerate(cands):
        cand[i, :len(c)] = c
    vset = np.unique(cand[cand >= 0])
    local = np.where(cand >= 0, np.searchsorted(vset, np.maximum(cand, 0)), -1)
    return ContourLines(np.asarray(keep_rows, np.int64), np.asarray(sides), cand, vset, local)


def pick_silhouette(lines: ContourLines, posed_set: np.ndarray, rot: np.ndarray,
                    trans: np.ndarray, focal: float, cx: float, cy: float) -> np.ndarray:
    """(C,) vertex index on the silhouette for each line, given the posed candidate vertices
    `posed_set` (V, 3) (rows follow lines.vertex_set) and the camera (OpenCV R, t, focal)."""
    q = posed_set @ rot.T + trans
    uv = focal * q[:, :2] / q[:, 2:3] + np.array([cx, cy])
    # Image direction of the head's +X axis at each candidate (d(uv)/d(x_head)), averaged
    # over the line and pointed outward (toward the line's side).
    ex = rot[:, 0]
    duv = focal * (ex[None, :2] * q[:, 2:3] - q[:, :2] * ex[2]) / q[:, 2:3] ** 2
    valid = lines.local >= 0
    loc = np.where(valid, lines.local, 0)
    d = (duv[loc] * valid[..., None]).sum(1)
    d *= (lines.side / np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-12))[:, None]
    score = np.where(valid, np.einsum("cmk,ck->cm", uv[loc], d), -np.inf)
    best = np.argmax(score, axis=1)
    return lines.vertex_set[loc[np.arange(len(loc)), best]]
