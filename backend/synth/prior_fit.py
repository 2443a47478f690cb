"""The prior mesh of a synthetic view: the head model fitted to that view's 2D landmarks.

The paper conditions on a mesh ESTIMATED from the input image, never the ground truth. For
synthetic heads the camera is known, so the estimate here is the ICT model's identity and
expression coefficients fitted to the 68 landmarks of the ground-truth head as seen in the
view, with pixel noise: a linear least-squares problem (perspective projection is linear in
the vertex position once multiplied by depth: fx*X - (u - cx)*Z = 0), ridge-regularised
toward the mean head. It recovers the head's gross shape and loses its detail, as a real
single-image fit does. Real photos use the fitting stage instead (data/priors.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..headmodel.model import HeadModel


@dataclass
class LandmarkFitConfig:
    n_identity: int = 30            # identity modes fitted
    fit_expression: bool = True
    reg_identity: float = 4.0       # ridge weight on identity coefficients (pixel^2 units)
    reg_expression: float = 1.0
    noise_px_at_256: float = 1.5    # landmark noise, pixels at a 256-pixel image (scaled)


def fit_to_landmarks(model: HeadModel, uv: np.ndarray, vertex_ids: np.ndarray, w2c: np.ndarray,
                     k: np.ndarray, cfg: LandmarkFitConfig | None = None):
    """(identity (K,), expression (E,) in [0, 1], posed vertices (N, 3)) whose landmark
    vertices project onto `uv` (L, 2) through the known camera."""
    cfg = cfg or LandmarkFitConfig()
    r, t = np.asarray(w2c)[:3, :3], np.asarray(w2c)[:3, 3]
    fx, fy, cx, cy = k[0, 0], k[1, 1], k[0, 2], k[1, 2]
    v0 = model.vertices[vertex_ids].astype(np.float64)                 # (L, 3)
    nid = min(cfg.n_identity, model.n_identity)
    bases = [model.identity_basis[:nid, vertex_ids]]                    # (K, L, 3)
    if cfg.fit_expression:
        bases.append(model.expression_basis[:, vertex_ids])
    basis = np.concatenate(bases).astype(np.float64)                    # (C, L, 3)
    z = (v0 @ r.T + t)[:, 2]                                            # depth, for pixel units
    rows, rhs = [], []
    for axis, f, c in ((0, fx, cx), (1, fy, cy)):
        a = f * r[axis][None, :] - (uv[:, axis] - c)[:, None] * r[2][None, :]   # (L, 3)
        b = f * t[axis] - (uv[:, axis] - c) * t[2]                              # (L,)
        rows.append(np.einsum("lj,clj->lc", a, basis) / z[:, None])
        rhs.append(-(np.einsum("lj,lj->l", a, v0) + b) / z)
    a_mat, y = np.concatenate(rows), np.concatenate(rhs)
    reg = np.concatenate([np.full(nid, cfg.reg_identity),
                          np.full(basis.shape[0] - nid, cfg.reg_expression)])
    coef = np.linalg.solve(a_mat.T @ a_mat + np.diag(reg), a_mat.T @ y)
    identity = coef[:nid]
    expression = np.clip(coef[nid:], 0.0, 1.0) if cfg.fit_expression else np.zeros(0)
    return identity, expression, model.posed(identity, expression)


def project_points(points: np.ndarray, w2c: np.ndarray, k: np.ndarray) -> np.ndarray:
    p = np.asarray(points, np.float64) @ w2c[:3, :3].T + w2c[:3, 3]
    return p[:, :2] / p[:, 2:3] * np.diag(k)[:2] + k[:2, 2]
