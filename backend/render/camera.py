"""Pinhole cameras for the CPU renderer and the reconstruction: OpenCV convention (x right,
y down, z forward), world-to-camera 4x4 `w2c` whose world is the HEAD FRAME (metres), pixel
intrinsics fx, fy, cx, cy, width, height. Pixel (i, j) (column i, row j) has its centre at
(i + 0.5, j + 0.5); the origin is the top-left corner of the image.

Rigs are built with `gen3dface.protocol.cameras` (the one module that owns every camera
convention); this module only wraps its output in numpy for the array code.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np


@dataclass(frozen=True)
class PinholeCamera:
    w2c: np.ndarray        # (4, 4) float64, OpenCV world(head frame)-to-camera
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def __post_init__(self):
        w2c = np.asarray(self.w2c, np.float64)
        if w2c.shape != (4, 4) or not np.all(np.isfinite(w2c)):
            raise ValueError(f"w2c must be a finite 4x4 matrix, got shape {w2c.shape}")
        if self.width <= 0 or self.height <= 0 or self.fx <= 0 or self.fy <= 0:
            raise ValueError("camera needs positive width, height, fx and fy")
        object.__setattr__(self, "w2c", w2c)

    @classmethod
    def from_intrinsics(cls, w2c, intrinsics: Any) -> "PinholeCamera":
        """From a w2c and anything with width, height, fx, fy, cx, cy attributes (for example
        `gen3dface.protocol.cameras.Intrinsics`)."""
        i = intrinsics
        return cls(np.asarray(w2c, np.float64), float(i.fx), float(i.fy), float(i.cx),
                   float(i.cy), int(i.width), int(i.height))

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]], np.float64)

    @property
    def center(self) -> np.ndarray:
        """Camera centre in the head frame (3,)."""
        r, t = self.w2c[:3, :3], self.w2c[:3, 3]
        return -r.T @ t

    @property
    def forward(self) -> np.ndarray:
        """Optical axis (+z of the camera) in the head frame (3,)."""
        return self.w2c[2, :3].copy()

    def scaled(self, factor: float) -> "PinholeCamera":
        """The same camera with the image resized by `factor` (supersampling)."""
        return PinholeCamera(self.w2c, self.fx * factor, self.fy * factor, self.cx * factor,
                             self.cy * factor, int(round(self.width * factor)),
                             int(round(self.height * factor)))

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """(..., 3) head-frame points -> (..., 3) camera-frame points."""
        p = np.asarray(points, np.float64)
        return p @ self.w2c[:3, :3].T + self.w2c[:3, 3]

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(..., 3) head-frame points -> (uv (..., 2) pixels, depth (...,) along the optical
        axis). Points behind the camera get depth <= 0 (their uv is meaningless)."""
        pc = self.to_camera(points)
        z = pc[..., 2]
        zs = np.where(np.abs(z) < 1e-12, 1e-12, z)
        uv = np.stack([self.fx * pc[..., 0] / zs + self.cx, self.fy * pc[..., 1] / zs + self.cy],
                      axis=-1)
        return uv, z

    def pixel_rays(self) -> tuple[np.ndarray, np.ndarray]:
        """Rays through every pixel centre, row-major (H*W): origins (H*W, 3) and unit
        directions (H*W, 3) in the head frame. A hit at distance t along ray k has depth
        t * (dir_k . forward)."""
        j, i = np.mgrid[0:self.height, 0:self.width]
        x = (i.ravel() + 0.5 - self.cx) / self.fx
        y = (j.ravel() + 0.5 - self.cy) / self.fy
        d_cam = np.stack([x, y, np.ones_like(x)], axis=1)
        d = d_cam @ self.w2c[:3, :3]            # R^T d_cam, row form
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        o = np.broadcast_to(self.center, d.shape)
        return np.ascontiguousarray(o), d


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
