"""Rig maths on the Blender side (pure Python; conventions from gen3dface.protocol.cameras)."""
import math

import numpy as np
import pytest

from gen3dface.blender_addon.core import rig
from gen3dface.blender_addon.core.settings import RingSettings, SettingsError
from gen3dface.protocol import cameras


def spec_from_camera(c, scale=1.0, unit_scale=1.0):
    m = np.array(c.cam_to_world, dtype=float)
    m[:3, 3] /= unit_scale
    m[:3, :3] *= scale
    k = cameras.intrinsics_to_blender(c.intrinsics)
    return rig.CameraSpec(c.name, m.tolist(), k["lens_mm"], k["sensor_width_mm"], 24.0,
                          k["sensor_fit"], k["res_x"], k["res_y"], k["shift_x"], k["shift_y"])


def test_default_ring_surrounds_the_cursor_and_head_sits_there():
    ring = rig.default_ring((1.0, 2.0, 3.0), RingSettings(n_cameras=8, radius_m=2.0))
    assert len(ring.cameras) == 8
    h = np.array(ring.head_to_world)
    assert np.allclose(h[:3, 3], (1, 2, 3))
    for c in ring.cameras:
        p = np.array(c.cam_to_world)[:3, 3]
        assert np.linalg.norm(p - (1, 2, 3)) == pytest.approx(2.0)
        # the head origin projects to the image centre of every ring camera
        u, v, depth = cameras.project_head_point(c, ring, (0, 0, 0))
        assert (u, v) == pytest.approx((c.intrinsics.width / 2, c.intrinsics.height / 2))
        assert depth == pytest.approx(2.0)


def test_unit_scale_converts_blender_units_to_metres():
    # scene unit scale 0.01: one Blender unit is a centimetre
    ring = rig.default_ring((100.0, 0.0, 0.0), RingSettings(n_cameras=4, radius_m=1.0), 0.01)
    assert np.allclose(np.array(ring.head_to_world)[:3, 3], (1.0, 0.0, 0.0))
    n = rig.camera_object_numbers(ring.cameras[0], 0.01)
    p_bu = np.array(n["matrix_world"])[:3, 3]
    assert np.linalg.norm(p_bu - (100.0, 0, 0)) == pytest.approx(100.0)


def test_user_cameras_round_trip_through_specs_with_object_scale():
    ring = rig.default_ring((0.5, -0.2, 1.4), RingSettings(n_cameras=6, radius_m=1.5))
    specs = [spec_from_camera(c, scale=2.5) for c in ring.cameras]   # unapplied object scale
    centre = rig.rig_centre(specs)
    assert np.allclose(centre, (0.5, -0.2, 1.4), atol=1e-9)
    back = rig.rig_from_camera_specs(specs, centre)
    for a, b in zip(ring.cameras, back.cameras):
        assert np.allclose(a.cam_to_world, b.cam_to_world, atol=1e-9)
        assert b.intrinsics.fx == pytest.approx(a.intrinsics.fx)
        assert b.intrinsics.cx == pytest.approx(a.intrinsics.cx)
    assert np.allclose(back.head_to_world, ring.head_to_world)


def test_user_cameras_in_centimetre_scene_reach_the_wire_in_metres():
    ring = rig.default_ring((0.0, 0.0, 1.6), RingSettings(n_cameras=3, radius_m=0.8))
    specs = [spec_from_camera(c, unit_scale=0.01) for c in ring.cameras]
    centre_bu = rig.rig_centre(specs)
    assert np.allclose(centre_bu, (0, 0, 160.0), atol=1e-6)
    back = rig.rig_from_camera_specs(specs, centre_bu, 0.01)
    for a, b in zip(ring.cameras, back.cameras):
        assert np.allclose(a.cam_to_world, b.cam_to_world, atol=1e-9)


def test_rig_centre_of_parallel_cameras_falls_back_to_centroid():
    m1 = np.eye(4); m1[:3, 3] = (0, -3, 0)
    m2 = np.eye(4); m2[:3, 3] = (2, -3, 0)
    specs = [rig.CameraSpec(f"c{i}", m.tolist(), 50, 36, 24, "AUTO", 64, 64)
             for i, m in enumerate((m1, m2))]
    assert np.allclose(rig.rig_centre(specs), (1, -3, 0))


def test_bad_cameras_are_refused_with_reasons():
    with pytest.raises(SettingsError, match="no cameras"):
        rig.rig_from_camera_specs([], (0, 0, 0))
    ortho = rig.CameraSpec("o", np.eye(4).tolist(), 50, 36, 24, "AUTO", 64, 64, kind="ORTHO")
    with pytest.raises(SettingsError, match="perspective"):
        rig.rig_from_camera_specs([ortho], (0, 0, 0))


def test_head_placement_matrix_maps_imported_points_to_head_to_world():
    # the importer turns a head point p into H p; the placement must take that to
    # head_to_world p (divided by the unit scale)
    a = math.radians(30)
    rot_z = np.array([[math.cos(a), -math.sin(a), 0, 0], [math.sin(a), math.cos(a), 0, 0],
                      [0, 0, 1, 0], [0, 0, 0, 1]])
    h = np.array(cameras.HEAD_TO_BLENDER)
    h2w = rot_z @ h
    h2w[:3, 3] = (0.3, -1.0, 1.7)
    for us in (1.0, 0.01):
        place = np.array(rig.head_placement_matrix(h2w.tolist(), us))
        for p in ([0, 0, 0], [0.1, 0.2, 0.05], [-0.07, 0.0, 0.12]):
            imported = h[:3, :3] @ p
            got = place[:3, :3] @ imported + place[:3, 3]
            assert np.allclose(got, (h2w[:3, :3] @ p + h2w[:3, 3]) / us)


def test_ring_settings_validate():
    with pytest.raises(SettingsError):
        RingSettings(n_cameras=0)
    with pytest.raises(SettingsError):
        RingSettings(radius_m=-1)
