"""backend/eval/likeness.py: the likeness benchmark's measures on synthetic encodings and
images (no dlib, no Blender), expected values worked out by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from gen3dface.backend.eval import likeness as L


def _unit(k, dim=128):
    v = np.zeros(dim)
    v[k] = 1.0
    return v


# -- identity scores --------------------------------------------------------------------------
@pytest.fixture
def three_photos():
    # photos a, b, c on three axes: any two are sqrt(2) apart
    return {"a": _unit(0), "b": _unit(1), "c": _unit(2)}


def test_genuine_impostor_verified_rank1_by_hand(three_photos):
    P = three_photos
    renders = {
        "a": P["a"] + 0.3 * _unit(3),     # genuine 0.3: verified
        "b": P["b"] + 0.8 * _unit(4),     # genuine 0.8: found, not verified
        "c": None,                        # the judge found no face
    }
    s = L.view_scores(P, renders)
    assert s["photos"] == 3 and s["found"] == 2
    assert s["genuine"] == pytest.approx({"a": 0.3, "b": 0.8})
    assert s["genuine_mean"] == pytest.approx(0.55)
    assert s["genuine_below"] == pytest.approx(0.5)
    # verified counts every judged photo, the missing render included: 1 of 3
    assert s["verified"] == pytest.approx(1 / 3)
    # impostors: render a against photos b, c: sqrt(1 + 1 + 0.09); render b against a, c
    ia, ib = math.sqrt(2.09), math.sqrt(2.64)
    assert s["impostor_mean"] == pytest.approx((2 * ia + 2 * ib) / 4)
    assert s["rank1"] == pytest.approx(1.0)


def test_rank1_counts_a_swapped_head(three_photos):
    P = three_photos
    # head a's render looks like b and head b's like a; c is right
    renders = {"a": P["b"] + 0.1 * _unit(5), "b": P["a"] + 0.1 * _unit(6), "c": P["c"]}
    s = L.view_scores(P, renders)
    assert s["found"] == 3
    assert s["rank1"] == pytest.approx(1 / 3)
    assert s["verified"] == pytest.approx(1 / 3)        # only c is below 0.6 from its photo


def test_renders_of_unjudged_photos_are_ignored_and_nothing_found(three_photos):
    s = L.view_scores(three_photos, {"zz": _unit(9)})
    assert s["found"] == 0 and s["genuine_mean"] is None and s["rank1"] is None
    assert s["verified"] == 0.0 and s["impostor_mean"] is None


def test_threshold_is_strict(three_photos):
    P = three_photos
    s = L.view_scores(P, {"a": P["a"] + 0.6 * _unit(3)})
    assert s["genuine"]["a"] == pytest.approx(0.6)
    assert s["verified"] == 0.0
    assert L.view_scores(P, {"a": P["a"] + 0.6 * _unit(3)}, threshold=0.61)["verified"] == \
        pytest.approx(1 / 3)


def test_genuine_ratio_all_and_paired():
    ours = {"genuine_mean": 0.5, "genuine": {"a": 0.4, "b": 0.6}}
    peer = {"genuine_mean": 0.25, "genuine": {"a": 0.2}}
    r = L.genuine_ratio(ours, peer)
    assert r["all"] == pytest.approx(2.0)
    assert r["paired"] == pytest.approx(2.0) and r["n_paired"] == 1
    ours["genuine"]["a"] = 0.1
    assert L.genuine_ratio(ours, peer)["paired"] == pytest.approx(0.5)
    assert L.genuine_ratio({"genuine_mean": None, "genuine": {}}, peer) == \
        {"all": None, "paired": None, "n_paired": 0}


def test_between_views_mean():
    by_view = {"v0": {"a": _unit(0), "b": _unit(1)}, "v1": {"a": 2 * _unit(0), "b": None},
               "v2": {"a": _unit(0) + _unit(1)}}
    # head a: pairs (v0,v1) 1, (v0,v2) 1, (v1,v2) sqrt(2); head b: one view only
    assert L.between_views_mean(by_view) == pytest.approx((2 + math.sqrt(2)) / 3)
    assert L.between_views_mean({"v0": {"a": None}}) is None


def test_box_iou():
    assert L.box_iou((0, 0, 2, 2), (0, 0, 2, 2)) == pytest.approx(1.0)
    assert L.box_iou((0, 0, 2, 2), (1, 0, 3, 2)) == pytest.approx(2 / 6)
    assert L.box_iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0.0
    assert L.box_iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0


# -- images ---------------------------------------------------------------------------------------
def test_composite_over_grey_and_image():
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)       # opaque red
    rgba[0, 1] = (255, 255, 255, 0)     # transparent
    rgba[1, 0] = (255, 255, 255, 51)    # 20 % white
    out = L.composite(rgba)
    assert out[0, 0] == pytest.approx([1, 0, 0])
    assert out[0, 1] == pytest.approx([L.GREY] * 3)
    assert out[1, 0] == pytest.approx([0.2 + 0.8 * L.GREY] * 3)
    bg = np.full((2, 2, 3), 0.25)
    assert L.composite(rgba, bg)[0, 1] == pytest.approx([0.25] * 3)
    with pytest.raises(ValueError):
        L.composite(np.zeros((2, 2, 3), np.uint8))


def test_polygon_mask_uses_pixel_centres():
    # the square with corners (2, 2) and (6, 6) covers pixel centres 2.5 .. 5.5: columns and
    # rows 2..5
    m = L.polygon_mask([(2, 2), (6, 2), (6, 6), (2, 6)], width=10, height=8)
    assert m.shape == (8, 10) and m.sum() == 16
    assert m[2:6, 2:6].all()
    # a triangle on the left half of the image: nothing to its right
    t = L.polygon_mask([(0, 0), (4, 0), (0, 8)], width=10, height=8)
    assert t[:, 4:].sum() == 0 and t[0, 0] and not t[7, 3]
    with pytest.raises(ValueError):
        L.polygon_mask([(0, 0), (1, 1)], 4, 4)


def _face_pair(seed=0, size=48):
    rng = np.random.default_rng(seed)
    ref = rng.random((size, size, 3))
    mask = np.zeros((size, size), bool)
    mask[12:36, 12:36] = True
    return ref, mask


def test_psnr_in_mask_ignores_pixels_outside():
    ref, mask = _face_pair()
    test = ref.copy()
    test[mask] = ref[mask] + np.where(ref[mask] > 0.5, -0.1, 0.1)      # |error| = 0.1 everywhere
    assert L.psnr_in_mask(ref, test, mask) == pytest.approx(20.0)
    noisy_outside = test.copy()
    noisy_outside[~mask] = 0.0
    assert L.psnr_in_mask(ref, noisy_outside, mask) == pytest.approx(20.0)
    assert L.psnr_in_mask(ref, ref.copy(), mask) == math.inf
    with pytest.raises(ValueError):
        L.psnr_in_mask(ref, ref, np.zeros_like(mask))


def test_ssim_in_mask_matches_skimage_and_sees_only_the_mask():
    from skimage.metrics import structural_similarity

    ref, mask = _face_pair(1)
    rng = np.random.default_rng(2)
    test = np.clip(ref + 0.2 * rng.standard_normal(ref.shape), 0, 1)
    assert L.ssim_in_mask(ref, ref.copy(), mask) == pytest.approx(1.0)
    # over the whole image less skimage's 3-pixel border, it is skimage's mean SSIM
    inner = np.zeros_like(mask)
    inner[3:-3, 3:-3] = True
    full = structural_similarity(ref, test, channel_axis=-1, data_range=1.0, win_size=7)
    assert L.ssim_in_mask(ref, test, inner) == pytest.approx(full, abs=1e-9)
    # damage far outside the mask (beyond the 7-pixel window) changes nothing
    s = L.ssim_in_mask(ref, test, mask)
    far = test.copy()
    far[:8] = 0.0
    assert L.ssim_in_mask(ref, far, mask) == pytest.approx(s, abs=1e-12)
    # damage inside lowers it
    worse = test.copy()
    worse[mask] = 0.5
    assert L.ssim_in_mask(ref, worse, mask) < s - 0.05


def test_cold_warm_and_mean_or_none():
    assert L.cold_warm([5.0, 2.0, 3.0, 1.0]) == {"cold": 5.0, "warm_median": 2.0, "n": 4}
    assert L.cold_warm([4.0]) == {"cold": 4.0, "warm_median": None, "n": 1}
    assert L.cold_warm([])["cold"] is None
    assert L.mean_or_none([1.0, None, math.inf, 3.0]) == pytest.approx(2.0)
    assert L.mean_or_none([None]) is None


# -- the benchmark's Blender renderer (scripts/render_heads_bpy.py) -------------------------------
def _box_scene_glb(path):
    """A grey 0.2 m cube at the origin and a small red cube on its +X side (the subject's left
    in the head frame), as a GLB. The grey cube has more vertices, so the yaw ring centres on
    it."""
    import trimesh

    grey = trimesh.creation.box((0.2, 0.2, 0.2))
    grey = grey.subdivide()                      # more vertices than the marker
    red = trimesh.creation.box((0.06, 0.06, 0.06))
    red.apply_translation((0.16, 0.0, 0.0))
    for m, colour in ((grey, [0.5, 0.5, 0.5, 1.0]), (red, [1.0, 0.0, 0.0, 1.0])):
        m.visual = trimesh.visual.TextureVisuals(material=trimesh.visual.material.PBRMaterial(
            baseColorFactor=colour, metallicFactor=0.0, roughnessFactor=1.0))
    scene = trimesh.Scene()
    scene.add_geometry(grey, node_name="Head", geom_name="Head")
    scene.add_geometry(red, node_name="Marker", geom_name="Marker")
    scene.export(str(path), file_type="glb")


@pytest.mark.blender
def test_render_script_cameras(tmp_path, blender_python):
    """The photo view follows the sidecar's camera (resolution scaled to --size, principal
    point shifted), the ring looks at the head from the front at yaw 0 and from the subject's
    left at yaw 90."""
    import json
    import subprocess
    from pathlib import Path

    from PIL import Image

    repo = Path(__file__).resolve().parents[1]
    glb = tmp_path / "box.glb"
    _box_scene_glb(glb)
    # a camera 2 m in front of the cube (Blender -Y), looking at it (+Y), +Z up; 200x100 px,
    # fx 400, principal point (120, 60): the cube's centre lands there
    side = {"camera": {"intrinsics": {"width": 200, "height": 100, "fx": 400.0, "fy": 400.0,
                                      "cx": 120.0, "cy": 60.0},
                       "blender_cam_to_world": [[1, 0, 0, 0], [0, 0, -1, -2.0], [0, 1, 0, 0],
                                                [0, 0, 0, 1]]}}
    (tmp_path / "box.sidecar.json").write_text(json.dumps(side))
    spec = {"size": 100, "samples": 1, "yaws": [0, 90, 270], "threads": 1,
            "jobs": [{"glb": str(glb), "sidecar": str(tmp_path / "box.sidecar.json"),
                      "out_prefix": str(tmp_path / "r")}]}
    (tmp_path / "jobs.json").write_text(json.dumps(spec))
    proc = subprocess.run([blender_python, str(repo / "scripts" / "render_heads_bpy.py"),
                           str(tmp_path / "jobs.json")], capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rec = [json.loads(x.split(" ", 1)[1]) for x in proc.stdout.splitlines()
           if x.startswith("RENDER_JOB ")]
    assert len(rec) == 1 and rec[0]["ok"]

    photo = np.asarray(Image.open(tmp_path / "r_photo.png").convert("RGBA")).astype(float)
    assert photo.shape == (50, 100, 4)                  # long side 200 -> 100
    alpha = photo[..., 3] > 127
    rows, cols = np.nonzero(alpha)
    # the grey cube's front face at 1.9 m, 0.1 m half side: 200 * 0.1 / 1.9 = 10.5 px half
    # width (the marker sticks out on the subject's left = the image's right); centre (60, 30)
    assert rows.min() == pytest.approx(30 - 10.5, abs=1.0)
    assert rows.max() + 1 == pytest.approx(30 + 10.5, abs=1.0)
    assert cols.min() == pytest.approx(60 - 10.5, abs=1.0)
    right = photo[30, cols.max() - 1]
    assert right[0] > right[1] + 40                     # the red marker on the image's right

    ring = {y: np.asarray(Image.open(tmp_path / f"r_yaw{y:03d}.png").convert("RGBA")).astype(float)
            for y in (0, 90, 270)}
    assert ring[0].shape == (100, 100, 4)
    r0, c0 = np.nonzero(ring[0][..., 3] > 127)
    # from the front: the cube centred (ring centre = the grey cube's bbox centre)
    assert (r0.min() + r0.max() + 1) / 2 == pytest.approx(50, abs=1.0)
    centre90, centre270 = ring[90][50, 50], ring[270][50, 50]
    assert centre90[0] > centre90[1] + 40               # yaw 90: from the subject's left
    assert abs(centre270[0] - centre270[1]) < 20        # yaw 270: the grey side


# -- the benchmark's render cache (scripts/bench_likeness.py) --------------------------------------
@pytest.fixture(scope="module")
def bench():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "bench_likeness.py"
    spec = importlib.util.spec_from_file_location("bench_likeness", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_views_to_render_reuses_only_what_the_stamp_vouches_for(bench):
    head = {"glb": "g1", "camera": "c1"}
    views = ["photo", "yaw000", "yaw030"]
    stamp = {"head": head, "views": ["photo", "yaw000", "yaw090"]}
    on_disk = {"photo", "yaw000", "yaw090"}
    have, need = bench.views_to_render(stamp, head, views, on_disk.__contains__)
    assert have == {"photo", "yaw000"} and need == ["yaw030"]
    # a file the stamp lists but that is gone is rendered again
    have, need = bench.views_to_render(stamp, head, views, {"yaw000"}.__contains__)
    assert need == ["photo", "yaw030"]
    # another GLB or another camera: everything again
    for other in ({"glb": "g2", "camera": "c1"}, {"glb": "g1", "camera": "c2"}):
        assert bench.views_to_render(stamp, other, views, on_disk.__contains__) == (set(), views)
    assert bench.views_to_render({}, head, views, on_disk.__contains__) == (set(), views)


def test_camera_digest_ignores_everything_but_the_camera(bench, tmp_path):
    import json

    cam = {"intrinsics": {"width": 4, "height": 3, "fx": 5.0, "cx": 2.0, "cy": 1.5},
           "blender_cam_to_world": np.eye(4).tolist()}
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"camera": cam, "timings_s": {"total": 1.0}}))
    b.write_text(json.dumps({"timings_s": {"total": 2.0}, "camera": cam}))
    assert bench.camera_digest(a) == bench.camera_digest(b)
    cam2 = dict(cam, intrinsics=dict(cam["intrinsics"], fx=6.0))
    b.write_text(json.dumps({"camera": cam2}))
    assert bench.camera_digest(a) != bench.camera_digest(b)


def test_face_region_scores_on_a_real_photo(bench, tmp_path):
    """The face-region PSNR/SSIM of the script: a photo-camera 'render' that is the photo itself
    scores inf / 1; one with a hole in the face scores lower, with the same mask for both."""
    from PIL import Image
    from skimage import data

    photo = tmp_path / "astronaut.png"
    Image.fromarray(data.astronaut()).save(photo)
    same = Image.open(photo).convert("RGB").resize((320, 320), Image.LANCZOS).convert("RGBA")
    (tmp_path / "ours").mkdir()
    (tmp_path / "peer").mkdir()
    same.save(tmp_path / "ours" / "astronaut_photo.png")
    holed = np.asarray(same).copy()
    holed[90:130, 110:170, 3] = 0                   # a hole over the eyes
    Image.fromarray(holed).save(tmp_path / "peer" / "astronaut_photo.png")
    out = bench.face_region_scores({"astronaut": photo}, {"astronaut": str(tmp_path / "ours" / "astronaut")},
                                   {"astronaut": str(tmp_path / "peer" / "astronaut")},
                                   lambda who, s: True)
    rec = out["per_photo"]["astronaut"]
    assert rec["ours"]["psnr"] == math.inf and rec["ours"]["ssim"] == pytest.approx(1.0)
    assert rec["ours"]["covered"] == 1.0
    assert rec["peer"]["mask_px"] == rec["ours"]["mask_px"] > 2000
    assert rec["peer"]["psnr"] < 25 and rec["peer"]["ssim"] < 0.97
    assert 0.7 < rec["peer"]["covered"] < 1.0
    # the face box is the astronaut's face, in the upper middle of the portrait
    x0, y0, x1, y1 = rec["face_box"]
    assert 0.2 < x0 < x1 < 0.75 and 0.05 < y0 < y1 < 0.6
