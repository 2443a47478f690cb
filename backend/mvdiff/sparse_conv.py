"""Submanifold sparse 3D convolution (Graham et al.), as spconv's `SubMConv3d`, with a pure
torch implementation of identical semantics.

Why two paths: spconv 2.3's CPU wheel runs the forward pass on CPU but its backward pass asks
for a CUDA stream (`torch.cuda.current_stream`) and fails on a CPU-only torch. So on CPU (tests,
training smoke runs) the torch path runs; on CUDA spconv runs when importable. Both use the
same parameters, in spconv's layout, so checkpoints do not depend on the path:

    weight  (C_out, k, k, k, C_in)     bias (C_out,)
    out[p] = bias + sum_{o in k^3} weight[:, o] @ in[p + o - k//2]     for active sites p only
    (a cross-correlation like torch's conv3d, evaluated at the input's active sites; inactive
    neighbours count as zero).

Sparse tensors here are (coords, features): coords (N, 4) int [batch, z, y, x], features
(N, C), plus the dense spatial shape (R, R, R) and the batch size.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

try:  # spconv is optional at run time (CPU-only hosts use the torch path)
    import spconv.pytorch as _spconv
except Exception:  # pragma: no cover - depends on the host
    _spconv = None


def spconv_available() -> bool:
    return _spconv is not None


def _neighbour_table(coords: torch.Tensor, spatial: tuple[int, int, int], batch_size: int,
                     kernel: int) -> torch.Tensor:
    """(N, k^3) index of each site's neighbour at every kernel offset, -1 where inactive."""
    R0, R1, R2 = spatial
    lut = torch.full((batch_size, R0, R1, R2), -1, dtype=torch.long, device=coords.device)
    c = coords.long()
    lut[c[:, 0], c[:, 1], c[:, 2], c[:, 3]] = torch.arange(len(c), device=coords.device)
    r = torch.arange(kernel, device=coords.device) - kernel // 2
    oz, oy, ox = torch.meshgrid(r, r, r, indexing="ij")
    offs = torch.stack([oz, oy, ox], -1).reshape(-1, 3)                  # (k^3, 3) z-major
    nb = c[:, None, 1:] + offs[None]                                      # (N, k^3, 3)
    inside = ((nb >= 0) & (nb < torch.tensor(spatial, device=coords.device))).all(-1)
    nbc = nb.clamp(min=0)
    nbc = torch.minimum(nbc, torch.tensor(spatial, device=coords.device) - 1)
    idx = lut[c[:, 0, None].expand(-1, nb.shape[1]), nbc[..., 0], nbc[..., 1], nbc[..., 2]]
    return torch.where(inside, idx, torch.full_like(idx, -1))


class SubMConv3d(nn.Module):
    """Submanifold 3D convolution on (coords, features). `backend`: "auto" (spconv on CUDA,
    torch elsewhere), "spconv" or "torch"."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 bias: bool = True, backend: str = "auto"):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError("submanifold convolution needs an odd kernel size")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.backend = backend
        k = kernel_size
        self.weight = nn.Parameter(torch.empty(out_channels, k, k, k, in_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        bound = 1.0 / math.sqrt(in_channels * k ** 3)
        nn.init.uniform_(self.weight, -bound, bound)
        self._spconv_module = None     # built lazily, never registered (params substituted)

    def _use_spconv(self, features: torch.Tensor) -> bool:
        if self.backend == "torch":
            return False
        if self.backend == "spconv":
            if _spconv is None:
                raise RuntimeError("spconv is not installed (pip install spconv or spconv-cu12x)")
            return True
        return _spconv is not None and features.is_cuda

    def forward(self, coords: torch.Tensor, features: torch.Tensor,
                spatial: tuple[int, int, int], batch_size: int,
                neighbours: torch.Tensor | None = None) -> torch.Tensor:
        """-> (N, C_out) features at the same active sites. `neighbours` (from
        `neighbour_table`) may be passed to share the index work between layers."""
        if self._use_spconv(features):
            return self._forward_spconv(coords, features, spatial, batch_size)
        if neighbours is None:
            neighbours = _neighbour_table(coords, spatial, batch_size, self.kernel_size)
        return self._forward_torch(features, neighbours)

    def _forward_torch(self, features: torch.Tensor, neighbours: torch.Tensor) -> torch.Tensor:
        n, kk = neighbours.shape
        padded = torch.cat([features, features.new_zeros(1, features.shape[1])], 0)
        gathered = padded[torch.where(neighbours < 0, n, neighbours)]     # (N, k^3, C_in)
        w = self.weight.reshape(self.out_channels, kk, self.in_channels).to(features.dtype)
        out = torch.einsum("nki,oki->no", gathered, w)
        if self.bias is not None:
            out = out + self.bias.to(out.dtype)
        return out

    def _forward_spconv(self, coords, features, spatial, batch_size) -> torch.Tensor:
        if self._spconv_module is None:
            self._spconv_module = _spconv.SubMConv3d(
                self.in_channels, self.out_channels, self.kernel_size,
                padding=self.kernel_size // 2, bias=self.bias is not None)
        mod = self._spconv_module.to(features.device)
        x = _spconv.SparseConvTensor(features, coords.int(), list(spatial), batch_size)
        params = {"weight": self.weight.to(features.dtype)}
        if self.bias is not None:
            params["bias"] = self.bias.to(features.dtype)
        y = torch.func.functional_call(mod, params, (x,))
        return y.features


def neighbour_table(coords: torch.Tensor, spatial: tuple[int, int, int], batch_size: int,
                    kernel: int = 3) -> torch.Tensor:
    """Public form of the neighbour index table (N, kernel^3) used by the torch path."""
    return _neighbour_table(coords, spatial, batch_size, kernel)


def to_dense(coords: torch.Tensor, features: torch.Tensor, spatial: tuple[int, int, int],
             batch_size: int) -> torch.Tensor:
    """Scatter (N, C) features at coords (N, 4) into a dense (B, C, R0, R1, R2) tensor."""
    out = features.new_zeros(batch_size, features.shape[1], *spatial)
    c = coords.long()
    out[c[:, 0], :, c[:, 1], c[:, 2], c[:, 3]] = features
    return out
