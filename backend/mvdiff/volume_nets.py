"""The 3D side of the model (after SyncDreamer's spatial volume and FrustumTV3DNet):

- `ViewFeatureEncoder`: each noisy view latent (+ its camera/time embedding) -> 2D features
  that are unprojected into the volume grid;
- `VolumeNet`: aggregated appearance (mean, variance over views) + geometry prior -> hybrid
  volume, a small 3D UNet conditioned on the timestep;
- `FrustumNet`: each view's frustum samples of the hybrid volume -> one frustum volume per UNet
  level (side and depth halve per level), conditioned on that view's embedding.

Layouts: 2D (N, C, h, w); volumes (B, C, R, R, R) indexed [z, y, x]; frustum volumes
(B*V, C, D, h, w). Embeddings (N, E).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def _groups(c: int) -> int:
    for g in (32, 16, 8, 4, 2):
        if c % g == 0 and c >= 2 * g:
            return g
    return 1


class ResBlock3D(nn.Module):
    def __init__(self, cin: int, cout: int, emb_dim: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(cin), cin)
        self.conv1 = nn.Conv3d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, cout)
        self.norm2 = nn.GroupNorm(_groups(cout), cout)
        self.conv2 = nn.Conv3d(cout, cout, 3, padding=1)
        self.skip = nn.Conv3d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class ViewFeatureEncoder(nn.Module):
    def __init__(self, latent_channels: int, channels: int, emb_dim: int):
        super().__init__()
        self.conv_in = nn.Conv2d(latent_channels, channels, 3, padding=1)
        self.emb = nn.Linear(emb_dim, channels)
        self.norm = nn.GroupNorm(_groups(channels), channels)
        self.conv_out = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, latents: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(latents) + self.emb(F.silu(emb))[:, :, None, None]
        return self.conv_out(F.silu(self.norm(h)))


class VolumeNet(nn.Module):
    """(B, c_in, R^3) + emb (B, E) -> (B, c_out, R^3); one level per entry of `channels`."""

    def __init__(self, c_in: int, channels: tuple[int, ...], c_out: int, emb_dim: int):
        super().__init__()
        self.conv_in = nn.Conv3d(c_in, channels[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        for i, c in enumerate(channels):
            self.down.append(ResBlock3D(channels[max(i - 1, 0)] if i else channels[0], c, emb_dim))
            if i < len(channels) - 1:
                self.downsample.append(nn.Conv3d(c, c, 3, stride=2, padding=1))
        self.up = nn.ModuleList()
        for i in reversed(range(len(channels) - 1)):
            self.up.append(ResBlock3D(channels[i + 1] + channels[i], channels[i], emb_dim))
        self.norm_out = nn.GroupNorm(_groups(channels[0]), channels[0])
        self.conv_out = nn.Conv3d(channels[0], c_out, 3, padding=1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        skips = []
        for i, blk in enumerate(self.down):
            h = blk(h, emb)
            if i < len(self.downsample):
                skips.append(h)
                h = self.downsample[i](h)
        for blk in self.up:
            skip = skips.pop()
            h = F.interpolate(h, size=skip.shape[-3:], mode="trilinear", align_corners=False)
            h = blk(torch.cat([h, skip], 1), emb)
        return self.conv_out(F.silu(self.norm_out(h)))


class FrustumNet(nn.Module):
    """(B*V, c_in, D, h, w) + per-view emb -> [(B*V, channels[l], D/2^l, h/2^l, w/2^l)]."""

    def __init__(self, c_in: int, channels: tuple[int, ...], emb_dim: int):
        super().__init__()
        self.conv_in = nn.Conv3d(c_in, channels[0], 3, padding=1)
        self.blocks = nn.ModuleList()
        self.downsample = nn.ModuleList()
        prev = channels[0]
        for i, c in enumerate(channels):
            if i:
                self.downsample.append(nn.Conv3d(prev, c, 3, stride=2, padding=1))
            self.blocks.append(ResBlock3D(c, c, emb_dim))
            prev = c

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> list[torch.Tensor]:
        h = self.conv_in(x)
        outs = []
        for i, blk in enumerate(self.blocks):
            if i:
                h = self.downsample[i - 1](h)
            h = blk(h, emb)
            outs.append(h)
        return outs
