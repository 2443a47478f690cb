"""gen3dface-multiview format: writer/reader round trip, validation, loader sampling."""
from __future__ import annotations

import json

import numpy as np
import pytest

from gen3dface.backend.data.dataset import (MultiViewDataConfig, MultiViewDataset, crop_resize,
                                            sample_surface)
from gen3dface.backend.data.format import (DatasetFormatError, DatasetWriter, PriorMesh,
                                           PruningManifest, ViewData, ViewIntrinsics,
                                           azimuth_elevation, camera_center, orbit_w2c,
                                           read_dataset)
from gen3dface.backend.data.silhouette import project


def _tetra_prior(scale=0.1):
    v = np.array([[0, 0, 1], [1, 0, -0.5], [-1, 0, -0.5], [0, 1, 0]], np.float32) * scale
    f = np.array([[0, 1, 2], [0, 1, 3], [1, 2, 3], [2, 0, 3]], np.int32)
    return PriorMesh(v, f, "test")


def _write_ring(root, n_ids=2, azimuths=range(-180, 180, 30), size=32, prior=True):
    intr = ViewIntrinsics(size, size, 40.0, 40.0, size / 2, size / 2)
    with DatasetWriter(root, name="t") as w:
        for i in range(n_ids):
            views = []
            for az in azimuths:
                rgba = np.zeros((size, size, 4), np.uint8)
                rgba[..., 0] = (az + 180) // 2           # red encodes the azimuth
                rgba[..., 1] = 10 * i
                rgba[8:24, 8:24, 3] = 255
                views.append(ViewData(f"az{az + 180:03d}", rgba, orbit_w2c(az, 0, 1.0), intr))
            w.add_identity(f"id{i}", views, prior=_tetra_prior() if prior else None)
    return root


def test_orbit_convention_matches_the_brief():
    # azimuth 0 in front of the face (+Z), +90 toward +X (the subject's left), +Y up
    np.testing.assert_allclose(camera_center(orbit_w2c(0, 0, 2.0)), [0, 0, 2], atol=1e-12)
    np.testing.assert_allclose(camera_center(orbit_w2c(90, 0, 2.0)), [2, 0, 0], atol=1e-12)
    np.testing.assert_allclose(camera_center(orbit_w2c(0, 90 - 1e-9, 1.0)), [0, 1, 0], atol=1e-6)
    # the target lands on the principal point, and +Y (up) is up in the image (smaller v)
    k = np.array([[100.0, 0, 64], [0, 100.0, 64], [0, 0, 1]])
    uv, z = project(np.array([[0, 0, 0], [0, 0.1, 0]]), orbit_w2c(30, 10, 1.0), k)
    np.testing.assert_allclose(uv[0], [64, 64], atol=1e-9)
    assert uv[1, 1] < 64 and z[0] == pytest.approx(1.0)
    # the subject's left (+X) appears on the image's right in a frontal view
    uv, _ = project(np.array([[0.1, 0, 0]]), orbit_w2c(0, 0, 1.0), k)
    assert uv[0, 0] > 64
    for az, el in [(0, 0), (45, 10), (-120, -30), (179, 40)]:
        got = azimuth_elevation(camera_center(orbit_w2c(az, el, 1.5)))
        np.testing.assert_allclose(got, (az, el), atol=1e-9)


def test_round_trip(tmp_path):
    _write_ring(tmp_path / "ds")
    idx = read_dataset(tmp_path / "ds")
    assert [r.identity for r in idx.identities] == ["id0", "id1"]
    r = idx.identities[1]
    assert len(r.views) == 12 and r.views[3].name == "az090"
    assert r.views[3].azimuth_deg == pytest.approx(-90)
    np.testing.assert_allclose(r.views[3].w2c_array, orbit_w2c(-90, 0, 1.0), atol=1e-12)
    prior = PriorMesh.load(r.prior_path())
    np.testing.assert_allclose(prior.vertices, _tetra_prior().vertices)


@pytest.mark.parametrize("bad", ["../x", "a/b", ".hidden", "", "x" * 200])
def test_unsafe_names_refused(tmp_path, bad):
    intr = ViewIntrinsics(4, 4, 4.0, 4.0, 2.0, 2.0)
    with pytest.raises(DatasetFormatError):
        with DatasetWriter(tmp_path / "d") as w:
            w.add_identity(bad, [ViewData("v", np.zeros((4, 4, 4), np.uint8), np.eye(4), intr)])


def test_reader_refuses_paths_outside_and_bad_cameras(tmp_path):
    _write_ring(tmp_path / "ds", n_ids=1)
    p = tmp_path / "ds" / "id0" / "identity.json"
    doc = json.loads(p.read_text())
    doc["views"][0]["image"] = "../../etc/passwd"
    p.write_text(json.dumps(doc))
    with pytest.raises(DatasetFormatError, match="relative"):
        read_dataset(tmp_path / "ds")
    doc["views"][0]["image"] = "views/az000.png"
    doc["views"][0]["w2c"][0][0] = float("nan")
    p.write_text(json.dumps(doc))
    with pytest.raises(DatasetFormatError, match="finite"):
        read_dataset(tmp_path / "ds")


def test_writer_checks_image_matches_intrinsics(tmp_path):
    intr = ViewIntrinsics(8, 8, 4.0, 4.0, 4.0, 4.0)
    with pytest.raises(DatasetFormatError, match="intrinsics"):
        with DatasetWriter(tmp_path / "d") as w:
            w.add_identity("a", [ViewData("v", np.zeros((4, 8, 4), np.uint8), np.eye(4), intr)])


def test_crop_resize_moves_intrinsics_with_the_pixels():
    rng = np.random.default_rng(0)
    h, w = 60, 90
    intr = ViewIntrinsics(w, h, 70.0, 72.0, 47.0, 29.0)
    w2c = orbit_w2c(20, 5, 1.0)
    pts = rng.uniform(-0.1, 0.1, (20, 3))
    k0 = np.array([[70.0, 0, 47.0], [0, 72.0, 29.0], [0, 0, 1]])
    uv0, _ = project(pts, w2c, k0)
    _, k1 = crop_resize(np.zeros((h, w, 4), np.uint8), intr, 30)
    uv1, _ = project(pts, w2c, k1)
    # crop removes 15 px on the left, then 60 -> 30 halves everything (corner origin)
    np.testing.assert_allclose(uv1, (uv0 - [15, 0]) * 0.5, atol=1e-9)


def test_surface_samples_lie_on_the_mesh():
    m = _tetra_prior()
    p = sample_surface(m.vertices, m.faces, 500, np.random.default_rng(0))
    # every sample is a convex combination of one face's corners: inside the tetra's bbox
    # and on one of its planes
    tri = m.vertices[m.faces].astype(np.float64)
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    dist = np.abs(((p[:, None, :] - tri[None, :, 0]) * n[None]).sum(-1)).min(axis=1)
    assert dist.max() < 1e-6


def test_loader_samples_inputs_and_targets(tmp_path):
    _write_ring(tmp_path / "ds")
    cfg = MultiViewDataConfig(roots=[str(tmp_path / "ds")], image_size=16, n_target_views=4,
                              input_max_azimuth_deg=45, prior_points=64, seed=3)
    ds = MultiViewDataset(cfg)
    s = ds[0]
    assert s["input_image"].shape == (3, 16, 16) and s["target_images"].shape == (4, 3, 16, 16)
    assert s["target_w2c"].shape == (4, 4, 4) and s["prior_points"].shape == (64, 3)
    assert float(s["input_image"].min()) >= -1 and float(s["input_image"].max()) <= 1
    seen_inputs = set()
    for epoch in range(8):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            s = ds[i]
            az = int(s["input_view"][2:]) - 180
            assert abs(az) <= 45
            assert s["input_view"] not in s["target_views"]
            seen_inputs.add(s["input_view"])
            # the image content is the view the camera says (red encodes the azimuth;
            # corners are background = white after compositing)
            red = (float(s["input_image"][0, 8, 8]) + 1) / 2 * 255
            assert red == pytest.approx((az + 180) // 2, abs=1.5)
            assert float(s["input_image"][0, 0, 0]) == pytest.approx(1.0)
    assert seen_inputs == {"az150", "az180", "az210"}     # az -30, 0, 30: all get drawn
    # same (seed, epoch, index) -> same sample
    ds.set_epoch(2)
    a, b = ds[1], ds[1]
    assert a["target_views"] == b["target_views"]
    np.testing.assert_array_equal(a["prior_points"].numpy(), b["prior_points"].numpy())


def test_spread_sampling_covers_the_head(tmp_path):
    _write_ring(tmp_path / "ds", n_ids=1)
    cfg = MultiViewDataConfig(roots=[str(tmp_path / "ds")], image_size=8, n_target_views=4,
                              target_sampling="spread", prior_points=8)
    ds = MultiViewDataset(cfg)
    for e in range(5):
        ds.set_epoch(e)
        az = sorted(int(v[2:]) - 180 for v in ds[0]["target_views"])
        gaps = np.diff(az + [az[0] + 360])
        assert len(set(az)) == 4 and gaps.max() <= 150, az


def test_loader_honours_pruning(tmp_path):
    root = _write_ring(tmp_path / "ds", n_ids=3)
    PruningManifest(dropped_views={"id0": [f"az{a:03d}" for a in range(0, 360, 30)
                                           if a not in (150, 180, 210)]},
                    dropped_identities=["id2"]).save(root)
    cfg = MultiViewDataConfig(roots=[str(root)], image_size=8, n_target_views=2, prior_points=8)
    ds = MultiViewDataset(cfg)
    assert len(ds) == 2
    for e in range(4):
        ds.set_epoch(e)
        s = ds[0]
        assert s["identity"] == "id0"
        assert set(s["target_views"]) | {s["input_view"]} <= {"az150", "az180", "az210"}
    assert len(MultiViewDataset(MultiViewDataConfig(roots=[str(root)], image_size=8,
                                                    prior_points=8, use_pruning=False))) == 3


def test_loader_needs_a_prior(tmp_path):
    _write_ring(tmp_path / "ds", n_ids=1, prior=False)
    ds = MultiViewDataset(MultiViewDataConfig(roots=[str(tmp_path / "ds")], image_size=8))
    with pytest.raises(ValueError, match="prior"):
        ds[0]
