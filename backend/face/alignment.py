"""Canonical square crop of a face from its landmarks (pure numpy; no cv2, no mediapipe).

Coordinates: pixels, u right, v down, origin at the top-left CORNER of the image, pixel (i, j)
centred at (i + 0.5, j + 0.5). An affine `A` (2x3) maps photo coordinates to crop coordinates:
crop_uv = A @ [u, v, 1].

The alignment follows FFHQ's recipe (eyes and mouth define a rotated square around the face),
so crops of different photos put the eyes and mouth at about the same place.
"""
from __future__ import annotations

import numpy as np

from .landmarks import LEFT_EYE_CORNERS, MOUTH_CORNERS, RIGHT_EYE_CORNERS


def canonical_square(landmarks: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """(4, 2) corners (top-left, bottom-left, bottom-right, top-right) of the aligned square
    around a face, in photo pixels, from (478 or 468, 2) landmarks."""
    lm = np.asarray(landmarks, np.float64)
    eye_r = lm[list(RIGHT_EYE_CORNERS)].mean(0)    # subject's right = image left (frontal)
    eye_l = lm[list(LEFT_EYE_CORNERS)].mean(0)
    mouth = lm[list(MOUTH_CORNERS)].mean(0)
    eye_avg = (eye_r + eye_l) / 2
    eye_to_eye = eye_l - eye_r
    eye_to_mouth = mouth - eye_avg
    # x axis: eye direction blended with the perpendicular of the eye->mouth direction.
    x = eye_to_eye - np.array([-eye_to_mouth[1], eye_to_mouth[0]])
    x /= max(np.hypot(*x), 1e-9)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8) * scale
    y = np.array([-x[1], x[0]])
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def square_to_affine(quad: np.ndarray, size: int) -> np.ndarray:
    """2x3 affine mapping the square `quad` (from canonical_square) onto [0, size]^2."""
    tl, bl, br, tr = np.asarray(quad, np.float64)
    src = np.stack([tl, tr, bl])
    dst = np.array([[0.0, 0.0], [size, 0.0], [0.0, size]])
    m = np.linalg.solve(np.c_[src, np.ones(3)], dst)   # (3, 2): [u v 1] @ m = dst
    return m.T


def invert_affine(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float64)
    lin_inv = np.linalg.inv(a[:, :2])
    return np.c_[lin_inv, -lin_inv @ a[:, 2]]


def apply_affine(a: np.ndarray, pts: np.ndarray) -> np.ndarray:
    pts = np.asarray(pts, np.float64)
    return pts @ np.asarray(a)[:, :2].T + np.asarray(a)[:, 2]


def to_opencv_affine(a: np.ndarray) -> np.ndarray:
    """Our corner-origin affine as OpenCV's (which puts pixel centres at integer coordinates):
    p_cv = p - 0.5 on both sides."""
    a = np.asarray(a, np.float64)
    out = a.copy()
    out[:, 2] = a[:, 2] + a[:, :2] @ np.array([0.5, 0.5]) - 0.5
    return out
