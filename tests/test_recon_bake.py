"""Baking a known texture back from its own renders: the head model's UV atlas
(backend/texture's TextureBaker fed with N rendered views) and a free-form surface's xatlas
atlas (recon.bake_surface)."""
from __future__ import annotations

import numpy as np
import trimesh

from gen3dface.backend.recon.bake_surface import bake_surface
from gen3dface.backend.recon.meshing import MeshingConfig, atlas_uvs
from gen3dface.backend.recon.views import as_views
from gen3dface.backend.render.camera import orbit_cameras, ring_cameras
from gen3dface.backend.render.mesh import TexturedMesh
from gen3dface.backend.render.raycast import RenderConfig, render_views


def smooth_pattern(h: int, w: int) -> np.ndarray:
    """A smooth known texture (H, W, 3) uint8 (low frequency so resampling loses little)."""
    y, x = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    r = 0.5 + 0.4 * np.sin(2 * np.pi * 3 * x)
    g = 0.5 + 0.4 * np.cos(2 * np.pi * 2 * y)
    b = 0.5 + 0.3 * np.sin(2 * np.pi * (x + y) * 2)
    return (np.stack([r, g, b], -1) * 255).round().astype(np.uint8)


def test_head_atlas_baked_back_from_renders(ict_model):
    from gen3dface.backend.camera import View
    from gen3dface.backend.texture.bake import TextureBaker, TextureConfig
    from gen3dface.backend.texture.layout import SkinLayout

    m = ict_model
    size = 256
    layout = SkinLayout.of(m)
    known = smooth_pattern(size, size * layout.n_tiles)
    corner = layout.tri_uvs.copy()
    corner[..., 0] /= layout.n_tiles                      # model tiles -> whole-atlas uvs
    v = m.vertices.astype(np.float64)
    head = TexturedMesh(v, layout.tri_vertices, corner_uvs=corner, texture=known)
    cams = ring_cameras(12, 20.0, radius_m=1.0, resolution=256, fov_deg=22.0,
                        target=(0.0, -0.02, 0.0))
    views = render_views(head, cams, RenderConfig(shading="unlit"))
    baker = TextureBaker(m, TextureConfig(size=size, mirror_fill=False))
    res = baker.bake(v, [View.posed(image=rv.rgba[..., :3].copy(), w2c=rv.camera.w2c,
                                  intrinsics=rv.camera, mask=rv.mask) for rv in views])
    assert res.texture.shape == known.shape
    seen = res.confidence > 0.9
    assert seen.mean() > 0.25
    err = np.abs(res.texture[seen].astype(int) - known[seen].astype(int))
    assert np.median(err) <= 4 and err.mean() < 8


def test_surface_atlas_baked_back_from_renders():
    s = trimesh.creation.icosphere(3, radius=0.1)
    mesh = atlas_uvs(s.vertices, s.faces, MeshingConfig(uv_resolution=256))
    # a smooth solid texture (features of centimetres: the 256^2 atlas has ~2 mm texels)
    truth = TexturedMesh(s.vertices, s.faces, solid_texture=lambda p: 0.5 + 0.4 * np.sin(
        60.0 * p[:, [1, 2, 0]] + np.array([0.0, 1.0, 2.0])))
    az = [0, 60, 120, 180, 240, 300, 30, 150, 270, 90]
    el = [20, 20, 20, 20, 20, 20, -40, -40, -40, 75]
    cams = orbit_cameras(az, el, radius_m=0.6, resolution=96, fov_deg=30.0)
    cfg = RenderConfig(shading="unlit")
    views = as_views(render_views(truth, cams, cfg))
    baked = bake_surface(mesh, views, size=256)
    assert baked.seen_fraction > 0.97
    again = TexturedMesh(mesh.vertices, mesh.faces, corner_uvs=mesh.uvs[mesh.uv_faces],
                         texture=baked.texture)
    flat = TexturedMesh(mesh.vertices, mesh.faces,
                        vertex_colors=np.full((len(mesh.vertices), 3), 0.5))
    errs, base = [], []
    for rv, rb, rf in zip(views, render_views(again, cams, cfg), render_views(flat, cams, cfg)):
        m = rv.mask > 0.5
        errs.append(np.abs(rv.image[m, :3].astype(int) - rb.rgba[m, :3].astype(int)).mean())
        base.append(np.abs(rv.image[m, :3].astype(int) - rf.rgba[m, :3].astype(int)).mean())
    # the baked texture reproduces the views far better than a flat colour would
    assert np.mean(errs) < 6.0 and np.mean(errs) < 0.3 * np.mean(base)
