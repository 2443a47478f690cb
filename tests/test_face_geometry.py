"""Pure tests of face selection and canonical-crop geometry (no mediapipe)."""
import cv2
import numpy as np
import pytest

from gen3dface.backend.face.alignment import (apply_affine, canonical_square, invert_affine,
                                               square_to_affine, to_opencv_affine)
from gen3dface.backend.face.landmarks import FACE_OVAL, LEFT_EYE_CORNERS, RIGHT_EYE_CORNERS
from gen3dface.backend.face.selection import box_iou, merge_boxes, pick_main_face


def test_pick_main_face_prefers_large_and_central():
    w, h = 1000, 600
    central_small = (450, 250, 550, 350)
    corner_big = (0, 0, 130, 130)
    central_big = (400, 200, 600, 400)
    assert pick_main_face(np.array([central_small, corner_big]), w, h) == 0
    assert pick_main_face(np.array([central_small, central_big, corner_big]), w, h) == 1


def test_merge_boxes_suppresses_duplicates():
    boxes = [(0, 0, 10, 10), (1, 1, 11, 11), (50, 50, 60, 60)]
    kept, scores = merge_boxes(boxes, [0.9, 0.8, 0.7])
    assert len(kept) == 2 and scores.tolist() == [0.9, 0.7]
    assert box_iou(boxes[0], boxes[0]) == pytest.approx(1.0)
    assert box_iou(boxes[0], boxes[2]) == 0.0


def _fake_landmarks(angle_deg=20.0, centre=(300.0, 200.0), eye_dist=60.0):
    lm = np.zeros((478, 2))
    a = np.radians(angle_deg)
    ex, ey = np.array([np.cos(a), np.sin(a)]), np.array([-np.sin(a), np.cos(a)])
    c = np.array(centre)
    for i in RIGHT_EYE_CORNERS:
        lm[i] = c - ex * eye_dist / 2
    for i in LEFT_EYE_CORNERS:
        lm[i] = c + ex * eye_dist / 2
    lm[61] = c - ex * 25 + ey * 70
    lm[291] = c + ex * 25 + ey * 70
    return lm, ex


def test_canonical_crop_levels_the_eyes_and_round_trips():
    lm, _ = _fake_landmarks(angle_deg=20.0)
    a = square_to_affine(canonical_square(lm), 512)
    eyes = apply_affine(a, lm[[33, 263]])
    assert abs(eyes[0, 1] - eyes[1, 1]) < 1e-6          # eyes level in the crop
    assert eyes[0, 0] < eyes[1, 0]                      # subject's right eye on the left
    assert 0 < eyes[0, 0] < 512 and 0 < eyes[0, 1] < 256
    back = apply_affine(invert_affine(a), eyes)
    np.testing.assert_allclose(back, lm[[33, 263]], atol=1e-9)


def test_opencv_affine_follows_pixel_centre_convention():
    # A bright pixel (i=7, j=3) has its centre at (7.5, 3.5); scale by 2 about the corner:
    # it lands on the 2x2 block whose centre is (15, 7), i.e. pixels 14..15 x 6..7.
    img = np.zeros((10, 10), np.float32)
    img[3, 7] = 1.0
    a = np.array([[2.0, 0, 0], [0, 2.0, 0]])
    out = cv2.warpAffine(img, to_opencv_affine(a), (20, 20), flags=cv2.INTER_NEAREST)
    ys, xs = np.nonzero(out)
    assert set(xs) == {14, 15} and set(ys) == {6, 7}


def test_face_oval_indices():
    assert len(FACE_OVAL) == 36 and len(set(FACE_OVAL.tolist())) == 36
    assert 10 in FACE_OVAL and 152 in FACE_OVAL
