"""Face analysis on real photos with mediapipe's bundled models."""
import cv2
import numpy as np
import pytest

from gen3dface.backend.face import FaceAnalysisConfig, FaceAnalyzer
from gen3dface.backend.contracts import PipelineError


@pytest.fixture(scope="module")
def analyzer():
    with FaceAnalyzer(FaceAnalysisConfig(crop_size=256)) as a:
        yield a


def _read(path):
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert bgr is not None, path
    return np.ascontiguousarray(bgr[:, :, ::-1])


def test_obama_landmarks_crop_and_mask(analyzer, faces_dir):
    rgb = _read(faces_dir / "obama.jpg")
    h, w = rgb.shape[:2]
    fa = analyzer.analyze(rgb)
    assert fa.n_faces == 1 and fa.warnings == []
    assert fa.landmarks.shape == (478, 2) and fa.landmarks_z.shape == (478,)
    assert fa.image_size == (w, h)
    x0, y0, x1, y1 = fa.face_box
    u, v = fa.landmarks[:468].T
    bw, bh = x1 - x0, y1 - y0
    inside = ((u > x0 - 0.3 * bw) & (u < x1 + 0.3 * bw) & (v > y0 - 0.5 * bh) & (v < y1 + 0.3 * bh))
    assert inside.all()
    # Anatomy: the subject's right eye (33) is on the image left; nose tip (1) below the eyes.
    assert fa.landmarks[33, 0] < fa.landmarks[263, 0]
    assert fa.landmarks[1, 1] > fa.landmarks[[33, 263], 1].mean()
    # Iris centres lie between their eye corners.
    assert fa.landmarks[33, 0] < fa.landmarks[468, 0] < fa.landmarks[133, 0]
    assert fa.landmarks[362, 0] < fa.landmarks[473, 0] < fa.landmarks[263, 0]
    # Crop: square, and the affine maps the eyes to the same height inside it.
    assert fa.crop.shape == (256, 256, 3) and fa.crop.dtype == np.uint8
    eyes = fa.landmarks[[33, 263]] @ fa.crop_affine[:, :2].T + fa.crop_affine[:, 2]
    assert abs(eyes[0, 1] - eyes[1, 1]) < 0.05 * 256
    assert ((eyes > 0) & (eyes < 256)).all()
    # Mask: person in front, background out.
    assert fa.mask.shape == (h, w) and fa.mask.dtype == np.float32
    nose = fa.landmarks[1].astype(int)
    assert fa.mask[nose[1], nose[0]] > 0.5
    assert fa.mask[5, 5] < 0.5 and fa.mask[5, w - 5] < 0.5


def test_blank_image_is_no_face(analyzer):
    with pytest.raises(PipelineError) as e:
        analyzer.analyze(np.full((480, 640, 3), 127, np.uint8))
    assert e.value.code == "NO_FACE"
    assert "photo" in e.value.message


def test_tiny_face_is_too_small(analyzer, faces_dir):
    small = cv2.resize(_read(faces_dir / "obama.jpg"), None, fx=0.18, fy=0.18,
                       interpolation=cv2.INTER_AREA)
    canvas = np.full((640, 640, 3), 200, np.uint8)
    canvas[100:100 + small.shape[0], 100:100 + small.shape[1]] = small
    with pytest.raises(PipelineError) as e:
        analyzer.analyze(canvas)
    assert e.value.code == "FACE_TOO_SMALL"
    assert "64 px" in e.value.message


def test_two_people_picks_one_and_warns(analyzer, faces_dir):
    rgb = _read(faces_dir / "two_people.jpg")
    fa = analyzer.analyze(rgb)
    assert fa.n_faces == 2
    assert len(fa.warnings) == 1 and "2 faces" in fa.warnings[0]
    # The landmarks belong to the chosen face box.
    x0, y0, x1, y1 = fa.face_box
    c = fa.landmarks[:468].mean(0)
    assert x0 < c[0] < x1 and y0 < c[1] < y1


def test_face_cut_off_by_the_photo_edge_warns(analyzer, faces_dir):
    """A crop through the face (obama.jpg cut down the middle of his face) still gives a
    head, and the warning says how much of the face and which edge; the whole photo does not
    warn."""
    rgb = _read(faces_dir / "obama.jpg")
    assert not analyzer.analyze(rgb).warnings
    h, w = rgb.shape[:2]
    cut = np.ascontiguousarray(rgb[: h // 2, w // 2:])
    fa = analyzer.analyze(cut)
    assert len(fa.warnings) == 1, fa.warnings
    assert "outside the photo" in fa.warnings[0] and "left" in fa.warnings[0], fa.warnings


def test_face_cut_off_share_and_edges():
    from gen3dface.backend.face.analysis import face_cut_off

    t = np.linspace(100, 300, 468, endpoint=False)
    lm = np.stack([t, t[::-1]], 1)                 # the mesh's 468 points, evenly over 100-300
    lm = np.concatenate([lm, np.full((10, 2), 200.0)])   # + 10 iris points (not counted)
    assert face_cut_off(lm, 400, 400) is None
    shifted = lm - [150, 0]                        # a quarter of the face left of x = 0
    msg = face_cut_off(shifted, 400, 400)
    assert msg is not None and msg.startswith("25%") and "left" in msg and "top" not in msg
    both = lm - [150, 150]
    assert "left and top" in face_cut_off(both, 400, 400)
    barely = lm.copy()
    barely[:5, 0] = -1                             # 1 % outside: not worth a warning
    assert face_cut_off(barely, 400, 400) is None


def test_astronaut(analyzer):
    skimage_data = pytest.importorskip("skimage.data")
    fa = analyzer.analyze(skimage_data.astronaut())
    assert fa.n_faces == 1 and fa.landmarks.shape == (478, 2)
    assert 150 < fa.landmarks[1, 0] < 300 and 50 < fa.landmarks[1, 1] < 200


def test_large_photo_is_detected_downscaled_and_refined(analyzer, faces_dir):
    rgb = _read(faces_dir / "obama.jpg")
    big = cv2.resize(rgb, None, fx=2.5, fy=2.5, interpolation=cv2.INTER_CUBIC)
    fa_small = analyzer.analyze(rgb)
    fa_big = analyzer.analyze(big)
    err = np.hypot(*(fa_big.landmarks[:468] / 2.5 - fa_small.landmarks[:468]).T)
    assert np.median(err) < 2.0


def test_bad_input(analyzer):
    with pytest.raises(PipelineError) as e:
        analyzer.analyze(np.zeros((100, 100), np.uint8))
    assert e.value.code == "BAD_IMAGE"
