"""The stored mediapipe -> ICT landmark correspondence is consistent."""
import json

import numpy as np
import pytest

from gen3dface.backend.face.landmarks import FACE_OVAL, IRIS
from gen3dface.backend.fitting.correspondence import ICT_CORRESPONDENCE, load_mapping


@pytest.fixture(scope="module")
def mapping():
    return load_mapping()


def test_indices_and_barycentrics_valid(mapping):
    assert np.array_equal(mapping.landmark_ids, np.arange(478))
    assert mapping.triangles.shape == (478, 3) and mapping.barycentric.shape == (478, 3)
    assert (mapping.triangles >= 0).all() and (mapping.triangles < mapping.n_vertices).all()
    np.testing.assert_allclose(mapping.barycentric.sum(1), 1.0, atol=1e-5)
    assert (mapping.barycentric >= 0).all()
    assert set(np.nonzero(mapping.contour)[0]) == set(FACE_OVAL.tolist())
    assert set(np.nonzero(mapping.iris)[0]) == set(IRIS.tolist())
    d = json.loads(ICT_CORRESPONDENCE.read_text())
    snap = np.array([r["snap_distance_m"] for r in d["landmarks"]])
    assert np.median(snap) < 0.001 and snap.max() < 0.01


def test_triangles_are_real_faces_of_the_right_region(mapping, ict_model):
    assert mapping.n_vertices == ict_model.n_vertices
    tri, _, poly = ict_model.triangles()
    groups = np.asarray(ict_model.group_names)[ict_model.polygon_groups[poly]]
    lookup = {tuple(sorted(t)): g for t, g in zip(tri.tolist(), groups)}
    for i, t in enumerate(mapping.triangles.tolist()):
        g = lookup.get(tuple(sorted(t)))
        assert g is not None, f"landmark {i}: {t} is not a triangle of the model"
        if mapping.iris[i]:
            assert g in ("M_IrisLeft", "M_IrisRight", "M_ScleraLeft", "M_ScleraRight")
        else:
            assert g == "M_Face"


def test_anatomy_against_ict_multipie_landmarks(mapping, ict_model):
    p = mapping.points(ict_model.vertices.astype(np.float64))
    lm68 = ict_model.vertices[ict_model.landmarks68]
    for mp_i, ict_j in ((1, 30), (152, 8), (33, 36), (263, 45), (61, 48), (291, 54)):
        assert np.linalg.norm(p[mp_i] - lm68[ict_j]) < 0.008, (mp_i, ict_j)
    # Mirror pairs (the model is symmetric about x = 0): right/left eye corners, mouth
    # corners, cheek outline, iris centres.
    for a, b in ((33, 263), (133, 362), (61, 291), (234, 454), (468, 473)):
        assert p[a, 0] < 0 < p[b, 0]
        assert np.linalg.norm(p[a] * [-1, 1, 1] - p[b]) < 0.005, (a, b)
    # Iris centres sit in front of the eyes, in the eye sockets.
    assert (p[[468, 473], 2] > lm68[[36, 45], 2] - 0.01).all()


@pytest.mark.slow
def test_script_reproduces_the_stored_file(tmp_path, ict_npz):
    import importlib.util
    from pathlib import Path
    script = Path(__file__).resolve().parents[1] / "scripts" / "derive_landmark_correspondence.py"
    spec = importlib.util.spec_from_file_location("derive", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "m.json"
    assert mod.main(["--ict", str(ict_npz), "--out", str(out)]) == 0
    from gen3dface.backend.headmodel.ict import load_ict_npz
    model = load_ict_npz(ict_npz, n_identity=1)
    v = model.vertices.astype(np.float64)
    a, b = load_mapping(out).points(v), load_mapping().points(v)
    assert np.median(np.linalg.norm(a - b, axis=1)) < 0.001
