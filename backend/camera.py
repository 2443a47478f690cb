"""The backend's one pinhole camera and one posed view (numpy only: no torch, no bpy).

`PinholeCamera`: OpenCV convention (x right, y down, z forward), world-to-camera 4x4 `w2c`
whose world is the HEAD FRAME (metres), pixel intrinsics fx, fy, cx, cy, width, height. Pixel
(i, j) (column i, row j) has its centre at (i + 0.5, j + 0.5); the origin is the top-left
corner of the image. Every convention and conversion (wire/Blender <-> head frame, orbits,
field of view) lives in `gen3dface.protocol.cameras`; this module wraps its output in numpy.
The fit result, the generated views, the texture baker and the reconstruction all carry it.

`View`: one posed image, what the texture baker and the reconstruction consume: image
(H, W, 3) uint8 RGB rows top-to-bottom (an RGBA image's alpha / 255 becomes the mask when
none is given), camera (its width x height is the image's), mask (H, W) float32 in [0, 1] or
None (no mask), weight (relative trust: the photo 1, generated views less).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

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
        `gen3dface.protocol.cameras.Intrinsics`) or keys (a sidecar's dict)."""
        i = SimpleNamespace(**intrinsics) if isinstance(intrinsics, dict) else intrinsics
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

    @classmethod
    def from_K(cls, w2c, K, width: int, height: int) -> "PinholeCamera":
        """From a 3x3 pixel matrix [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] (no skew)."""
        k = np.asarray(K, np.float64)
        if k.shape != (3, 3) or k[0, 1] != 0 or k[1, 0] != 0 or tuple(k[2]) != (0, 0, 1):
            raise ValueError(f"K must be [[fx, 0, cx], [0, fy, cy], [0, 0, 1]], got {k.tolist()}")
        return cls(np.asarray(w2c, np.float64), float(k[0, 0]), float(k[1, 1]), float(k[0, 2]),
                   float(k[1, 2]), int(width), int(height))

    @classmethod
    def from_fov(cls, w2c, width: int, height: int, fov_deg: float) -> "PinholeCamera":
        """Square pixels, centred principal point, `fov_deg` the HORIZONTAL field of view
        (`gen3dface.protocol.cameras.intrinsics_from_fov`)."""
        from gen3dface.protocol.cameras import intrinsics_from_fov

        return cls.from_intrinsics(w2c, intrinsics_from_fov(width, height, fov_deg))

    @property
    def fov_deg(self) -> float:
        """Horizontal field of view, degrees."""
        return math.degrees(2.0 * math.atan(0.5 * self.width / self.fx))

    @property
    def intrinsics(self):
        """The pixel intrinsics as the protocol's `Intrinsics`."""
        from gen3dface.protocol.cameras import Intrinsics

        return Intrinsics(self.width, self.height, self.fx, self.fy, self.cx, self.cy)

    def intrinsics_dict(self) -> dict:
        """{"width", "height", "fx", "fy", "cx", "cy"} (the sidecar's and the wire's layout)."""
        return {"width": self.width, "height": self.height, "fx": self.fx, "fy": self.fy,
                "cx": self.cx, "cy": self.cy}


@dataclass
class View:
    image: np.ndarray
    camera: PinholeCamera
    mask: np.ndarray | None = None
    weight: float = 1.0

    def __post_init__(self):
        img = np.asarray(self.image)
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] not in (3, 4):
            raise ValueError(f"view image must be HxWx3/4 uint8, got {img.dtype} {img.shape}")
        if not isinstance(self.camera, PinholeCamera):
            raise ValueError(f"view camera must be a PinholeCamera, got "
                             f"{type(self.camera).__name__}")
        h, w = img.shape[:2]
        if (self.camera.height, self.camera.width) != (h, w):
            raise ValueError(f"camera is {self.camera.width}x{self.camera.height} but the image "
                             f"is {w}x{h}")
        if img.shape[2] == 4:
            if self.mask is None:
                self.mask = img[..., 3].astype(np.float32) / 255.0
            img = np.ascontiguousarray(img[..., :3])
        if self.mask is not None:
            mask = np.asarray(self.mask, np.float32)
            if mask.shape != (h, w):
                raise ValueError(f"mask {mask.shape} does not match the image {(h, w)}")
            self.mask = mask
        self.image = img

    @classmethod
    def posed(cls, image: np.ndarray, w2c, intrinsics: Any, mask: np.ndarray | None = None,
              weight: float = 1.0) -> "View":
        """From a w2c and intrinsics (anything `PinholeCamera.from_intrinsics` takes)."""
        return cls(image, PinholeCamera.from_intrinsics(w2c, intrinsics), mask, weight)

    @property
    def w2c(self) -> np.ndarray:
        return self.camera.w2c

    @property
    def rgb(self) -> np.ndarray:
        """(H, W, 3) float32 in [0, 1]."""
        return self.image.astype(np.float32) / 255.0
