"""Camera rigs (orbits, rings) for the CPU renderer and the reconstruction: OpenCV convention (x right,
y down, z forward), world-to-camera 4x4 `w2c` whose world is the HEAD FRAME (metres), pixel
intrinsics fx, fy, cx, cy, width, height. Pixel (i, j) (column i, row j) has its centre at
(i + 0.5, j + 0.5); the origin is the top-left corner of the image.

The camera type is `gen3dface.backend.camera.PinholeCamera`; rigs are built with
`gen3dface.protocol.cameras` (the one module that owns every camera convention); this module
only wraps its output in numpy for the renderer.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np

from ..camera import PinholeCamera


def as_cameras(cameras: Iterable[Any]) -> list[PinholeCamera]:
    """Accept PinholeCamera objects or (w2c, intrinsics) pairs."""
    out = []
    for c in cameras:
        if isinstance(c, PinholeCamera):
            out.append(c)
        else:
            w2c, intr = c
            out.append(PinholeCamera.from_intrinsics(w2c, intr))
    return out


def orbit_cameras(azimuths_deg: Sequence[float], elevations_deg: Sequence[float],
                  radius_m: float = 1.0, resolution: int = 256, fov_deg: float = 25.0,
                  target: Sequence[float] = (0.0, 0.0, 0.0)) -> list[PinholeCamera]:
    """Cameras on a sphere around `target` (head frame), all looking at it, head +Y up, built
    with `gen3dface.protocol.cameras.orbit_w2c_in_head` (azimuth 0 = in front of the face,
    positive toward +X)."""
    from gen3dface.protocol import cameras as pcam

    if len(azimuths_deg) != len(elevations_deg):
        raise ValueError("azimuths and elevations must have the same length")
    intr = pcam.intrinsics_from_fov(resolution, resolution, fov_deg)
    return [PinholeCamera.from_intrinsics(
        np.asarray(pcam.orbit_w2c_in_head(float(a), float(e), float(radius_m), tuple(target)),
                   np.float64), intr)
        for a, e in zip(azimuths_deg, elevations_deg)]


def ring_cameras(n: int = 16, elevation_deg: float = 30.0, **kw) -> list[PinholeCamera]:
    """`n` cameras evenly spaced in azimuth (360/n degrees apart) at one elevation."""
    az = [360.0 * k / n for k in range(n)]
    return orbit_cameras(az, [elevation_deg] * n, **kw)


def mixed_elevation_cameras(n: int = 16, elevations_deg: Sequence[float] = (-15.0, 10.0, 40.0,
                                                                            65.0),
                            **kw) -> list[PinholeCamera]:
    """`n` cameras cycling through `elevations_deg`, azimuths spread over the full circle with
    a golden-angle stagger so no two cameras share a direction."""
    az = [(360.0 * k / n + 137.5 * (k % len(elevations_deg))) % 360.0 for k in range(n)]
    el = [elevations_deg[k % len(elevations_deg)] for k in range(n)]
    return orbit_cameras(az, el, **kw)
