"""Free-form surface (the quality path): a signed distance field with a multiresolution hash
encoding (Instant-NGP style) and small MLPs, volume-rendered NeuS-style, in pure PyTorch
(runs on CPU and CUDA; no custom kernels). Losses: colour (L1), mask (BCE on the rendered
opacity), eikonal. Initialised by regressing a given SDF (the registered template's, or any
callable), then marching cubes -> main component -> small holes -> decimation -> xatlas UVs
(meshing.py). Head frame, metres.

Tensor shapes: points (B, 3) float32 in the head frame; rays (R, 3) origins and unit
directions; images as in views.py. On a GPU this is the path that captures hair and
accessories; on the 2-core CPU it is for tests only (a few iterations per second).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..camera import View
from ..contracts import CancelToken, NullSink, ProgressSink
from .meshing import MeshingConfig, SurfaceMesh, atlas_uvs, field_to_mesh

STAGE = "reconstruct"
_PRIMES = (1, 2654435761, 805459861)


@dataclass
class SDFConfig:
    n_levels: int = 14
    features_per_level: int = 2
    log2_table_size: int = 18
    base_resolution: int = 16
    max_resolution: int = 1024
    hidden: int = 64
    geo_features: int = 15
    iterations: int = 3000
    rays_per_batch: int = 4096
    samples_per_ray: int = 64
    lr_grid: float = 1e-2
    lr_mlp: float = 1e-3
    eikonal_weight: float = 0.1
    mask_weight: float = 0.5
    init_inv_s: float = 3000.0           # NeuS sharpness at the start (learned afterwards):
                                         # sharp, since the start is the registered template
                                         # (a detailed head, 300 CPU iterations: 300 -> 0.87
                                         # mm, 1000 -> 0.66, 3000 -> 0.61, 10000 -> 0.58)
    color_warmup: int = 200              # first iterations train colour only (geometry frozen)
    geometry_rampup: int = 0             # then the geometry lr ramps up linearly over these
    geometry_lr_scale: float = 1.0       # geometry (grid + SDF MLP) lr relative to lr_grid/mlp
    color_geometry_weight: float = 1.0   # share of the colour loss's gradient reaching geometry
    final_lr_factor: float = 1.0         # lr decays (cosine) to this factor at the end
    residual_scale_m: float = 0.02       # the learned offset to the initial SDF, per unit
    safeguard: bool = True               # keep the initial surface if training made it worse
    safeguard_tolerance: float = 0.05    # relative: the trained score must be below (1-tol)x
    safeguard_points: int = 8000         # surface samples for the photo-consistency term
    mesh_resolution: int = 256
    meshing: MeshingConfig = field(default_factory=MeshingConfig)
    device: str = "cpu"
    seed: int = 0
    progress_every: int = 50
    offset_weight: float = 0.0           # L1 penalty on the learned offset to the start, in
                                         # mm, at the samples (holds the field to the start)

    @classmethod
    def tiny(cls, **kw) -> "SDFConfig":
        """A reduced config that runs end to end on a CPU in test-sized time."""
        base = dict(n_levels=6, log2_table_size=13, base_resolution=8, max_resolution=64,
                    hidden=32, geo_features=7, iterations=60, rays_per_batch=256,
                    samples_per_ray=24, color_warmup=20, init_inv_s=300.0,
                    mesh_resolution=64, lr_grid=1e-2, lr_mlp=3e-3,
                    meshing=MeshingConfig(target_faces=4000, uv_resolution=256))
        base.update(kw)
        return cls(**base)


class HashGrid(nn.Module):
    """Multiresolution hash encoding of points in the unit cube [0, 1]^3 -> (B, L * F)."""

    def __init__(self, n_levels: int, features: int, log2_table: int, base: int, finest: int):
        super().__init__()
        self.n_levels, self.features, self.table = n_levels, features, 2 ** log2_table
        growth = math.exp((math.log(finest) - math.log(base)) / max(n_levels - 1, 1))
        res = [int(math.floor(base * growth ** level)) for level in range(n_levels)]
        self.register_buffer("res", torch.tensor(res, dtype=torch.int64), persistent=False)
        dense = torch.tensor([(r + 1) ** 3 <= self.table for r in res])
        self.register_buffer("dense", dense, persistent=False)
        self.embeddings = nn.Parameter(torch.empty(n_levels, self.table, features).uniform_(
            -1e-4, 1e-4))
        corners = torch.tensor([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
        self.register_buffer("corners", corners, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        res = self.res.view(-1, 1, 1).to(x.dtype)                       # (L, 1, 1)
        pos = x.clamp(0, 1).unsqueeze(0) * res                           # (L, B, 3)
        base = pos.floor().long()
        frac = pos - base                                                # (L, B, 3)
        c = base.unsqueeze(2) + self.corners.view(1, 1, 8, 3)             # (L, B, 8, 3)
        r1 = (self.res + 1).view(-1, 1, 1)
        dense_idx = c[..., 0] + c[..., 1] * r1 + c[..., 2] * r1 * r1
        hashed = (c[..., 0] * _PRIMES[0]) ^ (c[..., 1] * _PRIMES[1]) ^ (c[..., 2] * _PRIMES[2])
        idx = torch.where(self.dense.view(-1, 1, 1), dense_idx, hashed) % self.table
        emb = self.embeddings
        feats = torch.gather(emb, 1, idx.view(self.n_levels, -1, 1).expand(-1, -1, self.features))
        feats = feats.view(self.n_levels * b, 8, self.features)
        wx, wy, wz = (torch.stack([1 - frac[..., a], frac[..., a]], -1) for a in range(3))
        w = (wx[..., :, None, None] * wy[..., None, :, None] * wz[..., None, None, :])
        w = w.reshape(self.n_levels * b, 1, 8)                          # corner order i, j, k
        out = torch.bmm(w, feats).view(self.n_levels, b, self.features)
        return out.permute(1, 0, 2).reshape(b, -1)


class SDFNetwork(nn.Module):
    """Hash grid + MLP -> (sdf (B,), geometric features (B, G)); plus a colour MLP."""

    def __init__(self, config: SDFConfig, lo: np.ndarray, hi: np.ndarray):
        super().__init__()
        c = config
        self.register_buffer("lo", torch.tensor(lo, dtype=torch.float32), persistent=False)
        self.register_buffer("size", torch.tensor(hi - lo, dtype=torch.float32),
                             persistent=False)
        self.scale = float(c.residual_scale_m)   # MLP output 1 = this many metres of offset
        self.grid = HashGrid(c.n_levels, c.features_per_level, c.log2_table_size,
                             c.base_resolution, c.max_resolution)
        d_in = 3 + c.n_levels * c.features_per_level
        self.sdf_mlp = nn.Sequential(nn.Linear(d_in, c.hidden), nn.Softplus(beta=100),
                                     nn.Linear(c.hidden, c.hidden), nn.Softplus(beta=100),
                                     nn.Linear(c.hidden, 1 + c.geo_features))
        self.color_mlp = nn.Sequential(nn.Linear(3 + 3 + 3 + c.geo_features, c.hidden),
                                       nn.ReLU(), nn.Linear(c.hidden, c.hidden), nn.ReLU(),
                                       nn.Linear(c.hidden, 3))
        self.log_inv_s = nn.Parameter(torch.tensor(math.log(c.init_inv_s)))
        # the learned part starts at zero: the field starts exactly at `base`
        with torch.no_grad():
            self.sdf_mlp[-1].weight[0].zero_()
            self.sdf_mlp[-1].bias[0].zero_()
        self.base: Callable[[torch.Tensor], torch.Tensor] | None = None

    def unit(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.lo) / self.size

    def residual(self, x: torch.Tensor):
        """The learned part: (sdf offset (B,), geometric features (B, G))."""
        u = self.unit(x)
        h = self.sdf_mlp(torch.cat([u * 2 - 1, self.grid(u)], dim=-1))
        return h[:, 0] * self.scale, h[:, 1:]

    def forward(self, x: torch.Tensor):
        s, feat = self.residual(x)
        if self.base is not None:
            s = s + self.base(x)
        return s, feat

    def sdf(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)[0]

    def sdf_and_gradient(self, x: torch.Tensor, create_graph: bool = True):
        """SDF, features, spatial gradient, the base field's gradient norm (ones without a
        base) and the learned offset to the base. The base field's gradient is taken without
        a graph (it has no parameters), so it may be any differentiable callable."""
        x = x.detach().requires_grad_(True)
        offset, feat = self.residual(x)
        g = torch.autograd.grad(offset.sum(), x, create_graph=create_graph)[0]
        s, base_norm = offset, torch.ones_like(offset)
        if self.base is not None:
            with torch.enable_grad():
                xb = x.detach().requires_grad_(True)
                sb = self.base(xb)
                gb = torch.autograd.grad(sb.sum(), xb)[0]
            s, g = offset + sb.detach(), g + gb.detach()
            base_norm = gb.detach().norm(dim=-1)
        return s, feat, g, base_norm, offset

    def color(self, x, normal, view_dir, feat):
        return torch.sigmoid(self.color_mlp(torch.cat([self.unit(x), normal, view_dir, feat],
                                                      dim=-1)))


def ray_box(o: torch.Tensor, d: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor):
    """Slab test: (near, far, hit) per ray."""
    inv = 1.0 / torch.where(d.abs() < 1e-9, torch.full_like(d, 1e-9), d)
    t0, t1 = (lo - o) * inv, (hi - o) * inv
    near = torch.minimum(t0, t1).amax(-1).clamp_min(0.0)
    far = torch.maximum(t0, t1).amin(-1)
    return near, far, far > near


def render_rays(net: SDFNetwork, o: torch.Tensor, d: torch.Tensor, n_samples: int,
                lo: torch.Tensor, hi: torch.Tensor, train: bool = True,
                coarse_samples: int = 64, band: float = 0.015,
                color_geometry_weight: float = 1.0):
    """NeuS volume rendering (unbiased, occlusion-aware weights). Returns dict(rgb (R, 3),
    opacity (R,), gradients (R*S, 3), eikonal_mask (R*S,) bool: where the eikonal term
    applies). The background is black (the views' colours are
    premultiplied by their masks), so `rgb` is premultiplied by `opacity` too.
    `color_geometry_weight` scales the gradient the colour takes back into the geometry (the
    weights, normals and features it reads) without changing the forward values: below 1 the
    colour loss can no longer drag the surface to explain what the colour MLP has not fit."""
    near, far, hit = ray_box(o, d, lo, hi)
    far = torch.where(hit, far, near + 1e-3)
    r = o.shape[0]
    lo_t, hi_t = _sample_band(net, o, d, near, far, coarse_samples, band)
    t = torch.linspace(0, 1, n_samples + 1, device=o.device)[:-1].expand(r, -1)
    if train:
        t = t + torch.rand_like(t) / n_samples
    else:
        t = t + 0.5 / n_samples
    z = lo_t[:, None] + (hi_t - lo_t)[:, None] * t                    # (R, S) mid-points
    delta = ((hi_t - lo_t) / n_samples)[:, None].expand(-1, n_samples)
    pts = (o[:, None] + d[:, None] * z[..., None]).reshape(-1, 3)
    sdf, feat, grad, base_norm, offset = net.sdf_and_gradient(pts, create_graph=train)
    dirs = d[:, None].expand(-1, n_samples, -1).reshape(-1, 3)
    inv_s = net.log_inv_s.exp().clamp(1.0, 1e5)
    true_cos = (dirs * grad).sum(-1)
    iter_cos = -F.relu(-true_cos)
    dl = delta.reshape(-1)
    prev_cdf = torch.sigmoid((sdf - iter_cos * dl * 0.5) * inv_s)
    next_cdf = torch.sigmoid((sdf + iter_cos * dl * 0.5) * inv_s)
    alpha = ((prev_cdf - next_cdf + 1e-5) / (prev_cdf + 1e-5)).clamp(0, 1).view(r, n_samples)
    alpha = alpha * hit[:, None]
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1 - alpha + 1e-7], -1),
                          -1)[:, :-1]
    w = alpha * trans
    normal = F.normalize(grad, dim=-1)
    k = float(color_geometry_weight)
    w_c, normal, feat = (_scale_grad(t_, k) for t_ in (w, normal, feat))
    rgb = net.color(pts, normal, dirs, feat).view(r, n_samples, 3)
    # the eikonal term applies where the base field is a distance itself: at its kinks (a
    # sampled template SDF's medial sheets at ears and lips) it would make the learned part
    # "repair" the base, and through the hash grid's coarse levels move the whole surface
    eik_mask = (base_norm - 1).abs() < 0.1
    return dict(rgb=(w_c[..., None] * rgb).sum(1), opacity=w.sum(1), gradients=grad,
                eikonal_mask=eik_mask, offset=offset)


@torch.no_grad()
def _coarse_pass(sdf, o: torch.Tensor, d: torch.Tensor, near: torch.Tensor, far: torch.Tensor,
                 coarse_samples: int):
    """`coarse_samples` SDF samples per ray over [near, far] -> (z (R, C), sdf (R, C), index of
    the first negative sample (R,; 0 without one), crossing (R,) bool, t of the first zero
    crossing (R,; linearly interpolated), t of the closest approach (R,))."""
    r = o.shape[0]
    tc = torch.linspace(0, 1, coarse_samples, device=o.device)
    zc = near[:, None] + (far - near)[:, None] * tc
    sc = sdf((o[:, None] + d[:, None] * zc[..., None]).reshape(-1, 3)).view(r, -1)
    neg = sc < 0
    first = torch.where(neg.any(1), neg.float().argmax(1), torch.zeros_like(near).long())
    crossing = first > 0
    i0, i1 = (first - 1).clamp_min(0)[:, None], first[:, None]
    s0, s1 = sc.gather(1, i0)[:, 0], sc.gather(1, i1)[:, 0]
    z0, z1 = zc.gather(1, i0)[:, 0], zc.gather(1, i1)[:, 0]
    t_cross = z0 + (z1 - z0) * (s0 / (s0 - s1).clamp_min(1e-12))
    t_min = zc.gather(1, sc.argmin(1)[:, None])[:, 0]
    return zc, sc, first, crossing, t_cross, t_min


@torch.no_grad()
def _sample_band(net: "SDFNetwork", o: torch.Tensor, d: torch.Tensor, near: torch.Tensor,
                 far: torch.Tensor, coarse_samples: int, band: float):
    """(lo_t, hi_t) per ray: the stretch of the ray the fine samples cover. A coarse pass (no
    graph) finds the first zero crossing; the stretch then runs from where the SDF was last
    above +band before it to where it first falls below -band after it (at most 4 band
    lengths each way), so every crossing ray sees the whole sigmoid of its surface whatever
    its angle to the surface: a fixed distance along the ray would cut grazing rays' sigmoids
    short, under-state their opacity and make the mask loss inflate the surface. A ray without
    a crossing gets the stretch around its closest approach (where its opacity comes from)."""
    zc, sc, first, crossing, t_cross, t_min = _coarse_pass(net.sdf, o, d, near, far,
                                                           coarse_samples)
    idx = torch.arange(coarse_samples, device=o.device).expand(o.shape[0], -1)
    above = (idx < first[:, None]) & (sc >= band)
    j_lo = torch.where(above, idx, torch.full_like(idx, -1)).amax(1)
    below = (idx >= first[:, None]) & (sc <= -band)
    j_hi = torch.where(below, idx, torch.full_like(idx, coarse_samples)).amin(1)
    lo_c = torch.where(j_lo >= 0, zc.gather(1, j_lo.clamp_min(0)[:, None])[:, 0], near)
    hi_c = torch.where(j_hi < coarse_samples,
                       zc.gather(1, j_hi.clamp_max(coarse_samples - 1)[:, None])[:, 0], far)
    reach = 4 * band
    lo_c = torch.maximum(lo_c, t_cross - reach)
    hi_c = torch.minimum(hi_c, t_cross + reach)
    lo_t = torch.maximum(torch.where(crossing, lo_c, t_min - 2 * band), near)
    hi_t = torch.minimum(torch.where(crossing, hi_c, t_min + 2 * band), far)
    return lo_t, torch.maximum(hi_t, lo_t + 1e-4)


def ray_anchors(sdf, o: np.ndarray, d: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                coarse_samples: int = 64, chunk: int = 32768) -> np.ndarray:
    """(P, 3): where each ray meets the surface of `sdf` (a torch callable): its first zero
    crossing, or for a ray that misses, its closest approach (inside the box)."""
    lo_t, hi_t = torch.tensor(lo, dtype=torch.float32), torch.tensor(hi, dtype=torch.float32)
    out = np.empty((len(o), 3), np.float32)
    for s in range(0, len(o), chunk):
        ot, dt = torch.tensor(o[s:s + chunk]), torch.tensor(d[s:s + chunk])
        near, far, _ = ray_box(ot, dt, lo_t, hi_t)
        far = torch.maximum(far, near + 1e-3)
        _, _, _, crossing, t_cross, t_min = _coarse_pass(sdf, ot, dt, near, far,
                                                         coarse_samples)
        t = torch.where(crossing, t_cross, t_min)
        out[s:s + chunk] = (ot + dt * t[:, None]).numpy()
    return out


def _scale_grad(x: torch.Tensor, k: float) -> torch.Tensor:
    """x in the forward pass; k times its gradient in the backward pass."""
    if k == 1.0:
        return x
    d = x.detach()
    return d + k * (x - d) if k != 0.0 else d


def _all_rays(views: list[View]):
    """(origins (P, 3), dirs (P, 3), rgb premultiplied (P, 3), mask (P,)) float32 numpy."""
    os_, ds, cs, ms = [], [], [], []
    for v in views:
        o, d = v.camera.pixel_rays()
        m = v.mask.reshape(-1).astype(np.float32)
        os_.append(o.astype(np.float32))
        ds.append(d.astype(np.float32))
        cs.append(v.rgb.reshape(-1, 3) * m[:, None])
        ms.append(m)
    return (np.concatenate(os_), np.concatenate(ds), np.concatenate(cs), np.concatenate(ms))


@dataclass
class SDFResult:
    mesh: SurfaceMesh
    network: SDFNetwork
    field: np.ndarray
    origin: np.ndarray
    voxel: float
    timings_s: dict
    losses: list
    kept: str = "trained"           # "trained" | "initial" (the safeguard kept the init)
    scores: dict = field(default_factory=dict)   # view_consistency of "trained"/"initial"


def grid_sdf_function(field: np.ndarray, origin: np.ndarray, voxel: float
                      ) -> Callable[[torch.Tensor], torch.Tensor]:
    """A torch callable that trilinearly interpolates a sampled SDF grid (x, y, z order)."""
    vol = torch.tensor(np.asarray(field, np.float32)).permute(2, 1, 0)[None, None]  # D=z,H=y,W=x
    org = torch.tensor(np.asarray(origin, np.float32))
    ext = torch.tensor((np.array(field.shape) - 1) * voxel, dtype=torch.float32)

    def f(x: torch.Tensor) -> torch.Tensor:
        g = ((x - org.to(x.device)) / ext.to(x.device)) * 2 - 1
        out = F.grid_sample(vol.to(x.device), g.view(1, -1, 1, 1, 3), align_corners=True,
                            padding_mode="border")
        return out.view(-1)

    return f


def train_sdf(views: list[View], box: tuple[np.ndarray, np.ndarray],
              init_sdf: Callable[[torch.Tensor], torch.Tensor],
              config: SDFConfig | None = None, sink: ProgressSink | None = None,
              cancel: CancelToken | None = None, trim=None, ignore=None) -> SDFResult:
    """Fit the SDF to the views inside `box` (lo, hi), starting from `init_sdf` (a torch
    callable on (B, 3) points: the registered template's SDF, a sphere...; the network learns
    an offset to it, starting at zero), then mesh it. `trim(vertices, faces)` -> (F,) bool
    keeps part of the mesh (the stage opens the surface at the template's neck with it).
    `ignore(points (P, 3)) -> (P,) bool` leaves out of the losses the rays that meet the
    initial surface there (the stage: at the neck opening, where the head ends in the views but
    the closed SDF has a cap; their mask loss would grow the cap and, through the hash grid's
    coarse levels, inflate the head)."""
    config = config or SDFConfig()
    sink, cancel = sink or NullSink(), cancel or CancelToken()
    dev = torch.device(config.device)
    torch.manual_seed(config.seed)
    gen = np.random.default_rng(config.seed)
    lo, hi = (np.asarray(b, np.float32) for b in box)
    net = SDFNetwork(config, lo, hi).to(dev)
    times = {}
    t0 = time.perf_counter()

    # 1. the field starts as the given SDF (template's); the network learns the difference
    net.base = init_sdf
    times["init"] = time.perf_counter() - t0
    sink.progress(STAGE, 0.05, "SDF initialised from the template")

    # 2. NeuS optimisation against the views
    rays = _training_rays(views, lo, hi, init_sdf, ignore)
    if ignore is not None:
        times["ignore"] = time.perf_counter() - t0 - times["init"]
    # put the rays on the device once (the CPU path keeps them in host memory)
    rays = tuple(torch.tensor(r, device=dev) for r in rays)
    opt = _optimizer(net, config)
    t1 = time.perf_counter()
    losses = _optimise(net, opt, rays, lo, hi, gen, config, sink, cancel)
    times["optimise"] = time.perf_counter() - t1

    # 3. extract; the safeguard keeps the initial surface when the views say training hurt
    t2 = time.perf_counter()
    cancel.raise_if_cancelled()
    field_, origin, voxel = sample_grid(net, lo, hi, config.mesh_resolution, dev)
    kept, scores = "trained", {}
    if config.safeguard:
        mesh, field_, kept, scores = _safeguarded_mesh(field_, origin, voxel, init_sdf, views,
                                                       lo, hi, config, trim, cancel)
    else:
        mesh = field_to_mesh(field_, origin, voxel, config.meshing, trim=trim)
    times["mesh"] = time.perf_counter() - t2
    sink.progress(STAGE, 1.0, "surface extracted" + (
        " (training did not improve on the template's surface: kept that)"
        if kept == "initial" else ""))
    return SDFResult(mesh=mesh, network=net, field=field_, origin=origin, voxel=voxel,
                     timings_s=times, losses=losses, kept=kept, scores=scores)


def _training_rays(views: list[View], lo: np.ndarray, hi: np.ndarray, init_sdf, ignore
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The views' pixel rays (origins, directions, colours, mask values) that cross the box,
    less those `ignore` leaves out (judged where they meet the initial surface)."""
    o_all, d_all, c_all, m_all = _all_rays(views)
    near, far, hit = ray_box(torch.tensor(o_all), torch.tensor(d_all), torch.tensor(lo),
                             torch.tensor(hi))
    keep = hit.numpy()
    o_all, d_all, c_all, m_all = o_all[keep], d_all[keep], c_all[keep], m_all[keep]
    if ignore is not None:
        use = ~np.asarray(ignore(ray_anchors(init_sdf, o_all, d_all, lo, hi)), bool)
        o_all, d_all, c_all, m_all = o_all[use], d_all[use], c_all[use], m_all[use]
    return o_all, d_all, c_all, m_all


def _optimizer(net: SDFNetwork, config: SDFConfig) -> torch.optim.Adam:
    """Adam over the hash grid, the SDF MLP, the colour MLP and the NeuS sharpness; each group
    keeps its `base_lr` and whether it is geometry (`geo`) for the schedule."""
    groups = [
        {"params": list(net.grid.parameters()), "lr": config.lr_grid, "geo": True},
        {"params": list(net.sdf_mlp.parameters()), "lr": config.lr_mlp, "geo": True},
        {"params": list(net.color_mlp.parameters()), "lr": config.lr_mlp, "geo": False},
        {"params": [net.log_inv_s], "lr": config.lr_mlp, "geo": True}]
    for g in groups:
        g["base_lr"] = g["lr"]
    return torch.optim.Adam(groups, eps=1e-15)


def _optimise(net: SDFNetwork, opt: torch.optim.Adam, rays: tuple, lo: np.ndarray,
              hi: np.ndarray, gen: np.random.Generator, config: SDFConfig, sink: ProgressSink,
              cancel: CancelToken) -> list[float]:
    """`config.iterations` steps on random batches of `rays` (device tensors) under the
    learning-rate schedule (`_lr_factors`; geometry frozen during the colour warm-up).
    Returns the loss of each step."""
    dev = rays[0].device
    lo_t, hi_t = torch.tensor(lo, device=dev), torch.tensor(hi, device=dev)
    o_t, d_t, c_t, m_t = rays
    geo_scale = float(config.geometry_lr_scale)
    losses = []
    for it in range(config.iterations):
        cancel.raise_if_cancelled()
        geo_f, col_f = _lr_factors(it, config)
        for g in opt.param_groups:
            g["lr"] = g["base_lr"] * (geo_f * geo_scale if g["geo"] else col_f)
        idx = torch.tensor(gen.integers(0, len(o_t), config.rays_per_batch), device=dev)
        loss = _batch_loss(net, o_t[idx], d_t[idx], c_t[idx], m_t[idx], lo_t, hi_t, config)
        opt.zero_grad()
        loss.backward()
        if geo_f == 0.0:                      # geometry waits until colours make sense
            for g in opt.param_groups:
                if g["geo"]:
                    for p in g["params"]:
                        p.grad = None
        opt.step()
        losses.append(float(loss.detach()))
        if (it + 1) % config.progress_every == 0 or it + 1 == config.iterations:
            sink.progress(STAGE, 0.05 + 0.8 * (it + 1) / config.iterations,
                          f"SDF iteration {it + 1}/{config.iterations}")
    return losses


def _batch_loss(net: SDFNetwork, o: torch.Tensor, d: torch.Tensor, colours: torch.Tensor,
                mask: torch.Tensor, lo_t: torch.Tensor, hi_t: torch.Tensor,
                config: SDFConfig) -> torch.Tensor:
    """The loss on one batch of rays: colour (L1) + mask (BCE on the rendered opacity) +
    eikonal, and the optional L1 on the learned offset."""
    out = render_rays(net, o, d, config.samples_per_ray, lo_t, hi_t,
                      color_geometry_weight=config.color_geometry_weight)
    op = out["opacity"].clamp(1e-4, 1 - 1e-4)
    l_col = (out["rgb"] - colours).abs().mean()
    l_mask = F.binary_cross_entropy(op, mask)
    em = out["eikonal_mask"].float()
    l_eik = (((out["gradients"].norm(dim=-1) - 1) ** 2) * em).sum() / em.sum().clamp_min(1)
    loss = l_col + config.mask_weight * l_mask + config.eikonal_weight * l_eik
    if config.offset_weight:
        loss = loss + config.offset_weight * out["offset"].abs().mean() * 1e3
    return loss


def _safeguarded_mesh(field_: np.ndarray, origin: np.ndarray, voxel: float, init_sdf,
                      views: list[View], lo: np.ndarray, hi: np.ndarray, config: SDFConfig,
                      trim, cancel: CancelToken) -> tuple[SurfaceMesh, np.ndarray, str, dict]:
    """The trained field's surface, or the initial field's where training emptied the field
    or the views score the initial surface better (by `safeguard_tolerance`). Returns (mesh
    with UVs, its field, "trained" | "initial", the view_consistency scores)."""
    kept, scores = "trained", {}
    try:
        trained = field_to_mesh(field_, origin, voxel, config.meshing, with_uvs=False,
                                trim=trim)
    except ValueError:                  # training emptied the field: keep the initial one
        trained = None
    init_field, _, _ = sample_grid(init_sdf, lo, hi, config.mesh_resolution,
                                   torch.device(config.device))
    try:
        initial = field_to_mesh(init_field, origin, voxel, config.meshing, with_uvs=False,
                                trim=trim)
    except ValueError:                  # the initial field has no surface: nothing to keep
        initial = None
    cancel.raise_if_cancelled()
    if trained is None and initial is None:
        raise ValueError("the SDF has no zero crossing: nothing to mesh")
    if trained is not None:
        scores["trained"] = view_consistency(trained.vertices, trained.faces, views,
                                             config.safeguard_points, config.seed)
    if trained is None:
        kept, field_ = "initial", init_field
    elif initial is not None:
        scores["initial"] = view_consistency(initial.vertices, initial.faces, views,
                                             config.safeguard_points, config.seed)
        if scores["trained"]["score"] > (1 - config.safeguard_tolerance) \
                * scores["initial"]["score"]:
            kept, field_ = "initial", init_field
    chosen = trained if kept == "trained" else initial
    return atlas_uvs(chosen.vertices, chosen.faces, config.meshing), field_, kept, scores


def _lr_factors(it: int, config: SDFConfig) -> tuple[float, float]:
    """(geometry, colour) learning-rate factors at iteration `it`: geometry frozen for
    `color_warmup` iterations then ramped up over `geometry_rampup`; both decay (cosine) to
    `final_lr_factor` at the end."""
    n = max(config.iterations - 1, 1)
    decay = config.final_lr_factor + (1 - config.final_lr_factor) * 0.5 * (
        1 + math.cos(math.pi * it / n))
    if it < config.color_warmup:
        return 0.0, decay
    ramp = min(1.0, (it - config.color_warmup + 1) / max(config.geometry_rampup, 1))
    return ramp * decay, decay


def view_consistency(vertices: np.ndarray, faces: np.ndarray, views: list[View],
                     n_points: int = 8000, seed: int = 0) -> dict:
    """How well a surface explains the views, from the views alone (no learned colour):
    - silhouette: mean over views of |rendered mask XOR view mask| / |union| (1 - IoU);
    - photo: mean over surface samples seen by >= 2 views of the standard deviation of their
      colours across those views (a right surface sees the same colour from every view when
      shading is tied to the head, as in generated and rendered views);
    - score: silhouette + photo (both dimensionless, of similar size; lower is better)."""
    from ..render.mesh import TexturedMesh
    from ..render.raycast import RayCaster

    caster = RayCaster(TexturedMesh(np.asarray(vertices, np.float64),
                                    np.asarray(faces, np.int64)))
    sil = []
    for v in views:
        o, d = v.camera.pixel_rays()
        hit = caster.cast(o, d).hit.reshape(v.mask.shape)
        m = v.mask > 0.5
        union = np.count_nonzero(hit | m)
        sil.append(np.count_nonzero(hit ^ m) / max(union, 1))
    pts = trimesh_sample(vertices, faces, n_points, seed)
    cols, seen = [], []
    for v in views:
        cam = v.camera
        uv, z = cam.project(pts)
        i, j = np.floor(uv[:, 0]).astype(int), np.floor(uv[:, 1]).astype(int)
        ok = (z > 0) & (i >= 0) & (j >= 0) & (i < cam.width) & (j < cam.height)
        c = cam.center
        dirs = pts - c
        dist = np.linalg.norm(dirs, axis=1)
        hits = caster.cast(np.broadcast_to(c, pts.shape), dirs / dist[:, None])
        tol = 2e-3 + 1e-3 * dist.mean()      # a ray hits its own sample, within a mesh cell
        ok &= hits.t > dist - tol
        ii, jj = np.clip(i, 0, cam.width - 1), np.clip(j, 0, cam.height - 1)
        ok &= v.mask[jj, ii] > 0.5
        cols.append(v.rgb[jj, ii])
        seen.append(ok)
    cols, seen = np.stack(cols), np.stack(seen).astype(np.float64)   # (V, P, 3), (V, P)
    n = seen.sum(0)
    multi = n >= 2
    mean = (cols * seen[..., None]).sum(0) / np.maximum(n, 1)[:, None]
    var = (((cols - mean) ** 2).sum(-1) * seen).sum(0) / np.maximum(n - 1, 1)
    photo = float(np.sqrt(var[multi]).mean()) if multi.any() else 1.0
    silhouette = float(np.mean(sil))
    return dict(silhouette=silhouette, photo=photo, score=silhouette + photo,
                seen_fraction=float(multi.mean()))


def trimesh_sample(vertices: np.ndarray, faces: np.ndarray, n: int, seed: int) -> np.ndarray:
    """(n, 3) area-weighted random points on a triangle mesh (seeded)."""
    rng = np.random.default_rng(seed)
    tri = np.asarray(vertices, np.float64)[np.asarray(faces, np.int64)]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    f = rng.choice(len(tri), n, p=area / area.sum())
    r1, r2 = np.sqrt(rng.random(n)), rng.random(n)
    a, b, c = 1 - r1, r1 * (1 - r2), r1 * r2
    return a[:, None] * tri[f, 0] + b[:, None] * tri[f, 1] + c[:, None] * tri[f, 2]


@torch.no_grad()
def sample_grid(net: "SDFNetwork | Callable", lo: np.ndarray, hi: np.ndarray, resolution: int,
                device, chunk: int = 65536):
    """The SDF on a grid with `resolution` samples along the longest box axis."""
    voxel = float((hi - lo).max() / (resolution - 1))
    n = np.ceil((hi - lo) / voxel).astype(int) + 1
    axes = [lo[a] + voxel * np.arange(n[a]) for a in range(3)]
    g = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3).astype(np.float32)
    out = np.empty(len(g), np.float32)
    for s in range(0, len(g), chunk):
        x = torch.tensor(g[s:s + chunk], device=device)
        out[s:s + chunk] = (net.sdf(x) if isinstance(net, SDFNetwork) else net(x)).cpu().numpy()
    return out.reshape(tuple(n)), lo.astype(np.float64), voxel
