"""A derived `tongueOut` blendshape for ICT-FaceKit's topology (ICT has no tongue shape).

What it is: the jaw partly open (`jaw_open` x ICT's jawOpen, on every vertex) plus the tongue
pushed forward out of the mouth, over the lower incisors, and hanging a little down at its tip.
It is built from the template's own geometry, per head (the fitted base vertices), not sculpted:

- the tongue is the UV island of ICT's gums-and-tongue material (M_GumsTongue) that moves with
  jawOpen, lies inside the lower dental arch and is the highest of those (the floor of the
  mouth is the other one, below it); the gum and floor vertices next to it follow with a short
  falloff so no polygon tears, but never past the lower incisors (they stretch under the
  tongue instead of being pulled out through the lower lip);
- the lower incisors are the teeth vertices that move with jawOpen within 1 cm of the mid-line,
  the upper incisors those that do not;
- with the jaw at `jaw_open`, the front of the tongue slides forward so its tip ends `reach`
  in front of the lower incisors, its mid-line is lifted to the middle of the gap between the
  upper and lower incisor edges (so it passes over the lower teeth, not through them), it
  thins and narrows a little, and what is in front of the lower incisors drops by `droop`
  per unit of length (the tip hangs over the lower lip). The back of the tongue (its root)
  stays: the motion ramps in over `root_length` behind the front `front_length`.

Frame and units: the head frame (+Y up, +Z out of the face, +X the subject's left), metres.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .model import HeadModel

TONGUE_GROUP = "M_GumsTongue"
TEETH_GROUP = "M_Teeth"


@dataclass
class TongueOutConfig:
    jaw_open: float = 0.5          # weight of ICT's jawOpen inside tongueOut
    reach: float = 0.03            # m: tip in front of the lower incisors' front
    front_length: float = 0.012    # m: the front of the tongue that moves fully
    root_length: float = 0.04      # m behind it over which the motion ramps in
    thin: float = 0.45             # fraction of the front's thickness taken away
    narrow: float = 0.15           # fraction of its width taken away
    droop: float = 0.35            # m down per m forward, in front of the lower incisors
    falloff: float = 0.005         # m: neighbours of the tongue that follow it
    teeth_clear: float = 0.001     # m: vertices this close to a tooth never move


class TongueNotFound(ValueError):
    pass


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _uv_islands(model: HeadModel, group: str) -> list[np.ndarray]:
    """Vertex index sets of the UV-connected islands of `group`'s polygons."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    mask = model.polygon_mask(group)
    puv, pv = model.polygon_uvs[mask], model.polygons[mask]
    rows, cols = [], []
    k = puv.shape[1]
    for c in range(k):
        a, b = puv[:, c], puv[:, (c + 1) % k]
        ok = (a >= 0) & (b >= 0)
        rows.append(a[ok])
        cols.append(b[ok])
    n = len(model.uvs)
    r, c = np.concatenate(rows), np.concatenate(cols)
    _, label = connected_components(coo_matrix((np.ones(len(r)), (r, c)), shape=(n, n)),
                                    directed=False)
    poly_label = label[puv[:, 0]]
    out = []
    for lab in np.unique(poly_label):
        v = np.unique(pv[poly_label == lab])
        out.append(v[v >= 0])
    return out


@dataclass
class TongueParts:
    tongue: np.ndarray          # vertex ids of the tongue island
    movable: np.ndarray         # vertex ids that may move (tongue + falloff neighbours)
    weight: np.ndarray          # (len(movable),) 0..1 how much each follows the tongue
    lower_incisors: np.ndarray
    upper_incisors: np.ndarray


_PARTS_CACHE: dict = {}


def tongue_parts(model: HeadModel, config: TongueOutConfig | None = None) -> TongueParts:
    """Find the tongue, its neighbours and the incisors on the model's neutral template
    (depends on the template only: cached per model). Raises TongueNotFound when the model
    has no ICT-like mouth (no jawOpen, no tongue or teeth group)."""
    cfg = config or TongueOutConfig()
    key = (id(model), cfg.falloff, cfg.teeth_clear)
    hit = _PARTS_CACHE.get(key)
    if hit is not None and hit[0] is model:
        return hit[1]
    parts = _find_parts(model, cfg)
    if len(_PARTS_CACHE) > 4:
        _PARTS_CACHE.clear()
    _PARTS_CACHE[key] = (model, parts)
    return parts


def _find_parts(model: HeadModel, cfg: TongueOutConfig) -> TongueParts:
    from scipy.spatial import cKDTree

    if "jawOpen" not in model.expression_names or TONGUE_GROUP not in model.group_names \
            or TEETH_GROUP not in model.group_names:
        raise TongueNotFound("the head model has no jawOpen, tongue or teeth to derive "
                             "tongueOut from")
    v0 = model.vertices.astype(np.float64)
    jaw = model.expression_basis[model.expression_names.index("jawOpen")].astype(np.float64)
    jaw_len = np.linalg.norm(jaw, axis=1)
    teeth = model.vertices_of_groups(TEETH_GROUP)
    scale = max(float(jaw_len[teeth].max()), 1e-9)
    moving = jaw_len > 0.1 * scale
    lower_teeth = teeth[moving[teeth]]
    mid = np.abs(v0[teeth, 0]) < 0.01
    lower_inc = teeth[mid & moving[teeth]]
    upper_inc = teeth[mid & ~moving[teeth]]
    if not len(lower_inc) or not len(upper_inc):
        raise TongueNotFound("no upper and lower incisors found near the mid-line")
    # the arch: a candidate island must stay inside the lower teeth (narrower than them)
    arch_half = float(np.abs(v0[lower_teeth, 0]).max())
    cands = []
    for isl in _uv_islands(model, TONGUE_GROUP):
        if len(isl) < 50 or not moving[isl].mean() > 0.9:
            continue
        if np.abs(v0[isl, 0]).max() > 0.7 * arch_half:
            continue
        cands.append(isl)
    if not cands:
        raise TongueNotFound("no jaw-moving island inside the lower dental arch in "
                             f"{TONGUE_GROUP}")
    tongue = max(cands, key=lambda isl: v0[isl, 1].max())
    gums = model.vertices_of_groups(TONGUE_GROUP)
    gums = gums[moving[gums]]
    d_tongue, _ = cKDTree(v0[tongue]).query(v0[gums])
    d_teeth, _ = cKDTree(v0[lower_teeth]).query(v0[gums])
    w = 1.0 - _smoothstep(0.0, cfg.falloff, d_tongue)
    w *= _smoothstep(cfg.teeth_clear, 2.0 * cfg.teeth_clear, d_teeth)
    w[np.isin(gums, tongue)] = 1.0
    keep = w > 1e-4
    return TongueParts(tongue, gums[keep], w[keep], lower_inc, upper_inc)


def tongue_out_delta(model: HeadModel, base_vertices: np.ndarray | None = None,
                     config: TongueOutConfig | None = None,
                     parts: TongueParts | None = None) -> np.ndarray:
    """(N, 3) float32 offsets (metres) of the derived tongueOut shape for a head whose neutral
    vertices (identity applied, no expression) are `base_vertices` (default: the template)."""
    cfg = config or TongueOutConfig()
    parts = parts or tongue_parts(model, cfg)
    base = np.asarray(model.vertices if base_vertices is None else base_vertices, np.float64)
    jaw = model.expression_basis[model.expression_names.index("jawOpen")].astype(np.float64)
    delta = cfg.jaw_open * jaw
    opened = base + delta                          # the jaw partly open

    lo, up = parts.lower_incisors, parts.upper_incisors
    lower_edge = opened[lo, 1].max()
    lower_front = opened[lo, 2].max()
    upper_edge = opened[up, 1].min()
    gap_mid = 0.5 * (lower_edge + upper_edge)

    t = parts.tongue
    tip_z = base[t, 2].max()
    z0 = base[:, 2]
    p = opened[parts.movable]
    r = _smoothstep(tip_z - cfg.front_length - cfg.root_length, tip_z - cfg.front_length,
                    z0[parts.movable])
    # the tongue's mid-line height along z (in the opened pose), from its own vertices
    edges = np.linspace(base[t, 2].min(), tip_z, 13)
    centres, mids = [], []
    for a, b in zip(edges[:-1], edges[1:]):
        sel = (z0[t] >= a) & (z0[t] <= b)
        if sel.any():
            centres.append(0.5 * (a + b))
            mids.append(0.5 * (opened[t][sel, 1].min() + opened[t][sel, 1].max()))
    ym = np.interp(z0[parts.movable], centres, mids)
    forward = (lower_front + cfg.reach) - opened[t, 2].max()

    new = p.copy()
    new[:, 0] = p[:, 0] * (1.0 - cfg.narrow * r)
    new[:, 1] = p[:, 1] + r * (gap_mid - ym) - cfg.thin * r * (p[:, 1] - ym)
    new[:, 2] = p[:, 2] + r * forward
    beyond = np.maximum(new[:, 2] - lower_front, 0.0)
    new[:, 1] -= cfg.droop * beyond * r
    # the floor of the mouth and the gums that follow the tongue stay behind the lower incisors
    # (stretched under the tongue, not pulled out through the lower lip)
    follower = ~np.isin(parts.movable, t)
    new[follower, 2] = np.minimum(new[follower, 2], np.maximum(p[follower, 2],
                                                               lower_front - cfg.falloff))
    new[follower, 1] = np.where(new[follower, 2] > p[follower, 2], new[follower, 1],
                                p[follower, 1])
    delta[parts.movable] += parts.weight[:, None] * (new - p)
    return delta.astype(np.float32)
