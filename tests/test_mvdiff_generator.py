"""The inference object the pipeline calls: photo + mask + camera + head mesh + wire rig ->
RGBA views with cameras; progress, previews, cancellation, checkpoints (tiny random model)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gen3dface.backend.mvdiff import MultiViewDiffusion, MVDiffusionConfig
from gen3dface.backend.mvdiff.generator import (GeneratedView, MultiViewGenerator, TargetCamera,
                                                alpha_from_background, crop_input_view,
                                                square_view_intrinsics, targets_from_rig,
                                                triangulate)
from gen3dface.backend.contracts import CallbackSink, CancelToken, JobCancelled, PipelineError
from gen3dface.protocol.cameras import (Intrinsics, intrinsics_from_fov, orbit_w2c_in_head,
                                        project_head_point, ring_rig)


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def generator():
    torch.manual_seed(0)
    return MultiViewGenerator(MultiViewDiffusion(MVDiffusionConfig.tiny()), "cpu")


def _photo():
    g = np.random.default_rng(0)
    photo = g.integers(0, 255, (48, 40, 3), dtype=np.uint8)
    mask = np.zeros((48, 40), np.float32)
    mask[10:38, 8:30] = 1.0
    k = intrinsics_from_fov(40, 48, 30.0)
    w2c = np.asarray(orbit_w2c_in_head(5.0, 0.0, 0.9))
    return photo, mask, w2c, k


def _mesh():
    import trimesh
    m = trimesh.creation.icosphere(subdivisions=2, radius=0.09)
    return m.vertices.astype(np.float32), m.faces


@pytest.mark.parametrize("n_views", [1, 4, 16])
def test_generate_for_a_wire_rig(generator, n_views):
    photo, mask, w2c, k = _photo()
    v, f = _mesh()
    rig = ring_rig(n_views, elevation_deg=10.0, radius_m=0.9, resolution=32, fov_deg=25.0,
                   center=(1.0, 2.0, 0.5))
    views = generator.generate(photo, mask, w2c, k, v, f, rig, seed=1, steps=2)
    assert len(views) == n_views and all(isinstance(x, GeneratedView) for x in views)
    for view, cam, target in zip(views, rig.cameras, targets_from_rig(rig)):
        assert view.rgba.shape == (16, 16, 4) and view.rgba.dtype == np.uint8
        assert view.name == cam.name
        assert np.allclose(view.w2c, target.w2c)
        assert (view.intrinsics.width, view.intrinsics.height) == (16, 16)
        # the returned camera describes the 16x16 image: the head centre is at its middle
        uv = view.intrinsics.fx * (view.w2c[0, 3] / view.w2c[2, 3]) + view.intrinsics.cx
        assert abs(uv - 8.0) < 1e-6


def test_generate_is_seeded(generator):
    photo, mask, w2c, k = _photo()
    v, f = _mesh()
    rig = ring_rig(3, resolution=16, radius_m=0.9)
    a = generator.generate(photo, mask, w2c, k, v, f, rig, seed=7, steps=2)
    b = generator.generate(photo, mask, w2c, k, v, f, rig, seed=7, steps=2)
    c = generator.generate(photo, mask, w2c, k, v, f, rig, seed=8, steps=2)
    assert all(np.array_equal(x.rgba, y.rgba) for x, y in zip(a, b))
    assert any(not np.array_equal(x.rgba, y.rgba) for x, y in zip(a, c))


def test_progress_previews_and_cancellation(generator):
    photo, mask, w2c, k = _photo()
    v, f = _mesh()
    rig = ring_rig(2, resolution=16, radius_m=0.9)
    events, previews = [], []
    sink = CallbackSink(lambda s, fr, m: events.append((s, fr)), lambda n, b: previews.append((n, b)))
    generator.generate(photo, mask, w2c, k, v, f, rig, steps=4, sampler="dpmsolver++", sink=sink,
                       preview_every=2)
    assert {s for s, _ in events} == {"generate"}
    fr = [x for _, x in events]
    assert fr == sorted(fr) and fr[0] == 0.0 and fr[-1] == 1.0
    assert [n for n, _ in previews] == ["generate_step_002", "generate_step_004"]
    assert all(b.startswith(b"\x89PNG") for _, b in previews)

    cancel = CancelToken()
    steps_seen = []

    def on_progress(stage, fraction, message):
        steps_seen.append(message)
        if message.startswith("denoising step 1/"):
            cancel.cancel()

    with pytest.raises(JobCancelled):
        generator.generate(photo, mask, w2c, k, v, f, rig, steps=10,
                           sink=CallbackSink(on_progress), cancel=cancel)
    assert sum(m.startswith("denoising") for m in steps_seen) == 1


def test_bad_requests_are_coded_errors(generator):
    photo, mask, w2c, k = _photo()
    with pytest.raises(PipelineError) as e:
        generator.generate(photo, mask, w2c, k, None, None, [], steps=2)
    assert e.value.code == "BAD_REQUEST"
    with pytest.raises(PipelineError) as e:
        generator.generate(photo, mask[:10], w2c, k, None, None, ring_rig(1), steps=2)
    assert e.value.code == "BAD_REQUEST"
    with pytest.raises(PipelineError) as e:
        generator.generate(photo, mask, w2c, k, None, None, ring_rig(1), steps=2, sampler="euler")
    assert e.value.code == "BAD_REQUEST"


def test_input_crop_keeps_the_camera_consistent():
    """A head point projects to pixel p in the photo; in the cropped model image it must
    project (with the returned intrinsics) to the pixel that now shows photo pixel p."""
    photo, mask, w2c, k = _photo()
    photo = np.zeros_like(photo)
    p_head = (0.02, -0.03, 0.05)
    u = k.fx * (w2c[0, :3] @ p_head + w2c[0, 3]) / (w2c[2, :3] @ p_head + w2c[2, 3]) + k.cx
    v = k.fy * (w2c[1, :3] @ p_head + w2c[1, 3]) / (w2c[2, :3] @ p_head + w2c[2, 3]) + k.cy
    assert 10 <= v < 38 and 8 <= u < 30                  # inside the mask
    photo[int(v), int(u)] = (255, 0, 0)                  # a red dot where the point lands
    img, kc = crop_input_view(photo, mask, k, 64)
    uc = kc.fx * (w2c[0, :3] @ p_head + w2c[0, 3]) / (w2c[2, :3] @ p_head + w2c[2, 3]) + kc.cx
    vc = kc.fy * (w2c[1, :3] @ p_head + w2c[1, 3]) / (w2c[2, :3] @ p_head + w2c[2, 3]) + kc.cy
    redness = (img[0] - img[1]).numpy()                  # the rest is black or white
    j, i = np.unravel_index(np.argmax(redness), redness.shape)
    assert abs(i + 0.5 - uc) <= 1.0 and abs(j + 0.5 - vc) <= 1.0
    assert float(img[:, 0, 0].min()) == 1.0             # white outside the mask


def test_square_view_intrinsics_crop_the_centre():
    k = Intrinsics(1920, 1080, 1500.0, 1500.0, 960.0, 540.0)
    s = square_view_intrinsics(k, 256)
    assert (s.width, s.height) == (256, 256)
    assert np.isclose(s.cx, 128) and np.isclose(s.cy, 128) and np.isclose(s.fx, 1500 * 256 / 1080)


def test_alpha_and_triangulation():
    rgb = np.ones((2, 2, 3))
    rgb[0, 0] = [0.2, 0.4, 0.6]
    a = alpha_from_background(rgb)
    assert a[0, 0] == 1.0 and a[1, 1] == 0.0
    quads = np.array([[0, 1, 2, 3], [4, 5, 6, -1]])
    assert triangulate(quads).tolist() == [[0, 1, 2], [4, 5, 6], [0, 2, 3]]


def test_from_checkpoint_loads_a_saved_model(tmp_path):
    torch.manual_seed(3)
    MultiViewDiffusion(MVDiffusionConfig.tiny()).save_pretrained(tmp_path / "ckpt")
    gen = MultiViewGenerator.from_checkpoint(str(tmp_path / "ckpt"), "cpu")
    photo, mask, w2c, k = _photo()
    views = gen.generate(photo, mask, w2c, k, None, None,
                         [TargetCamera("a", np.asarray(orbit_w2c_in_head(90, 0, 0.9)),
                                       intrinsics_from_fov(16, 16, 25))], steps=1)
    assert views[0].rgba.shape == (16, 16, 4)
    with pytest.raises(PipelineError) as e:
        MultiViewGenerator.from_checkpoint(str(tmp_path / "missing"), "cpu")
    assert e.value.code == "NOT_AVAILABLE"


def test_rig_targets_use_the_protocol_conversion():
    rig = ring_rig(4, resolution=32, radius_m=1.2, center=(0.3, -1.0, 0.2))
    for cam, t in zip(rig.cameras, targets_from_rig(rig)):
        p = (0.01, 0.05, 0.08)
        u, v, z = project_head_point(cam, rig, p)
        c = t.w2c[:3, :3] @ p + t.w2c[:3, 3]
        k = t.intrinsics
        assert np.allclose([k.fx * c[0] / c[2] + k.cx, k.fy * c[1] / c[2] + k.cy, c[2]], [u, v, z])


def test_the_unet_compiles_as_one_graph_with_the_multiview_hooks():
    """torch.compile (used on CUDA hosts) traces the UNet with our attention processors and
    hooks as one graph (no graph break), and the compiled model generates the same views.
    Dynamo's tracing is what this checks; the aot_eager backend skips the C++/Triton code
    generation, which the benchmark exercises on a GPU."""
    photo, mask, w2c, k = _photo()
    v, f = _mesh()
    rig = ring_rig(4, resolution=16, radius_m=0.9)
    torch.manual_seed(0)
    model = MultiViewDiffusion(MVDiffusionConfig.tiny())
    state = {name: t.clone() for name, t in model.state_dict().items()}
    eager = MultiViewGenerator(model, "cpu").generate(photo, mask, w2c, k, v, f, rig, seed=1,
                                                      steps=3)
    twin = MultiViewDiffusion(MVDiffusionConfig.tiny())
    twin.load_state_dict(state)
    gen = MultiViewGenerator(twin, "cpu")
    torch._dynamo.reset()
    gen.model.unet = torch.compile(gen.model.unet, fullgraph=True, backend="aot_eager")
    compiled = gen.generate(photo, mask, w2c, k, v, f, rig, seed=1, steps=3)
    for a, b in zip(eager, compiled):
        assert np.abs(a.rgba.astype(int) - b.rgba.astype(int)).max() <= 1
