"""The ICT-FaceKit OBJ-folder converter, on a tiny folder the test writes."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from gen3dface.backend.assets import install_ict_from
from gen3dface.backend.headmodel.ict import load_ict_npz
from gen3dface.backend.headmodel.ict_obj import convert_ict_folder

# A unit cube (cm) with 5 quads in M_Face and 2 triangles in M_Teeth.
CUBE_V = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0],
                   [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]], np.float32)
UV = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32)
QUADS = [[1, 2, 3, 4], [5, 6, 7, 8], [1, 2, 6, 5], [2, 3, 7, 6], [3, 4, 8, 7]]
TRIS = [[4, 1, 5], [4, 5, 8]]
EXPR = ["jawOpen", "eyeBlink_L", "mouthSmile_R"]


def write_obj(path, verts, with_faces=True):
    lines = [f"v {x} {y} {z}" for x, y, z in verts]
    if with_faces:
        lines += [f"vt {u} {v}" for u, v in UV]
        lines.append("usemtl M_Face")
        lines += ["f " + " ".join(f"{i}/{k + 1}" for k, i in enumerate(q)) for q in QUADS]
        lines.append("usemtl M_Teeth")
        lines += ["f " + " ".join(f"{i}/{k + 1}/1" for k, i in enumerate(t)) for t in TRIS]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def facex(tmp_path):
    d = tmp_path / "ICT-FaceKit-master" / "FaceXModel"
    d.mkdir(parents=True)
    write_obj(d / "generic_neutral_mesh.obj", CUBE_V)
    for i, name in enumerate(EXPR):
        v = CUBE_V.copy()
        v[i, 1] += 0.5 * (i + 1)
        write_obj(d / f"{name}.obj", v, with_faces=False)
    for k in range(2):
        write_obj(d / f"identity{k:03d}.obj", CUBE_V * (1.0 + 0.1 * (k + 1)), with_faces=False)
    (d / "vertex_indices.json").write_text(json.dumps({"expressions": EXPR,
                                                      "idx_to_fitting_verts": [0, 1, 2]}))
    return d


def test_convert_and_load(facex, tmp_path):
    out = convert_ict_folder(facex, tmp_path / "out" / "ict_facekit_v1.npz")
    with np.load(out) as d:
        assert d["faces"].shape == (7, 4) and (d["faces"][5:, 3] == -1).all()
        assert list(d["material_names"]) == ["M_Face", "M_Teeth"]
        assert list(d["face_material"]) == [0] * 5 + [1] * 2
        assert d["identity_modes"].shape == (2, 8, 3)
        np.testing.assert_allclose(d["neutral"], CUBE_V)          # centimetres on disk
        np.testing.assert_array_equal(d["fitting_vertices"], [0, 1, 2])
    m = load_ict_npz(out)
    np.testing.assert_allclose(m.vertices, CUBE_V * 0.01, atol=1e-7)  # metres after load
    assert m.expression_names == ["jawOpen", "eyeBlinkLeft", "mouthSmileRight"]
    # eyeBlink_L moved vertex 1 up by 1 cm = 0.01 m
    np.testing.assert_allclose(m.expression_basis[1, 1], [0, 0.01, 0], atol=1e-7)
    np.testing.assert_allclose(m.identity_basis[1], CUBE_V * 0.2 * 0.01, atol=1e-7)
    np.testing.assert_array_equal(m.polygon_uvs[5], [0, 1, 2, -1])


def test_install_from_repo_folder_and_zip(facex, tmp_path):
    root = facex.parent
    out = install_ict_from(root, tmp_path / "assets")
    assert out == tmp_path / "assets" / "ict_facekit" / "ict_facekit_v1.npz" and out.is_file()
    z = tmp_path / "ict.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for f in facex.iterdir():
            zf.write(f, f"ICT-FaceKit-master/FaceXModel/{f.name}")
    out2 = install_ict_from(z, tmp_path / "assets2")
    assert load_ict_npz(out2).n_expressions == 3


def test_clear_errors(facex, tmp_path):
    (facex / "mouthSmile_R.obj").unlink()
    with pytest.raises(FileNotFoundError, match="mouthSmile_R"):
        convert_ict_folder(facex, tmp_path / "x.npz")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="FaceXModel"):
        install_ict_from(empty, tmp_path / "a")
