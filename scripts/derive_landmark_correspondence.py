#!/usr/bin/env python
"""Derive the correspondence mediapipe face-mesh landmark -> ICT-FaceKit surface point and
write it to backend/fitting/data/mediapipe_to_ict.json.

Why not register mediapipe's canonical face model: the mediapipe 0.10.21 wheel does not carry
canonical_face_model.obj (modules/face_geometry/data/ holds only __init__.py). Instead we ask
mediapipe itself where its landmarks sit on the ICT head: we ray-cast-render the ICT neutral
head (smooth-shaded skin, darker lips and brows from ICT's own Multi-PIE landmarks, white
sclera, dark irises) from several known cameras, run the bundled 478-point face mesh on each
render, cast each landmark's pixel ray back onto the head, average the 3D hits over the views
in which that surface point faces the camera, and snap the result onto the ICT surface:
- mesh landmarks 0..467 -> a triangle of the M_Face region + barycentric coordinates;
- iris landmarks 468..477 -> a triangle of the iris/sclera meshes + barycentric coordinates;
- face-oval landmarks (FACEMESH_FACE_OVAL) are taken from the frontal view only (they mark the
  visible outline, which depends on the view) and flagged "contour" for the fitter, which
  re-picks them along the silhouette.

Usage: python scripts/derive_landmark_correspondence.py [--ict PATH] [--out PATH] [--debug DIR]
Takes ~1 minute on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "backend" / "fitting" / "data" / "mediapipe_to_ict.json"
DEFAULT_ICT = REPO.parent / "shared" / "data" / "ict_facekit" / "ict_facekit_v1.npz"

# Views (azimuth, elevation) in degrees; the first one is frontal.
VIEWS = [(0, 0), (-15, 0), (15, 0), (0, 10), (0, -10), (-25, 5), (25, 5)]
RENDER_SIZE = 768
FOV_DEG = 18.0
RADIUS_M = 0.9
RENDER_GROUPS = ("M_Face", "M_BackHead", "M_EyeLashes", "M_IrisLeft", "M_IrisRight",
                 "M_ScleraLeft", "M_ScleraRight", "M_Teeth", "M_GumsTongue")
EYE_GROUPS = ("M_IrisLeft", "M_IrisRight", "M_ScleraLeft", "M_ScleraRight")


def vertex_colours(model, lm3d):
    """Per-vertex albedo: skin, with lips and brows darker (from ICT's Multi-PIE landmarks)."""
    from skimage.measure import points_in_poly
    n = model.n_vertices
    col = np.tile(np.array([0.80, 0.62, 0.52]), (n, 1))
    v = model.vertices
    face = np.zeros(n, bool)
    face[model.vertices_of_groups("M_Face")] = True
    lips = (points_in_poly(v[:, :2], lm3d[48:60, :2]) & face
            & (v[:, 2] > lm3d[48:60, 2].min() - 0.01))
    col[lips] = [0.62, 0.33, 0.32]
    for a, b in ((17, 22), (22, 27)):      # brows: a band above each Multi-PIE brow polyline
        br = lm3d[a:b]
        d = np.full(n, np.inf)
        for p, q in zip(br[:-1], br[1:]):
            t = np.clip(((v - p) @ (q - p)) / ((q - p) @ (q - p)), 0, 1)
            d = np.minimum(d, np.linalg.norm(v - (p + t[:, None] * (q - p)), axis=1))
        col[face & (d < 0.005)] = [0.30, 0.22, 0.18]
    for g, c in (("M_EyeLashes", (0.08, 0.06, 0.05)), ("M_ScleraLeft", (0.92, 0.9, 0.88)),
                 ("M_ScleraRight", (0.92, 0.9, 0.88)), ("M_IrisLeft", (0.25, 0.16, 0.1)),
                 ("M_IrisRight", (0.25, 0.16, 0.1)), ("M_Teeth", (0.95, 0.93, 0.85)),
                 ("M_GumsTongue", (0.6, 0.3, 0.3))):
        col[model.vertices_of_groups(g)] = c
    # The sclera meshes are the outer eyeball shells (the cornea is part of them): paint an
    # iris (radius 6 mm) and a pupil (2 mm) around each eyeball's forward axis.
    for g in ("M_ScleraLeft", "M_ScleraRight"):
        idx = model.vertices_of_groups(g)
        e = v[idx]
        centre = (e.min(0) + e.max(0)) / 2
        r = np.hypot(e[:, 0] - centre[0], e[:, 1] - centre[1])
        front = e[:, 2] > centre[2]
        col[idx[front & (r < 0.006)]] = (0.28, 0.18, 0.1)
        col[idx[front & (r < 0.002)]] = (0.03, 0.03, 0.03)
    return col


def make_mesh(model, groups):
    import trimesh
    tri, _, tri_poly = model.triangles(model.polygon_mask(*groups))
    return trimesh.Trimesh(model.vertices.astype(np.float64), tri, process=False), tri, tri_poly


def camera(az, el, target):
    from gen3dface.protocol.cameras import intrinsics_from_fov, orbit_w2c_in_head
    w2c = np.asarray(orbit_w2c_in_head(az, el, RADIUS_M, target))
    k = intrinsics_from_fov(RENDER_SIZE, RENDER_SIZE, FOV_DEG)
    return w2c, k


def pixel_rays(w2c, k, uv):
    """World-space ray origins/directions through pixel coordinates uv (n, 2) (corner origin)."""
    d_cam = np.c_[(uv[:, 0] - k.cx) / k.fx, (uv[:, 1] - k.cy) / k.fy, np.ones(len(uv))]
    r, t = w2c[:3, :3], w2c[:3, 3]
    origin = -r.T @ t
    d = d_cam @ r  # = (R^T d_cam^T)^T
    return np.repeat(origin[None], len(uv), 0), d / np.linalg.norm(d, axis=1, keepdims=True)


def render(mesh, intersector, colours, w2c, k):
    import trimesh
    n = RENDER_SIZE
    jj, ii = np.mgrid[0:n, 0:n]
    uv = np.c_[ii.ravel() + 0.5, jj.ravel() + 0.5]
    o, d = pixel_rays(w2c, k, uv)
    tri_id, ray_id, loc = intersector.intersects_id(o, d, multiple_hits=False,
                                                    return_locations=True)
    img = np.full((n * n, 3), 0.35)
    bary = trimesh.triangles.points_to_barycentric(mesh.triangles[tri_id], loc)
    f = mesh.faces[tri_id]
    nrm = np.einsum("ij,ijk->ik", bary, mesh.vertex_normals[f])
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
    alb = np.einsum("ij,ijk->ik", bary, colours[f])
    light = np.array([0.3, 0.4, 1.0]) / np.linalg.norm([0.3, 0.4, 1.0])
    cam_dir = -d[ray_id]
    shade = 0.35 + 0.55 * np.clip(nrm @ light, 0, 1) + 0.15 * np.clip((nrm * cam_dir).sum(1), 0, 1)
    img[ray_id] = alb * shade[:, None]
    return (np.clip(img, 0, 1).reshape(n, n, 3) * 255).astype(np.uint8)


def closest_to_ray(mesh, o, d, depth_lo=0.4, depth_hi=1.3, n=200):
    """Point of the mesh closest to a ray that misses it (sampled along the ray)."""
    from trimesh.proximity import closest_point
    s = o + np.linspace(depth_lo, depth_hi, n)[:, None] * d
    pts, dist, _ = closest_point(mesh, s)
    return pts[int(np.argmin(dist))]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ict", type=Path, default=DEFAULT_ICT)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--debug", type=Path, default=None, help="write renders with landmarks here")
    args = ap.parse_args(argv)

    import cv2
    import trimesh
    from mediapipe.python.solutions import face_mesh
    from trimesh.proximity import closest_point
    from trimesh.ray.ray_pyembree import RayMeshIntersector

    from gen3dface.backend.face.landmarks import FACE_OVAL, IRIS, N_LANDMARKS, N_MESH
    from gen3dface.backend.headmodel.ict import load_ict_npz

    model = load_ict_npz(args.ict, n_identity=1)
    lm68 = model.vertices[model.landmarks68].astype(np.float64)
    target = lm68[[36, 45, 48, 54]].mean(0)
    render_mesh, _, _ = make_mesh(model, RENDER_GROUPS)
    intersector = RayMeshIntersector(render_mesh)
    colours = vertex_colours(model, lm68)
    face_mesh_t, face_tri, _ = make_mesh(model, ("M_Face",))
    eye_mesh_t, eye_tri, _ = make_mesh(model, EYE_GROUPS)
    render_normals = render_mesh.face_normals

    fm = face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True,
                            min_detection_confidence=0.3)
    hits = np.full((len(VIEWS), N_LANDMARKS, 3), np.nan)
    facing = np.zeros((len(VIEWS), N_LANDMARKS))
    for vi, (az, el) in enumerate(VIEWS):
        w2c, k = camera(az, el, target)
        img = render(render_mesh, intersector, colours, w2c, k)
        res = fm.process(img).multi_face_landmarks
        if not res:
            print(f"view az={az} el={el}: mediapipe found no face in the render", file=sys.stderr)
            continue
        uv = np.array([(p.x * RENDER_SIZE, p.y * RENDER_SIZE) for p in res[0].landmark])
        if args.debug:
            args.debug.mkdir(parents=True, exist_ok=True)
            dbg = img.copy()
            for u, v in uv:
                cv2.circle(dbg, (int(u), int(v)), 1, (0, 255, 0), -1)
            cv2.imwrite(str(args.debug / f"view_{az}_{el}.png"),
                        cv2.cvtColor(dbg, cv2.COLOR_RGB2BGR))
        o, d = pixel_rays(w2c, k, uv)
        tri_id, ray_id, loc = intersector.intersects_id(o, d, multiple_hits=False,
                                                        return_locations=True)
        hits[vi, ray_id] = loc
        facing[vi, ray_id] = np.clip(-(render_normals[tri_id] * d[ray_id]).sum(1), 0, 1)
        for i in np.setdiff1d(np.arange(N_LANDMARKS), ray_id):
            hits[vi, i] = closest_to_ray(render_mesh, o[i], d[i])
            facing[vi, i] = 0.05
        print(f"view az={az:+d} el={el:+d}: {len(res[0].landmark)} landmarks, "
              f"{len(ray_id)} rays hit the head")
    fm.close()
    if np.isnan(hits[0]).all():
        raise SystemExit("mediapipe did not find the face in the frontal render")

    # Weighted mean over views (weight: how squarely the surface faces the camera);
    # contour landmarks: frontal view only.
    ok = ~np.isnan(hits[..., 0])
    w = np.where(ok, facing ** 2 + 1e-6, 0.0)
    contour = np.zeros(N_LANDMARKS, bool)
    contour[FACE_OVAL] = True
    w[1:, contour] = 0.0
    p = np.einsum("vl,vlk->lk", w, np.nan_to_num(hits)) / w.sum(0)[:, None]
    spread = np.sqrt(np.einsum("vl,vl->l", w, ((np.nan_to_num(hits) - p) ** 2).sum(-1)) / w.sum(0))

    entries = []
    snapped = np.zeros((N_LANDMARKS, 3))
    is_iris = np.zeros(N_LANDMARKS, bool)
    is_iris[IRIS] = True
    for region, mesh, tri, sel in (("face", face_mesh_t, face_tri, ~is_iris),
                                   ("eye", eye_mesh_t, eye_tri, is_iris)):
        idx = np.nonzero(sel)[0]
        cp, dist, tid = closest_point(mesh, p[idx])
        bary = trimesh.triangles.points_to_barycentric(mesh.triangles[tid], cp)
        bary = np.clip(bary, 0, 1)
        bary /= bary.sum(1, keepdims=True)
        for j, i in enumerate(idx):
            snapped[i] = bary[j] @ model.vertices[tri[tid[j]]]
            entries.append({"landmark": int(i), "region": region,
                            "vertices": [int(x) for x in tri[tid[j]]],
                            "barycentric": [round(float(x), 6) for x in bary[j]],
                            "contour": bool(contour[i]),
                            "snap_distance_m": round(float(dist[j]), 6),
                            "view_spread_m": round(float(spread[i]), 6)})
    entries.sort(key=lambda e: e["landmark"])
    out = {
        "description": "mediapipe face-mesh landmark (0..477) -> ICT-FaceKit surface point "
                       "(triangle vertex indices + barycentric coordinates), derived by "
                       "scripts/derive_landmark_correspondence.py (mediapipe run on ray-cast "
                       "renders of the ICT neutral head)",
        "head_model": "ict_facekit_v1",
        "n_vertices": int(model.n_vertices),
        "n_landmarks": N_LANDMARKS,
        "n_mesh_landmarks": N_MESH,
        "views_deg": VIEWS,
        "landmarks": entries,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=0))
    sd = np.array([e["snap_distance_m"] for e in entries]) * 1000
    sp = spread[~contour] * 1000
    print(f"wrote {args.out}: {len(entries)} landmarks; snap distance mm median "
          f"{np.median(sd):.2f} max {sd.max():.2f}; view spread mm (non-contour) median "
          f"{np.median(sp):.2f} p90 {np.percentile(sp, 90):.2f}")
    # Sanity: anatomical points against ICT's own Multi-PIE landmarks.
    for name, mp_i, ict_j in (("nose tip", 1, 30), ("chin", 152, 8), ("r eye outer", 33, 36),
                              ("l eye outer", 263, 45), ("mouth r", 61, 48), ("mouth l", 291, 54)):
        print(f"  {name:12s} mediapipe {mp_i:3d} vs Multi-PIE {ict_j:2d}: "
              f"{np.linalg.norm(snapped[mp_i] - lm68[ict_j]) * 1000:5.1f} mm")
    return 0


if __name__ == "__main__":
    sys.exit(main())
