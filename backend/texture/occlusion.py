"""Ambient occlusion of the fitted head, to take out of the photo's colours.

A photo already shows every crevice darkened by the light it cannot reach: the eye's corners
under the lids, the lid's rim, the nostrils, the folds beside the nose. Painted onto a
modelled head and rendered by any renderer that traces or approximates occlusion (Cycles,
Eevee's AO, a game engine's SSAO), that darkening is applied twice: the eye region of a head
lit by an even grey world came out about 0.7 of the brightness the photo shows there (the
cheeks: as the photo). Dividing the projected colour by the head's own occlusion, relative
to the open face's, gives the photo back under even light and leaves open surfaces as they
were.

Occlusion here is the share of a cosine-weighted hemisphere of directions from the vertex
that leave the head without hitting it (a fixed, stratified set of directions per vertex, so
the same head gives the same texture).

Pure numpy plus the bake's ray caster (embree through trimesh).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class OcclusionConfig:
    rays: int = 32                     # directions per vertex (stratified, cosine-weighted)
    offset: float = 3e-4               # metres: ray start off the surface
    seed: int = 0


def _hemisphere(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 3) cosine-weighted unit directions about +Z, stratified on a sqrt(n) grid."""
    k = max(1, int(round(np.sqrt(n))))
    i, j = np.meshgrid(np.arange(k), np.arange(-(-n // k)), indexing="ij")
    u = (i.ravel()[:n] + rng.random(n)) / k
    v = (j.ravel()[:n] + rng.random(n)) / (-(-n // k))
    r, phi = np.sqrt(u), 2.0 * np.pi * v
    return np.stack([r * np.cos(phi), r * np.sin(phi), np.sqrt(np.maximum(0.0, 1.0 - u))], 1)


def _frames(normals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit tangents (m, 3) per unit normal."""
    a = np.where(np.abs(normals[:, :1]) < 0.9, np.array([[1.0, 0.0, 0.0]]),
                 np.array([[0.0, 1.0, 0.0]]))
    t = np.cross(normals, a)
    t /= np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)
    return t, np.cross(normals, t)


DIRECTIONS_PER_CALL = 8     # hemisphere directions cast in one ray call (fewer calls, each
#                             still short enough for a cancel to be seen between them)


def vertex_visibility(points: np.ndarray, normals: np.ndarray, blocked,
                      cfg: OcclusionConfig | None = None, check=None) -> np.ndarray:
    """(m,) float32 in [0, 1]: the share of each point's cosine-weighted hemisphere (about
    its unit normal) that escapes; `blocked(origins, directions) -> bool array` is the ray
    test (bake._Occluder.blocked). Points with a zero normal get 1."""
    cfg = cfg or OcclusionConfig()
    p = np.asarray(points, np.float64)
    n = np.asarray(normals, np.float64)
    good = np.linalg.norm(n, axis=1) > 0.5
    out = np.ones(len(p), np.float32)
    if not good.any() or cfg.rays < 1:
        return out
    rng = np.random.default_rng(cfg.seed)
    local = _hemisphere(cfg.rays, rng)                           # (r, 3)
    pg, ng = p[good], n[good]
    t, b = _frames(ng)
    free = np.zeros(len(pg), np.float64)
    starts = pg + cfg.offset * ng
    for s in range(0, len(local), DIRECTIONS_PER_CALL):         # a few directions per call
        if check is not None:
            check()
        part = local[s:s + DIRECTIONS_PER_CALL]
        dirs = np.concatenate([d[0] * t + d[1] * b + d[2] * ng for d in part])
        hit = np.asarray(blocked(np.tile(starts, (len(part), 1)), dirs), bool)
        free += (~hit).reshape(len(part), len(pg)).sum(0)        # whole counts: exact
    out[good] = (free / len(local)).astype(np.float32)
    return out


def gain_from_visibility(visibility: np.ndarray, floor: float) -> np.ndarray:
    """(m,) float32 >= 1: what a colour is brightened by (linear light) to take out this
    occlusion; at most 1 / `floor` (deep holes are lit by bounced light as well)."""
    return (1.0 / np.clip(np.asarray(visibility, np.float64), floor, 1.0)).astype(np.float32)


def brighten(colours: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """sRGB colours (m, 3) in [0, 1] times `gain` (m,) >= 1 in linear light, the hue kept: a
    colour that would pass white is scaled down until its largest channel is 1."""
    from .delight import linear_to_srgb, srgb_to_linear

    out = np.array(colours, np.float32, copy=True)
    g = np.asarray(gain, np.float64)
    busy = g > 1.0 + 1e-4
    if busy.any():
        lin = srgb_to_linear(out[busy]) * g[busy, None]
        lin /= np.maximum(lin.max(1, keepdims=True), 1.0)
        out[busy] = linear_to_srgb(lin)
    return out
