"""Camera and volume geometry in torch: projection, unprojection of view features into the
volume grid, frustum sampling of the volume, and the camera features the camera encoder sees.

Conventions (the backend's): head frame (+Y up, +Z out of the face, +X subject's left), metres;
cameras are OpenCV world-to-camera 4x4 `w2c` (x right, y down, z forward) whose world is the
head frame, and pixel intrinsics packed as `K = (fx, fy, cx, cy)` for an image of
`image_size` x `image_size` pixels (square model views). Pixel (i, j) has its centre at
(i + 0.5, j + 0.5); u runs right, v down, from the image's top-left corner.

Layouts:
    w2c         (B, V, 4, 4)        V = views (the input view first when included)
    K           (B, V, 4)           fx, fy, cx, cy in pixels of the model image
    features    (B, V, C, h, w)     per-view 2D features covering the whole image
    volume      (B, C, R, R, R)     indexed [z, y, x]: vertex (iz, iy, ix) sits at
                                    center + half * (-1 + 2 * (ix, iy, iz) / (R - 1))
    frustum     (B, V, C, D, h, w)  sample d of latent pixel (i, j): depth
                                    near + d * (far - near) / (D - 1) along that pixel's ray
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def volume_vertices(center: torch.Tensor, half_extent: float, resolution: int) -> torch.Tensor:
    """(B, 3) centres -> (B, R, R, R, 3) vertex positions in the head frame, indexed [z, y, x]."""
    lin = torch.linspace(-1.0, 1.0, resolution, device=center.device, dtype=center.dtype)
    z, y, x = torch.meshgrid(lin, lin, lin, indexing="ij")
    unit = torch.stack([x, y, z], dim=-1)                      # (R, R, R, 3) in [-1, 1]
    return center[:, None, None, None, :] + half_extent * unit[None]


def project(points: torch.Tensor, w2c: torch.Tensor, K: torch.Tensor):
    """points (B, P, 3) head frame; w2c (B, V, 4, 4); K (B, V, 4)
    -> uv (B, V, P, 2) pixel coordinates, depth (B, V, P) camera z."""
    R, t = w2c[..., :3, :3], w2c[..., :3, 3]
    cam = torch.einsum("bvij,bpj->bvpi", R, points) + t[:, :, None, :]
    z = cam[..., 2]
    zs = torch.where(z.abs() < 1e-8, torch.full_like(z, 1e-8), z)
    u = K[..., 0, None] * cam[..., 0] / zs + K[..., 2, None]
    v = K[..., 1, None] * cam[..., 1] / zs + K[..., 3, None]
    return torch.stack([u, v], dim=-1), z


def unproject_to_volume(features: torch.Tensor, w2c: torch.Tensor, K: torch.Tensor,
                        image_size: int, center: torch.Tensor, half_extent: float,
                        resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Warp every view's features into the volume grid (bilinear at each vertex's projection)
    and aggregate over the views that see the vertex (in front of the camera, inside the
    image): returns (mean, variance), each (B, C, R, R, R)."""
    B, V, C, h, w = features.shape
    pts = volume_vertices(center, half_extent, resolution).reshape(B, -1, 3)
    uv, z = project(pts, w2c, K)                                   # (B, V, P, 2), (B, V, P)
    grid = uv / image_size * 2.0 - 1.0                            # align_corners=False
    valid = (z > 1e-4) & (grid.abs() <= 1.0).all(-1)
    # sampled in float32: pixel coordinates need more precision than bf16 has
    sampled = F.grid_sample(features.reshape(B * V, C, h, w).float(),
                            grid.reshape(B * V, 1, -1, 2).float(),
                            mode="bilinear", padding_mode="zeros", align_corners=False)
    sampled = sampled.reshape(B, V, C, -1)                         # (B, V, C, P)
    wgt = valid.float()[:, :, None, :]
    count = wgt.sum(1).clamp(min=1.0)
    mean = (sampled * wgt).sum(1) / count
    var = ((sampled - mean[:, None]) ** 2 * wgt).sum(1) / count
    shape = (B, C, resolution, resolution, resolution)
    return mean.reshape(shape).to(features.dtype), var.reshape(shape).to(features.dtype)


def camera_centers(w2c: torch.Tensor) -> torch.Tensor:
    """(..., 4, 4) -> (..., 3) camera centres in the head frame."""
    R, t = w2c[..., :3, :3], w2c[..., :3, 3]
    return -torch.einsum("...ji,...j->...i", R, t)


def near_far(w2c: torch.Tensor, center: torch.Tensor, half_extent: float):
    """Depth range (B, V) each that covers the volume cube from each camera."""
    dist = (camera_centers(w2c) - center[:, None, :]).norm(dim=-1)
    r = half_extent * math.sqrt(3.0)
    return (dist - r).clamp(min=1e-3), dist + r


def frustum_points(w2c: torch.Tensor, K: torch.Tensor, image_size: int, h: int, w: int,
                   depth: int, near: torch.Tensor, far: torch.Tensor) -> torch.Tensor:
    """Head-frame points (B, V, D, h, w, 3) at the `depth` samples along every latent pixel's
    ray (z-depth, linear from near to far)."""
    dev, dt = w2c.device, w2c.dtype
    u = (torch.arange(w, device=dev, dtype=dt) + 0.5) * (image_size / w)
    v = (torch.arange(h, device=dev, dtype=dt) + 0.5) * (image_size / h)
    vv, uu = torch.meshgrid(v, u, indexing="ij")                   # (h, w)
    fx, fy, cx, cy = (K[..., i, None, None] for i in range(4))      # (B, V, 1, 1)
    dirs = torch.stack([(uu - cx) / fx, (vv - cy) / fy, torch.ones_like(uu - cx)], -1)
    s = torch.linspace(0.0, 1.0, depth, device=dev, dtype=dt)
    zs = near[..., None] + (far - near)[..., None] * s              # (B, V, D)
    cam = dirs[:, :, None] * zs[..., None, None, None]              # (B, V, D, h, w, 3)
    R, t = w2c[..., :3, :3], w2c[..., :3, 3]
    return torch.einsum("bvji,bvdhwj->bvdhwi", R, cam - t[:, :, None, None, None, :])


def sample_frustum(volume: torch.Tensor, w2c: torch.Tensor, K: torch.Tensor, image_size: int,
                   h: int, w: int, depth: int, center: torch.Tensor, half_extent: float,
                   ) -> torch.Tensor:
    """Trilinear samples of `volume` (B, C, R, R, R) on every view's frustum
    -> (B, V, C, D, h, w); zero outside the volume."""
    B, C = volume.shape[:2]
    V = w2c.shape[1]
    near, far = near_far(w2c, center, half_extent)
    pts = frustum_points(w2c, K, image_size, h, w, depth, near, far)
    grid = (pts - center[:, None, None, None, None, :]) / half_extent    # (x, y, z) in [-1, 1]
    grid = grid.reshape(B, V * depth, h, w, 3).float()
    out = F.grid_sample(volume.float(), grid, mode="bilinear", padding_mode="zeros",
                        align_corners=True).to(volume.dtype)
    return out.reshape(B, C, V, depth, h, w).permute(0, 2, 1, 3, 4, 5)


CAMERA_FEATURES = 21


def camera_features(w2c: torch.Tensor, K: torch.Tensor, ref_w2c: torch.Tensor,
                    is_input: torch.Tensor, image_size: int, center: torch.Tensor,
                    half_extent: float) -> torch.Tensor:
    """What the camera encoder sees of each view, (B, V, 21): the rotation from the input
    camera `ref_w2c` (B, 4, 4) to this camera (9), this camera's direction and distance from the
    volume centre in the head frame (3 + 1, distance in half-extents), the input camera's
    direction (3), normalised intrinsics (4), and `is_input` (B, V) as a flag (1)."""
    B, V = w2c.shape[:2]
    R = w2c[..., :3, :3]
    R_rel = R @ ref_w2c[:, None, :3, :3].transpose(-1, -2)          # input cam -> this cam
    offset = camera_centers(w2c) - center[:, None, :]
    dist = offset.norm(dim=-1, keepdim=True).clamp(min=1e-6)
    direction = offset / dist
    ref_off = camera_centers(ref_w2c) - center
    in_dir = (ref_off / ref_off.norm(dim=-1, keepdim=True).clamp(min=1e-6))[:, None].expand(B, V, 3)
    intr = torch.stack([K[..., 0] / image_size, K[..., 1] / image_size,
                        K[..., 2] / image_size - 0.5, K[..., 3] / image_size - 0.5], -1)
    flag = is_input.to(w2c.dtype)[..., None]
    return torch.cat([R_rel.reshape(B, V, 9), direction, dist / half_extent, in_dir, intr,
                      flag], dim=-1)
