"""backend/camera.py: the one pinhole camera (K <-> focal / field of view, pixel rays,
projection) and the one posed view the baker and the reconstruction share."""
from __future__ import annotations

import math

import numpy as np
import pytest

from gen3dface.backend.camera import PinholeCamera, View
from gen3dface.protocol import cameras as pcam


def _cam(fov=30.0, w=64, h=48):
    return PinholeCamera.from_fov(np.asarray(pcam.orbit_w2c_in_head(25.0, 10.0, 0.8)), w, h, fov)


def test_K_fov_focal_round_trip():
    cam = _cam(fov=30.0)
    assert cam.fov_deg == pytest.approx(30.0, abs=1e-12)
    assert cam.fx == pytest.approx(0.5 * 64 / math.tan(math.radians(15.0)), rel=1e-15)
    assert (cam.cx, cam.cy) == (32.0, 24.0)
    back = PinholeCamera.from_K(cam.w2c, cam.K, cam.width, cam.height)
    assert np.array_equal(back.w2c, cam.w2c) and back.K.tolist() == cam.K.tolist()
    assert (back.width, back.height) == (cam.width, cam.height)
    # the protocol's Intrinsics and the sidecar's dict carry the same numbers
    k = cam.intrinsics
    assert isinstance(k, pcam.Intrinsics)
    assert PinholeCamera.from_intrinsics(cam.w2c, k).K.tolist() == cam.K.tolist()
    d = cam.intrinsics_dict()
    assert list(d) == ["width", "height", "fx", "fy", "cx", "cy"]
    assert PinholeCamera.from_intrinsics(cam.w2c, d).K.tolist() == cam.K.tolist()
    assert pcam.Intrinsics.from_dict(d) == k
    with pytest.raises(ValueError):
        PinholeCamera.from_K(cam.w2c, [[1, 0.1, 0], [0, 1, 0], [0, 0, 1]], 4, 4)


def test_pixel_rays_project_back_to_their_pixel_centres():
    cam = _cam()
    o, d = cam.pixel_rays()
    assert o.shape == d.shape == (64 * 48, 3)
    np.testing.assert_allclose(o[0], cam.center, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-12)
    uv, z = cam.project(o + 0.5 * d)
    j, i = np.mgrid[0:48, 0:64]
    np.testing.assert_allclose(uv, np.c_[i.ravel() + 0.5, j.ravel() + 0.5], atol=1e-9)
    assert (z > 0).all()
    # the ray through the principal point is the optical axis
    k = 24 * 64 + 32           # pixel (32, 24): centre (32.5, 24.5), half a pixel off cx, cy
    assert d[k] @ cam.forward > 0.9999


def test_camera_centre_and_projection_match_the_protocol():
    cam = _cam()
    wire = pcam.camera_from_opencv_w2c_in_head(cam.w2c.tolist(), cam.intrinsics, pcam.Rig())
    p = (0.01, 0.02, 0.03)
    u, v, depth = pcam.project_head_point(wire, pcam.Rig(), p)
    uv, z = cam.project(np.array(p))
    np.testing.assert_allclose(uv, (u, v), atol=1e-9)
    assert z == pytest.approx(depth, abs=1e-12)


def test_view_from_rgb_and_rgba():
    cam = _cam(w=8, h=6)
    rgba = np.random.default_rng(0).integers(0, 256, (6, 8, 4), np.uint8)
    v = View(rgba, cam)
    assert v.image.shape == (6, 8, 3) and v.image.flags.c_contiguous
    np.testing.assert_array_equal(v.image, rgba[..., :3])
    np.testing.assert_array_equal(v.mask, rgba[..., 3].astype(np.float32) / 255.0)
    assert v.weight == 1.0 and v.w2c is cam.w2c
    rgb = View(rgba[..., :3].copy(), cam)
    assert rgb.mask is None
    np.testing.assert_array_equal(rgb.rgb, rgba[..., :3].astype(np.float32) / 255.0)
    # the old BakeView layout (image, w2c, intrinsics, mask, weight) builds the same view
    p = View.posed(rgba[..., :3], cam.w2c, cam.intrinsics_dict(), v.mask, 0.5)
    assert p.camera.K.tolist() == cam.K.tolist() and np.array_equal(p.camera.w2c, cam.w2c)
    assert p.weight == 0.5
    with pytest.raises(ValueError, match="camera is 8x6 but the image is 6x8"):
        View(np.zeros((8, 6, 3), np.uint8), cam)
    with pytest.raises(ValueError, match="mask"):
        View(rgba[..., :3], cam, np.ones((5, 8)))
    with pytest.raises(ValueError, match="PinholeCamera"):
        View(rgba[..., :3], cam.intrinsics)


def test_recon_views_need_masks():
    from gen3dface.backend.recon.views import as_views

    cam = _cam(w=8, h=6)
    img = np.zeros((6, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="mask"):
        as_views([View(img, cam)])
    v = as_views([(img, np.ones((6, 8)), cam.w2c, cam.intrinsics)])[0]
    assert isinstance(v, View) and v.mask.dtype == np.float32
