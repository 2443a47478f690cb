"""The mediapipe face-mesh fallback model, from synthetic landmarks."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mediapipe")

from gen3dface.backend.headmodel.mediapipe_mesh import face_mesh_model, face_mesh_triangles  # noqa: E402


def test_triangles_form_a_manifold_face():
    t = face_mesh_triangles()
    assert 840 <= len(t) <= 900 and t.min() == 0 and t.max() == 467
    edges = np.sort(np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    assert counts.max() == 2                      # no edge shared by more than two faces


def test_model_from_landmarks_faces_outward():
    rng = np.random.default_rng(0)
    # landmarks on a sphere cap in front of the camera (u right, v down, z toward the camera
    # is negative in mediapipe's convention)
    th = rng.uniform(0, 0.9, 468)
    ph = rng.uniform(0, 2 * np.pi, 468)
    r = 100.0
    x, y, z = r * np.sin(th) * np.cos(ph), r * np.sin(th) * np.sin(ph), r * np.cos(th)
    lm = np.c_[200 + x, 200 + y]
    lm[33], lm[263] = (150, 180), (250, 180)
    pm = face_mesh_model(lm, -z, (400, 400))
    m = pm.model
    assert m.n_vertices == 468 and m.n_expressions == 0 and "front of the face" in \
        m.extras["limitations"]
    assert np.isclose(np.ptp(m.vertices[:, 0]), 0.09 * (np.ptp(lm[:, 0]) / 100), rtol=0.05)
    # the camera sees vertex 0 where the landmark was (up to perspective)
    p = pm.camera.to_camera(m.vertices[0])
    u = pm.camera.fx * p[0] / p[2] + pm.camera.cx
    assert abs(u - lm[0, 0]) < 3
    assert (m.uvs >= 0).all() and (m.uvs <= 1).all()
