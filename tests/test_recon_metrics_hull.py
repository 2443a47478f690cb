"""Metric, visual hull and meshing on analytic shapes."""
from __future__ import annotations

import numpy as np
import pytest
import trimesh

from gen3dface.backend.recon.hull import HullConfig, visual_hull
from gen3dface.backend.recon.meshing import (MeshingConfig, boundary_loops, field_to_mesh,
                                             fill_small_holes, largest_component)
from gen3dface.backend.recon.metrics import (GroundTruth, MeshDistance, Plane,
                                             closest_point_on_triangles, neck_plane)
from gen3dface.backend.recon.views import as_views
from gen3dface.backend.render.camera import orbit_cameras
from gen3dface.backend.render.mesh import TexturedMesh
from gen3dface.backend.render.raycast import render_views

R = 0.1


def _sphere(radius=R, sub=4):
    s = trimesh.creation.icosphere(subdivisions=sub, radius=radius)
    return np.asarray(s.vertices), np.asarray(s.faces)


def _cameras(n=12, res=96):
    az = [360.0 * k / n for k in range(n)]
    el = [25.0 if k % 2 else -25.0 for k in range(n)]
    return orbit_cameras(az, el, radius_m=0.6, resolution=res, fov_deg=30.0)


def test_closest_point_matches_brute_force():
    rng = np.random.default_rng(0)
    v, f = _sphere(sub=2)
    p = rng.normal(size=(500, 3)) * 0.08
    d = MeshDistance(v, f, candidates=12)(p)
    tri = v[f]
    best = np.full(len(p), np.inf)
    for t in tri:        # brute force over every triangle
        q = closest_point_on_triangles(p, *(np.broadcast_to(t[k], p.shape) for k in range(3)))
        best = np.minimum(best, np.linalg.norm(p - q, axis=1))
    assert np.allclose(d, best, atol=1e-9)


def test_chamfer_of_an_offset_sphere_is_the_offset():
    v, f = _sphere(sub=5)
    cams = _cameras(8, 64)
    gt = GroundTruth(v, f, cams, Plane(np.array([0.0, -0.2, 0.0]), np.array([0.0, 1.0, 0.0])))
    assert gt.seen_fraction > 0.95
    same = gt.evaluate(v, f)
    assert same.chamfer_mm < 0.01 and same.fscore[1.0] == 1.0
    big = gt.evaluate(v * 1.015, f)                           # 1.5 mm larger
    assert abs(big.chamfer_mm - 1.5) < 0.05
    assert big.fscore[1.0] < 0.05 and big.fscore[2.0] > 0.95


def test_completeness_ignores_unseen_area_and_the_cut():
    """A box the cameras see from above only: its bottom face does not count."""
    box = trimesh.creation.box(extents=(0.2, 0.1, 0.2))
    cams = orbit_cameras([0, 90, 180, 270], [60, 60, 60, 60], radius_m=0.8, resolution=64,
                         fov_deg=30.0)
    top_faces = box.faces[box.triangles_center[:, 1] > 0.049]
    gt = GroundTruth(box.vertices, box.faces, cams,
                     Plane(np.array([0, -1.0, 0]), np.array([0, 1.0, 0])))
    assert gt.seen_fraction < 0.9
    # the reconstruction lacks the bottom: completeness is unaffected, accuracy perfect
    r = gt.evaluate(box.vertices, box.faces)
    assert r.completeness_mm < 0.01
    cut = gt.evaluate(box.vertices, top_faces)
    assert cut.accuracy_mm < 0.01 and cut.completeness_mm > 5.0   # the sides are missing


def test_neck_plane_points_into_the_head(ict_model):
    from gen3dface.backend.render.synthetic import SKIN_GROUPS, template_triangles

    f = template_triangles(ict_model, SKIN_GROUPS)
    plane = neck_plane(ict_model.vertices, f)
    keep = plane.keep(ict_model.vertices)
    assert keep.mean() > 0.9
    assert plane.keep(np.array([[0.0, 0.1, 0.0]]))[0]          # the crown is kept


def test_visual_hull_of_a_sphere_is_tight_and_contains_it():
    v, f = _sphere(sub=5)
    views = as_views(render_views(TexturedMesh(v, f), _cameras(12, 96)))
    hull = visual_hull(views, HullConfig(resolution=64))
    # the sphere is inside the hull (to the masks' pixel quantisation)
    assert hull.sample(v * 0.99).max() < 0.002
    hv, hf = hull.mesh()
    r = np.linalg.norm(hv, axis=1)
    # the hull of 12 views hugs the sphere: radius error of a few mm at most
    assert r.min() > R - 0.002 and np.percentile(r, 99) < R + 0.008
    assert trimesh.Trimesh(hv, hf, process=False).volume > 0            # outward faces


def test_hull_rejects_empty_masks():
    v, f = _sphere()
    views = as_views(render_views(TexturedMesh(v, f), _cameras(4, 32)))
    views[0].mask[:] = 0
    with pytest.raises(ValueError):
        visual_hull(views)


def test_meshing_pipeline_on_a_sphere_sdf():
    n = 48
    ax = np.linspace(-0.15, 0.15, n)
    g = np.stack(np.meshgrid(ax, ax, ax, indexing="ij"), -1)
    field = np.linalg.norm(g, axis=-1) - R
    field[0:2] = 1.0      # a second blob would be dropped: make sure one component remains
    mesh = field_to_mesh(field, np.full(3, -0.15), ax[1] - ax[0],
                         MeshingConfig(target_faces=2000, uv_resolution=256))
    r = np.linalg.norm(mesh.vertices, axis=1)
    assert np.abs(r - R).max() < 0.004
    assert len(mesh.faces) <= 2000
    assert boundary_loops(mesh.faces) == []
    assert mesh.uvs.min() >= 0 and mesh.uvs.max() <= 1
    assert len(mesh.vmapping) == len(mesh.uvs) and mesh.uv_faces.shape == mesh.faces.shape
    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    assert tm.volume > 0


def test_small_holes_are_filled_and_components_dropped():
    v, f = _sphere(sub=2)
    f_hole = f[1:]                                   # one missing triangle
    v2, f2 = fill_small_holes(v, f_hole, max_edges=8)
    assert boundary_loops(f2) == []
    far = v + 1.0
    vv, ff = largest_component(np.concatenate([v, far]),
                               np.concatenate([f, f[:10] + len(v)]))
    assert len(ff) == len(f) and len(vv) == len(v)
