"""The unseen head's hairline (backend/texture/hairline.py): a U-shaped nape line with a soft,
strand-ragged edge, and bare ears with a margin round them; on the real ICT template and
through the bake."""
from __future__ import annotations

import numpy as np
import pytest

from gen3dface.backend.texture.hair import strand_pattern
from gen3dface.backend.texture.hairline import (HairlineConfig, ear_vertices, hair_density,
                                                nape_line_y, scalp_depth)

CROWN = np.array([0.0, 0.145, -0.01])


def test_the_nape_line_is_a_u_lowest_at_the_spine():
    cfg = HairlineConfig()
    x = np.linspace(-0.09, 0.09, 37)
    y = nape_line_y(x, cfg)
    assert y[18] == pytest.approx(cfg.nape_centre_y)              # x = 0
    assert np.allclose(y, y[::-1])                                # symmetric
    right = y[18:]
    assert (np.diff(right) >= 0).all() and right[-1] == pytest.approx(cfg.nape_side_y)
    assert cfg.nape_side_y - cfg.nape_centre_y > 0.01              # a visible rise, not a level cut


def _nape_grid(n_x=81, n_y=141):
    """Points on a vertical plane behind the neck (z = -6 cm), rows top to bottom."""
    x = np.linspace(-0.04, 0.04, n_x)
    y = np.linspace(0.0, -0.07, n_y)
    gx, gy = np.meshgrid(x, y)
    return np.stack([gx, gy, np.full_like(gx, -0.06)], -1), y


def test_the_nape_edge_is_soft_and_ragged_strand_by_strand():
    cfg = HairlineConfig()
    grid, ys = _nape_grid()
    pts = grid.reshape(-1, 3)
    dens = hair_density(pts, None, strand_pattern(pts, CROWN), cfg).reshape(grid.shape[:2])
    assert dens[0].min() > 0.99 and dens[-1].max() < 0.01         # hair above, skin below
    ends, widths = [], []
    for col in range(dens.shape[1]):
        d = dens[:, col]                                           # falls from 1 to 0 downwards
        ends.append(np.interp(0.5, d[::-1], ys[::-1]))
        widths.append(np.interp(0.9, d[::-1], ys[::-1]) - np.interp(0.1, d[::-1], ys[::-1]))
    ends, widths = np.array(ends), np.array(widths)
    x = grid[0, :, 0]
    offset = ends - nape_line_y(x, cfg)
    print("strand ends: offset from the line mm", offset.mean() * 1e3, "spread",
          offset.std() * 1e3, "edge width mm", widths.mean() * 1e3)
    assert abs(offset.mean()) < 0.003                               # on the line on average
    assert offset.std() > 0.001                                     # ragged: strands end apart
    assert np.abs(offset).max() <= cfg.ragged + 1e-4
    assert (widths > 0.002).all() and (widths < 0.012).all()        # soft, but a hairline


def test_no_strand_reaches_an_ear():
    cfg = HairlineConfig()
    # an ear seen from the side: an elliptical rim of points 6 cm tall, 3.5 cm deep, at x = 8 cm
    a = np.linspace(0, 2 * np.pi, 60, endpoint=False)
    rim = np.stack([np.full_like(a, 0.08), 0.005 + 0.03 * np.sin(a), 0.0175 * np.cos(a)], 1)
    inner = rim * [1.0, 0.5, 0.5]
    ear = np.concatenate([rim, inner])
    # on the ear, and round it out to most of its margin, every strand at its longest
    outward = np.concatenate([rim * [1.0, s, s] for s in (1.0, 1.02, 1.04, 1.06)])
    from gen3dface.backend.texture.hairline import ear_distance

    dist = ear_distance(outward, ear)
    assert (dist >= -1e-6).all() and (dist < 0.9 * cfg.ear_margin).all(), dist.max()
    pts = np.concatenate([ear, outward])
    dens = hair_density(pts, ear, np.ones(len(pts)), cfg)
    assert dens[:len(ear)].max() == 0.0                            # none on the ear
    assert dens.max() < 0.5, dens.max()                            # under half inside the margin
    assert (scalp_depth(pts, ear, cfg) < 0).all()
    # 1 cm behind the rim it measures 1 cm; well away (2.5 cm) the ear cuts nothing
    behind = np.array([[0.08, 0.005, -0.0275], [0.08, 0.005, -0.0425]])
    near, far = ear_distance(behind, ear)
    assert near == pytest.approx(0.01, abs=2e-4)
    assert far > cfg.ear_margin + cfg.fringe


def test_the_template_ears_are_found_and_stay_bare(ict_model):
    from gen3dface.backend.texture.bake import TextureBaker, TextureConfig, scalp_vertices

    m = ict_model
    baker = TextureBaker(m, TextureConfig(size=256))
    sv = baker.skin_vertices
    rest = m.vertices.astype(np.float64)[sv]
    ear = ear_vertices(rest, baker.skin_edges)
    left, right = ear & (rest[:, 0] < 0), ear & (rest[:, 0] > 0)
    assert min(left.sum(), right.sum()) > 300                     # both ears, about as large
    assert abs(int(left.sum()) - int(right.sum())) <= 0.02 * right.sum()   # (805 and 806)
    for side in (left, right):
        c = rest[side].mean(0)
        assert 0.07 < abs(c[0]) < 0.095 and -0.02 < c[1] < 0.03 and -0.02 < c[2] < 0.015, c
        assert rest[side, 1].max() < 0.045                         # not the skull above it
    scalp = scalp_vertices(m, sv)
    assert not np.isin(scalp, sv[ear]).any()
    # the scalp reaches the back of the skull above and behind the ears, not the face
    sp = m.vertices[scalp]
    assert sp[:, 2].min() < -0.08 and sp[:, 1].max() > 0.14
    assert sp[:, 1].min() > HairlineConfig().nape_centre_y - 0.005


def test_a_dark_haired_head_keeps_skin_ears_and_a_ragged_nape(ict_model):
    """A dark-haired head photographed from the front: the backs of its ears, which the photo
    cannot see, come out skin-coloured, not hair; the back of the neck is hair above the nape
    line and skin below it, with strands ending at different heights."""
    from gen3dface.backend.render.mesh import TexturedMesh
    from gen3dface.backend.render.raycast import RenderConfig, render_views
    from gen3dface.backend.camera import View
    from gen3dface.backend.texture.bake import TextureBaker, TextureConfig, _interpolate
    from gen3dface.protocol.cameras import intrinsics_from_fov, orbit_w2c_in_head

    m = ict_model
    baker = TextureBaker(m, TextureConfig(size=512))
    v = m.vertices.astype(np.float64)
    skin, hair = np.array([0.78, 0.60, 0.50]), np.array([0.12, 0.08, 0.06])
    colours = np.tile(skin, (len(v), 1))
    colours[v[:, 1] > 0.07] = hair                                 # hair seen on the forehead's top
    w2c = np.asarray(orbit_w2c_in_head(0, 15, 0.7))
    k = intrinsics_from_fov(320, 320, 28)
    view = render_views(TexturedMesh(v, baker.layout.tri_vertices, vertex_colors=colours),
                        [(w2c, k)], RenderConfig(shading="unlit"))[0]
    res = baker.bake(v, [View.posed(view.rgba[..., :3].copy(), w2c, k, view.mask)])
    assert res.hair_rgb is not None
    tv = baker.layout.tri_vertices[baker.texel_tri]
    pts = _interpolate(v, tv, baker.texel_bary)
    rows, cols = baker.texel_rc
    tex = res.texture[rows, cols].astype(np.float64) / 255.0
    unseen = res.confidence[rows, cols] < 0.05
    sv = baker.skin_vertices
    ear_pts = v[sv][ear_vertices(v[sv], baker.skin_edges)]
    from scipy.spatial import cKDTree
    on_ear = cKDTree(ear_pts).query(pts)[0] < 0.002
    back_of_ear = on_ear & unseen & (pts[:, 2] < ear_pts[:, 2].mean())
    assert back_of_ear.sum() > 500
    ear_rgb = tex[back_of_ear].mean(0)
    print("backs of the ears", ear_rgb, "hair", res.hair_rgb)
    assert np.abs(ear_rgb - skin).max() < 0.12, ear_rgb            # skin, not hair (was hair)
    # the back of the neck, within 3 cm of the spine
    back = unseen & (np.abs(pts[:, 0]) < 0.03) & (pts[:, 2] < -0.04)
    line = nape_line_y(pts[:, 0])
    above = back & (pts[:, 1] > line + 0.015) & (pts[:, 1] < line + 0.04)
    below = back & (pts[:, 1] < line - 0.015) & (pts[:, 1] > line - 0.04)
    assert np.abs(tex[above].mean(0) - hair).max() < 0.08
    assert np.abs(tex[below].mean(0) - skin).max() < 0.08
    # ragged: per 2 mm column, the height at which the colour is half way between the two
    lum = tex @ np.array([0.299, 0.587, 0.114])
    mid = 0.5 * (skin @ [0.299, 0.587, 0.114] + hair @ [0.299, 0.587, 0.114])
    band = back & (np.abs(pts[:, 1] - line) < 0.015)
    ends = []
    for x0 in np.arange(-0.028, 0.028, 0.002):
        col = band & (np.abs(pts[:, 0] - x0) < 0.001)
        if col.sum() < 10:
            continue
        dark = col & (lum < mid)
        ends.append(pts[dark, 1].min() - line[dark].mean() if dark.any() else np.nan)
    ends = np.array(ends)
    print("strand ends below/above the line, mm:", np.round(ends * 1e3, 1))
    assert np.isfinite(ends).all() and len(ends) > 15
    assert ends.std() > 0.001                                      # not one level cut


def test_fill_variants_match_their_own_solves():
    """mesh_fill_colors' variants (another prior colour on some vertices, the same weights)
    come out as the same problem solved on its own: one factorisation serves the hairline's
    two layers and the fill."""
    from gen3dface.backend.texture.fill import mesh_fill_colors

    rng = np.random.default_rng(3)
    n = 40                                                  # a strip of 2 x 20 vertices
    tris = np.array([[i, i + 1, i + 20] for i in range(19)]
                    + [[i + 1, i + 21, i + 20] for i in range(19)])
    colours = rng.uniform(0.2, 0.8, (n, 3))
    conf = np.where(np.arange(n) % 20 < 6, 1.0, 0.0)       # one end seen, the rest not
    region = np.arange(14, 20)
    sv = np.arange(n)
    base, skin, (hair,) = mesh_fill_colors(sv, tris, colours, conf, n, 20.0, 0.5,
                                           {"scalp": (region, None)},
                                           variants=({"scalp": (region, (0.1, 0.1, 0.1))},))
    alone, skin2 = mesh_fill_colors(sv, tris, colours, conf, n, 20.0, 0.5,
                                    {"scalp": (region, (0.1, 0.1, 0.1))})
    plain, _ = mesh_fill_colors(sv, tris, colours, conf, n, 20.0, 0.5,
                                {"scalp": (region, tuple(skin))})
    assert np.allclose(skin, skin2)
    assert np.allclose(hair, alone, atol=1e-9) and np.allclose(base, plain, atol=1e-9)
    assert hair[region].mean() < base[region].mean() - 0.2   # the variant's prior pulls there
    assert np.allclose(hair[:6], base[:6], atol=0.02)        # the seen end holds its colour


def test_strand_ends_are_uneven_at_two_scales():
    """The edge's jitter mixes the fine strands with coarser tufts (locks ending together): a
    comb of equal teeth reads as cut. Along the nape the mixed ends vary less from one
    millimetre to the next than the strands alone, against their own spread, and still span
    [-1, 1]."""
    from gen3dface.backend.texture.hairline import strand_ends

    x = np.linspace(-0.04, 0.04, 401)                       # 0.2 mm apart, on the nape line
    pts = np.stack([x, nape_line_y(x), np.full_like(x, -0.06)], 1)
    fine = strand_pattern(pts, CROWN)
    ends = strand_ends(pts, CROWN, fine)
    assert np.abs(ends).max() == pytest.approx(1.0, abs=1e-6)

    def roughness(v):           # mean step over 1 mm against the spread
        return float(np.abs(v[5:] - v[:-5]).mean() / v.std())
    print("roughness: strands", roughness(fine), "mixed", roughness(ends))
    assert roughness(ends) < 0.8 * roughness(fine)
