"""Reconstruction metric (the benchmark and README state it exactly like this):

- Point-to-surface Chamfer distance in millimetres: `n_samples` (20k) area-weighted random
  samples on each surface, each measured to the nearest point of the OTHER MESH (exact
  point-to-triangle distance, not to the other's samples); the Chamfer distance is the mean
  of the two directions (accuracy: reconstruction -> ground truth; completeness: ground
  truth -> reconstruction). F-score at 1 mm and 2 mm: harmonic mean of precision (fraction of
  reconstruction samples within the threshold) and recall (fraction of ground-truth samples
  within it).
- Only ground-truth area that at least one camera sees counts for completeness: a ground-
  truth sample is kept if, for some camera, it projects inside the image and the first hit
  of the ray from the camera centre toward it lies within `visibility_eps_m` of it.
- Both surfaces are cut at the template's neck opening: only the side of the plane fitted to
  the ground-truth template's neck boundary loop that holds the head is sampled.
- Also reported: the registered template's mean vertex error against the ground-truth
  template (mm), over given vertex ids.
Meshes: (V, 3) float metres, (F, 3) int.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from ..camera import PinholeCamera
from ..render.mesh import TexturedMesh
from ..render.raycast import RayCaster


@dataclass
class MetricConfig:
    n_samples: int = 20000
    thresholds_mm: tuple = (1.0, 2.0)
    visibility_eps_m: float = 1e-3
    seed: int = 0
    candidates: int = 12        # nearest triangle candidates checked per query point


@dataclass
class Plane:
    point: np.ndarray           # (3,)
    normal: np.ndarray          # (3,) unit, pointing to the kept side (the head)

    def keep(self, points: np.ndarray) -> np.ndarray:
        return (np.asarray(points) - self.point) @ self.normal >= 0.0


def neck_plane(vertices: np.ndarray, faces: np.ndarray) -> Plane:
    """Plane through the longest boundary loop of the skin mesh (the neck opening), normal
    toward the mesh's centroid."""
    from .meshing import boundary_loops, loop_plane

    loops = boundary_loops(np.asarray(faces, np.int64))
    if not loops:
        raise ValueError("the template has no boundary: no neck opening to cut at")
    v = np.asarray(vertices, np.float64)
    return Plane(*loop_plane(v[max(loops, key=len)], v.mean(axis=0)))


def sample_surface(vertices, faces, n, rng, plane: Plane | None = None,
                   accept=None) -> tuple[np.ndarray, np.ndarray]:
    """`n` area-weighted samples (and their face ids) on the part of the mesh on the kept
    side of `plane` and passing `accept(points, face_ids) -> bool mask`."""
    v, f = np.asarray(vertices, np.float64), np.asarray(faces, np.int64)
    tri = v[f]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    if plane is not None:
        area = np.where(plane.keep(tri).any(axis=1), area, 0.0)
    if area.sum() <= 0:
        raise ValueError("nothing to sample: the surface has no area on the kept side")
    prob = area / area.sum()
    pts, ids = [], []
    got, tries = 0, 0
    while got < n and tries < 20:
        m = int((n - got) * 1.6) + 64
        fi = rng.choice(len(f), size=m, p=prob)
        r1, r2 = rng.random(m), rng.random(m)
        s = np.sqrt(r1)
        b = np.stack([1 - s, s * (1 - r2), s * r2], axis=1)
        p = np.einsum("mk,mkc->mc", b, tri[fi])
        ok = np.ones(m, bool) if plane is None else plane.keep(p)
        if accept is not None:
            ok &= accept(p, fi)
        pts.append(p[ok])
        ids.append(fi[ok])
        got += int(ok.sum())
        tries += 1
    if got < n:
        raise ValueError("could not draw enough samples (almost nothing is visible?)")
    return np.concatenate(pts)[:n], np.concatenate(ids)[:n]


def closest_point_on_triangles(p: np.ndarray, a: np.ndarray, b: np.ndarray,
                               c: np.ndarray) -> np.ndarray:
    """Closest points (M, 3) on triangles (a, b, c) (each (M, 3)) to points p (M, 3)
    (Ericson, Real-Time Collision Detection, 5.1.5), vectorised."""
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = (ab * ap).sum(1), (ac * ap).sum(1)
    bp = p - b
    d3, d4 = (ab * bp).sum(1), (ac * bp).sum(1)
    cp = p - c
    d5, d6 = (ab * cp).sum(1), (ac * cp).sum(1)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    eps = 1e-30
    denom = va + vb + vc
    v = vb / np.where(np.abs(denom) < eps, eps, denom)
    w = vc / np.where(np.abs(denom) < eps, eps, denom)
    out = a + ab * v[:, None] + ac * w[:, None]                   # interior
    # edge BC
    m = (va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0)
    t = (d4 - d3) / np.maximum((d4 - d3) + (d5 - d6), eps)
    out = np.where(m[:, None], b + (c - b) * t[:, None], out)
    # edge AC
    m = (vb <= 0) & (d2 >= 0) & (d6 <= 0)
    t = d2 / np.maximum(d2 - d6, eps)
    out = np.where(m[:, None], a + ac * t[:, None], out)
    # edge AB
    m = (vc <= 0) & (d1 >= 0) & (d3 <= 0)
    t = d1 / np.maximum(d1 - d3, eps)
    out = np.where(m[:, None], a + ab * t[:, None], out)
    # vertices
    out = np.where(((d6 >= 0) & (d5 <= d6))[:, None], c, out)
    out = np.where(((d3 >= 0) & (d4 <= d3))[:, None], b, out)
    out = np.where(((d1 <= 0) & (d2 <= 0))[:, None], a, out)
    return out


class MeshDistance:
    """Distance from points to a triangle mesh: candidate triangles from a k-d tree over
    dense points on every triangle (vertices, centroid, edge midpoints), then exact
    point-triangle distances; the minimum over candidates."""

    def __init__(self, vertices, faces, candidates: int = 12):
        self.v = np.asarray(vertices, np.float64)
        self.f = np.asarray(faces, np.int64)
        tri = self.v[self.f]
        pts = [tri.mean(1), tri[:, 0], tri[:, 1], tri[:, 2],
               0.5 * (tri[:, 0] + tri[:, 1]), 0.5 * (tri[:, 1] + tri[:, 2]),
               0.5 * (tri[:, 2] + tri[:, 0])]
        self.owner = np.tile(np.arange(len(self.f)), len(pts))
        self.tree = cKDTree(np.concatenate(pts))
        self.k = candidates

    def __call__(self, points: np.ndarray) -> np.ndarray:
        return self.closest(points)[0]

    def closest(self, points: np.ndarray):
        """(distance (M,), triangle id (M,), closest point (M, 3))."""
        p = np.asarray(points, np.float64)
        _, idx = self.tree.query(p, k=self.k)
        cand = self.owner[idx]                              # (M, k)
        best = np.full(len(p), np.inf)
        best_t = np.zeros(len(p), np.int64)
        best_q = np.zeros_like(p)
        for j in range(self.k):
            t = self.f[cand[:, j]]
            q = closest_point_on_triangles(p, self.v[t[:, 0]], self.v[t[:, 1]], self.v[t[:, 2]])
            dist = np.linalg.norm(p - q, axis=1)
            better = dist < best
            best = np.where(better, dist, best)
            best_t = np.where(better, cand[:, j], best_t)
            best_q[better] = q[better]
        return best, best_t, best_q


def visible_mask(points: np.ndarray, caster: RayCaster, cameras: list[PinholeCamera],
                 eps: float) -> np.ndarray:
    """(M,) bool: the point is the first surface hit from at least one camera."""
    seen = np.zeros(len(points), bool)
    for cam in cameras:
        uv, z = cam.project(points)
        inside = (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < cam.width) & (uv[:, 1] >= 0) \
            & (uv[:, 1] < cam.height) & ~seen
        if not inside.any():
            continue
        c = cam.center
        d = points[inside] - c
        dist = np.linalg.norm(d, axis=1)
        hits = caster.cast(np.broadcast_to(c, d.shape), d / dist[:, None])
        ok = hits.t >= dist - eps
        idx = np.nonzero(inside)[0]
        seen[idx[ok]] = True
    return seen


@dataclass
class ChamferResult:
    chamfer_mm: float
    accuracy_mm: float          # reconstruction -> ground truth
    completeness_mm: float      # seen ground truth -> reconstruction
    fscore: dict                # {threshold_mm: F}
    precision: dict
    recall: dict
    seen_fraction: float        # of the (cut) ground-truth area

    def as_dict(self) -> dict:
        d = dict(chamfer_mm=self.chamfer_mm, accuracy_mm=self.accuracy_mm,
                 completeness_mm=self.completeness_mm, seen_fraction=self.seen_fraction)
        for t in self.fscore:
            d[f"f@{t:g}mm"] = self.fscore[t]
        return d


class GroundTruth:
    """Ground-truth surface, its seen-area samples and the neck plane, prepared once and
    compared against any number of reconstructions."""

    def __init__(self, vertices, faces, cameras: list[PinholeCamera], neck: Plane,
                 config: MetricConfig | None = None):
        self.config = config or MetricConfig()
        self.v = np.asarray(vertices, np.float64)
        self.f = np.asarray(faces, np.int64)
        self.neck = neck
        rng = np.random.default_rng(self.config.seed)
        caster = RayCaster(TexturedMesh(self.v, self.f))
        eps = self.config.visibility_eps_m
        # seen fraction of the cut area, from a first batch of plain samples
        probe, _ = sample_surface(self.v, self.f, 4000, rng, neck)
        self.seen_fraction = float(visible_mask(probe, caster, cameras, eps).mean())
        self.samples, _ = sample_surface(
            self.v, self.f, self.config.n_samples, rng, neck,
            accept=lambda p, fi: visible_mask(p, caster, cameras, eps))
        self.distance = MeshDistance(self.v, self.f, self.config.candidates)

    def evaluate(self, vertices, faces, seed: int = 1) -> ChamferResult:
        rng = np.random.default_rng(seed)
        rec, _ = sample_surface(vertices, faces, self.config.n_samples, rng, self.neck)
        acc = self.distance(rec) * 1e3
        comp = MeshDistance(vertices, faces, self.config.candidates)(self.samples) * 1e3
        fs, pr, rc = {}, {}, {}
        for t in self.config.thresholds_mm:
            p, r = float((acc < t).mean()), float((comp < t).mean())
            pr[t], rc[t] = p, r
            fs[t] = 0.0 if p + r == 0 else 2 * p * r / (p + r)
        return ChamferResult(chamfer_mm=float(0.5 * (acc.mean() + comp.mean())),
                             accuracy_mm=float(acc.mean()), completeness_mm=float(comp.mean()),
                             fscore=fs, precision=pr, recall=rc,
                             seen_fraction=self.seen_fraction)


def vertex_error_mm(vertices: np.ndarray, gt_vertices: np.ndarray,
                    ids: np.ndarray | None = None) -> float:
    """Mean Euclidean vertex error (mm) over `ids` (all vertices when None)."""
    a, b = np.asarray(vertices, np.float64), np.asarray(gt_vertices, np.float64)
    if ids is not None:
        a, b = a[ids], b[ids]
    return float(np.linalg.norm(a - b, axis=1).mean() * 1e3)
