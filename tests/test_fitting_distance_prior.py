"""The focal prior from a camera distance (FitConfig.distance_prior_m): cropping a photo does not
change the perspective it was taken with, so the fitted camera must not move when the photo is
cropped; a field-of-view prior reads the crop as a closer camera."""
import numpy as np
import pytest

from gen3dface.backend.fitting import FitConfig, HeadFitter
from gen3dface.backend.fitting.synthetic import make_case


@pytest.fixture(scope="module")
def fitters(ict_model):
    return {"distance": HeadFitter(ict_model, FitConfig(distance_prior_m=1.5)),
            "fov": HeadFitter(ict_model, FitConfig(distance_prior_m=0.0))}


def _camera_distance(fit) -> float:
    """Distance (m) from the camera centre to the head frame's origin."""
    w2c = np.asarray(fit.w2c, np.float64)
    return float(np.linalg.norm(-w2c[:3, :3].T @ w2c[:3, 3]))


def _crop(case, factor: float):
    """The same photo cropped about the face to 1/factor of its size: landmarks shift, the
    image shrinks, the camera (focal in pixels) stays."""
    w, h = case.image_size
    lm = np.asarray(case.landmarks, np.float64)
    centre = lm.mean(0)
    cw, ch = int(round(w / factor)), int(round(h / factor))
    x0, y0 = centre[0] - cw / 2, centre[1] - ch / 2
    return lm - np.array([x0, y0]), (cw, ch)


@pytest.mark.parametrize("yaw", [0.0, 30.0])
def test_a_cropped_photo_keeps_its_camera_under_the_distance_prior(fitters, ict_model, yaw):
    rng = np.random.default_rng(11)
    case = make_case(fitters["distance"], rng, yaw_deg=yaw, noise_px=0.5, face_fraction=0.3)
    lm_crop, size_crop = _crop(case, 2.5)      # the face now fills ~75 % of the image
    got = {}
    for name, fitter in fitters.items():
        full = fitter.fit_landmarks(case.landmarks, case.image_size)
        crop = fitter.fit_landmarks(lm_crop, size_crop)
        got[name] = (_camera_distance(full), _camera_distance(crop),
                     full.camera.fx, crop.camera.fx)
    d_full, d_crop, f_full, f_crop = got["distance"]
    print({k: tuple(round(x, 3) for x in v) for k, v in got.items()},
          "true distance", round(float(np.linalg.norm(case.w2c[:3, 3])), 3),
          "focal", round(case.focal, 1))
    # distance prior: the crop changes neither the camera's distance nor its focal length
    assert abs(d_crop / d_full - 1) < 0.05 and abs(f_crop / f_full - 1) < 0.05
    # field-of-view prior: the crop's focal is pulled toward 2.5x shorter, the camera closer
    fd_full, fd_crop, ff_full, ff_crop = got["fov"]
    assert fd_crop < 0.8 * fd_full and ff_crop < 0.8 * ff_full
