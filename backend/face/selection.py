"""Which face to use when a photo holds several (pure numpy).

Boxes are (x0, y0, x1, y1) in photo pixels (corner origin, see alignment.py).
"""
from __future__ import annotations

import numpy as np


def box_iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def merge_boxes(boxes: list, scores: list, iou: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
    """Non-maximum suppression over detections from several detectors."""
    order = np.argsort(-np.asarray(scores, np.float64)) if len(scores) else []
    kept: list[int] = []
    for i in order:
        if all(box_iou(boxes[i], boxes[j]) < iou for j in kept):
            kept.append(int(i))
    return (np.asarray([boxes[i] for i in kept], np.float64).reshape(-1, 4),
            np.asarray([scores[i] for i in kept], np.float64))


def pick_main_face(boxes: np.ndarray, width: int, height: int) -> int:
    """Index of the largest, most central face: box size weighted down by the distance of its
    centre from the image centre (a face at a corner counts 0.5x a central one of equal size)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    size = np.sqrt(np.clip((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 0, None))
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    d = np.hypot(centre[:, 0] - width / 2, centre[:, 1] - height / 2)
    d = d / (0.5 * np.hypot(width, height))
    return int(np.argmax(size * (1.0 - 0.5 * np.clip(d, 0, 1))))
