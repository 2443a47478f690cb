"""The "reconstruct" pipeline stage: posed views -> (a) the rigged template registered onto
them (topology, UVs and the 53 ARKit blendshapes kept) and, when asked, (b) a free-form
surface (hash-grid SDF, marching cubes, xatlas UVs) with a texture baked from the views.

    result = reconstruct(views, head_model, fitted, ReconConfig(output_kind="both"),
                         sink, cancel)

`views`: View objects, renderer outputs or (image, mask, w2c, intrinsics) tuples (views.py).
`fitted`: the fitter's result (anything with `vertices` (N, 3) and optionally `identity`,
`expression`), or None to start from the model's mean head.
Everything in metres, head frame.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ...protocol.options import DEFAULTS as OPTION_DEFAULTS
from ...protocol.options import OUTPUT_KINDS
from ..headmodel.model import HeadModel
from ..contracts import CancelToken, NullSink, PipelineError, ProgressSink
from .meshing import SurfaceMesh, boundary_loops, fill_small_holes, loop_plane
from .register import SKIN_GROUPS, Registration, RegistrationConfig, register_template
from .views import as_views

STAGE = "reconstruct"


@dataclass
class ReconConfig:
    output_kind: str = "rigged"                  # "rigged" | "surface" | "both"
    registration: RegistrationConfig = field(default_factory=RegistrationConfig)
    sdf: "object | None" = None                  # SDFConfig; None: SDFConfig(device=device)
    device: str = "cpu"
    surface_texture_size: int = OPTION_DEFAULTS["texture_size"]   # the job's texture_size
    init_grid: int = 96                          # template SDF samples along the longest axis

    def __post_init__(self):
        if self.output_kind not in OUTPUT_KINDS:
            raise ValueError(f"output_kind must be one of {OUTPUT_KINDS}, got "
                             f"{self.output_kind!r}")


@dataclass
class ReconResult:
    vertices: np.ndarray                  # (N, 3) registered template, as the views show it
    neutral_vertices: np.ndarray          # (N, 3) with the fitted expression removed
    blendshape_names: list[str]           # 53 ARKit names
    blendshape_deltas: np.ndarray         # (E, N, 3) per-vertex offsets (carried over)
    identity: np.ndarray
    expression: np.ndarray
    surface: SurfaceMesh | None           # free-form mesh with xatlas UVs, or None
    surface_texture: np.ndarray | None    # (S, S, 3) uint8 baked into the surface's atlas
    registration: Registration
    timings_s: dict
    surface_error: str = ""               # why the asked-for surface is None (it failed)
    surface_kept: str = ""                # "trained" | "initial" (the SDF's safeguard kept
                                          # the template's surface); "" without a surface
    surface_scores: dict = field(default_factory=dict)   # the safeguard's view scores


class _SubSink:
    """Forwards STAGE progress of one step, mapped from [0, 1] into [lo, hi] of the stage, so
    that registration then surface read as one monotonic "reconstruct" progress."""

    def __init__(self, sink: ProgressSink, lo: float, hi: float):
        self.sink, self.lo, self.hi = sink, lo, hi

    def progress(self, stage: str, fraction: float, message: str = "") -> None:
        if stage == STAGE:
            fraction = self.lo + (self.hi - self.lo) * min(1.0, max(0.0, float(fraction)))
        self.sink.progress(stage, fraction, message)

    def preview(self, name: str, png: bytes) -> None:
        self.sink.preview(name, png)


def inside_by_parity(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray,
                     max_crossings: int = 32) -> np.ndarray:
    """(M,) bool: inside a closed mesh, by the parity of ray crossings, majority of three
    skew directions (robust to rays grazing an edge)."""
    from ..render.mesh import TexturedMesh
    from ..render.raycast import RayCaster

    caster = RayCaster(TexturedMesh(vertices, faces))
    votes = np.zeros(len(points), np.int64)
    for d in ((0.577, 0.593, 0.561), (-0.612, 0.521, 0.595), (0.47, -0.62, 0.628)):
        d = np.asarray(d) / np.linalg.norm(d)
        o = np.asarray(points, np.float64).copy()
        count = np.zeros(len(points), np.int64)
        live = np.arange(len(points))
        for _ in range(max_crossings):
            if not len(live):
                break
            hits = caster.cast(o[live], np.broadcast_to(d, (len(live), 3)))
            h = hits.hit
            count[live[h]] += 1
            o[live[h]] += d * (hits.t[h] + 1e-6)[:, None]
            live = live[h]
        votes += count % 2
    return votes >= 2


def closed_template(vertices: np.ndarray, faces: np.ndarray, max_hole_edges: int = 400,
                    neck_drop_m: float = 0.02):
    """The template closed for a signed distance. Small boundary loops (the eye openings) are
    capped by a fan. The longest loop, the neck, is extruded away from the head to a plane
    `neck_drop_m` below its lowest point and capped flat there: the ICT neck loop runs over
    the shoulders and is far from planar (about 7 cm tall), so a fan across it would cut
    through the shoulders, flip the inside/outside parity there and leave sheets of false
    surface. Returns (vertices, faces, neck_cap (F,) bool): the faces of the extrusion and its
    cap, which is where the head ends, not surface. The original vertices come first; the
    flat cap's centre is the last vertex."""
    faces = np.asarray(faces, np.int64)
    loops = boundary_loops(faces)
    if not loops:
        return np.asarray(vertices, np.float64), faces, np.zeros(len(faces), bool)
    neck = np.asarray(max(loops, key=len))
    v, f = fill_small_holes(vertices, faces, max_edges=min(max_hole_edges, len(neck) - 1))
    new_v, new_f, cap = [v], [f], [np.zeros(len(f), bool)]
    a, b, n = neck, np.roll(neck, -1), len(v)
    centre, normal = loop_plane(v[a], np.asarray(vertices, np.float64).mean(axis=0))
    height = (v[a] - centre) @ normal
    low = v[a] - (height - (height.min() - neck_drop_m))[:, None] * normal
    qa = n + np.arange(len(a))
    qb = np.roll(qa, -1)
    # boundary edge a->b belongs to a face with a->b; the closing faces use b->a
    wall = np.concatenate([np.stack([b, a, qa], axis=1), np.stack([b, qa, qb], axis=1)])
    bottom = np.stack([qb, qa, np.full(len(a), n + len(a))], axis=1)
    new_v += [low, low.mean(axis=0)[None]]
    new_f += [wall, bottom]
    cap.append(np.ones(len(wall) + len(bottom), bool))
    return np.concatenate(new_v), np.concatenate(new_f), np.concatenate(cap)


def off_the_cap(vertices: np.ndarray, faces: np.ndarray, cap: np.ndarray, distance=None):
    """A trim for `field_to_mesh`: keeps the faces of a surface whose centroid lies nearer
    to the closed template's real surface than to its `cap` faces (so a surface meshed from
    the closed template's SDF opens where the template does, while surface that training
    moved away, hair say, stays: it is still nearest the scalp). `distance`: a MeshDistance
    of the same mesh to share (built here when None)."""
    from .metrics import MeshDistance

    dist = distance or MeshDistance(vertices, faces, candidates=8)
    cap = np.asarray(cap, bool)

    def keep(v: np.ndarray, f: np.ndarray) -> np.ndarray:
        _, tri, _ = dist.closest(np.asarray(v, np.float64)[f].mean(axis=1))
        return ~cap[tri]

    return keep


def at_the_opening(vertices: np.ndarray, faces: np.ndarray, cap: np.ndarray,
                   margin_m: float = 0.01, distance=None):
    """An `ignore` for `train_sdf`: true for points nearer to the closed template's `cap`
    faces than to its surface, or within `margin_m` of the cap (the neck's rim). Only points
    near or below the cap's plane are measured (the others are never ignored). `distance`:
    a MeshDistance of the same mesh to share (built here when None)."""
    from .metrics import MeshDistance

    cap = np.asarray(cap, bool)
    v, f = np.asarray(vertices, np.float64), np.asarray(faces)
    nearest = distance or MeshDistance(v, f, candidates=8)
    to_cap = MeshDistance(v, f[cap], candidates=8)
    rim = np.intersect1d(f[cap], f[~cap])             # where the cap meets the surface
    centre, normal = loop_plane(v[rim], v[np.unique(f[~cap])].mean(axis=0))
    reach = ((v[rim] - centre) @ normal).max() + margin_m   # the rim's top, towards the head

    def ignore(points: np.ndarray) -> np.ndarray:
        p = np.asarray(points, np.float64)
        out = np.zeros(len(p), bool)
        near = np.nonzero((p - centre) @ normal < reach)[0]
        if len(near):
            _, tri, _ = nearest.closest(p[near])
            out[near] = cap[tri] | (to_cap(p[near]) < margin_m)
        return out

    return ignore


def template_sdf_grid(vertices: np.ndarray, faces: np.ndarray, lo: np.ndarray,
                      hi: np.ndarray, resolution: int, band_voxels: float = 3.0,
                      distance=None):
    """Signed distance of a closed template (`closed_template`) on a grid: exact unsigned
    distance to the mesh, sign by ray-crossing parity (negative inside). Narrow band: a
    half-resolution field everywhere, trilinearly upsampled; exact values only within
    `band_voxels` voxels of the surface (the only place the NeuS rendering and marching cubes
    read it precisely). `distance`: a MeshDistance of the same mesh to share. Returns (field,
    origin, voxel)."""
    from scipy.ndimage import map_coordinates

    from .metrics import MeshDistance

    v, f = np.asarray(vertices, np.float64), np.asarray(faces, np.int64)
    dist_fn = distance or MeshDistance(v, f, candidates=8)

    def exact(points):
        return dist_fn(points) * np.where(inside_by_parity(v, f, points), -1.0, 1.0)

    voxel = float((hi - lo).max() / (resolution - 1))
    n = np.ceil((hi - lo) / voxel).astype(int) + 1
    nc = (n + 1) // 2
    gc = np.stack(np.meshgrid(*[lo[a] + 2 * voxel * np.arange(nc[a]) for a in range(3)],
                              indexing="ij"), -1).reshape(-1, 3)
    coarse = exact(gc).reshape(tuple(nc))
    fi = np.stack(np.meshgrid(*[np.arange(n[a]) * 0.5 for a in range(3)], indexing="ij"))
    field_ = map_coordinates(coarse, fi.reshape(3, -1), order=1, mode="nearest")
    band = np.abs(field_) < band_voxels * voxel + 2 * voxel   # + the coarse grid's error
    idx = np.stack(np.unravel_index(np.nonzero(band)[0], tuple(n)), axis=1)
    field_[band] = exact(lo + voxel * idx)
    return field_.reshape(tuple(n)).astype(np.float32), lo.astype(np.float64), voxel


def reconstruct(views, head_model: HeadModel, fitted=None, config: ReconConfig | None = None,
                sink: ProgressSink | None = None, cancel: CancelToken | None = None
                ) -> ReconResult:
    config = config or ReconConfig()
    sink, cancel = sink or NullSink(), cancel or CancelToken()
    try:
        views = as_views(views)
    except ValueError as e:
        raise PipelineError("BAD_REQUEST", f"cannot reconstruct from these views: {e}") from e
    times = {}
    t0 = time.perf_counter()
    init = None if fitted is None else getattr(fitted, "vertices", None)
    ident = None if fitted is None else getattr(fitted, "identity", None)
    expr = None if fitted is None else getattr(fitted, "expression", None)
    want_surface = config.output_kind in ("surface", "both")
    try:
        reg = register_template(views, head_model, init_vertices=init, identity=ident,
                                expression=expr, config=config.registration,
                                sink=_SubSink(sink, 0.0, 0.4) if want_surface else sink,
                                cancel=cancel)
    except ValueError as e:
        raise PipelineError("INTERNAL", f"template registration failed: {e}") from e
    times["register"] = time.perf_counter() - t0
    surface, surface_tex, surface_error, sdf = None, None, "", None
    if want_surface:
        t1 = time.perf_counter()
        try:
            sdf, surface_tex = _free_form_surface(views, head_model, reg, config,
                                                  _SubSink(sink, 0.4, 0.92), cancel)
            surface = sdf.mesh
        except (ValueError, RuntimeError) as e:   # incl. torch's OutOfMemoryError
            # the registered template is still good: return it, say why there is no surface
            surface, surface_tex, sdf = None, None, None
            surface_error = f"the free-form surface failed ({type(e).__name__}: {e})"
            _release_device_memory(config.device)
        sink.progress(STAGE, 1.0, surface_error or "surface textured")
        times["surface"] = time.perf_counter() - t1
    times["total"] = time.perf_counter() - t0
    return ReconResult(vertices=reg.vertices, neutral_vertices=reg.neutral_vertices,
                       blendshape_names=reg.blendshape_names,
                       blendshape_deltas=reg.blendshape_deltas, identity=reg.identity,
                       expression=reg.expression, surface=surface, surface_texture=surface_tex,
                       registration=reg, timings_s=times, surface_error=surface_error,
                       surface_kept=sdf.kept if sdf else "",
                       surface_scores=sdf.scores if sdf else {})


@dataclass
class SDFStart:
    """Where the free-form path starts: the registered template, closed, as a signed distance
    on a grid over the hull's box, and what opens a surface meshed from it at the neck again."""
    lo: np.ndarray                 # (3,) the box, metres, head frame
    hi: np.ndarray
    field: np.ndarray              # (X, Y, Z) signed distance, negative inside
    origin: np.ndarray             # (3,) the field's first sample
    voxel: float
    trim: object                   # for field_to_mesh / train_sdf: opens the neck again
    ignore: object                 # for train_sdf: rays that meet the surface at the opening


def sdf_start(reg: Registration, head_model: HeadModel, init_grid: int) -> SDFStart:
    """The registered template's skin, closed (`closed_template`), sampled as a signed distance
    with `init_grid` samples along the hull box's longest axis."""
    from .metrics import MeshDistance

    h = reg.hull
    lo, hi = h.origin, h.origin + (np.array(h.field.shape) - 1) * h.voxel
    skin_faces, _, _ = head_model.triangles(head_model.polygon_mask(*SKIN_GROUPS))
    cv, cf, neck_cap = closed_template(reg.vertices, skin_faces)
    dist = MeshDistance(cv, cf, candidates=8)       # shared by the SDF, the trim and ignore
    field_, origin, voxel = template_sdf_grid(cv, cf, lo, hi, init_grid, distance=dist)
    return SDFStart(lo, hi, field_, origin, voxel, trim=off_the_cap(cv, cf, neck_cap, dist),
                    ignore=at_the_opening(cv, cf, neck_cap, distance=dist)
                    if neck_cap.any() else None)


def _free_form_surface(views, head_model: HeadModel, reg: Registration, config: ReconConfig,
                       sink: ProgressSink, cancel: CancelToken):
    """(SDFResult, whose mesh has xatlas UVs; the mesh's baked texture): the SDF starts from
    the registered template (`sdf_start`), is NeuS-trained on the views, meshed and baked."""
    from .bake_surface import bake_surface
    from .sdf import SDFConfig, grid_sdf_function, train_sdf

    sdf_cfg = config.sdf or SDFConfig(device=config.device)
    start = sdf_start(reg, head_model, config.init_grid)
    cancel.raise_if_cancelled()
    res = train_sdf(views, (start.lo, start.hi),
                    grid_sdf_function(start.field, start.origin, start.voxel), sdf_cfg,
                    sink, cancel, trim=start.trim, ignore=start.ignore)
    cancel.raise_if_cancelled()
    tex = bake_surface(res.mesh, views, config.surface_texture_size, cancel=cancel).texture
    return res, tex


def _release_device_memory(device: str) -> None:
    if str(device).startswith("cuda"):
        try:
            import torch

            torch.cuda.empty_cache()
        except Exception:
            pass
