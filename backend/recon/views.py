"""The views the reconstruction consumes: `gen3dface.backend.camera.View` (one posed image:
the generated views, the photo, or renders for tests and the benchmark), each with a mask.

Layouts: image (H, W, 3) uint8 RGB rows top-to-bottom (RGBA given: its alpha / 255 is the
mask when none is given); mask (H, W) float32 in [0, 1]; camera: OpenCV w2c in the head frame
+ pixel intrinsics (`gen3dface.backend.camera.PinholeCamera`).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..camera import View


def as_views(items: Sequence[Any]) -> list[View]:
    """Views from View objects, renderer outputs (RenderedView) or (image, mask, w2c,
    intrinsics) tuples; every one needs a mask."""
    out = []
    for it in items:
        if isinstance(it, View):
            v = it
        elif hasattr(it, "rgba") and hasattr(it, "camera"):
            v = View(it.rgba, it.camera, it.mask)
        else:
            image, mask, w2c, intr = it
            v = View.posed(np.asarray(image), w2c, intr, mask)
        if v.mask is None:
            raise ValueError("the reconstruction needs a mask for every view")
        out.append(v)
    if not out:
        raise ValueError("reconstruction needs at least one view")
    return out
