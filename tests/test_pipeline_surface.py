"""Output kinds "surface" and "both" in the pipeline: capabilities (the free-form surface needs
the learned generator's views), what the sidecar says was written and why, and the
reconstruct stage hook with output_kind="both" on rendered views of a synthetic head, then
exported into one GLB (rigged head + "Surface")."""
from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np
import pytest

from gen3dface.backend.export.gltf import read_glb
from gen3dface.backend.export.head_glb import ExportConfig, HeadAsset
from gen3dface.backend.export.result_glb import write_result_glb
from gen3dface.backend.export.surface_glb import SurfaceAsset
from gen3dface.backend.headmodel.arkit import EXPORTED_NAMES
from gen3dface.backend.contracts import CallbackSink, CancelToken, PipelineError
from gen3dface.backend.contracts import HeadEstimate
from gen3dface.backend.pipeline.stages import output_plan
from gen3dface.backend.pipeline.pipeline import HeadPipeline, JobOptions, PipelineConfig
from gen3dface.backend.recon.adapter import Reconstructed, recon_config, reconstruct_views
from gen3dface.backend.recon.metrics import MeshDistance
from gen3dface.backend.recon.stage import ReconConfig
from gen3dface.backend.render.camera import orbit_cameras
from gen3dface.backend.render.raycast import render_views
from gen3dface.backend.render.synthetic import SyntheticHeadConfig, make_synthetic_head
from gen3dface.backend.camera import View
from gen3dface.backend.texture.layout import SkinLayout

RIGGED = ["Head", "EyeLeft", "EyeRight", "Teeth"]
# test-sized reconstruction: coarse hull, short fit, tiny SDF, small atlas
FAST = {"sdf": {"preset": "tiny", "iterations": 20}, "init_grid": 32,
        "surface_texture_size": 256,
        "registration": {"hull": {"resolution": 64}, "fit_iterations": 4, "iterations": 1,
                         "fit_identity": 20}}


pytestmark = pytest.mark.usefixtures("torch_one_thread")


# ---------------------------------------------------------------- what gets written, and why
def _recon(status="done", reason="", surface=None, tex=None, error=""):
    return Reconstructed(status, reason, surface=surface, surface_texture=tex,
                         surface_error=error)


def test_output_plan_says_what_was_written_and_why():
    mesh = SimpleNamespace(vertices=np.zeros((3, 3)), faces=np.zeros((1, 3), int))
    tex = np.zeros((4, 4, 3), np.uint8)
    assert output_plan("rigged", "offline", _recon("skipped", "no generated views")) == \
        {"requested": "rigged", "written": "rigged", "reason": ""}
    for kind in ("surface", "both"):
        assert output_plan(kind, "gen3dface", _recon(surface=mesh, tex=tex)) == \
            {"requested": kind, "written": kind, "reason": ""}
        p = output_plan(kind, "offline", _recon("skipped", "no generated views"))
        assert p["written"] == "rigged"
        assert p["reason"].startswith(f"{kind} requested but no generated views")
        assert p["reason"].endswith(": rigged head written")
    p = output_plan("both", "gen3dface", _recon("failed", "INTERNAL: registration failed"))
    assert p["written"] == "rigged"
    assert "but reconstruction failed (INTERNAL: registration failed)" in p["reason"]
    p = output_plan("surface", "gen3dface",
                    _recon(error="the free-form surface failed (ValueError: no zero crossing)"))
    assert p["written"] == "rigged" and "no zero crossing" in p["reason"]
    # a surface without its texture is not written either
    assert output_plan("surface", "gen3dface", _recon(surface=mesh))["written"] == "rigged"


def test_reconstruction_settings_are_checked():
    cfg = recon_config(ReconConfig, "both", "cpu", 512, FAST)
    assert cfg.output_kind == "both" and cfg.surface_texture_size == 256
    assert cfg.init_grid == 32 and cfg.sdf.iterations == 20 and cfg.sdf.n_levels == 6
    assert cfg.registration.hull.resolution == 64 and cfg.registration.iterations == 1
    assert recon_config(ReconConfig, "surface", "cpu", 512).surface_texture_size == 512
    for bad in ({"sdff": {}}, {"sdf": {"preset": "huge"}}, {"sdf": {"itrations": 3}},
                {"registration": {"hull": {"res": 3}}}):
        with pytest.raises(PipelineError) as e:
            recon_config(ReconConfig, "both", "cpu", 512, bad)
        assert e.value.code == "BAD_REQUEST"


# ---------------------------------------------------------------- capabilities
@pytest.fixture(scope="module")
def checkpoint(tiny_mvdiff_checkpoint):
    return tiny_mvdiff_checkpoint


def test_capabilities_offer_the_surface_only_with_the_learned_generator(checkpoint, data_dir,
                                                                        ict_npz, tmp_path):
    caps = HeadPipeline(PipelineConfig(assets_dir=data_dir, checkpoint=str(checkpoint))
                        ).capabilities()
    assert caps["generators"] == ["offline", "gen3dface"]
    assert caps["output_kinds"] == ["rigged", "surface", "both"]
    assert "output_kinds_unavailable" not in caps
    caps = HeadPipeline(PipelineConfig(assets_dir=data_dir)).capabilities()
    assert caps["output_kinds"] == ["rigged"]
    assert "learned generator" in caps["output_kinds_unavailable"]["surface"]
    # learned generator but no rigged head model to register: no surface either
    caps = HeadPipeline(PipelineConfig(assets_dir=tmp_path, checkpoint=str(checkpoint))
                        ).capabilities()
    assert caps["generators"] == ["offline", "gen3dface"] and caps["output_kinds"] == ["rigged"]
    assert "ICT-FaceKit" in caps["output_kinds_unavailable"]["both"]


# ---------------------------------------------------------------- the stage hook, then the GLB
@pytest.fixture(scope="module")
def synthetic_scene(ict_model):
    m = ict_model
    head = make_synthetic_head(m, seed=2, config=SyntheticHeadConfig(eyelashes=False))
    az = [0, 45, 90, 135, 180, 225, 270, 315, 20, 160, 200, 340]
    el = [20] * 8 + [-20, -20, 50, 50]
    cams = orbit_cameras(az, el, radius_m=0.9, resolution=128, fov_deg=25.0,
                         target=(0.0, -0.02, 0.0))
    views = [View.posed(v.rgba[..., :3].copy(), v.camera.w2c, v.camera, v.mask)
             for v in render_views(head.meshes, cams)]
    # the fit stage's result, as the generators see it: the mean head
    fit = SimpleNamespace(vertices=m.vertices.astype(np.float64),
                          identity=np.zeros(m.n_identity), expression=np.zeros(m.n_expressions))
    return head, views, HeadEstimate(m, m.vertices, views[0].camera, fit)


@pytest.fixture(scope="module")
def reconstructed_both(synthetic_scene):
    _, views, estimate = synthetic_scene
    events = []
    sink = CallbackSink(on_progress=lambda s, f, msg: events.append((s, f, msg)))
    rec = reconstruct_views(estimate, views, "cpu", sink, CancelToken(), "both", 512, FAST)
    return rec, events


def test_reconstruct_both_from_rendered_views(reconstructed_both, synthetic_scene, ict_model):
    head, _, _ = synthetic_scene
    rec, events = reconstructed_both
    assert rec.status == "done", rec.reason
    assert rec.surface_error == "" and rec.has_surface
    assert rec.vertices.shape == ict_model.vertices.shape
    s = rec.surface
    assert rec.surface_texture.shape == (256, 256, 3) and rec.surface_texture.std() > 5
    assert s.uvs is not None and len(s.uv_faces) == len(s.faces)
    # the free-form surface lies on the rendered head (metres, head frame)
    gv, gf = head.surface()
    d = MeshDistance(gv, gf)(s.vertices) * 1e3
    assert np.median(d) < 3.0
    lo, hi = s.vertices.min(0), s.vertices.max(0)
    assert np.all(np.abs(lo - gv.min(0)) < 0.02) and np.all(np.abs(hi - gv.max(0)) < 0.02)
    # one monotonic progress for the stage: registration, then the surface
    fr = [f for st, f, _ in events if st == "reconstruct"]
    assert fr[-1] == 1.0 and all(b >= a for a, b in zip(fr, fr[1:]))
    msgs = [m for st, _, m in events if st == "reconstruct"]
    assert "template registered" in msgs and any(m.startswith("SDF iteration") for m in msgs)
    side = rec.sidecar(surface_exported=True)
    assert side["status"] == "done" and side["surface"]["exported"] is True
    assert side["surface"]["n_faces"] == len(s.faces) and side["surface"]["texture_size"] == 256


def test_reconstructed_both_exports_one_glb(reconstructed_both, ict_model):
    rec, _ = reconstructed_both
    m = ict_model
    lay = SkinLayout.of(m)
    asset = HeadAsset(m, rec.neutral_vertices, rec.expression,
                      np.full((64, 64 * lay.n_tiles, 3), 170, np.uint8), lay)
    surf = SurfaceAsset.from_mesh(rec.surface, rec.surface_texture)
    glb = write_result_glb(asset, surf, ExportConfig(), extras={"generator": "test"})
    doc, _ = read_glb(glb)
    assert [n["name"] for n in doc["nodes"]] == RIGGED + ["Surface"]
    assert doc["meshes"][0]["extras"]["targetNames"] == list(EXPORTED_NAMES)     # 52 + 4
    surf_mesh = doc["meshes"][4]
    assert "extras" not in surf_mesh
    assert doc["materials"][surf_mesh["primitives"][0]["material"]]["name"] == "SurfaceSkin"
    # the surface and the rigged head overlap (same frame, same units)
    acc = doc["accessors"]
    hb = acc[doc["meshes"][0]["primitives"][0]["attributes"]["POSITION"]]
    sb = acc[surf_mesh["primitives"][0]["attributes"]["POSITION"]]
    assert abs(hb["max"][1] - sb["max"][1]) < 0.02 and abs(hb["max"][2] - sb["max"][2]) < 0.02


def test_surface_only_asked_of_the_stage(synthetic_scene):
    """output_kind reaches reconstruct: "rigged" makes no surface."""
    _, views, estimate = synthetic_scene
    rec = reconstruct_views(estimate, views[:6], "cpu", CallbackSink(), CancelToken(),
                            "rigged", 512, {"registration": FAST["registration"]})
    assert rec.status == "done" and rec.surface is None and rec.surface_error == ""
    assert "surface" not in rec.sidecar()


# ---------------------------------------------------------------- whole jobs (slow)
@pytest.fixture(scope="module")
def astronaut() -> bytes:
    skimage_data = pytest.importorskip("skimage.data")
    from PIL import Image

    b = io.BytesIO()
    Image.fromarray(skimage_data.astronaut()).save(b, "PNG")
    return b.getvalue()


def test_offline_job_asked_for_both_writes_the_rigged_head(astronaut, data_dir, ict_npz):
    pipe = HeadPipeline(PipelineConfig(assets_dir=data_dir))
    res = pipe.run(astronaut, None, JobOptions(texture_size=512, output_kind="both",
                                               quality="draft"))
    sc = res.sidecar
    assert sc["output"]["requested"] == "both" and sc["output"]["written"] == "rigged"
    assert "no generated views" in sc["output"]["reason"]
    assert sc["output"]["reason"] in sc["warnings"]
    assert sc["glb"]["meshes"] == RIGGED and sc["glb"]["output_kind"] == "rigged"
    doc, _ = read_glb(res.glb)
    assert [n["name"] for n in doc["nodes"]] == RIGGED


@pytest.mark.slow
def test_learned_job_asked_for_both(checkpoint, astronaut, data_dir, ict_npz):
    """Through the tiny random-weight generator: its views are noise, so the surface may or
    may not come out; either way the GLB and the sidecar agree on what was written."""
    from gen3dface.protocol.cameras import ring_rig

    pipe = HeadPipeline(PipelineConfig(assets_dir=data_dir, checkpoint=str(checkpoint),
                                       generator_settings={"steps": 2},
                                       reconstruction_settings=FAST))
    previews = {}
    res = pipe.run(astronaut, ring_rig(6, elevation_deg=10.0, radius_m=0.9, resolution=64),
                   JobOptions(generator="gen3dface", texture_size=512, output_kind="both"),
                   CallbackSink(on_preview=lambda n, b: previews.setdefault(n, b)),
                   CancelToken())
    sc = res.sidecar
    doc, _ = read_glb(res.glb)
    names = [n["name"] for n in doc["nodes"]]
    assert sc["output"]["requested"] == "both"
    if sc["output"]["written"] == "both":
        assert names == RIGGED + ["Surface"] and sc["reconstruction"]["surface"]["exported"]
        assert "surface_texture" in previews
    else:
        assert names == RIGGED and sc["output"]["reason"].endswith("rigged head written")
    assert sc["glb"]["meshes"] == names


class RenderedViewsGenerator:
    """A stand-in for the learned generator (registered under its name for one test): views
    of the synthetic head rendered for fixed cameras, so the job's reconstruct and export
    stages get real multi-view input without trained weights."""
    name = "gen3dface"

    def __init__(self, views):
        self.views = views

    def generate(self, photo, analysis, head, rig, options, sink, cancel):
        from gen3dface.backend.contracts import Generated

        sink.progress("generate", 1.0, "rendered views")
        return Generated(views=list(self.views), info={"n_views": len(self.views),
                                                        "stand_in": "rendered synthetic head"})


@pytest.mark.slow
def test_job_with_views_writes_both(monkeypatch, synthetic_scene, astronaut, data_dir, ict_npz):
    from gen3dface.backend.pipeline import generators

    _, views, _ = synthetic_scene
    spec = generators.GeneratorSpec("gen3dface", "rendered views (test stand-in)",
                                    lambda config: True,
                                    lambda config: RenderedViewsGenerator(views))
    monkeypatch.setitem(generators.GENERATORS, "gen3dface", spec)
    pipe = HeadPipeline(PipelineConfig(assets_dir=data_dir, reconstruction_settings=FAST))
    assert pipe.capabilities()["output_kinds"] == ["rigged", "surface", "both"]
    events, previews = [], {}
    sink = CallbackSink(on_progress=lambda s, f, m: events.append((s, f)),
                        on_preview=lambda n, b: previews.setdefault(n, b))
    res = pipe.run(astronaut, None, JobOptions(generator="gen3dface", texture_size=512,
                                               output_kind="both", quality="draft"),
                   sink, CancelToken())
    sc = res.sidecar
    assert sc["output"] == {"requested": "both", "written": "both", "reason": ""}
    assert sc["reconstruction"]["status"] == "done"
    assert sc["reconstruction"]["surface"]["exported"] is True
    assert sc["glb"]["meshes"] == RIGGED + ["Surface"] and sc["glb"]["output_kind"] == "both"
    assert sc["glb"]["morph_targets"] == list(EXPORTED_NAMES)
    assert "surface_texture" in previews and previews["surface_texture"].startswith(b"\x89PNG")
    fr = [f for st, f in events if st == "reconstruct"]
    assert fr[0] == 0.0 and fr[-1] == 1.0 and all(b >= a for a, b in zip(fr, fr[1:]))
    doc, _ = read_glb(res.glb)
    assert [n["name"] for n in doc["nodes"]] == RIGGED + ["Surface"]
    assert doc["asset"]["extras"]["output_kind"] == "both"
    # "surface" alone: only the Surface node
    res = pipe.run(astronaut, None, JobOptions(generator="gen3dface", texture_size=512,
                                               output_kind="surface", quality="draft"))
    doc, _ = read_glb(res.glb)
    assert [n["name"] for n in doc["nodes"]] == ["Surface"]
    assert res.sidecar["glb"]["morph_targets"] == [] and res.sidecar["output"]["written"] == \
        "surface"
