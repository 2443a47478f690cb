"""Visual hull from masks, as a signed field on a voxel grid (head frame, metres).

Each view contributes the signed distance (metres at the point's depth) from the point's
projection to its mask boundary, positive outside the silhouette; the hull field is the
maximum over views (positive = carved by some view). It is not an exact 3D distance, but its
zero level is the visual hull with sub-voxel precision and it grows with the distance to it,
which is what the registration's inside constraint needs. Grid: (R, R, R) samples, axis order
x, y, z; point (i, j, k) = origin + (i, j, k) * voxel.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import distance_transform_edt, map_coordinates


OUTSIDE_IMAGE_PX = 1e3     # penalty (pixels) for points that fall outside an image


@dataclass
class HullConfig:
    resolution: int = 128          # samples along the longest axis of the box
    coarse_resolution: int = 40    # first pass that finds the box
    mask_threshold: float = 0.5
    padding_voxels: int = 3


@dataclass
class VisualHull:
    field: np.ndarray              # (R, R, R) float32 metres-ish, positive outside
    origin: np.ndarray             # (3,) head-frame position of sample (0, 0, 0)
    voxel: float                   # spacing, metres

    def sample(self, points: np.ndarray) -> np.ndarray:
        """Trilinear field value at (M, 3) points (large positive outside the grid)."""
        c = ((np.asarray(points, np.float64) - self.origin) / self.voxel).T
        return map_coordinates(self.field, c, order=1, mode="nearest")

    def gradient(self, points: np.ndarray, h: float | None = None) -> np.ndarray:
        """Central-difference gradient (M, 3) of the field."""
        h = h or self.voxel * 0.5
        g = np.empty((len(points), 3))
        for a in range(3):
            e = np.zeros(3)
            e[a] = h
            g[:, a] = (self.sample(points + e) - self.sample(points - e)) / (2 * h)
        return g

    def mesh(self) -> tuple[np.ndarray, np.ndarray]:
        """Marching cubes of the zero level, largest connected component: (V, 3), (F, 3),
        faces oriented outward."""
        from skimage.measure import marching_cubes

        from .meshing import largest_component

        f = np.pad(self.field, 1, constant_values=float(self.field.max()))
        verts, faces, _, _ = marching_cubes(f, level=0.0)
        verts = (verts - 1.0) * self.voxel + self.origin
        # with the field negative inside, skimage's winding already faces outward
        return largest_component(verts, faces)


def view_signed_distance(mask: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """(H, W) signed distance in pixels to the silhouette boundary, positive outside. The
    boundary is put half-way between inside and outside pixel centres."""
    inside = mask >= threshold
    if not inside.any():
        raise ValueError("a view's mask is empty: nothing to reconstruct")
    d_out = distance_transform_edt(~inside)      # outside pixels: distance to nearest inside
    d_in = distance_transform_edt(inside)        # inside pixels: distance to nearest outside
    return np.where(inside, 0.5 - d_in, d_out - 0.5).astype(np.float32)


def _box_points(lo, hi, res):
    size = (hi - lo).max()
    voxel = size / (res - 1)
    n = np.maximum(np.ceil((hi - lo) / voxel).astype(int) + 1, 2)
    return voxel, n


def _field_on_points(points: np.ndarray, views: list[View], sdfs: list[np.ndarray]) -> np.ndarray:
    out = np.full(len(points), -np.inf, np.float32)
    points = np.asarray(points, np.float32)
    for v, sd in zip(views, sdfs):
        cam = v.camera
        pc = points @ cam.w2c[:3, :3].T.astype(np.float32) + cam.w2c[:3, 3].astype(np.float32)
        z = pc[:, 2]
        zs = np.maximum(z, 1e-6)
        uv = np.stack([cam.fx * pc[:, 0] / zs + cam.cx, cam.fy * pc[:, 1] / zs + cam.cy], 1)
        h, w = sd.shape
        x, y = uv[:, 0] - 0.5, uv[:, 1] - 0.5     # pixel-centre coordinates
        xc, yc = np.clip(x, 0, w - 1), np.clip(y, 0, h - 1)
        px = map_coordinates(sd, [yc, xc], order=1, mode="nearest")
        outside_img = np.hypot(x - xc, y - yc)
        px = np.where(px > 0, px + outside_img, px)
        px = np.where(z > 1e-6, px, OUTSIDE_IMAGE_PX)
        metres = px * np.maximum(z, 1e-6) / cam.fx
        np.maximum(out, metres.astype(np.float32), out=out)
    return out


def default_box(views: list[View]) -> tuple[np.ndarray, np.ndarray]:
    """A cube around the point closest to all optical axes, sized by the first camera's
    field of view at that distance."""
    a, b = np.zeros((3, 3)), np.zeros(3)
    for v in views:
        c, d = v.camera.center, v.camera.forward
        p = np.eye(3) - np.outer(d, d)
        a += p
        b += p @ c
    centre = np.linalg.lstsq(a, b, rcond=None)[0]
    cam = views[0].camera
    dist = np.linalg.norm(cam.center - centre)
    half = 0.6 * dist * max(cam.width / cam.fx, cam.height / cam.fy)
    return centre - half, centre + half


def visual_hull(views: list[View], config: HullConfig | None = None,
                box: tuple[np.ndarray, np.ndarray] | None = None) -> VisualHull:
    """Carve the hull from the views' masks: a coarse pass over `box` (default: around the
    cameras' common target) finds the object, then the fine grid covers it with padding."""
    config = config or HullConfig()
    sdfs = [view_signed_distance(v.mask, config.mask_threshold) for v in views]
    lo, hi = box if box is not None else default_box(views)
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    voxel, n = _box_points(lo, hi, config.coarse_resolution)
    g = np.stack(np.meshgrid(*[lo[a] + voxel * np.arange(n[a]) for a in range(3)],
                             indexing="ij"), axis=-1).reshape(-1, 3)
    f = _field_on_points(g, views, sdfs)
    inside = g[f <= voxel]
    if len(inside) == 0:
        raise ValueError("the masks do not agree on any common volume: check the cameras")
    lo = inside.min(axis=0) - voxel
    hi = inside.max(axis=0) + voxel
    voxel, n = _box_points(lo, hi, config.resolution)
    pad = config.padding_voxels * voxel
    lo = lo - pad
    n = n + 2 * config.padding_voxels
    # narrow band: a half-resolution field everywhere, the full one only near its zero level
    nc = (n + 1) // 2
    axes = [lo[a] + 2 * voxel * np.arange(nc[a]) for a in range(3)]
    gc = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    coarse = _field_on_points(gc, views, sdfs).reshape(tuple(nc))
    fi = np.stack(np.meshgrid(*[np.arange(n[a]) * 0.5 for a in range(3)], indexing="ij"))
    field = map_coordinates(coarse, fi.reshape(3, -1), order=1, mode="nearest")
    band = np.abs(field) < 3.0 * voxel
    g = lo + voxel * np.stack(np.nonzero(band.reshape(tuple(n))), axis=1)
    field[band] = _field_on_points(g, views, sdfs)
    return VisualHull(field=field.reshape(tuple(n)).astype(np.float32), origin=lo,
                      voxel=float(voxel))
