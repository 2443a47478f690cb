"""Cancellation inside the stages: the fitter stops within an iteration, the texture baker
within a chunk of texels, opaque calls (model loading, mediapipe) return at once through the
background runner, and the chunked/banded bake gives the same texture as one pass.

No timing bounds here (scripts/bench_cancel.py prints the latencies): the tests cancel from
another thread and count the progress events that still arrive afterwards."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from gen3dface.backend.fitting import FitConfig, HeadFitter
from gen3dface.backend.fitting.synthetic import make_case
from gen3dface.backend.pipeline.background import BackgroundRunner
from gen3dface.backend.contracts import CallbackSink, CancelToken, JobCancelled
from gen3dface.backend.texture import bake as bake_mod
from gen3dface.backend.camera import View
from gen3dface.backend.texture.bake import TextureBaker, TextureConfig
from gen3dface.backend.texture.fill import nearest_fill_outside
from gen3dface.protocol.cameras import intrinsics_from_fov, orbit_w2c_in_head


class CancelAfter:
    """Runs `target(cancel, report)` on a thread; once `report` has been called `after` times,
    the test thread cancels. Records what was reported after the cancel."""

    def __init__(self, target, after: int = 1):
        self.token = CancelToken()
        self.reached = threading.Event()
        self.reports: list = []
        self.after, self.target = after, target
        self.cancelled_at: int | None = None
        self.outcome = None

    def report(self, *what) -> None:
        self.reports.append(what)
        if len(self.reports) >= self.after:
            self.reached.set()

    def _run(self) -> None:
        try:
            self.target(self.token, self.report)
            self.outcome = "finished"
        except JobCancelled:
            self.outcome = "cancelled"
        except BaseException as e:          # noqa: BLE001 - reported by the test
            self.outcome = e

    def run(self):
        t = threading.Thread(target=self._run, daemon=True)
        t.start()
        assert self.reached.wait(60), "the work never reported progress"
        self.cancelled_at = len(self.reports)
        self.token.cancel()
        t.join(60)
        assert not t.is_alive()
        return self.reports[self.cancelled_at:]


# -- the background runner ---------------------------------------------------------------

def test_runner_returns_at_once_on_cancel_and_keeps_what_it_built():
    bg = BackgroundRunner()
    release, builds = threading.Event(), []

    def slow_build():
        release.wait(10)
        builds.append(1)
        return "model"

    token = CancelToken()
    threading.Timer(0.05, token.cancel).start()
    with pytest.raises(JobCancelled):
        bg.cached("model", slow_build, token)
    assert builds == []                      # returned while the build was still running
    release.set()
    assert bg.cached("model", slow_build, CancelToken()) == "model"
    assert bg.cached("model", slow_build, None) == "model" and builds == [1]   # built once


def test_runner_forgets_a_failed_build_and_passes_errors_on():
    bg = BackgroundRunner()
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise OSError("disk hiccup")
        return 42

    with pytest.raises(OSError, match="hiccup"):
        bg.cached("x", flaky, CancelToken())
    assert bg.cached("x", flaky, CancelToken()) == 42 and len(calls) == 2
    assert bg.call(lambda: "plain", None) == "plain"


# -- the fitter -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fitter(ict_model):
    return HeadFitter(ict_model, FitConfig())


def test_fit_stops_within_an_iteration_of_a_cancel(fitter):
    case = make_case(fitter, np.random.default_rng(3))

    def work(cancel, report):
        sink = CallbackSink(on_progress=lambda s, f, m: report(f))
        fitter.fit_landmarks(case.landmarks, case.image_size, sink, cancel)

    run = CancelAfter(work, after=3)
    late = run.run()
    assert run.outcome == "cancelled", run.outcome
    assert len(late) <= 1, late              # at most the iteration that was in flight
    assert max(f for (f,) in run.reports) < 1.0


# -- the texture baker ------------------------------------------------------------------

@pytest.fixture(scope="module")
def bake_case(ict_model):
    baker = TextureBaker(ict_model, TextureConfig(size=256))
    rgb = (np.random.default_rng(0).random((240, 240, 3)) * 255).astype(np.uint8)
    k = intrinsics_from_fov(240, 240, 28)
    view = View.posed(rgb, np.asarray(orbit_w2c_in_head(20, 5, 0.7)), k, None)
    return baker, ict_model.vertices, [view]


def test_bake_stops_within_a_chunk_of_a_cancel(bake_case, monkeypatch):
    baker, verts, views = bake_case
    monkeypatch.setattr(bake_mod, "CHUNK_TEXELS", 2048)      # many chunks even at 256

    def work(cancel, report):
        baker.bake(verts, views, cancel, lambda f, m: report(f, m))

    run = CancelAfter(work, after=1)
    late = run.run()
    assert run.outcome == "cancelled", run.outcome
    assert len(late) <= 1, late              # at most the chunk that was in flight
    assert max(f for f, _ in run.reports) < 0.75          # never reached the fill


def test_bake_result_does_not_depend_on_the_chunking(bake_case, monkeypatch):
    baker, verts, views = bake_case
    whole = baker.bake(verts, views)
    monkeypatch.setattr(bake_mod, "CHUNK_TEXELS", 3000)
    monkeypatch.setattr(bake_mod, "ROWS_PER_STEP", 7)
    fractions = []
    chunked = baker.bake(verts, views, CancelToken(), lambda f, m: fractions.append(f))
    np.testing.assert_array_equal(chunked.texture, whole.texture)
    np.testing.assert_array_equal(chunked.confidence, whole.confidence)
    assert fractions == sorted(fractions) and len(fractions) > 10 and fractions[-1] < 1.0


def test_island_padding_by_bands_equals_one_pass():
    rng = np.random.default_rng(5)
    cov = np.zeros((61, 90), bool)
    for _ in range(12):
        r, c = rng.integers(0, 55), rng.integers(0, 80)
        cov[r:r + rng.integers(2, 9), c:c + rng.integers(2, 12)] = True
    tex = np.where(cov[..., None], rng.random((61, 90, 3)), 0).astype(np.float32)
    checks = []
    one = nearest_fill_outside(tex, cov, band_rows=1000)
    banded = nearest_fill_outside(tex, cov, band_rows=5, check=lambda: checks.append(1))
    np.testing.assert_allclose(banded, one, rtol=0, atol=1e-6)
    assert len(checks) >= 2 * 13 and not np.isnan(banded).any()
    token = CancelToken()
    token.cancel()
    with pytest.raises(JobCancelled):
        nearest_fill_outside(tex, cov, band_rows=5, check=token.raise_if_cancelled)


# -- the whole pipeline -----------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("stage,at", [("face", 0.0), ("fit", 0.2), ("texture", 0.3),
                                      ("export", 0.0)])
def test_pipeline_cancel_inside_a_stage(stage, at, data_dir, ict_npz):
    import io

    from PIL import Image
    skimage_data = pytest.importorskip("skimage.data")

    from gen3dface.backend.pipeline.pipeline import HeadPipeline, JobOptions, PipelineConfig

    b = io.BytesIO()
    Image.fromarray(skimage_data.astronaut()).save(b, "PNG")
    pipe = _PIPES.setdefault("p", HeadPipeline(PipelineConfig(assets_dir=data_dir)))

    def work(cancel, report):
        def on_progress(s, f, m):
            if s == stage and f >= at:
                report(s, f)
        pipe.run(b.getvalue(), None, JobOptions(), CallbackSink(on_progress=on_progress),
                 cancel)

    run = CancelAfter(work, after=1)
    t0 = time.perf_counter()
    late = run.run()
    assert run.outcome == "cancelled", (run.outcome, time.perf_counter() - t0)
    assert all(f < 1.0 for _, f in late), late       # the stage never finished
    pipe._bg.call(lambda: None, None)                 # abandoned background work is done


_PIPES: dict = {}
