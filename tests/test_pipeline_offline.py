"""The offline pipeline: options validation, capabilities, the astronaut photo end to end
(ICT-FaceKit fit, baked texture, GLB), the no-head-model fallback, cancellation, errors."""
from __future__ import annotations

import io

import numpy as np
import pytest

from gen3dface.backend.export.gltf import read_glb
from gen3dface.backend.headmodel.arkit import EXPORTED_NAMES
from gen3dface.backend.contracts import (CallbackSink, CancelToken, JobCancelled,
                                               PipelineError)
from gen3dface.backend.pipeline.pipeline import HeadPipeline, JobOptions, PipelineConfig

STAGES = ["decode", "face", "fit", "generate", "texture", "export"]


def _png(rgb) -> bytes:
    from PIL import Image

    b = io.BytesIO()
    Image.fromarray(rgb).save(b, "PNG")
    return b.getvalue()


@pytest.fixture(scope="module")
def astronaut() -> bytes:
    skimage_data = pytest.importorskip("skimage.data")
    return _png(skimage_data.astronaut())


def test_options_validation():
    o = JobOptions.from_dict({"generator": "offline", "texture_size": 2048, "quality": "high",
                              "unknown": 1})
    assert o.texture_size == 2048 and o.quality == "high" and o.generator == "offline"
    assert JobOptions.from_dict(o.to_dict()) == o
    for bad in ({"generator": "magic"}, {"texture_size": 1000}, {"texture_size": True},
                {"quality": "ultra"}, {"seed": -1}, {"output_kind": "mesh"}):
        with pytest.raises(PipelineError) as e:
            JobOptions.from_dict(bad)
        assert e.value.code == "BAD_REQUEST"


def test_capabilities_and_learned_generator_not_listed(tmp_path):
    p = HeadPipeline(PipelineConfig(assets_dir=tmp_path))
    caps = p.capabilities()
    assert caps["generators"] == ["offline"] and caps["output_kinds"] == ["rigged"]
    with pytest.raises(PipelineError) as e:
        p.run(b"x", None, JobOptions(generator="gen3dface"))
    assert e.value.code == "NOT_AVAILABLE"


def test_bad_image(tmp_path):
    with pytest.raises(PipelineError) as e:
        HeadPipeline(PipelineConfig(assets_dir=tmp_path)).run(b"not an image")
    assert e.value.code == "BAD_IMAGE"


def test_no_face(tmp_path):
    with pytest.raises(PipelineError) as e:
        HeadPipeline(PipelineConfig(assets_dir=tmp_path)).run(
            _png(np.full((200, 200, 3), 128, np.uint8)))
    assert e.value.code == "NO_FACE"


@pytest.mark.slow
def test_astronaut_end_to_end(astronaut, data_dir, ict_npz):
    events, previews = [], {}
    sink = CallbackSink(on_progress=lambda s, f, m: events.append((s, f)),
                        on_preview=lambda n, b: previews.setdefault(n, b))
    pipe = HeadPipeline(PipelineConfig(assets_dir=data_dir))
    assert pipe.capabilities()["head_model"]["name"] == "ict_facekit"
    res = pipe.run(astronaut, None, JobOptions(texture_size=512), sink, CancelToken())
    seen = [s for s, _ in events]
    assert [s for s in STAGES if s in seen] == STAGES
    assert all(0.0 <= f <= 1.0 for _, f in events)
    assert {"landmarks", "fit", "texture"} <= set(previews)
    assert all(b[:8] == b"\x89PNG\r\n\x1a\n" for b in previews.values())
    sc = res.sidecar
    assert sc["generator"] == "offline" and sc["head_model"]["name"] == "ict_facekit"
    assert sc["fallbacks"] == [] and sc["landmark_error_px"] < 5
    assert len(sc["coefficients"]["expression"]) == 53
    assert set(STAGES) <= set(sc["timings_s"])
    assert len(sc["camera"]["w2c"]) == 4 and sc["camera"]["intrinsics"]["width"] == 512
    doc, _ = read_glb(res.glb)
    assert [m["name"] for m in doc["meshes"]] == ["Head", "EyeLeft", "EyeRight", "Teeth"]
    assert doc["meshes"][0]["extras"]["targetNames"] == list(EXPORTED_NAMES)     # 52 + 4
    assert sc["glb"]["morph_targets"] == list(EXPORTED_NAMES)
    assert list(sc["glb"]["morph_weights"]) == list(EXPORTED_NAMES)


def test_fallback_without_head_model(astronaut, tmp_path, monkeypatch):
    monkeypatch.delenv("GEN3DFACE_ASSETS", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    res = HeadPipeline(PipelineConfig(assets_dir=tmp_path)).run(
        astronaut, None, JobOptions(texture_size=512))
    sc = res.sidecar
    assert sc["head_model"]["name"] == "mediapipe_face"
    assert any("mediapipe face mesh" in f for f in sc["fallbacks"])
    assert "front of the face only" in sc["head_model"]["limitations"]
    doc, _ = read_glb(res.glb)
    assert [m["name"] for m in doc["meshes"]] == ["Head"]
    assert "targets" not in doc["meshes"][0]["primitives"][0]


def test_cancel_between_stages(astronaut, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("GEN3DFACE_ASSETS", raising=False)
    cancel = CancelToken()

    def on_progress(stage, frac, msg):
        if stage == "face" and frac == 1.0:
            cancel.cancel()

    with pytest.raises(JobCancelled):
        HeadPipeline(PipelineConfig(assets_dir=tmp_path)).run(
            astronaut, None, JobOptions(), CallbackSink(on_progress=on_progress), cancel)


def test_a_job_runs_with_one_blas_thread_and_gives_them_back(astronaut, tmp_path, monkeypatch):
    """PipelineConfig.blas_threads (default 1): while a job runs, numpy's and scipy's OpenBLAS
    use one thread (threads only wait on each other over the offline head's small matrices:
    2.1 -> 1.5 s a warm job on 2 cores, README); afterwards the libraries' own setting is back.
    None leaves them alone."""
    from threadpoolctl import threadpool_info

    monkeypatch.delenv("GEN3DFACE_ASSETS", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))

    def blas_threads():
        return {i["filepath"]: i["num_threads"] for i in threadpool_info()
                if i["user_api"] == "blas"}

    import scipy.linalg  # noqa: F401  (its OpenBLAS loaded, so numpy's and scipy's are counted)

    before = blas_threads()          # (a library the job loads, e.g. mediapipe's, comes after)
    for cfg, limited in ((PipelineConfig(assets_dir=tmp_path), True),
                         (PipelineConfig(assets_dir=tmp_path, blas_threads=None), False)):
        during = []
        sink = CallbackSink(on_progress=lambda s, f, m: during.append(
            tuple(blas_threads().get(k) for k in before)))
        HeadPipeline(cfg).run(astronaut, None, JobOptions(texture_size=512), sink)
        want = (1,) * len(before) if limited else tuple(before.values())
        assert during and set(during) == {want}, (cfg.blas_threads, set(during))
        assert {k: blas_threads()[k] for k in before} == before
    with pytest.raises(ValueError):
        PipelineConfig(blas_threads=0)
