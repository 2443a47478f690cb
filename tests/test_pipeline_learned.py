"""The learned generator inside the pipeline: registration, capabilities, NOT_AVAILABLE without
weights, and the astronaut photo end to end through a tiny RANDOM-weight checkpoint that the
test saves itself. Random weights generate noise: these tests check the plumbing (model loaded
once, views for the rig's cameras, progress, previews, cancellation, GLB + sidecar), never
quality."""
from __future__ import annotations

import io

import numpy as np
import pytest

from gen3dface.backend.export.gltf import read_glb
from gen3dface.backend.headmodel.arkit import EXPORTED_NAMES
from gen3dface.backend.mvdiff.generator import GeneratedView
from gen3dface.backend.mvdiff.learned import (LearnedGenerator, LearnedGeneratorConfig,
                                              contact_sheet, default_ring, make_generator)
from gen3dface.backend.contracts import (CallbackSink, CancelToken, JobCancelled,
                                               PipelineError)
from gen3dface.backend.pipeline.pipeline import HeadPipeline, JobOptions, PipelineConfig
from gen3dface.protocol.cameras import Intrinsics, opencv_w2c_in_head, ring_rig

STAGES = ["decode", "face", "fit", "generate", "reconstruct", "texture", "export"]
PNG = b"\x89PNG\r\n\x1a\n"


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def checkpoint(tiny_mvdiff_checkpoint):
    return tiny_mvdiff_checkpoint


@pytest.fixture(scope="module")
def astronaut() -> bytes:
    skimage_data = pytest.importorskip("skimage.data")
    from PIL import Image

    b = io.BytesIO()
    Image.fromarray(skimage_data.astronaut()).save(b, "PNG")
    return b.getvalue()


@pytest.fixture(scope="module")
def learned_pipe(checkpoint, data_dir, ict_npz):
    return HeadPipeline(PipelineConfig(assets_dir=data_dir, checkpoint=str(checkpoint),
                                       generator_settings={"steps": 2}))


# ---------------------------------------------------------------- without weights
def test_without_checkpoint_only_offline_is_offered(tmp_path):
    pipe = HeadPipeline(PipelineConfig(assets_dir=tmp_path))
    caps = pipe.capabilities()
    assert caps["generators"] == ["offline"]
    why = caps["generators_unavailable"]["gen3dface"]
    assert "no checkpoint" in why and "--checkpoint" in why and "docs/TRAINING.md" in why
    assert pipe.resolve_generator(JobOptions()) == ("offline", [])
    with pytest.raises(PipelineError) as e:
        pipe.run(b"not even an image", None, JobOptions(generator="gen3dface"))
    assert e.value.code == "NOT_AVAILABLE"
    assert "--checkpoint" in e.value.message and "docs/TRAINING.md" in e.value.message


def test_a_bad_checkpoint_is_not_offered_and_auto_falls_back(tmp_path):
    bad = tmp_path / "not_a_checkpoint"
    bad.mkdir()
    pipe = HeadPipeline(PipelineConfig(assets_dir=tmp_path, checkpoint=str(bad)))
    caps = pipe.capabilities()
    assert caps["generators"] == ["offline"]
    assert "not a Gen3D-Face checkpoint" in caps["generators_unavailable"]["gen3dface"]
    name, fallbacks = pipe.resolve_generator(JobOptions(generator="auto"))
    assert name == "offline" and "not a Gen3D-Face checkpoint" in fallbacks[0]
    with pytest.raises(PipelineError) as e:
        pipe.resolve_generator(JobOptions(generator="gen3dface"))
    assert e.value.code == "NOT_AVAILABLE" and "docs/TRAINING.md" in e.value.message
    with pytest.raises(PipelineError) as e:
        make_generator(PipelineConfig(checkpoint=None))
    assert e.value.code == "NOT_AVAILABLE"


# ---------------------------------------------------------------- the adapter's parts
def test_quality_selects_the_sampler_and_settings_are_checked():
    c = LearnedGeneratorConfig()
    assert c.sampling("draft") == ("dpmsolver++", 20)
    assert c.sampling("standard") == ("ddim", 50) and c.sampling("high") == ("ddim", 50)
    assert LearnedGeneratorConfig(steps=2).sampling("draft") == ("dpmsolver++", 2)
    c = LearnedGeneratorConfig.from_pipeline(PipelineConfig(
        checkpoint="x", device="cpu", generator_settings={"steps": 3, "guidance": 2.0}))
    assert (c.checkpoint, c.steps, c.guidance) == ("x", 3, 2.0)
    with pytest.raises(PipelineError) as e:
        LearnedGeneratorConfig.from_pipeline(PipelineConfig(generator_settings={"stepz": 3}))
    assert e.value.code == "BAD_REQUEST"


def test_default_ring_surrounds_the_head():
    rig = default_ring(64)
    assert len(rig.cameras) == 16
    centres, elevations = [], []
    for cam in rig.cameras:
        w2c = np.asarray(opencv_w2c_in_head(cam, rig))
        c = -w2c[:3, :3].T @ w2c[:3, 3]
        centres.append(c)
        elevations.append(np.degrees(np.arcsin(c[1] / np.linalg.norm(c))))
        assert np.isclose(np.linalg.norm(c), 0.9)
        assert w2c[2, 3] > 0.89                       # the head origin is in front, on axis
        assert (cam.intrinsics.width, cam.intrinsics.height) == (64, 64)
    assert np.allclose(elevations, [0.0, 15.0] * 8, atol=1e-6)
    assert centres[0][2] > 0.85                       # camera 0 faces the face (+Z)
    az = np.degrees(np.arctan2([c[0] for c in centres], [c[2] for c in centres])) % 360
    assert np.allclose(az, np.arange(16) * 22.5, atol=1e-6)


def test_contact_sheet_tiles_the_views():
    k = Intrinsics(16, 16, 20.0, 20.0, 8.0, 8.0)
    views = []
    for i in range(5):
        rgba = np.zeros((16, 16, 4), np.uint8)
        rgba[..., i % 3] = 255
        rgba[4:12, 4:12, 3] = 255                     # opaque centre, transparent border
        views.append(GeneratedView(f"v{i}", rgba, np.eye(4), k))
    sheet = contact_sheet(views, min_tile=64)
    assert sheet.shape == (2 * 64, 3 * 64, 3) and sheet.dtype == np.uint8
    assert tuple(sheet[32, 32]) == (255, 0, 0) and tuple(sheet[32, 64 + 32]) == (0, 255, 0)
    assert tuple(sheet[64 + 32, 64 + 32]) == (0, 255, 0)        # view 4: row 1, col 1
    assert sheet[2, 2].min() >= 200 and sheet[2, 2].max() <= 235  # checkerboard where alpha 0
    assert (sheet[64:, 128:] == 255).all()                       # the empty cell


# ---------------------------------------------------------------- with a tiny checkpoint
def test_checkpoint_is_offered_and_loaded_once(checkpoint, tmp_path):
    pipe = HeadPipeline(PipelineConfig(assets_dir=tmp_path, checkpoint=str(checkpoint)))
    caps = pipe.capabilities()
    assert caps["generators"] == ["offline", "gen3dface"]
    assert caps["generators_unavailable"] == {}
    gen = pipe.generator("gen3dface")
    assert isinstance(gen, LearnedGenerator) and gen.resolution == 32
    assert pipe.generator("gen3dface") is gen and pipe.make_generator("gen3dface") is gen
    assert pipe.resolve_generator(JobOptions()) == ("gen3dface", [])
    # no rig: the default ring's 16 cameras
    targets, source = gen.targets(None)
    assert source == "default_ring" and len(targets) == 16
    targets, source = gen.targets(ring_rig(3, resolution=40))
    assert source == "rig" and [t.name for t in targets] == ["cam_000", "cam_001", "cam_002"]


def test_astronaut_through_the_learned_generator(learned_pipe, astronaut):
    events, previews = [], {}
    sink = CallbackSink(on_progress=lambda s, f, m: events.append((s, f, m)),
                        on_preview=lambda n, b: previews.setdefault(n, b))
    gen = learned_pipe.generator("gen3dface")
    rig = ring_rig(4, elevation_deg=10.0, radius_m=0.9, resolution=64, fov_deg=25.0)
    res = learned_pipe.run(astronaut, rig, JobOptions(generator="gen3dface", texture_size=512,
                                                      seed=3), sink, CancelToken())
    assert learned_pipe.generator("gen3dface") is gen            # loaded once, kept
    seen = [s for s, _, _ in events]
    assert [s for s in STAGES if s in seen] == STAGES
    assert all(0.0 <= f <= 1.0 for _, f, _ in events)
    assert [m for s, _, m in events if s == "generate" and m.startswith("denoising")] == \
        ["denoising step 1/2", "denoising step 2/2"]
    assert {"landmarks", "fit", "generated_views", "texture"} <= set(previews)
    assert any(n.startswith("generate_step_") for n in previews)
    assert all(b.startswith(PNG) for b in previews.values())

    sc = res.sidecar
    assert sc["generator"] == "gen3dface" and sc["head_model"]["name"] == "ict_facekit"
    g = sc["generated"]
    assert (g["n_views"], g["steps"], g["sampler"], g["cameras"], g["seed"]) == \
        (4, 2, "ddim", "rig", 3)
    assert g["view_names"] == ["cam_000", "cam_001", "cam_002", "cam_003"]
    assert g["resolution"] == 32 and len(g["coverage"]) == 4
    rec = sc["reconstruction"]
    assert rec["status"] in ("done", "failed", "skipped")
    if rec["status"] != "done":     # noise views: the views are baked onto the fitted template
        assert rec["reason"] and any(f.startswith("reconstruction") for f in sc["fallbacks"])
    assert set(STAGES) <= set(sc["timings_s"])
    assert len(sc["coefficients"]["expression"]) == 53
    doc, _ = read_glb(res.glb)
    assert [m["name"] for m in doc["meshes"]] == ["Head", "EyeLeft", "EyeRight", "Teeth"]
    assert doc["meshes"][0]["extras"]["targetNames"] == list(EXPORTED_NAMES)     # 52 + 4


def test_cancel_during_generation_stops_the_job(learned_pipe, astronaut):
    cancel = CancelToken()
    events = []

    def on_progress(stage, frac, msg):
        events.append((stage, msg))
        if stage == "generate" and msg.startswith("denoising step 1/"):
            cancel.cancel()

    with pytest.raises(JobCancelled):
        learned_pipe.run(astronaut, ring_rig(4, resolution=64, radius_m=0.9),
                         JobOptions(generator="gen3dface", texture_size=512),
                         CallbackSink(on_progress=on_progress), cancel)
    msgs = [m for s, m in events if s == "generate"]
    assert "denoising step 1/2" in msgs and "denoising step 2/2" not in msgs
    assert not any(s in ("reconstruct", "texture", "export") for s, _ in events)


def test_reconstruction_hook_skips_when_it_does_not_apply(monkeypatch):
    from types import SimpleNamespace

    from gen3dface.backend.contracts import HeadEstimate
    from gen3dface.backend.recon import adapter as reconstruction
    from gen3dface.backend.camera import View

    k = Intrinsics(8, 8, 10.0, 10.0, 4.0, 4.0)
    views = [View.posed(np.zeros((8, 8, 3), np.uint8), np.eye(4), k, np.ones((8, 8), np.float32))
             for _ in range(3)]
    rigged = SimpleNamespace(name="ict_facekit", n_expressions=53)
    head = HeadEstimate(rigged, np.zeros((5, 3)), views[0].camera, fit=object())
    args = ("cpu", CallbackSink(), CancelToken())
    assert reconstruction.reconstruct_views(head, [], *args).status == "skipped"
    assert "needs 2" in reconstruction.reconstruct_views(head, views[:1], *args).reason
    mesh_only = HeadEstimate(SimpleNamespace(name="mediapipe_face", n_expressions=0),
                             np.zeros((5, 3)), views[0].camera, fit=None)
    r = reconstruction.reconstruct_views(mesh_only, views, *args)
    assert r.status == "skipped" and "no rig" in r.reason
    monkeypatch.setattr(reconstruction, "reconstruct", None)     # its native deps missing
    monkeypatch.setattr(reconstruction, "RECON_MISSING",
                        "the reconstruction module is not installed (no module named x)")
    r = reconstruction.reconstruct_views(head, views, *args)
    assert r.status == "skipped" and "not installed" in r.reason
    assert r.sidecar() == {"status": "skipped", "reason": r.reason}
