"""The head fitter on synthetic landmarks with known ground truth, and on a real photo."""
import cv2
import numpy as np
import pytest

from gen3dface.backend.fitting import FitConfig, HeadFitter
from gen3dface.backend.fitting.correspondence import load_mapping
from gen3dface.backend.fitting.fitter import yaw_of
from gen3dface.backend.fitting.synthetic import make_case
from gen3dface.backend.contracts import (CallbackSink, CancelToken, JobCancelled,
                                               PipelineError)
from gen3dface.protocol.cameras import (Intrinsics, camera_from_opencv_w2c_in_head,
                                        default_head_to_world, project_head_point, Rig)


@pytest.fixture(scope="module")
def fitter(ict_model):
    return HeadFitter(ict_model, FitConfig())


def _face_error_mm(fitter, fit, case):
    face = fitter.model.vertices_of_groups("M_Face")
    return float(np.linalg.norm(fit.vertices[face] - case.vertices[face], axis=1).mean() * 1000)


def _angle_deg(r1, r2):
    c = (np.trace(r1.T @ r2) - 1) / 2
    return float(np.degrees(np.arccos(np.clip(c, -1, 1))))


def test_recovers_frontal_pose_identity_and_expression(fitter):
    rng = np.random.default_rng(3)
    # the camera 1.5 m away, where FitConfig.distance_prior_m expects it (landmarks barely
    # pin the focal down: test_fitting_distance_prior.py shows what the prior does)
    case = make_case(fitter, rng, yaw_deg=10, pitch_deg=5, noise_px=1.0, face_fraction=0.3)
    events = []
    fit = fitter.fit_landmarks(case.landmarks, case.image_size,
                               sink=CallbackSink(on_progress=lambda *a: events.append(a)))
    assert fit.vertices.shape == (fitter.model.n_vertices, 3) and fit.vertices.dtype == np.float32
    assert _face_error_mm(fitter, fit, case) < 3.5
    neutral_error = np.linalg.norm(fitter.model.vertices - case.vertices, axis=1).mean() * 1000
    assert _face_error_mm(fitter, fit, case) < 0.6 * neutral_error
    assert _angle_deg(fit.w2c[:3, :3], case.w2c[:3, :3]) < 3.0
    assert abs(fit.camera.fx / case.focal - 1) < 0.35
    assert fit.landmark_error_px < 2.0            # 1 px noise per axis -> ~1.25 px expected
    assert fit.residuals_px.shape == (478, 2)
    assert np.corrcoef(fit.identity[:10], case.identity[:10])[0, 1] > 0.7
    assert np.all((fit.expression >= 0) & (fit.expression <= 1))
    assert events and events[-1][0] == "fit" and events[-1][1] == pytest.approx(1.0, abs=0.2)


def test_expression_is_recovered(fitter, ict_model):
    rng = np.random.default_rng(5)
    case = make_case(fitter, rng, yaw_deg=0, noise_px=0.5, n_active_expressions=1,
                     max_expression=1e-9)
    jaw = ict_model.expression_names.index("jawOpen")
    beta = np.zeros(ict_model.n_expressions)
    beta[jaw] = 0.6
    # Re-make the same camera's landmarks with the jaw open.
    verts = ict_model.posed(case.identity, beta).astype(np.float64)
    pts = fitter.mapping.points(verts)
    q = pts @ case.w2c[:3, :3].T + case.w2c[:3, 3]
    lm = case.focal * q[:, :2] / q[:, 2:3] + np.array(case.image_size) / 2
    fit = fitter.fit_landmarks(lm, case.image_size)
    assert fit.expression[jaw] > 0.35
    assert np.delete(fit.expression, jaw).max() < 0.3


@pytest.mark.parametrize("shapes", [{"jawOpen": 0.5, "mouthFunnel": 0.5},   # an "O"
                                    {"mouthFunnel": 0.6},                  # lips alone
                                    {"jawOpen": 0.7}])                     # the jaw alone
def test_an_open_mouth_is_told_from_lips_pushed_out(fitter, shapes):
    """The landmarks of an open mouth are fitted with the jaw and the lips each where they
    were: neither stands in for the other (a jaw read as lips pushes them out in a snout when
    the head turns). The expression prior as it is keeps both; with its weight three times
    heavier on the lip shapes, a funnel of 0.6 came back at 0.34 on average (README)."""
    names = fitter.expression_names
    for seed in range(3):
        rng = np.random.default_rng(seed)
        case = make_case(fitter, rng, yaw_deg=rng.uniform(-20, 20), expression=shapes)
        fit = fitter.fit_landmarks(case.landmarks, case.image_size)
        got = dict(zip(names, fit.expression))
        for name in ("jawOpen", "mouthFunnel"):
            assert abs(got[name] - shapes.get(name, 0.0)) < 0.25, (seed, name, got[name])
        lips_alone = max(got[n] for n in ("mouthLowerDownLeft", "mouthLowerDownRight",
                                          "mouthUpperUpLeft", "mouthUpperUpRight"))
        assert lips_alone < 0.2, (seed, lips_alone)


def test_profile_view(fitter):
    rng = np.random.default_rng(7)
    case = make_case(fitter, rng, yaw_deg=-70, noise_px=1.0)
    fit = fitter.fit_landmarks(case.landmarks, case.image_size)
    assert abs(fit.info["yaw_deg"] - yaw_of(case.w2c[:3, :3])) < 5.0
    assert abs(yaw_of(case.w2c[:3, :3]) + 70) < 1.0
    assert _face_error_mm(fitter, fit, case) < 4.5
    assert fit.landmark_error_px < 2.0


def test_w2c_and_intrinsics_follow_the_shared_camera_convention(fitter):
    case = make_case(fitter, np.random.default_rng(11), yaw_deg=30, noise_px=0.0)
    fit = fitter.fit_landmarks(case.landmarks, case.image_size)
    r = fit.w2c[:3, :3]
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-9)
    assert np.linalg.det(r) == pytest.approx(1.0)
    rig = Rig(cameras=(), head_to_world=default_head_to_world())
    cam = camera_from_opencv_w2c_in_head(fit.w2c, fit.camera.intrinsics, rig)
    nose = fitter.mapping.points(fit.vertices.astype(np.float64))[4]
    u, v, depth = project_head_point(cam, rig, nose)
    assert depth > 0
    np.testing.assert_allclose((u, v), fit.projected[4], atol=1e-4)
    np.testing.assert_allclose((u, v), case.landmarks[4], atol=1.5)


def test_cancel_and_bad_input(fitter, ict_model):
    case = make_case(fitter, np.random.default_rng(0))
    token = CancelToken()
    token.cancel()
    with pytest.raises(JobCancelled):
        fitter.fit_landmarks(case.landmarks, case.image_size, cancel=token)
    with pytest.raises(PipelineError):
        fitter.fit_landmarks(np.zeros((10, 2)), (512, 512))
    bad = case.landmarks.copy()
    bad[3, 0] = np.nan
    with pytest.raises(PipelineError):
        fitter.fit_landmarks(bad, (512, 512))


def test_mapping_must_match_the_model(ict_model):
    from dataclasses import replace
    m = replace(load_mapping(), n_vertices=123)
    with pytest.raises(ValueError, match="vertices"):
        HeadFitter(ict_model, mapping=m)


def test_real_photo_obama(fitter, faces_dir):
    from gen3dface.backend.face import FaceAnalysisConfig, FaceAnalyzer
    bgr = cv2.imread(str(faces_dir / "obama.jpg"), cv2.IMREAD_COLOR)
    with FaceAnalyzer(FaceAnalysisConfig(segment=False)) as analyzer:
        fa = analyzer.analyze(np.ascontiguousarray(bgr[:, :, ::-1]))
    assert fa.landmarks.shape == (478, 2)
    fit = fitter.fit(fa)
    face_px = fit.info["face_size_px"]
    assert fit.landmark_error_px < 0.02 * face_px          # measured ~0.9 %
    assert fit.landmark_error_median_px < fit.landmark_error_px
    assert abs(fit.info["yaw_deg"]) < 15                    # a frontal portrait
    assert 0.2 < fit.info["distance_m"] < 5.0
    # Smiling: the fit should use the smile blendshapes more than the frown ones.
    names = fit.expression_names
    smile = max(fit.expression[names.index(n)] for n in ("mouthSmileLeft", "mouthSmileRight"))
    frown = max(fit.expression[names.index(n)] for n in ("mouthFrownLeft", "mouthFrownRight"))
    assert smile > frown


def test_the_damped_step_solve_is_scipys_to_the_bit():
    """The fitter's step solve (Cholesky, potrf + potrs) gives scipy.linalg.solve's
    assume_a="pos" answer exactly, so fits are unchanged by skipping its condition estimate;
    a matrix that is not positive definite is refused as before."""
    import scipy.linalg

    from gen3dface.backend.fitting.fitter import _solve_positive

    rng = np.random.default_rng(7)
    for n in (7, 60, 250):
        j = rng.standard_normal((2 * n + 10, n))
        hess = j.T @ j
        a = hess + 1e-3 * np.diag(np.diag(hess) + 1e-9)
        b = rng.standard_normal(n)
        np.testing.assert_array_equal(_solve_positive(a, b),
                                      scipy.linalg.solve(a, b, assume_a="pos", check_finite=False))
    with pytest.raises(np.linalg.LinAlgError):
        _solve_positive(-np.eye(3), np.ones(3))
