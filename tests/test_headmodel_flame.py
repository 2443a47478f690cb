"""FLAME loader on a small synthetic generic_model.pkl of the same structure: a dict of
chumpy arrays (pickled by a stand-in `chumpy.ch.Ch` class that is then removed, so loading
proves chumpy is not needed) and a scipy sparse J_regressor."""
from __future__ import annotations

import pickle
import sys
import types

import numpy as np
import pytest
import scipy.sparse as sp

from gen3dface.backend.headmodel.flame import load_flame_pkl


class Ch:          # stands in for chumpy.ch.Ch: keeps its value in .x
    def __init__(self, x):
        self.x = x


def _write_pkl(path, n=12, n_comp=8):
    rng = np.random.default_rng(0)
    d = {"v_template": Ch(rng.normal(size=(n, 3)) * 0.1),
         "f": np.array([[0, 1, 2], [2, 3, 0], [4, 5, 6], [7, 8, 9]], np.uint32),
         "shapedirs": Ch(rng.normal(size=(n, 3, n_comp)) * 0.01),
         "posedirs": Ch(np.zeros((n, 3, 36))),
         "J_regressor": sp.csc_matrix(np.eye(5, n)),
         "weights": Ch(np.ones((n, 5)) / 5), "kintree_table": np.zeros((2, 5), np.int64),
         "bs_style": "lbs", "bs_type": "lrotmin"}
    fake = types.ModuleType("chumpy.ch")
    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    fake.Ch = Ch
    pkg = types.ModuleType("chumpy")
    pkg.ch = fake
    sys.modules["chumpy"], sys.modules["chumpy.ch"] = pkg, fake
    try:
        path.write_bytes(pickle.dumps(d, protocol=2))
    finally:
        del sys.modules["chumpy.ch"], sys.modules["chumpy"]
    return d


def test_load_synthetic_flame(tmp_path):
    d = _write_pkl(tmp_path / "generic_model.pkl")
    assert "chumpy" not in sys.modules and "chumpy.ch" not in sys.modules
    m = load_flame_pkl(tmp_path / "generic_model.pkl")
    np.testing.assert_allclose(m.vertices, d["v_template"].x, rtol=1e-6)
    assert m.polygons.shape == (4, 3)
    assert m.n_identity == 4 and m.n_expressions == 4        # 8 components split in half
    np.testing.assert_allclose(m.identity_basis[1], d["shapedirs"].x[:, :, 1], rtol=1e-6)
    np.testing.assert_allclose(m.expression_basis[0], d["shapedirs"].x[:, :, 4], rtol=1e-6)
    assert m.expression_names[0] == "flame_exp_000"
    assert m.uvs.shape == (12, 2) and m.extras["uv_source"] == "cylindrical projection"


def test_refuses_code_and_non_flame(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    p = tmp_path / "evil.pkl"
    p.write_bytes(pickle.dumps({"v_template": Evil()}))
    with pytest.raises(ValueError, match="not a FLAME model"):
        load_flame_pkl(p)
