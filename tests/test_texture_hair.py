"""The hair-like pattern of the unseen scalp (backend/texture/hair.py)."""
import numpy as np

from gen3dface.backend.texture.hair import HairPatternConfig, shade_hair, strand_pattern


def _sphere_points(az_deg, polar_deg, r=0.1):
    az, po = np.broadcast_arrays(np.radians(az_deg), np.radians(polar_deg))
    # polar angle measured from straight up (the crown), azimuth around +Y from +Z
    return np.stack([r * np.sin(po) * np.sin(az), r * np.cos(po), r * np.sin(po) * np.cos(az)], -1)


def test_streaks_run_down_from_the_crown():
    """Neighbours 1 mm apart differ far more across strands than along them."""
    crown = np.array([0.0, 0.1, 0.0])
    step_deg = np.degrees(0.001 / 0.1)                       # 1 mm on a 10 cm sphere
    polar = 60.0
    across = _sphere_points(np.arange(100, 200, step_deg / np.sin(np.radians(polar))), polar)
    along = _sphere_points(np.full(60, 150.0), polar + step_deg * np.arange(60))
    pa, pl = strand_pattern(across, crown), strand_pattern(along, crown)
    d_across = np.abs(np.diff(pa)).mean()
    d_along = np.abs(np.diff(pl)).mean()
    assert d_across > 4 * d_along, (d_across, d_along)
    assert -1.0 <= pa.min() < -0.3 and 0.3 < pa.max() <= 1.0    # real light and dark streaks


def test_pattern_is_deterministic_and_seeded():
    pts = _sphere_points(np.linspace(0, 300, 500), np.linspace(20, 120, 500))
    a = strand_pattern(pts, np.array([0.0, 0.1, 0.0]))
    b = strand_pattern(pts, np.array([0.0, 0.1, 0.0]))
    c = strand_pattern(pts, np.array([0.0, 0.1, 0.0]), HairPatternConfig(seed=8))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).mean() > 0.1


def test_shading_keeps_the_hue_and_spares_seen_hair():
    col = np.tile([[0.30, 0.20, 0.10]], (4, 1)).astype(np.float32)
    pat = np.array([1.0, -1.0, 0.5, 1.0], np.float32)
    out = shade_hair(col, pat, np.array([1.0, 1.0, 1.0, 0.0]), 0.2)
    np.testing.assert_allclose(out[0], col[0] * 1.2, rtol=1e-6)
    np.testing.assert_allclose(out[1], col[1] * 0.8, rtol=1e-6)
    np.testing.assert_allclose(out[3], col[3])                 # strength 0: the photo's hair
    ratio = out[:3] / col[:3]
    assert np.allclose(ratio, ratio[:, :1])                    # brightness only, same hue
