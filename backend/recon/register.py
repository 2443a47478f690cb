"""Registration of the rigged template onto posed views (the fast path), numpy/scipy only.

1. Visual hull of the masks (hull.py).
2. Alignment: a similarity transform and the head model's identity/expression coefficients
   fitted to the hull field by robust Gauss-Newton (template outside the hull costs fully;
   inside it only within a robust scale, because the hull bulges over concavities).
3. Per-vertex refinement of the skin along the aligned template's normals, x = x0 + d n0:
   data targets for d from
     - silhouette contours: vertices on a view's contour generator land on its mask boundary,
     - photometric plane sweep: offsets where the colours of the views that see the vertex
       agree (variance over views, patch of tangent samples, smoothed over the 1-ring),
     - the hull as an inside constraint (d never past the hull, to a tolerance),
   combined with robust weights and solved with bi-Laplacian regularisation of d (keeps the
   template's own detail); vertices no camera sees get no data term, only the smoothness.
4. Eyes and teeth follow rigidly (Kabsch fit to the surrounding skin), eyelashes and other
   attached overlays follow their nearest skin vertex; the 53 blendshape deltas are carried
   over unchanged per vertex (same topology), so the head still animates.
Arrays: vertices (N, 3) float64 metres, head frame.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import cg

from ..camera import View
from ..headmodel.model import HeadModel
from ..contracts import CancelToken, NullSink, ProgressSink
from ..geometry import bilinear, rigid_transform, similarity_transform, vertex_normals
from ..render.mesh import TexturedMesh
from ..render.raycast import RayCaster
from .hull import HullConfig, VisualHull, view_signed_distance, visual_hull

STAGE = "reconstruct"
SKIN_GROUPS = ("M_Face", "M_BackHead")
EYE_GROUPS = (("M_ScleraLeft", "M_IrisLeft"), ("M_ScleraRight", "M_IrisRight"))
MOUTH_GROUPS = ("M_Teeth", "M_GumsTongue")


@dataclass
class RegistrationConfig:
    hull: HullConfig = field(default_factory=HullConfig)
    # alignment / coefficient fit
    fit_identity: int = 60               # identity modes refined (0: keep the given shape)
    # expressions the silhouettes constrain (the jaw); the others keep their given weights
    fit_expressions: tuple = ("jawOpen", "jawLeft", "jawRight", "jawForward")
    fit_iterations: int = 8
    similarity_only: int = 2             # first fit iterations move the similarity alone
    identity_prior: float = 2e-8         # weight of |identity|^2 per unit contour weight
    expression_prior: float = 4e-6
    fit_scale_m: float = 0.0015          # final robust scale of the silhouette residuals
    hull_weight: float = 0.5
    fit_skip_cranium: bool = False       # True: fit face, ears, jaw and neck only (hair)
    fit_hull_tolerance_m: float = 0.001
    # per-vertex refinement
    iterations: int = 3
    smoothness: float = 0.5              # bi-Laplacian weight on the offsets
    anchor: float = 1e-4                 # pull of unobserved offsets toward 0
    sweep_range_m: tuple = (0.004, 0.0025, 0.0015)   # +- photometric sweep per iteration
    max_reach_m: float = 0.025           # first sweep reaches outward up to the hull, this far
    sweep_steps: int = 13
    patch_radius_m: float = 0.0012
    min_views: int = 2
    max_grazing: float = 0.2             # views with n.view_dir below this are not used
    contour_band: float = 0.12           # |n . view_dir| below this: contour vertex
    contour_weight: float = 0.5
    photo_weight: float = 1.0
    hull_tolerance_m: float = 0.0006     # how far past the hull a vertex may sit
    robust_scale_m: float = 0.0015       # Geman-McClure scale of the data residuals


@dataclass
class Registration:
    vertices: np.ndarray                 # (N, 3) registered template (posed as in the views)
    neutral_vertices: np.ndarray         # (N, 3) vertices minus the fitted expression
    aligned_vertices: np.ndarray         # (N, 3) after alignment + coefficient fit only
    identity: np.ndarray                 # (K,) fitted identity coefficients
    expression: np.ndarray               # (E,) fitted expression weights
    blendshape_names: list[str]
    blendshape_deltas: np.ndarray        # (E, N, 3) carried over (the template's own)
    hull: VisualHull
    timings_s: dict


# --------------------------------------------------------------------------- helpers
def _triangles(model: HeadModel, groups) -> np.ndarray:
    tri, _, _ = model.triangles(model.polygon_mask(*groups))
    return tri.astype(np.int64)


def _adjacency(faces: np.ndarray, n: int) -> sp.csr_matrix:
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    a = sp.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n)).tocsr()
    a = ((a + a.T) > 0).astype(np.float64)
    return a.tocsr()


def _robust_weights(r: np.ndarray, scale: float) -> np.ndarray:
    """Geman-McClure IRLS weights."""
    return 1.0 / (1.0 + (r / scale) ** 2) ** 2


class _Images:
    """Float RGB images and masks for fast bilinear lookups."""

    def __init__(self, views: list[View]):
        self.views = views
        self.grey = [v.rgb @ np.array([0.299, 0.587, 0.114], np.float32) for v in views]
        self.sdf = [view_signed_distance(v.mask) for v in views]

    def grey_at(self, k: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Bilinear grey value at pixel coordinates u, v (any shape)."""
        return bilinear(self.grey[k], u, v)

    def sdf_at(self, k: int, uv: np.ndarray) -> np.ndarray:
        """Bilinear signed distance to the mask boundary at pixel coordinates uv (..., 2)."""
        return bilinear(self.sdf[k], uv[..., 0], uv[..., 1])


# --------------------------------------------------------------------------- alignment
def _anneal(i: int, final: float, start: float = 0.008, rate: float = 0.6) -> float:
    """Graduated robust scale: wide first (a far start sees every contour), then tighter."""
    return max(final, start * rate ** i)


def _contour_rows(y, n, fit_mask, caster: RayCaster, images: _Images, band: float,
                  rim_offset_px: float = 1.5):
    """Silhouette residuals of rim vertices, per view: (vertex ids, residual metres (signed
    distance of the projection to the mask boundary, + outside), gradient (M, 3) of the
    residual w.r.t. the vertex, weight). A rim vertex has its normal nearly perpendicular
    to the view ray, is itself visible, and the ray passing `rim_offset_px` beside it (along
    its normal) misses the surface: it lies on the silhouette of the current mesh, not on a
    fold inside it."""
    ids, res, grads, wts = [], [], [], []
    for k, view in enumerate(images.views):
        cam = view.camera
        d = cam.center - y
        dist = np.linalg.norm(d, axis=1)
        d /= dist[:, None]
        cos = (n * d).sum(1)
        uv, z = cam.project(y)
        sel = fit_mask & (np.abs(cos) < band) & (z > 0) & (uv[:, 0] > 2) \
            & (uv[:, 0] < cam.width - 2) & (uv[:, 1] > 2) & (uv[:, 1] < cam.height - 2)
        if not sel.any():
            continue
        idx = np.nonzero(sel)[0]
        o = np.broadcast_to(cam.center, (len(idx), 3))
        ok = caster.cast(o, -d[idx]).t >= dist[idx] - 0.003
        # the ray beside the vertex, pushed outward along the normal's image-plane part
        nperp = n[idx] - cos[idx, None] * d[idx]
        nperp /= np.maximum(np.linalg.norm(nperp, axis=1, keepdims=True), 1e-9)
        beside = y[idx] + nperp * (rim_offset_px * z[idx] / cam.fx)[:, None]
        db = beside - cam.center
        db /= np.linalg.norm(db, axis=1, keepdims=True)
        ok &= ~caster.cast(o, db).hit
        idx = idx[ok]
        if not len(idx):
            continue
        uvk = uv[idx]
        sd = images.sdf_at(k, uvk)
        e = 0.5
        gu = (images.sdf_at(k, uvk + [e, 0])
              - images.sdf_at(k, uvk - [e, 0])) / (2 * e)
        gv = (images.sdf_at(k, uvk + [0, e])
              - images.sdf_at(k, uvk - [0, e])) / (2 * e)
        pc = cam.to_camera(y[idx])
        Z = pc[:, 2]
        r_fy = cam.fy / cam.fx
        gc = np.stack([gu, gv * r_fy, -(gu * pc[:, 0] + gv * pc[:, 1] * r_fy) / Z], axis=1)
        ids.append(idx)
        res.append(sd * Z / cam.fx)
        grads.append(gc @ cam.w2c[:3, :3])                 # R^T g, row form
        wts.append(np.exp(-(cos[idx] / (0.5 * band)) ** 2))
    if not ids:
        return (np.zeros(0, np.int64), np.zeros(0), np.zeros((0, 3)), np.zeros(0))
    return (np.concatenate(ids), np.concatenate(res), np.concatenate(grads),
            np.concatenate(wts))


def fit_template(model: HeadModel, surf: "_SkinSurface", fit_mask: np.ndarray,
                 images: _Images, hull: VisualHull, identity: np.ndarray,
                 expression: np.ndarray, pose, config: "RegistrationConfig",
                 cancel: CancelToken) -> tuple:
    """Robust Gauss-Newton on the similarity (s, R, t), the first K identity coefficients
    and the expression weights so that the template's contour generators land on the mask
    boundaries of every view and no vertex leaves the hull. The first
    `config.similarity_only` iterations move the similarity alone. Returns (identity,
    expression, (s, R, t))."""
    k = min(config.fit_identity, model.n_identity)
    ids = surf.ids
    s, R, t = pose
    ident = np.array(identity, np.float64)
    expr = np.array(expression, np.float64)
    names = model.expression_names
    ex_ids = np.array([names.index(n) for n in config.fit_expressions if n in names], np.int64)
    fixed_ex = np.setdiff1d(np.arange(model.n_expressions), ex_ids)
    ne = len(ex_ids)
    base = model.vertices[ids].astype(np.float64)
    if k < len(ident):
        base = base + np.tensordot(ident[k:], model.identity_basis[k:, ids], axes=1)
    base = base + np.tensordot(expr[fixed_ex], model.expression_basis[fixed_ex][:, ids], axes=1)
    # shape bases as (S, 3, k + ne): local = base + B @ coefficients
    parts = [model.identity_basis[:k, ids]] + ([model.expression_basis[ex_ids][:, ids]]
                                               if ne else [])
    B = np.ascontiguousarray(np.concatenate(parts, axis=0).transpose(1, 2, 0), np.float64)
    B2 = B.reshape(-1, B.shape[2])
    for i in range(config.fit_iterations):
        cancel.raise_if_cancelled()
        coef = np.concatenate([ident[:k], expr[ex_ids]])
        local = base + (B2 @ coef).reshape(-1, 3)
        y = s * local @ R.T + t
        n = vertex_normals(y, surf.faces)
        if i % 3 == 0:      # occlusion tests tolerate the few mm the mesh moves meanwhile
            caster = RayCaster(TexturedMesh(y, surf.faces))
        vi, r, g, w = _contour_rows(y, n, fit_mask, caster, images, config.contour_band)
        scale = _anneal(i, config.fit_scale_m)
        w = w * _robust_weights(r, scale)
        # hull: a vertex clearly outside it is wrong (one-sided, past a tolerance that
        # covers the masks' pixel quantisation)
        fi = np.nonzero(fit_mask)[0]
        rh = hull.sample(y[fi]) - config.fit_hull_tolerance_m
        out = rh > 0
        if out.any():
            vi = np.concatenate([vi, fi[out]])
            r = np.concatenate([r, rh[out]])
            g = np.concatenate([g, hull.gradient(y[fi[out]])])
            w = np.concatenate([w, np.full(int(out.sum()), config.hull_weight)])
        if len(vi) < 20:
            raise ValueError("too few silhouette contours: are the masks and cameras right?")
        c0 = y.mean(axis=0)
        q = y[vi] - c0
        cols = [np.cross(q, g), (g * q).sum(1, keepdims=True), g]
        shape_step = i >= config.similarity_only
        if shape_step:
            gl = s * g @ R
            cols.append(np.einsum("mc,mck->mk", gl, B[vi]))
        J = np.concatenate(cols, axis=1)
        nshape = J.shape[1] - 7
        prior = np.zeros(J.shape[1])
        cur = np.zeros(J.shape[1])
        if shape_step:
            wsum = float(w.sum())
            prior[7:7 + k] = config.identity_prior * wsum
            prior[7 + k:] = config.expression_prior * wsum
            cur[7:7 + k] = ident[:k]
            cur[7 + k:] = expr[ex_ids]
        A = J.T @ (J * w[:, None]) + np.diag(prior) + 1e-12 * np.eye(J.shape[1])
        delta = -np.linalg.solve(A, J.T @ (w * r) + prior * cur)
        om, ds, dt = delta[:3], delta[3], delta[4:7]
        th = np.linalg.norm(om)
        Rw = np.eye(3)
        if th > 1e-12:
            kk = om / th
            K = np.array([[0, -kk[2], kk[1]], [kk[2], 0, -kk[0]], [-kk[1], kk[0], 0]])
            Rw = np.eye(3) + np.sin(th) * K + (1 - np.cos(th)) * K @ K
        # y' = (1 + ds) Rw (y - c0) + c0 + dt  (applied to the similarity)
        s, R, t = s * (1 + ds), Rw @ R, (1 + ds) * Rw @ (t - c0) + c0 + dt
        if shape_step and nshape:
            ident[:k] += delta[7:7 + k]
            if ne:
                expr[ex_ids] = np.clip(expr[ex_ids] + delta[7 + k:], 0.0, 1.0)
    return ident, expr, (s, R, t)


# --------------------------------------------------------------------------- refinement
class _SkinSurface:
    def __init__(self, model: HeadModel):
        self.faces_full = _triangles(model, SKIN_GROUPS)
        self.ids = np.unique(self.faces_full)
        remap = -np.ones(model.n_vertices, np.int64)
        remap[self.ids] = np.arange(len(self.ids))
        self.faces = remap[self.faces_full]
        n = len(self.ids)
        self.adj = _adjacency(self.faces, n)
        deg = np.asarray(self.adj.sum(axis=1)).ravel()
        self.L = sp.eye(n) - sp.diags(1.0 / np.maximum(deg, 1)) @ self.adj
        self.LtL = (self.L.T @ self.L).tocsc()
        self.smooth_op = (sp.eye(n) + self.adj).tocsr()
        self.smooth_norm = 1.0 + deg


def _visibility(x: np.ndarray, n: np.ndarray, occluder: RayCaster, images: _Images,
                config: RegistrationConfig):
    """Per view: (visible (M,) bool, uv (M, 2), cos (M,) of normal vs direction to camera)."""
    out = []
    for k, v in enumerate(images.views):
        cam = v.camera
        d = cam.center - x
        dist = np.linalg.norm(d, axis=1)
        d /= dist[:, None]
        cos = (n * d).sum(1)
        uv, z = cam.project(x)
        inimg = (z > 0) & (uv[:, 0] > 1) & (uv[:, 0] < cam.width - 1) & (uv[:, 1] > 1) \
            & (uv[:, 1] < cam.height - 1)
        cand = inimg & (cos > -0.3)
        vis = np.zeros(len(x), bool)
        if cand.any():
            o = np.broadcast_to(cam.center, (int(cand.sum()), 3))
            hits = occluder.cast(o, -d[cand])
            vis[np.nonzero(cand)[0]] = hits.t >= dist[cand] - 0.002
        out.append((vis, uv, cos))
    return out


def _photo_targets(x0, n0, d, vis, images: _Images, surf: _SkinSurface, half_range: float,
                   config: RegistrationConfig, reach: np.ndarray | None = None):
    """Plane sweep along n0 around the current offsets d: for each candidate offset, the
    variance over the views that see the vertex of the grey values at a small tangent patch
    (centre + 4 points), averaged over the patch and the 1-ring. Returns (target d, weight);
    the weight is 0 where fewer than `min_views` views agree or the minimum is at the edge
    of the sweep. `reach` (m,) extends the sweep outward per vertex (up to the hull)."""
    m = len(x0)
    D = config.sweep_steps
    lo = np.full(m, half_range)
    hi = lo if reach is None else np.maximum(lo, reach)
    a = np.cross(n0, np.array([0.0, 1.0, 0.0]))
    bad = np.linalg.norm(a, axis=1) < 0.1
    a[bad] = np.cross(n0[bad], np.array([1.0, 0.0, 0.0]))
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b = np.cross(n0, a)
    r = config.patch_radius_m
    offs = np.stack([np.zeros_like(a), a * r, -a * r, b * r, -b * r], axis=1)   # (m, P, 3)
    P = offs.shape[1]
    base = (x0 + d[:, None] * n0)[:, None, :] + offs                            # (m, P, 3)
    start = base - lo[:, None, None] * n0[:, None, :]
    end = base + hi[:, None, None] * n0[:, None, :]
    tt = np.linspace(0.0, 1.0, D, dtype=np.float32)[None, :, None, None]
    s1 = np.zeros((m, D, P), np.float32)
    s2 = np.zeros((m, D, P), np.float32)
    cnt = np.zeros(m, np.float32)
    for k, (vk, _, cos) in enumerate(vis):
        use = vk & (cos > config.max_grazing)
        if not use.any():
            continue
        idx = np.nonzero(use)[0]
        cam = images.views[k].camera
        # camera coordinates are linear along the sweep: project the two ends, lerp
        cs = cam.to_camera(start[idx]).astype(np.float32)[:, None]               # (u, 1, P, 3)
        ce = cam.to_camera(end[idx]).astype(np.float32)[:, None]
        pc = cs + tt * (ce - cs)                                                 # (u, D, P, 3)
        z = np.maximum(pc[..., 2], 1e-6)
        u = cam.fx * pc[..., 0] / z + cam.cx
        v = cam.fy * pc[..., 1] / z + cam.cy
        g = images.grey_at(k, u, v)
        s1[idx] += g
        s2[idx] += g * g
        cnt[idx] += 1
    nn = np.maximum(cnt, 1)[:, None, None]
    var = s2 / nn - (s1 / nn) ** 2                                              # (m, D, P)
    cost = var.mean(axis=2)
    ok = cnt >= config.min_views
    cost = (surf.smooth_op @ cost) / surf.smooth_norm[:, None]
    j = np.argmin(cost, axis=1)
    jc = np.clip(j, 1, D - 1 - 1)
    rows = np.arange(m)
    c_l, c_m, c_r = cost[rows, jc - 1], cost[rows, jc], cost[rows, jc + 1]
    den = c_l - 2 * c_m + c_r
    sub = np.where(den > 1e-12, 0.5 * (c_l - c_r) / np.maximum(den, 1e-12), 0.0)
    step = (lo + hi) / (D - 1)
    target = d - lo + (jc + np.clip(sub, -1, 1)) * step
    mean_c = cost.mean(axis=1)
    distinct = np.clip(1.0 - cost[rows, j] / np.maximum(mean_c, 1e-12), 0.0, 1.0)
    interior = (j > 0) & (j < D - 1)
    w = np.where(ok & interior, distinct ** 2, 0.0)
    return target, w


def _contour_targets(x, n, n0, d, caster: RayCaster, images: _Images,
                     config: RegistrationConfig):
    """Rim vertices of each view (see `_contour_rows`): the offset along n0 that moves their
    projection onto the mask boundary, averaged over views. Returns (target d, weight)."""
    m = len(x)
    vi, r, g, w = _contour_rows(x, n, np.ones(m, bool), caster, images, config.contour_band)
    gn = (g * n0[vi]).sum(1)
    ok = gn > 0.3
    vi, r, gn, w = vi[ok], r[ok], gn[ok], w[ok]
    acc = np.bincount(vi, w * (d[vi] - r / gn), minlength=m)
    wsum = np.bincount(vi, w, minlength=m)
    target = np.where(wsum > 0, acc / np.maximum(wsum, 1e-12), d)
    return target, np.minimum(wsum, 3.0)


def _hull_limit(x0, n0, d, hull: VisualHull, tol: float):
    """Largest offset along n0 that stays inside the hull (+ tol), linearised."""
    x = x0 + d[:, None] * n0
    r = hull.sample(x)
    g = hull.gradient(x)
    gn = (g * n0).sum(1)
    step = np.where(gn > 0.3, -r / np.maximum(gn, 0.3), np.where(r > 0, -r, np.inf))
    return d + step + tol


def refine_vertices(x0: np.ndarray, surf: _SkinSurface, occluder_extra, hull: VisualHull,
                    images: _Images, config: RegistrationConfig, sink: ProgressSink,
                    cancel: CancelToken, progress=(0.5, 0.95)) -> np.ndarray:
    """Per-vertex normal offsets of the skin (ids `surf.ids`), returns new skin positions."""
    n0 = vertex_normals(x0, surf.faces)
    m = len(x0)
    d = np.zeros(m)
    for it in range(config.iterations):
        cancel.raise_if_cancelled()
        x = x0 + d[:, None] * n0
        n = vertex_normals(x, surf.faces)
        occ = RayCaster([TexturedMesh(x, surf.faces)] + occluder_extra)
        vis = _visibility(x, n, occ, images, config)
        rng = config.sweep_range_m[min(it, len(config.sweep_range_m) - 1)]
        limit = _hull_limit(x0, n0, d, hull, config.hull_tolerance_m)
        reach = np.clip(limit - d, 0.0, config.max_reach_m) if it == 0 else None
        t_photo, w_photo = _photo_targets(x0, n0, d, vis, images, surf, rng, config, reach)
        t_cont, w_cont = _contour_targets(x, n, n0, d, occ, images, config)
        w_photo = w_photo * config.photo_weight
        w_cont = w_cont * config.contour_weight
        # robust weights against the current solution
        span = rng if reach is None else np.maximum(rng, reach)
        w_photo *= _robust_weights(t_photo - d, np.maximum(config.robust_scale_m, span * 0.5))
        w_cont *= _robust_weights(t_cont - d, config.robust_scale_m * 2)
        wsum = w_photo + w_cont
        target = np.where(wsum > 0, (w_photo * t_photo + w_cont * t_cont)
                          / np.maximum(wsum, 1e-12), d)
        over = target > limit
        target = np.minimum(target, limit)
        # a vertex outside the hull is wrong whatever the photos say
        wsum = np.where(over | (limit < d), np.maximum(wsum, 1.0), wsum)
        A = (sp.diags(wsum + config.anchor) + config.smoothness * surf.LtL).tocsr()
        diag = A.diagonal()
        d, _ = cg(A, wsum * target, x0=d, rtol=1e-4, maxiter=150,
                  M=sp.diags(1.0 / diag))
        sink.progress(STAGE, progress[0] + (progress[1] - progress[0]) * (it + 1)
                      / config.iterations, f"refining vertices {it + 1}/{config.iterations}")
    return x0 + d[:, None] * n0


# --------------------------------------------------------------------------- attachments
def carry_attachments(model: HeadModel, before: np.ndarray, after: np.ndarray,
                      skin_ids: np.ndarray) -> np.ndarray:
    """Move the non-skin parts with the skin: eyes (sclera+iris) and mouth (teeth, gums)
    rigidly (Kabsch fit to the skin within a radius), everything else by the displacement of
    its nearest skin vertex."""
    from scipy.spatial import cKDTree

    out = after.copy()
    tree = cKDTree(before[skin_ids])
    done = np.zeros(len(before), bool)
    done[skin_ids] = True
    for groups, radius in [(EYE_GROUPS[0], 0.025), (EYE_GROUPS[1], 0.025),
                           (MOUTH_GROUPS, 0.045)]:
        ids = model.vertices_of_groups(*groups)
        if len(ids) == 0:
            continue
        c = before[ids].mean(0)
        near = skin_ids[tree.query_ball_point(c, radius)]
        if len(near) < 6:
            continue
        R, t = rigid_transform(before[near], after[near])
        out[ids] = before[ids] @ R.T + t
        done[ids] = True
    rest = np.nonzero(~done)[0]
    if len(rest):
        _, j = tree.query(before[rest])
        nearest = skin_ids[j]
        out[rest] = before[rest] + (after[nearest] - before[nearest])
    return out


# --------------------------------------------------------------------------- entry point
def register_template(views: list[View], model: HeadModel, init_vertices: np.ndarray | None = None,
                      identity: np.ndarray | None = None, expression: np.ndarray | None = None,
                      config: RegistrationConfig | None = None, sink: ProgressSink | None = None,
                      cancel: CancelToken | None = None,
                      hull: VisualHull | None = None) -> Registration:
    """Register `model`'s template onto `views`.

    Start: `init_vertices` (N, 3) (e.g. the fitter's posed template) if given, else the
    model posed with `identity` / `expression` (the mean head when both are None). The
    coefficients given are refined against the hull (config.fit_identity modes); the result's
    blendshape deltas are the model's expression basis."""
    config = config or RegistrationConfig()
    sink = sink or NullSink()
    cancel = cancel or CancelToken()
    times = {}
    t0 = time.perf_counter()
    if hull is None:
        sink.progress(STAGE, 0.0, "visual hull")
        hull = visual_hull(views, config.hull)
    times["hull"] = time.perf_counter() - t0
    cancel.raise_if_cancelled()

    t1 = time.perf_counter()
    surf = _SkinSurface(model)
    fit_ids = _fit_vertex_ids(model, surf.ids, config.fit_skip_cranium)
    ident = np.zeros(model.n_identity)
    if identity is not None:
        given = np.asarray(identity, float)[:model.n_identity]
        ident[:len(given)] = given
    expr = np.zeros(model.n_expressions)
    if expression is not None:
        given = np.asarray(expression, float)[:model.n_expressions]
        expr[:len(given)] = given
    posed = model.posed(ident, expr).astype(np.float64)
    if init_vertices is not None:
        init_vertices = np.asarray(init_vertices, np.float64)
        if init_vertices.shape != posed.shape:
            raise ValueError(f"init_vertices must be {posed.shape}, got {init_vertices.shape}")
        # the given vertices may be placed/scaled differently from the posed model: start the
        # pose from the similarity between them
        s0, R0, t0_ = similarity_transform(posed[fit_ids], init_vertices[fit_ids])
    else:
        s0, R0, t0_ = 1.0, np.eye(3), np.zeros(3)
    sink.progress(STAGE, 0.15, "fitting the template to the silhouettes")
    images = _Images(views)
    fit_mask = np.isin(surf.ids, fit_ids)
    pose = (s0, R0, t0_)
    ident, expr, pose = fit_template(model, surf, fit_mask, images, hull, ident, expr, pose,
                                     config, cancel)
    s, R, t = pose
    aligned_local = model.posed(ident, expr).astype(np.float64)
    aligned = s * aligned_local @ R.T + t
    times["align"] = time.perf_counter() - t1
    cancel.raise_if_cancelled()

    t2 = time.perf_counter()
    sink.progress(STAGE, 0.5, "refining vertices")
    extra = []
    for groups in (*EYE_GROUPS, MOUTH_GROUPS, ("M_EyeLashes",)):
        f = _triangles(model, groups)
        if len(f):
            extra.append(TexturedMesh(aligned, f))
    skin_new = refine_vertices(aligned[surf.ids], surf, extra, hull, images, config, sink,
                               cancel)
    after = aligned.copy()
    after[surf.ids] = skin_new
    registered = carry_attachments(model, aligned, after, surf.ids)
    times["refine"] = time.perf_counter() - t2
    times["total"] = time.perf_counter() - t0
    deltas = model.expression_basis
    # expression offsets in the registered frame (rotation + scale of the similarity)
    neutral = registered - s * np.tensordot(expr, deltas, axes=1) @ R.T
    sink.progress(STAGE, 1.0, "template registered")
    return Registration(vertices=registered, neutral_vertices=neutral,
                        aligned_vertices=aligned, identity=ident, expression=expr,
                        blendshape_names=list(model.expression_names),
                        blendshape_deltas=deltas, hull=hull, timings_s=times)


def _fit_vertex_ids(model: HeadModel, skin_ids: np.ndarray, skip_cranium: bool) -> np.ndarray:
    """Skin vertices whose silhouettes the coefficient fit trusts: not ICT's mouth and eye
    sockets (never on a silhouette) and, with `skip_cranium`, not the cranium (above the
    brows, and the back of the head above the jaw line), which hair usually covers."""
    ids = skin_ids[skin_ids < 11248] if model.name == "ict_facekit" else skin_ids
    if skip_cranium and model.landmarks68 is not None:
        v, lm = model.vertices, model.vertices[model.landmarks68]
        brow_y = lm[[19, 24], 1].mean()
        back_z = lm[[0, 16], 2].mean() - 0.03
        jaw_y = lm[[2, 14], 1].mean()
        p = v[ids]
        cranium = (p[:, 1] > brow_y + 0.01) | ((p[:, 2] < back_z) & (p[:, 1] > jaw_y))
        ids = ids[~cranium]
    return ids
