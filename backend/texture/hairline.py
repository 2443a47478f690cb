"""Where hair grows on the head the photo did not show: the scalp's outline, with a hairline
shaped like a real one.

The photo shows the front of the hairline. The back of the head, the nape and the skin
around the ears it rarely shows, so their hair comes from a template outline. A level cut
across the back of the neck with a hard edge reads as a helmet, and hair painted over the
backs of the ears reads as dyed ears. This outline has:
 - the crown, the temples and the back of the skull down to the nape line; at the side the
   line runs steeply down and back from the temple to about the tragus in front of the ear (a
   sideburn), so hair wraps round the ear;
 - a nape line that is a gentle U: lowest at the spine, rising towards the sides behind the
   ears (as in most people), not a level cut;
 - the ears and a margin of bare skin around them left out;
 - a soft edge `fringe` wide, made ragged by the strands that hair.py shades and by tufts of
   them: each strand ends a little above or below the line, so the edge reads as hair
   ending, not paint.
Template rest frame (ICT-FaceKit: +Y up, +Z forward, metres; the brows at y ~ 0.06, the top
of the head at ~ 0.145, the ears at |x| ~ 0.075, y -0.025 ... 0.04). Pure numpy + scipy.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class HairlineConfig:
    crown_y: float = 0.112         # above this height: scalp all round
    temple_y: float = 0.07         # the temples: from this height up, behind temple_z (the
    temple_z: float = 0.045        # front hairline is the photo's); further back the line
    temple_slope: float = 3.0      # falls 3 m per metre of depth, down in front of the ear
    temple_floor_y: float = 0.0    # to about the tragus (a sideburn), and no lower
    back_z: float = -0.01          # behind this depth: scalp down to the nape line
    nape_centre_y: float = -0.035  # the nape line's height at the spine
    nape_side_y: float = -0.018    # ... and at nape_side_x and beyond (behind the ears)
    nape_side_x: float = 0.06
    ear_margin: float = 0.004      # bare skin this far around the ears
    fringe: float = 0.008          # the soft edge's width
    ragged: float = 0.005          # how far a strand ends above or below the line
    tuft_share: float = 0.5        # ... a share of it from tufts (locks of ~20 strands) that
    tufts_around: float = 36.0     # end together: a comb of equal teeth reads as cut, not
    #                                grown; tufts per turn round the crown's axis
    band: float = 0.02             # outside the outline, texels within this of it may get hair
    crisp_z: float = 0.01          # behind this depth the edge is crisp (the nape, the ears:
    soft_z: float = 0.03           # the anatomy's); in front of soft_z (temples, crown: only a
    #                                guess at the photo's own hairline) the fill's soft blend
    # the ears: dense template vertices (mean edge under ear_edge) in this box, |x| > ear_x
    ear_edge: float = 0.006
    ear_x: float = 0.06
    ear_y: tuple[float, float] = (-0.035, 0.04)
    ear_z: tuple[float, float] = (-0.035, 0.02)


def ear_vertices(points: np.ndarray, edges: np.ndarray,
                 config: HairlineConfig | None = None) -> np.ndarray:
    """(S,) bool: which of the skin's template vertices `points` (S, 3) are the ears. The ear
    is far more finely meshed than the skull around it (ICT: 2-5 mm edges against ~10 mm), so
    within a box beside the head the dense vertices are the ear; `edges` (E, 2) index
    `points`."""
    cfg = config or HairlineConfig()
    p = np.asarray(points, np.float64)
    e = np.asarray(edges, np.int64).reshape(-1, 2)
    length = np.linalg.norm(p[e[:, 0]] - p[e[:, 1]], axis=1)
    total = np.zeros(len(p))
    count = np.zeros(len(p))
    for a in (0, 1):
        np.add.at(total, e[:, a], length)
        np.add.at(count, e[:, a], 1.0)
    mean_edge = np.divide(total, count, out=np.full(len(p), np.inf), where=count > 0)
    x, y, z = p.T
    return ((np.abs(x) > cfg.ear_x) & (y > cfg.ear_y[0]) & (y < cfg.ear_y[1])
            & (z > cfg.ear_z[0]) & (z < cfg.ear_z[1]) & (mean_edge < cfg.ear_edge))


def scalp_outline(points: np.ndarray, edges: np.ndarray,
                  config: HairlineConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(scalp_depth of each of the skin's template vertices `points` (S,), the ears' points
    (K, 3)); `edges` (E, 2) index `points`."""
    p = np.asarray(points, np.float64)
    ears = p[ear_vertices(p, edges, config)]
    return scalp_depth(p, ears, config), ears


def crispness(points: np.ndarray, config: HairlineConfig | None = None) -> np.ndarray:
    """(M,) float32 in [0, 1]: 1 behind crisp_z, 0 in front of soft_z, smooth between."""
    cfg = config or HairlineConfig()
    z = np.asarray(points, np.float64)[:, 2]
    t = np.clip((cfg.soft_z - z) / (cfg.soft_z - cfg.crisp_z), 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


def nape_line_y(x: np.ndarray, config: HairlineConfig | None = None) -> np.ndarray:
    """The nape line's height at lateral position `x`: a U from nape_centre_y at the spine to
    nape_side_y at |x| >= nape_side_x."""
    cfg = config or HairlineConfig()
    t = np.clip(np.abs(np.asarray(x, np.float64)) / cfg.nape_side_x, 0.0, 1.0)
    return cfg.nape_centre_y + (cfg.nape_side_y - cfg.nape_centre_y) * t * t


def scalp_depth(points: np.ndarray, ear_points: np.ndarray | None,
                config: HairlineConfig | None = None,
                jitter: np.ndarray | None = None) -> np.ndarray:
    """(M,) metres, positive inside the scalp's outline and negative outside: roughly how far
    a template point lies inside it (the union of crown, temples and back of the skull, moved
    out by `jitter` (M,) metres where given, less the ears and their margin, which no jitter
    moves)."""
    cfg = config or HairlineConfig()
    p = np.asarray(points, np.float64)
    x, y, z = p.T
    crown = y - cfg.crown_y
    side_line = np.maximum(cfg.temple_y - cfg.temple_slope * (cfg.temple_z - z),
                           cfg.temple_floor_y)
    temple = np.minimum(cfg.temple_z - z, (y - side_line) / np.hypot(1.0, cfg.temple_slope))
    back = np.minimum(cfg.back_z - z, y - nape_line_y(x, cfg))
    depth = np.maximum(crown, np.maximum(temple, back))
    if jitter is not None:
        depth = depth + np.asarray(jitter, np.float64)
    if ear_points is not None and len(ear_points):
        depth = np.minimum(depth, ear_distance(p, ear_points) - cfg.ear_margin)
    return depth


EAR_EXACT_WITHIN = 0.012  # metres outside an ear's hull where ear_distance is exact (beyond
#                           the margin and half the fringe the ear limits no hair)


def ear_distance(points: np.ndarray, ear_points: np.ndarray) -> np.ndarray:
    """(M,) metres from each point to the nearer ear's outline seen from the side, negative
    inside (inf further than EAR_EXACT_WITHIN from the ear's bounding box): each ear (the ear
    points on one side of x = 0) as the convex hull of its (height, depth), so the bare skin
    round it is a smooth arc, not bumps beside the helix. Inside, and beyond EAR_EXACT_WITHIN
    outside, it is the largest distance past the hull's edge lines
    (exact inside; short of the true distance beyond a corner, far out); nearer outside, the
    distance to the nearest edge, so a margin round the ear has round corners."""
    from scipy.spatial import ConvexHull

    p = np.asarray(points, np.float64)
    e = np.asarray(ear_points, np.float64)
    out = np.full(len(p), np.inf)
    for side in (-1.0, 1.0):
        ear = e[np.sign(e[:, 0]) == side][:, 1:]
        if len(ear) < 3:
            continue
        lo, hi = ear.min(0) - EAR_EXACT_WITHIN, ear.max(0) + EAR_EXACT_WITHIN
        mine = np.flatnonzero((np.sign(p[:, 0]) == side)
                              & (p[:, 1:] > lo).all(1) & (p[:, 1:] < hi).all(1))
        if not len(mine):
            continue
        hull = ConvexHull(ear)
        normals, offsets = hull.equations[:, :2], hull.equations[:, 2]   # unit, outward
        q = p[mine, 1:]
        d = (q @ normals.T + offsets).max(1)
        # just outside, beyond a corner the line distance falls short: there, the distance
        # to the nearest edge segment (so the margin's corners come out round)
        near = np.flatnonzero((d > 0) & (d < EAR_EXACT_WITHIN))
        if len(near):
            a = ear[hull.vertices]
            ab = np.roll(a, -1, axis=0) - a
            r = q[near, None, :] - a                                   # (m, K, 2)
            t = np.clip((r * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0.0, 1.0)
            d[near] = np.sqrt(((r - t[..., None] * ab) ** 2).sum(-1).min(1))
        out[mine] = np.minimum(out[mine], d)
    return out


def strand_ends(points: np.ndarray, crown: np.ndarray, strands: np.ndarray,
                config: HairlineConfig | None = None) -> np.ndarray:
    """(M,) in [-1, 1]: where each strand ends against the line, for hair_density: the
    strands' own pattern (hair.py, fine) mixed with a coarser one of tufts (locks that end
    together), so the edge is uneven at two scales."""
    from .hair import HairPatternConfig, strand_pattern

    cfg = config or HairlineConfig()
    tufts = strand_pattern(points, crown, HairPatternConfig(
        strands_around=cfg.tufts_around, cells_along=3.0, octaves=1, seed=11))
    mixed = (1.0 - cfg.tuft_share) * np.asarray(strands, np.float64) + cfg.tuft_share * tufts
    return (mixed / max(float(np.abs(mixed).max()), 1e-9)).astype(np.float32)


def hair_density(points: np.ndarray, ear_points: np.ndarray | None,
                 strands: np.ndarray | None = None,
                 config: HairlineConfig | None = None) -> np.ndarray:
    """(M,) float32 in [0, 1]: how much hair covers each template point. 1 inside the
    outline, 0 outside, over a soft edge `fringe` wide; `strands` (M,) in [-1, 1] (hair.py's
    strand pattern at the same points) moves each strand's end by up to `ragged`. The ears
    stay bare: no strand moves their margin (none on the ear, under half within the margin)."""
    cfg = config or HairlineConfig()
    jitter = None if strands is None else cfg.ragged * np.asarray(strands, np.float64)
    depth = scalp_depth(points, ear_points, cfg, jitter)
    t = np.clip(depth / max(cfg.fringe, 1e-9) + 0.5, 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)
