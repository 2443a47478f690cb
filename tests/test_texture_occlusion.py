"""The head's own ambient occlusion taken out of the photo's colours (texture/occlusion.py):
the visibility estimate against an analytic view factor, and what the bake does with it."""
from __future__ import annotations

import numpy as np
import pytest

from gen3dface.backend.texture.bake import _Occluder
from gen3dface.backend.texture.occlusion import OcclusionConfig, vertex_visibility


def _open_box(a: float, h: float):
    """A floor (z = 0) with four walls of height h around a 2a x 2a square, open at the top:
    vertices and triangles."""
    big = 3.0 * a
    quads = [
        [(-big, -big, 0), (big, -big, 0), (big, big, 0), (-big, big, 0)],      # floor
        [(-a, -a, 0), (a, -a, 0), (a, -a, h), (-a, -a, h)],                    # walls
        [(a, -a, 0), (a, a, 0), (a, a, h), (a, -a, h)],
        [(a, a, 0), (-a, a, 0), (-a, a, h), (a, a, h)],
        [(-a, a, 0), (-a, -a, 0), (-a, -a, h), (-a, a, h)],
    ]
    v = np.array([p for q in quads for p in q], np.float64)
    t = np.array([[4 * i, 4 * i + 1, 4 * i + 2] for i in range(5)]
                 + [[4 * i, 4 * i + 2, 4 * i + 3] for i in range(5)])
    return v, t


def _square_view_factor(a: float, h: float) -> float:
    """Cosine-weighted share of the hemisphere of a floor point under the centre of a 2a x 2a
    opening at height h (four corner rectangles, Howell's differential-element formula)."""
    x = a / h
    s = np.sqrt(1 + x * x)
    corner = (1 / (2 * np.pi)) * 2 * (x / s) * np.arctan(x / s)
    return 4 * corner


@pytest.mark.parametrize("h", [0.5, 1.0, 2.0])
def test_visibility_matches_the_view_factor_of_an_opening(h):
    v, t = _open_box(1.0, h)
    occ = _Occluder(v, t)
    pts = np.array([[0.0, 0.0, 0.0], [2.5, 2.5, 0.0]])      # in the box; on the open floor
    nrm = np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    got = vertex_visibility(pts, nrm, occ.blocked, OcclusionConfig(rays=1024))
    want = _square_view_factor(1.0, h)
    print(f"h {h}: visibility {got[0]:.3f}, view factor {want:.3f}")
    assert abs(got[0] - want) < 0.03
    assert got[1] > (0.97 if h <= 0.5 else got[0])            # the open floor, beside low walls


def test_visibility_is_deterministic_and_zero_normals_are_open():
    v, t = _open_box(1.0, 1.0)
    occ = _Occluder(v, t)
    pts = np.array([[0.0, 0.0, 0.0], [0.3, 0.1, 0.0]])
    nrm = np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    a = vertex_visibility(pts, nrm, occ.blocked)
    b = vertex_visibility(pts, nrm, occ.blocked)
    assert np.array_equal(a, b) and a[1] == 1.0


def test_bake_takes_the_heads_own_occlusion_out_of_the_photo(ict_model):
    """Synthetic truth: an ICT head of one flat skin colour, photographed with its crevices
    darkened by its own occlusion (colour x visibility, in linear light, as an even light
    would leave them). Baked with the occlusion taken out, the seen crevices (eye corners,
    lid folds, nose sides) come back near the flat colour, so a renderer's occlusion brings
    back the photo; baked without, they keep the photo's darkening, to be darkened again.
    Open surfaces are the same either way."""
    from gen3dface.backend.camera import View
    from gen3dface.backend.geometry import vertex_normals
    from gen3dface.backend.render.mesh import TexturedMesh
    from gen3dface.backend.render.raycast import RenderConfig, render_views
    from gen3dface.backend.texture.bake import TextureBaker, TextureConfig
    from gen3dface.backend.texture.delight import linear_to_srgb, srgb_to_linear
    from gen3dface.protocol.cameras import intrinsics_from_fov, orbit_w2c_in_head

    m = ict_model
    on = TextureBaker(m, TextureConfig(size=256, occlusion_rays=64))
    off = TextureBaker(m, TextureConfig(size=256, occlusion=False))
    v = m.vertices.astype(np.float64)
    albedo = np.array([0.78, 0.60, 0.50])
    occ = _Occluder(v, on.occluder_tris)
    nrm = vertex_normals(v, on.layout.tri_vertices)
    vis = vertex_visibility(v, nrm, occ.blocked, OcclusionConfig(rays=64, seed=7))
    colours = linear_to_srgb(srgb_to_linear(albedo)[None] * vis[:, None])
    w2c = np.asarray(orbit_w2c_in_head(0, 5, 0.6))
    k = intrinsics_from_fov(480, 480, 30)
    shot = render_views(TexturedMesh(v, on.layout.tri_vertices, vertex_colors=colours),
                        [(w2c, k)], RenderConfig(shading="unlit"))[0]
    view = View.posed(shot.rgba[..., :3].copy(), w2c, k, shot.mask)
    res_on, res_off = on.bake(v, [view]), off.bake(v, [view])
    rows, cols = on.texel_rc
    tv = on.layout.tri_vertices[on.texel_tri]
    tvis = (vis[tv] * on.texel_bary).sum(1)
    seen = res_on.confidence[rows, cols] > 0.95
    crevice = seen & (tvis < 0.75) & (tvis > 0.5)
    open_ = seen & (tvis > 0.97)
    assert crevice.sum() > 200 and open_.sum() > 2000

    def err(res, sel):
        got = res.texture[rows[sel], cols[sel]].astype(np.float64) / 255.0
        return float(np.abs(got - albedo).mean() * 255)

    e_on, e_off = err(res_on, crevice), err(res_off, crevice)
    print(f"seen crevices ({crevice.sum()} texels): error to the flat colour {e_on:.1f} grey "
          f"levels with the occlusion taken out, {e_off:.1f} without; open skin "
          f"{err(res_on, open_):.1f} / {err(res_off, open_):.1f}")
    assert e_on < 0.35 * e_off
    assert abs(err(res_on, open_) - err(res_off, open_)) < 1.0


def test_brighten_works_in_linear_light_and_keeps_the_hue():
    from gen3dface.backend.texture.delight import srgb_to_linear
    from gen3dface.backend.texture.occlusion import brighten

    c = np.array([[0.5, 0.4, 0.3], [0.95, 0.8, 0.7], [0.2, 0.2, 0.2]], np.float32)
    out = brighten(c, np.array([2.0, 2.0, 1.0]))
    lin_in, lin_out = srgb_to_linear(c), srgb_to_linear(out)
    np.testing.assert_allclose(lin_out[0], 2.0 * lin_in[0], rtol=1e-4)   # twice the light
    assert abs(lin_out[1].max() - 1.0) < 1e-5                            # would pass white:
    np.testing.assert_allclose(lin_out[1] / lin_out[1].max(),            # scaled, same hue
                               lin_in[1] / lin_in[1].max(), rtol=1e-4)
    np.testing.assert_array_equal(out[2], c[2])                          # gain 1: untouched


def test_delight_with_several_views_fits_the_light_to_occlusion_free_samples(ict_model):
    """The de-lit bake of a photo plus a weaker second view fits its light on the photo's
    samples with the occlusion out (bake._estimate_light's several-view path): an evenly lit
    head of one colour gives a light with no strong side and a flat albedo on the seen face."""
    from gen3dface.backend.camera import View
    from gen3dface.backend.render.mesh import TexturedMesh
    from gen3dface.backend.render.raycast import RenderConfig, render_views
    from gen3dface.backend.texture.bake import TextureBaker, TextureConfig
    from gen3dface.protocol.cameras import intrinsics_from_fov, orbit_w2c_in_head

    m = ict_model
    baker = TextureBaker(m, TextureConfig(size=256))
    v = m.vertices.astype(np.float64)
    colours = np.tile([0.70, 0.55, 0.45], (len(v), 1))
    k = intrinsics_from_fov(320, 320, 30)
    views = []
    for yaw, weight in ((0, 1.0), (40, 0.5)):
        w2c = np.asarray(orbit_w2c_in_head(yaw, 5, 0.6))
        shot = render_views(TexturedMesh(v, baker.layout.tri_vertices, vertex_colors=colours),
                            [(w2c, k)], RenderConfig(shading="unlit"))[0]
        views.append(View.posed(shot.rgba[..., :3].copy(), w2c, k, shot.mask, weight))
    res = baker.bake(v, views, delight=True)
    rows, cols = baker.texel_rc
    seen = res.confidence[rows, cols] > 0.95
    got = res.texture[rows[seen], cols[seen]].astype(np.float64) / 255.0
    assert seen.sum() > 5000
    print("seen texels' spread, grey levels:", float(got.mean(1).std() * 255))
    assert got.mean(1).std() * 255 < 12.0


def test_the_occlusion_query_answers_as_trimeshs_intersects_any(ict_model):
    """_Occluder.blocked asks embree whether any hit exists (its occlusion query) instead of
    trimesh's intersects_any, which finds the closest hit: faster, and the same answer for
    every ray: rays from the head's surface out along jittered normals (where the bake casts
    them: creases, the ears, the eye sockets) and from random points towards random
    directions, including ones that graze or miss."""
    v = ict_model.vertices.astype(np.float64)
    tris = ict_model.triangles(ict_model.polygon_mask(*ict_model.group_names))[0]
    occ = _Occluder(v, tris)
    if type(occ.mesh.ray).__module__.split(".")[-1] != "ray_pyembree":
        pytest.skip("embree is not installed: blocked() is intersects_any itself")
    rng = np.random.default_rng(3)
    from gen3dface.backend.geometry import vertex_normals

    n = vertex_normals(v, tris)
    idx = rng.choice(len(v), 20000)
    d1 = n[idx] + 0.8 * rng.standard_normal((len(idx), 3))
    o1 = v[idx] + 5e-4 * n[idx]
    o2 = rng.uniform(v.min(0) - 0.05, v.max(0) + 0.05, (20000, 3))
    d2 = rng.standard_normal((20000, 3))
    for o, d in ((o1, d1), (o2, d2)):
        got = occ.blocked(o, d)
        want = np.asarray(occ.mesh.ray.intersects_any(o, d), bool)
        assert 0.05 < want.mean() < 0.95                     # both answers occur
        np.testing.assert_array_equal(got, want)
    assert occ.blocked(np.zeros((0, 3)), np.zeros((0, 3))).shape == (0,)
