"""Synthetic fitting cases with known ground truth (for tests and scripts/bench_fitting.py).

A case: a random identity (N(0, 1) on the first K modes), a sparse random expression (a few
blendshapes at 0..max), a camera orbiting the face at a given yaw/pitch, and the 478
landmarks a perfect detector would report: the mapped surface points projected by the camera,
with the face-oval landmarks on the model's silhouette (the same candidate lines the fitter
uses; see contour.py), plus Gaussian pixel noise.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gen3dface.protocol.cameras import intrinsics_from_fov, orbit_w2c_in_head

from .contour import pick_silhouette


@dataclass
class SyntheticCase:
    landmarks: np.ndarray       # (478, 2) noisy pixels
    clean: np.ndarray           # (478, 2) noise-free pixels
    vertices: np.ndarray        # (N, 3) ground-truth posed head, head frame, metres
    identity: np.ndarray
    expression: np.ndarray
    w2c: np.ndarray             # (4, 4)
    focal: float
    image_size: tuple[int, int]


def make_case(fitter, rng: np.random.Generator, yaw_deg: float = 0.0, pitch_deg: float = 0.0,
              size: int = 512, fov_deg: float = 25.0, noise_px: float = 1.0, n_identity: int = 60,
              n_active_expressions: int = 4, max_expression: float = 0.6,
              face_fraction: float = 0.55,
              expression: dict[str, float] | None = None) -> SyntheticCase:
    """`expression`: these blendshape weights by name instead of `n_active_expressions`
    random ones."""
    model, m = fitter.model, fitter.mapping
    alpha = np.zeros(model.n_identity)
    alpha[:n_identity] = rng.standard_normal(n_identity)
    beta = np.zeros(model.n_expressions)
    if expression is None:
        active = rng.choice(model.n_expressions, n_active_expressions, replace=False)
        beta[active] = rng.uniform(0, max_expression, n_active_expressions)
    else:
        for name, weight in expression.items():
            beta[list(model.expression_names).index(name)] = weight
    verts = model.posed(alpha, beta).astype(np.float64)
    k = intrinsics_from_fov(size, size, fov_deg)
    # Distance so the face (about 0.2 m tall) fills `face_fraction` of the image.
    radius = 0.2 * k.fx / (face_fraction * size)
    target = m.points(verts)[[1, 168]].mean(0) * np.array([0, 1, 0.5])
    w2c = np.asarray(orbit_w2c_in_head(yaw_deg, pitch_deg, radius, target))
    rot, trans = w2c[:3, :3], w2c[:3, 3]
    pts = m.points(verts)
    lines = fitter.lines
    if len(lines.rows):
        picked = pick_silhouette(lines, verts[lines.vertex_set], rot, trans, k.fx, k.cx, k.cy)
        pts[lines.rows] = verts[picked]
    q = pts @ rot.T + trans
    clean_rows = k.fx * q[:, :2] / q[:, 2:3] + np.array([k.cx, k.cy])
    clean = np.zeros((int(m.landmark_ids.max()) + 1, 2))
    clean[m.landmark_ids] = clean_rows
    noisy = clean + rng.normal(0.0, noise_px, clean.shape)
    return SyntheticCase(noisy, clean, verts.astype(np.float32), alpha, beta, w2c, k.fx,
                         (size, size))
