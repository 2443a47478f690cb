"""The exported shape-key set (backend/headmodel/arkit.py): ARKit's 52 built from ICT-FaceKit's
53, the fitted weights mapped exactly, models without ARKit names passed through."""
from __future__ import annotations

import numpy as np
import pytest

from gen3dface.backend.headmodel.arkit import (ARKIT_BLENDSHAPES, EXPORTED_NAMES, ArkitConfig,
                                               export_shapes)
from gen3dface.backend.headmodel.model import HeadModel


def test_the_set_for_ict(ict_model):
    s = export_shapes(ict_model)
    assert s.is_arkit and s.names == list(EXPORTED_NAMES) and len(s) == 56
    src = dict(zip(s.names, s.sources))
    assert src["tongueOut"].startswith("derived")
    assert src["browInnerUp"].startswith("ict sum") and src["cheekPuff"].startswith("ict sum")
    assert sum(v == "ict" for v in src.values()) == 49
    # the ICT shapes are ICT's own arrays, not copies
    jaw = s.delta(s.names.index("jawOpen"))
    assert np.shares_memory(jaw, ict_model.expression_basis)
    np.testing.assert_array_equal(
        jaw, ict_model.expression_basis[ict_model.expression_names.index("jawOpen")])


def test_fitted_weights_map_exactly(ict_model):
    m = ict_model
    s = export_shapes(m)
    rng = np.random.default_rng(3)
    for _ in range(3):
        w = rng.uniform(0, 1, m.n_expressions)
        ws = s.weights_from(w)
        assert ws[s.names.index("tongueOut")] == 0.0 and ws.min() >= 0.0
        want = np.tensordot(w, m.expression_basis.astype(np.float64), axes=1)
        got = sum(ws[i] * s.delta(i).astype(np.float64) for i in range(len(s)) if ws[i])
        np.testing.assert_allclose(got, want, atol=1e-7)


def test_without_the_extras_the_52_alone(ict_model):
    s = export_shapes(ict_model, config=ArkitConfig(keep_split_extras=False))
    assert s.names == list(ARKIT_BLENDSHAPES)
    w = np.zeros(ict_model.n_expressions)
    w[ict_model.expression_names.index("browInnerUpLeft")] = 0.8
    w[ict_model.expression_names.index("browInnerUpRight")] = 0.4
    assert s.weights_from(w)[s.names.index("browInnerUp")] == pytest.approx(0.6)


def test_models_without_arkit_names_pass_through():
    n = 4
    m = HeadModel("flame", np.zeros((n, 3), np.float32), np.array([[0, 1, 2, -1]], np.int32),
                  np.zeros((3, 2), np.float32), np.array([[0, 1, 2, -1]], np.int32),
                  np.zeros(1, np.int16), ["skin"], np.zeros((1, n, 3), np.float32),
                  np.ones((2, n, 3), np.float32), ["flame_exp_000", "flame_exp_001"])
    s = export_shapes(m)
    assert not s.is_arkit and s.names == ["flame_exp_000", "flame_exp_001"]
    assert list(s.weights_from([0.3, 0.7])) == [0.3, 0.7]
