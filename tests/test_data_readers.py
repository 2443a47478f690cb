"""Readers on tiny fixtures written in each source's documented layout, from a known scene:
the converted cameras must be the known ones (head frame, metres) and the mesh must land where
the cameras say."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from gen3dface.backend.data.facescape import FaceScapeReaderConfig, convert_facescape
from gen3dface.backend.data.format import (PriorMesh, azimuth_elevation, camera_center,
                                           load_rgba, orbit_w2c, read_dataset)
from gen3dface.backend.data.panohead import convert_panohead
from gen3dface.backend.data.silhouette import project


def _rotation(rng):
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.linalg.det(q))


def _sphere():
    import trimesh
    m = trimesh.creation.icosphere(subdivisions=2, radius=0.09)
    return np.asarray(m.vertices), np.asarray(m.faces)


# FaceScape: front arc of cameras, symmetric in azimuth and elevation (so the head frame the
# reader derives from the rig is exactly the true one), world rotated, offset, in millimetres
FS_ANGLES = [(az, el) for el in (-15, 0, 15) for az in (-60, -30, 0, 30, 60)]


def _write_facescape(root, rng):
    rot0 = _rotation(rng)
    c0 = np.array([120.0, -35.0, 900.0])      # mm
    s = 0.001
    k = np.array([[300.0, 0, 100.0], [0, 300.0, 75.0], [0, 0, 1]])
    params = {}
    truth = {}
    folder = root / "images" / "7" / "1_neutral"
    folder.mkdir(parents=True)
    for i, (az, el) in enumerate(FS_ANGLES):
        w2c_h = orbit_w2c(az, el, 0.6)
        truth[i] = w2c_h
        r_h, t_h = w2c_h[:3, :3], w2c_h[:3, 3]
        rt = np.concatenate([r_h @ rot0.T, (-r_h @ rot0.T @ c0 + t_h / s)[:, None]], 1)
        params[f"{i}_K"] = (np.pad(k, ((0, 1), (0, 1))) if i == 0 else k).tolist()  # doc: 4x4
        params[f"{i}_Rt"] = rt.tolist()
        params[f"{i}_distortion"] = [0.0] * 5
        params[f"{i}_width"], params[f"{i}_height"] = 200, 150
        params[f"{i}_valid"] = i != 7   # the centre camera: the rest stays symmetric
        params[f"{i}_sn"], params[f"{i}_ori"] = f"cam{i}", f"{i}.jpg"
        params[f"{i}_matches"] = 100
        Image.fromarray(rng.integers(0, 255, (150, 200, 3), dtype=np.uint8)).save(
            folder / f"{i}.jpg")
    (folder / "params.json").write_text(json.dumps(params))
    v, f = _sphere()
    v_src = (v @ rot0.T) / s + c0          # p_head = s * rot0^T (p_src - c0)
    import trimesh
    (root / "meshes" / "7").mkdir(parents=True)
    trimesh.Trimesh(v_src, f, process=False).export(root / "meshes" / "7" / "1_neutral.ply")
    return truth, v, f, k


def test_facescape_reader_recovers_the_head_frame(tmp_path):
    rng = np.random.default_rng(1)
    truth, v, f, k = _write_facescape(tmp_path / "fs", rng)
    convert_facescape(tmp_path / "fs" / "images", tmp_path / "out", tmp_path / "fs" / "meshes",
                      FaceScapeReaderConfig(max_size=100))
    idx = read_dataset(tmp_path / "out")
    assert [r.identity for r in idx.identities] == ["fs007_1_neutral"]
    r = idx.identities[0]
    names = [x.name for x in r.views]
    assert "view_007" not in names and len(names) == len(FS_ANGLES) - 1     # invalid skipped
    ref = PriorMesh.load(r.folder / r.extras["reference_mesh"])
    np.testing.assert_allclose(ref.vertices, v, atol=1e-5)   # metres, head frame
    assert r.prior_path() is None                            # GT is not the prior by default
    for view in r.views:
        i = int(view.name[5:])
        np.testing.assert_allclose(view.w2c_array, truth[i], atol=1e-6)
        az, el = FS_ANGLES[i]
        assert (view.azimuth_deg, view.elevation_deg) == pytest.approx((az, el), abs=1e-6)
        assert view.input_candidate == (abs(az) <= 60)
        # downscaled 200x150 -> 100x75: intrinsics follow
        assert (view.intrinsics.width, view.intrinsics.fx) == (100, pytest.approx(150.0))
        # the mesh silhouette is the alpha: the head centre is inside, the corner outside
        rgba = load_rgba(r, view)
        kk = np.array([[view.intrinsics.fx, 0, view.intrinsics.cx],
                       [0, view.intrinsics.fy, view.intrinsics.cy], [0, 0, 1]])
        uv, _ = project(np.zeros((1, 3)), view.w2c_array, kk)
        assert rgba[int(uv[0, 1]), int(uv[0, 0]), 3] == 255 and rgba[0, 0, 3] == 0


def test_facescape_gt_prior_option(tmp_path):
    rng = np.random.default_rng(2)
    _write_facescape(tmp_path / "fs", rng)
    convert_facescape(tmp_path / "fs" / "images", tmp_path / "out", tmp_path / "fs" / "meshes",
                      FaceScapeReaderConfig(max_size=64, gt_mesh_as_prior=True, mask="none"))
    r = read_dataset(tmp_path / "out").identities[0]
    assert PriorMesh.load(r.prior_path()).head_model == "facescape_gt"
    assert (load_rgba(r, r.views[0])[..., 3] == 255).all()


def _eg3d_label(az, el, radius, focal_norm=4.2647):
    """EG3D/PanoHead label: cam2world (OpenCV axes, world +Y up, face toward +Z) + normalised K."""
    c2w = np.linalg.inv(orbit_w2c(az, el, radius))
    k = [focal_norm, 0, 0.5, 0, focal_norm, 0.5, 0, 0, 1]
    return c2w.reshape(-1).tolist() + k


def test_panohead_reader(tmp_path):
    rng = np.random.default_rng(3)
    root = tmp_path / "ph"
    labels, angles = [], {}
    for seed in ("seed0000", "seed0001"):
        (root / seed).mkdir(parents=True)
        for j in range(6):
            az, el = -180 + 60 * j + 10, float(rng.uniform(-40, 40))
            name = f"{seed}/img{j:02d}.png"
            angles[(seed, j)] = (az, el)
            Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(root / name)
            if seed == "seed0001":
                m = np.zeros((64, 64), np.uint8)
                m[16:48, 16:48] = 255
                Image.fromarray(m).save(root / seed / f"img{j:02d}_mask.png")
            labels.append([name, _eg3d_label(az, el, 2.7)])
    (root / "dataset.json").write_text(json.dumps({"labels": labels}))
    convert_panohead(root, tmp_path / "out")
    idx = read_dataset(tmp_path / "out")
    assert [r.identity for r in idx.identities] == ["ph_seed0000", "ph_seed0001"]
    for r in idx.identities:
        seed = r.identity[3:]
        assert len(r.views) == 6
        for j, view in enumerate(r.views):
            az, el = angles[(seed, j)]
            got = azimuth_elevation(camera_center(view.w2c_array))
            assert got == pytest.approx((az, el), abs=1e-6)
            assert np.linalg.norm(camera_center(view.w2c_array)) == pytest.approx(2.7 * 0.3)
            assert view.intrinsics.fx == pytest.approx(4.2647 * 64)
            assert view.intrinsics.cx == pytest.approx(32)
            assert view.input_candidate == (abs(az) <= 60)
            a = load_rgba(r, view)[..., 3]
            if seed == "seed0001":
                assert a[32, 32] == 255 and a[0, 0] == 0
            else:
                assert (a == 255).all()


def test_panohead_reader_rejects_bad_labels(tmp_path):
    root = tmp_path / "ph"
    (root / "s").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "s" / "a.png")
    (root / "dataset.json").write_text(json.dumps({"labels": [["../s/a.png", [0] * 25]]}))
    with pytest.raises(ValueError, match="seed folder"):
        convert_panohead(root, tmp_path / "o1")
    (root / "dataset.json").write_text(json.dumps({"labels": [["s/a.png", [1.0] * 25]]}))
    with pytest.raises(ValueError, match="orthonormal"):
        convert_panohead(root, tmp_path / "o2")


def test_fitted_prior_is_placed_in_the_dataset_frame(tmp_path):
    from gen3dface.backend.data.format import DatasetWriter, ViewData, ViewIntrinsics
    from gen3dface.backend.data.priors import FittedHead, estimate_priors, place_in_view
    rng = np.random.default_rng(4)
    v, f = _sphere()
    v = v + [0.0, 0.01, 0.02]
    intr = ViewIntrinsics(64, 64, 100.0, 100.0, 32.0, 32.0)
    w2c = orbit_w2c(25, 10, 0.7)
    with DatasetWriter(tmp_path / "ds") as w:
        w.add_identity("a", [ViewData("front", np.full((64, 64, 3), 200, np.uint8), w2c, intr),
                             ViewData("back", np.full((64, 64, 3), 90, np.uint8),
                                      orbit_w2c(180, 0, 0.7), intr, input_candidate=False)])
    # the fitter works in its own frame: the truth rotated and moved, seen by a camera that
    # shows it exactly as the dataset camera does
    rot = _rotation(rng)
    off = np.array([0.3, -0.2, 0.1])
    v_fit = (v - off) @ rot               # p_fit = R^T (p - off)  <=>  p = R p_fit + off
    w2c_fit = w2c.copy()
    w2c_fit[:3, :3] = w2c[:3, :3] @ rot
    w2c_fit[:3, 3] = w2c[:3, :3] @ off + w2c[:3, 3]
    calls = []

    def fitter(rgb):
        calls.append(int(rgb[0, 0, 0]))
        return FittedHead(v_fit, f, w2c_fit, 100.0, "test")

    assert estimate_priors(tmp_path / "ds", fitter) == 1
    assert calls == [200]                 # only the input candidate was fitted
    r = read_dataset(tmp_path / "ds").identities[0]
    np.testing.assert_allclose(PriorMesh.load(r.prior_path("front")).vertices, v, atol=1e-6)
    # a fitter with another focal length: the head moves in depth and keeps its pixels
    view = r.view("front")
    placed = place_in_view(FittedHead(v_fit, f, w2c_fit, 50.0), view)
    k = np.array([[100.0, 0, 32], [0, 100.0, 32], [0, 0, 1]])
    fit_cam = (v_fit @ w2c_fit[:3, :3].T + w2c_fit[:3, 3]).mean(axis=0)
    want = fit_cam[:2] / fit_cam[2] * 50.0 + 32
    cam = placed.mean(axis=0) @ w2c[:3, :3].T + w2c[:3, 3]
    np.testing.assert_allclose(cam[:2] / cam[2] * 100.0 + 32, want, atol=1e-6)
