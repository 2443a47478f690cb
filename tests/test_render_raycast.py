"""CPU renderer against analytic cases: a sphere's depth, normals and silhouette, texture
orientation, supersampled coverage, and the synthetic-head generator."""
from __future__ import annotations

import numpy as np
import pytest
import trimesh

from gen3dface.backend.camera import PinholeCamera
from gen3dface.backend.render.camera import orbit_cameras, ring_cameras
from gen3dface.backend.render.mesh import TexturedMesh
from gen3dface.backend.render.raycast import RayCaster, RenderConfig, render_views

R = 0.1


@pytest.fixture(scope="module")
def sphere():
    s = trimesh.creation.icosphere(subdivisions=5, radius=R)
    return TexturedMesh(s.vertices, s.faces, vertex_colors=np.tile([1.0, 0.0, 0.0],
                                                                   (len(s.vertices), 1)))


def analytic_sphere(cam: PinholeCamera):
    """Per pixel: hit (bool), depth along the optical axis, unit normal (sphere at origin)."""
    o, d = cam.pixel_rays()
    b = (o * d).sum(1)
    c = (o * o).sum(1) - R * R
    disc = b * b - c
    hit = disc > 0
    t = -b - np.sqrt(np.where(hit, disc, 0.0))
    p = o + d * t[:, None]
    depth = t * (d @ cam.forward)
    return (hit.reshape(cam.height, cam.width), depth.reshape(cam.height, cam.width),
            (p / R).reshape(cam.height, cam.width, 3))


def test_sphere_depth_normals_and_mask(sphere):
    cams = orbit_cameras([30.0, -120.0], [10.0, -40.0], radius_m=0.5, resolution=96,
                         fov_deg=30.0)
    views = render_views(sphere, cams, RenderConfig(shading="unlit"))
    for view, cam in zip(views, cams):
        hit, depth, normal = analytic_sphere(cam)
        got = view.mask > 0.5
        # silhouettes agree except for a few boundary pixels
        assert (got != hit).sum() <= 0.02 * hit.sum()
        both = got & hit
        err = np.abs(view.depth[both] - depth[both])
        # faceting (icosphere, 4 mm edges) grows along grazing rays: bound those separately
        facing = -((normal[both] * (
            cam.pixel_rays()[1].reshape(cam.height, cam.width, 3)[both])).sum(-1))
        assert np.median(err) < 5e-5 and err[facing > 0.3].max() < 2e-4
        assert err.max() < 2e-3
        cos = (view.normals[both] * normal[both]).sum(-1)
        assert np.degrees(np.arccos(np.clip(cos, -1, 1))).max() < 2.0
        assert np.all(np.isinf(view.depth[~got]))
        assert np.all(view.rgba[~got][:, 3] == 0)
        assert np.all(view.rgba[got][:, 0] == 255) and np.all(view.rgba[got][:, 1] == 0)
        assert view.rgba.dtype == np.uint8 and view.depth.dtype == np.float32


def test_lambert_is_view_independent(sphere):
    """A surface point has the same colour in every view (fixed head-frame lights)."""
    cams = orbit_cameras([0.0, 40.0], [0.0, 0.0], radius_m=0.5, resolution=64, fov_deg=30.0)
    caster = RayCaster(sphere)
    p = np.array([[np.sin(np.radians(20)) * R, 0.0, np.cos(np.radians(20)) * R]])
    cols = []
    for cam in cams:
        uv, _ = cam.project(p)
        view = caster.render(cam, RenderConfig(shading="lambert"))
        i, j = np.floor(uv[0]).astype(int)
        cols.append(view.rgba[j, i, :3].astype(int))
    assert np.abs(cols[0] - cols[1]).max() <= 3


def test_uv_texture_orientation():
    """uv origin bottom-left: the texture's top row appears at the top of an upright quad."""
    v = np.array([[-0.1, -0.1, 0], [0.1, -0.1, 0], [0.1, 0.1, 0], [-0.1, 0.1, 0]], float)
    f = np.array([[0, 1, 2], [0, 2, 3]])
    uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], float)
    tex = np.zeros((8, 8, 3), np.uint8)
    tex[:4, :, 0] = 255          # top half red
    tex[4:, :, 2] = 255          # bottom half blue
    tex[:, :4, 1] = 255          # left half green
    quad = TexturedMesh(v, f, corner_uvs=uv[f], texture=tex)
    cam = orbit_cameras([0.0], [0.0], radius_m=0.5, resolution=64, fov_deg=30.0)[0]
    view = render_views(quad, [cam], RenderConfig(shading="unlit"))[0]
    c = cam.project(np.array([[-0.05, 0.05, 0.0], [0.05, -0.05, 0.0]]))[0].astype(int)
    top_left = view.rgba[c[0, 1], c[0, 0]]
    bottom_right = view.rgba[c[1, 1], c[1, 0]]
    assert top_left[0] > 200 and top_left[1] > 200 and top_left[2] < 50
    assert bottom_right[2] > 200 and bottom_right[0] < 50 and bottom_right[1] < 50


def test_supersampled_mask_is_fractional_at_the_edge(sphere):
    cam = orbit_cameras([0.0], [0.0], radius_m=0.5, resolution=48, fov_deg=30.0)[0]
    v1 = render_views(sphere, [cam], RenderConfig(supersample=1))[0]
    v3 = render_views(sphere, [cam], RenderConfig(supersample=3))[0]
    frac = (v3.mask > 0) & (v3.mask < 1)
    assert frac.sum() > 20
    assert abs(v3.mask.sum() - v1.mask.sum()) < 0.03 * v1.mask.sum()
    hit, _, _ = analytic_sphere(cam)
    assert abs(v3.mask.sum() - hit.sum()) < 0.02 * hit.sum()


def test_bad_inputs():
    with pytest.raises(ValueError):
        TexturedMesh(np.zeros((3, 3)), np.array([[0, 1, 5]]))
    with pytest.raises(ValueError):
        TexturedMesh(np.zeros((3, 3)), np.array([[0, 1, 2]]), texture=np.zeros((4, 4, 3),
                                                                                np.uint8))
    with pytest.raises(ValueError):
        RenderConfig(shading="phong")
    with pytest.raises(ValueError):
        PinholeCamera(np.eye(3), 1, 1, 0, 0, 4, 4)


def test_ring_rig_looks_at_the_target():
    cams = ring_cameras(16, 30.0, radius_m=1.0, resolution=64, fov_deg=20.0)
    assert len(cams) == 16
    for cam in cams:
        uv, z = cam.project(np.zeros((1, 3)))
        assert np.allclose(uv[0], [32, 32], atol=1e-6) and abs(z[0] - 1.0) < 1e-9
        assert abs(np.degrees(np.arcsin(cam.center[1])) - 30.0) < 1e-6


def test_synthetic_heads_are_seeded_and_detailed(ict_model):
    from gen3dface.backend.render.synthetic import SyntheticHeadConfig, make_synthetic_head

    a = make_synthetic_head(ict_model, 5)
    b = make_synthetic_head(ict_model, 5)
    assert np.array_equal(a.template_vertices, b.template_vertices)
    d = make_synthetic_head(ict_model, 5, SyntheticHeadConfig(detailed=True))
    moved = np.linalg.norm(d.template_vertices - a.template_vertices, axis=1)
    assert 1.0 < moved.max() * 1e3 <= 3.0 + 1e-6
    assert any(m.name == "hair" for m in d.meshes)
    cam = ring_cameras(4, 30.0, radius_m=1.0, resolution=64, fov_deg=22.0,
                       target=(0, -0.02, 0))
    views = render_views(d.meshes, cam)
    for v in views:
        assert 0.15 < v.mask.mean() < 0.8
        assert v.rgba[v.mask > 0][:, :3].std() > 5        # textured, not flat
