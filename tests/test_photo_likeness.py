"""The photo's own view gives the photo back (issue 17): gaze from the irises, eye and mouth
colours from the photo, the photo projected onto eyes and teeth, a rest pose on request.

Synthetic truth throughout: ICT heads with known eye rotations, iris colours and textures,
rendered by our own ray caster (backend/render), so every expected value comes from the
scene, never from the code under test.
"""
from __future__ import annotations

import io

import numpy as np
import pytest

from gen3dface.backend.export.head_glb import posed_as_exported
from gen3dface.backend.face.landmarks import (FACE_OVAL, LEFT_EYE_OPENING, LEFT_IRIS,
                                              RIGHT_EYE_OPENING, RIGHT_IRIS)
from gen3dface.backend.fitting.fitter import FitConfig, HeadFitter
from gen3dface.backend.fitting.gaze import eye_look_weights
from gen3dface.backend.fitting.synthetic import make_case
from gen3dface.backend.render.mesh import TexturedMesh
from gen3dface.backend.render.raycast import RenderConfig, render_views
from gen3dface.backend.texture.eyes import eye_color, eyeball
from gen3dface.backend.texture.photo_parts import measure_part_colours
from gen3dface.protocol.cameras import intrinsics_from_fov, orbit_w2c_in_head


@pytest.fixture(scope="module")
def fitter(ict_model):
    return HeadFitter(ict_model, FitConfig())


def _weights(model, named: dict) -> np.ndarray:
    w = np.zeros(model.n_expressions)
    for n, x in named.items():
        w[model.expression_names.index(n)] = x
    return w


def _project(points, w2c, k):
    q = points @ w2c[:3, :3].T + w2c[:3, 3]
    return np.c_[k.fx * q[:, 0] / q[:, 2] + k.cx, k.fy * q[:, 1] / q[:, 2] + k.cy]


@pytest.mark.parametrize("head_yaw,gaze", [(0, (15.0, -10.0)), (25, (-20.0, 8.0)),
                                           (-20, (0.0, 0.0)), (10, (8.0, 15.0))])
def test_gaze_is_recovered_within_3_degrees(fitter, ict_model, head_yaw, gaze):
    """Eyes turned by a known gaze in a synthetic photo: the fit finds it (both eyes)."""
    rng = np.random.default_rng(100 + head_yaw)
    case = make_case(fitter, rng, yaw_deg=head_yaw, noise_px=0.5, n_active_expressions=2,
                     max_expression=0.3)
    m = ict_model
    look = eye_look_weights(*gaze)
    beta = np.array(case.expression, np.float64)
    for n, x in look.items():
        beta[m.expression_names.index(n)] = x
    rest = m.posed(case.identity, None)
    turned = posed_as_exported(m, rest, beta)
    k = intrinsics_from_fov(case.image_size[0], case.image_size[1], 25.0)
    lm = case.landmarks.copy()
    rows = {int(l): i for i, l in enumerate(fitter.mapping.landmark_ids)}
    iris_rows = [rows[int(i)] for i in np.r_[RIGHT_IRIS, LEFT_IRIS]]
    iris_px = _project(fitter.mapping.points(turned)[iris_rows], case.w2c, k)
    lm[np.r_[RIGHT_IRIS, LEFT_IRIS]] = iris_px + rng.normal(0, 0.3, iris_px.shape)
    fit = fitter.fit_landmarks(lm, case.image_size)
    g = fit.info["gaze"]
    assert abs(g["yaw_deg"] - gaze[0]) < 3.0, g
    assert abs(g["pitch_deg"] - gaze[1]) < 3.0, g
    # both eyes carry the same gaze: no crossed eyes
    w = dict(zip(fit.expression_names, fit.expression))
    assert abs(w["eyeLookOutLeft"] - w["eyeLookInRight"]) < 1e-6
    assert abs(w["eyeLookUpLeft"] - w["eyeLookUpRight"]) < 1e-6


def test_fit_does_not_saturate_on_a_neutral_face(fitter):
    """Landmark noise on a neutral face is not explained by full-strength blendshapes."""
    rng = np.random.default_rng(8)
    case = make_case(fitter, rng, yaw_deg=15, noise_px=1.5, n_active_expressions=1,
                     max_expression=1e-9)
    fit = fitter.fit_landmarks(case.landmarks, case.image_size)
    assert fit.expression.max() < 0.35, dict(zip(fit.expression_names, fit.expression.round(2)))


def _eye_scene(model, iris_rgb, sclera_rgb, skin_rgb=(0.75, 0.55, 0.45)):
    """ICT head: flat skin, sclera painted with the procedural eye of a known iris colour."""
    from gen3dface.backend.render.synthetic import template_triangles

    v = model.vertices.astype(np.float64)
    meshes = [TexturedMesh(v, template_triangles(model, ("M_Face", "M_BackHead")),
                           vertex_colors=np.tile(skin_rgb, (len(v), 1)))]
    for side in ("Left", "Right"):
        eye = eyeball(v, model, side)
        cols = eye_color(v, eye, iris_rgb, sclera_rgb)
        meshes.append(TexturedMesh(v, template_triangles(model, (f"M_Sclera{side}",)),
                                   vertex_colors=cols))
    return v, meshes


@pytest.mark.parametrize("iris_rgb", [(0.20, 0.35, 0.55), (0.30, 0.18, 0.08)])
def test_iris_and_sclera_colour_from_a_synthetic_render(fitter, ict_model, iris_rgb):
    m = ict_model
    sclera = (0.86, 0.82, 0.78)
    v, meshes = _eye_scene(m, iris_rgb, sclera)
    w2c = np.asarray(orbit_w2c_in_head(0, 0, 0.35, (0.0, 0.03, 0.05)))
    k = intrinsics_from_fov(768, 768, 25)
    img = render_views(meshes, [(w2c, k)], RenderConfig(shading="unlit"))[0].rgba[..., :3]
    lm = np.zeros((478, 2))
    lm[fitter.mapping.landmark_ids] = _project(fitter.mapping.points(v), w2c, k)
    c = measure_part_colours(np.ascontiguousarray(img), lm)
    assert c.measured.get("iris") and c.measured.get("sclera")
    chroma = lambda x: np.asarray(x) / np.sum(x)            # noqa: E731
    assert np.abs(chroma(c.iris) - chroma(iris_rgb)).max() < 0.06, c.info()
    # the nearer of two iris colours is the true one
    other = (0.30, 0.18, 0.08) if iris_rgb[2] > 0.4 else (0.20, 0.35, 0.55)
    assert np.linalg.norm(chroma(c.iris) - chroma(iris_rgb)) < \
        np.linalg.norm(chroma(c.iris) - chroma(other))
    assert np.abs(np.asarray(c.sclera) - sclera).max() < 0.12, c.info()


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0 ** 2 / max(mse, 1e-9))


@pytest.fixture(scope="module")
def synthetic_photo_result(ict_model, data_dir):
    """A synthetic ICT head with a known texture, rendered by our ray caster, through the
    offline pipeline as a user's photo would go."""
    from PIL import Image

    from gen3dface.backend.pipeline.pipeline import HeadPipeline, PipelineConfig
    from gen3dface.backend.render.synthetic import SyntheticHeadConfig, make_synthetic_head

    head = make_synthetic_head(ict_model, seed=2, config=SyntheticHeadConfig(max_jaw_open=0.0))
    w2c = np.asarray(orbit_w2c_in_head(10, 0, 0.55, (0.0, 0.02, 0.03)))
    k = intrinsics_from_fov(512, 512, 25)
    photo = render_views(head.meshes, [(w2c, k)],
                         RenderConfig(shading="unlit", background=(200, 200, 200, 255)))[0]
    rgb = np.ascontiguousarray(photo.rgba[..., :3])
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    pipe = HeadPipeline(PipelineConfig(assets_dir=data_dir))
    res = pipe.run(buf.getvalue(), options={"generator": "offline"})
    neutral = pipe.run(buf.getvalue(), options={"generator": "offline", "neutral": True})
    return head, rgb, res, neutral


def test_photo_view_gives_the_photo_back(synthetic_photo_result, fitter):
    """The GLB rendered from the photo's fitted camera reproduces the photo in the face
    region (inside the face oval: skin, eyes, lips)."""
    import cv2

    from gen3dface.backend.render.glb_scene import glb_parts

    head, rgb, res, _ = synthetic_photo_result
    cam = res.sidecar["camera"]
    w2c = np.asarray(cam["w2c"])
    ki = cam["intrinsics"]

    class K:
        fx, fy, cx, cy = ki["fx"], ki["fy"], ki["cx"], ki["cy"]
        width, height = ki["width"], ki["height"]

    out = render_views(glb_parts(res.glb), [(w2c, K)],
                       RenderConfig(shading="unlit", background=(200, 200, 200, 255)))[0]
    back = out.rgba[..., :3]
    # the face region: inside the true face oval, shrunk a little away from the silhouette
    lm = np.zeros((478, 2))
    truth_w2c = np.asarray(orbit_w2c_in_head(10, 0, 0.55, (0.0, 0.02, 0.03)))
    kt = intrinsics_from_fov(512, 512, 25)
    lm[fitter.mapping.landmark_ids] = _project(fitter.mapping.points(head.template_vertices),
                                               truth_w2c, kt)
    mask = np.zeros(rgb.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(lm[FACE_OVAL]).astype(np.int32)], 1)
    mask = cv2.erode(mask, np.ones((9, 9), np.uint8)).astype(bool)
    eyes = np.zeros(rgb.shape[:2], np.uint8)
    for opening in (RIGHT_EYE_OPENING, LEFT_EYE_OPENING):
        cv2.fillPoly(eyes, [np.round(lm[opening]).astype(np.int32)], 1)
    eyes = eyes.astype(bool)
    face_psnr = _psnr(back[mask], rgb[mask])
    eye_psnr = _psnr(back[eyes], rgb[eyes])
    print(f"photo-view PSNR in the face oval {face_psnr:.1f} dB, eye openings {eye_psnr:.1f} dB")
    assert mask.sum() > 20000
    assert face_psnr > 19.0, face_psnr          # measured 20.9 dB (resampling the noisy skin twice)
    # the eye openings show the photo's eyes (white sclera here), not a modelled eyeball
    assert eye_psnr > 17.0, eye_psnr            # measured 20.6 dB


def test_neutral_option_writes_a_rest_pose(synthetic_photo_result):
    from gen3dface.backend.export.gltf import read_glb

    _, _, res, neutral = synthetic_photo_result
    doc, _ = read_glb(neutral.glb)
    head = next(m for m in doc["meshes"] if m["name"] == "Head")
    assert head.get("weights") and max(head["weights"]) == 0.0
    fitted, kept = (r.sidecar["coefficients"]["expression"] for r in (res, neutral))
    assert max(kept.values()) > 0.0 and kept == fitted       # the fit stays in the sidecar
    doc2, _ = read_glb(res.glb)
    assert max(next(m for m in doc2["meshes"] if m["name"] == "Head")["weights"]) > 0.0


def test_part_textures_scale_with_the_face_in_the_photo():
    from gen3dface.backend.texture.photo_parts import PartTextureConfig, part_resolution

    cfg = PartTextureConfig()
    assert part_resolution(150, cfg) == 256          # a 150 px face: its iris is ~8 px across
    assert part_resolution(341, cfg) == 256
    assert part_resolution(500, cfg) == 512
    assert part_resolution(5000, cfg) == cfg.max_size
    assert part_resolution(None, cfg) == cfg.max_size

