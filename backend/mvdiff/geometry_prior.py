"""The geometry prior: the head mesh estimated from the photo, voxelised on the volume grid and
encoded by a submanifold sparse 3D ConvNet into a feature volume that is added to the
appearance volume (the hybrid volume). The output layer starts at zero, so a model
initialised from a base checkpoint behaves exactly as it would without the prior.

Layouts: vertices (B, N, 3) head frame metres; faces (F, 3) int (one topology per batch);
volume grid as in geometry3d (R^3 vertices over center +- half_extent, indexed [z, y, x]).
Voxel features (7): occupancy 1, mean surface normal (3), mean offset of the points from the
grid vertex in grid units (3).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .config import GeometryConfig
from .sparse_conv import SubMConv3d, neighbour_table, to_dense

VOXEL_FEATURES = 7


def sample_surface(vertices: torch.Tensor, faces: torch.Tensor, n_points: int,
                   seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Area-weighted surface samples of each mesh, deterministic for a seed.
    vertices (B, N, 3), faces (F, 3) -> points (B, P, 3), normals (B, P, 3)."""
    faces = faces.long()
    tri = vertices[:, faces]                                              # (B, F, 3, 3)
    cross = torch.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0], dim=-1)
    area = cross.norm(dim=-1)                                             # (B, F)
    normals = cross / area[..., None].clamp(min=1e-12)
    g = torch.Generator(device="cpu").manual_seed(seed)
    B = vertices.shape[0]
    pts, nrm = [], []
    for b in range(B):
        w = area[b].detach().float().cpu()
        if float(w.sum()) <= 0:
            raise ValueError("the head mesh has no area (degenerate faces)")
        fid = torch.multinomial(w, n_points, replacement=True, generator=g).to(vertices.device)
        r = torch.rand(n_points, 2, generator=g).to(vertices.device, vertices.dtype)
        su = r[:, 0].sqrt()
        bary = torch.stack([1 - su, su * (1 - r[:, 1]), su * r[:, 1]], -1)  # uniform on triangle
        pts.append((tri[b, fid] * bary[..., None]).sum(1))
        nrm.append(normals[b, fid])
    return torch.stack(pts), torch.stack(nrm)


def voxelise(points: torch.Tensor, normals: torch.Tensor, center: torch.Tensor,
             half_extent: float, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Points (B, P, 3) -> sparse voxels at the nearest grid vertex:
    coords (M, 4) int32 [b, z, y, x] and features (M, 7). Points outside the cube are dropped."""
    B, P, _ = points.shape
    g = (points - center[:, None]) / half_extent * 0.5 * (resolution - 1) + 0.5 * (resolution - 1)
    ijk = g.round()
    inside = ((ijk >= 0) & (ijk <= resolution - 1)).all(-1)                # (B, P)
    b_idx = torch.arange(B, device=points.device)[:, None].expand(B, P)
    xyz = ijk[inside].long()
    keys = ((b_idx[inside] * resolution + xyz[:, 2]) * resolution + xyz[:, 1]) * resolution + xyz[:, 0]
    uniq, inv = torch.unique(keys, return_inverse=True)
    M = len(uniq)
    per_point = torch.cat([torch.ones_like(g[inside][:, :1]), normals[inside],
                           g[inside] - ijk[inside]], -1)                    # (K, 7)
    summed = per_point.new_zeros(M, VOXEL_FEATURES).index_add_(0, inv, per_point)
    count = summed[:, :1]
    feats = torch.cat([torch.ones_like(count), summed[:, 1:] / count], -1)
    x = uniq % resolution
    y = (uniq // resolution) % resolution
    z = (uniq // resolution ** 2) % resolution
    b = uniq // resolution ** 3
    coords = torch.stack([b, z, y, x], -1).int()
    return coords, feats


class SparseResBlock(nn.Module):
    def __init__(self, channels: int, backend: str):
        super().__init__()
        self.norm1 = nn.LayerNorm(channels)
        self.conv1 = SubMConv3d(channels, channels, 3, backend=backend)
        self.norm2 = nn.LayerNorm(channels)
        self.conv2 = SubMConv3d(channels, channels, 3, backend=backend)
        self.act = nn.SiLU()

    def forward(self, coords, x, spatial, batch_size, nb):
        h = self.conv1(coords, self.act(self.norm1(x)), spatial, batch_size, nb)
        h = self.conv2(coords, self.act(self.norm2(h)), spatial, batch_size, nb)
        return x + h


class GeometryEncoder(nn.Module):
    """Head mesh -> dense geometry feature volume (B, out_channels, R, R, R), zero at start."""

    def __init__(self, cfg: GeometryConfig, out_channels: int, resolution: int,
                 half_extent: float):
        super().__init__()
        self.cfg, self.resolution, self.half_extent = cfg, resolution, half_extent
        c = cfg.channels
        self.stem = SubMConv3d(VOXEL_FEATURES, c, 3, backend=cfg.backend)
        self.blocks = nn.ModuleList(SparseResBlock(c, cfg.backend) for _ in range(cfg.n_blocks))
        self.norm_out = nn.LayerNorm(c)
        self.out = SubMConv3d(c, out_channels, 3, backend=cfg.backend)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, vertices: torch.Tensor, faces: torch.Tensor,
                center: torch.Tensor) -> torch.Tensor:
        R = self.resolution
        dtype = self.stem.weight.dtype
        pts, nrm = sample_surface(vertices.float(), faces, self.cfg.n_surface_points)
        coords, feats = voxelise(pts, nrm, center.float(), self.half_extent, R)
        feats = feats.to(dtype)
        spatial, B = (R, R, R), vertices.shape[0]
        nb = neighbour_table(coords, spatial, B)
        x = self.stem(coords, feats, spatial, B, nb)
        for blk in self.blocks:
            x = blk(coords, x, spatial, B, nb)
        x = self.out(coords, torch.nn.functional.silu(self.norm_out(x)), spatial, B, nb)
        return to_dense(coords, x, spatial, B)
