"""Synthetic ICT heads: the prior is a real estimate from the input view (closer to the truth
than the mean head, not equal to it), and the rendered dataset is what its cameras say."""
from __future__ import annotations

import numpy as np
import pytest

from gen3dface.backend.data.format import PriorMesh, load_rgba, read_dataset
from gen3dface.backend.data.silhouette import project
from gen3dface.backend.synth.ict_heads import SynthConfig, synthesize_dataset
from gen3dface.backend.synth.prior_fit import (LandmarkFitConfig, fit_to_landmarks,
                                               project_points)
from gen3dface.backend.data.format import orbit_w2c


def test_landmark_fit_estimates_the_head(ict_model):
    m = ict_model
    rng = np.random.default_rng(0)
    ident = rng.normal(0, 1.0, 30)
    expr = np.zeros(m.n_expressions)
    expr[m.expression_names.index("jawOpen")] = 0.3
    truth = m.posed(ident, expr)
    lm = np.asarray(m.landmarks68)
    k = np.array([[600.0, 0, 128], [0, 600.0, 128], [0, 0, 1]])
    w2c = orbit_w2c(20, 5, 0.9, (0, -0.01, 0.02))
    uv = project_points(truth[lm], w2c, k)
    _, e_fit, fitted = fit_to_landmarks(m, uv, lm, w2c, k, LandmarkFitConfig())
    face = m.vertices_of_groups("M_Face")
    err_fit = np.linalg.norm(fitted[face] - truth[face], axis=1).mean()
    err_mean = np.linalg.norm(m.vertices[face] - truth[face], axis=1).mean()
    assert err_fit < 0.6 * err_mean, (err_fit, err_mean)
    assert err_fit > 1e-4                    # an estimate, not the ground truth
    reproj = np.linalg.norm(project_points(fitted[lm], w2c, k) - uv, axis=1).mean()
    assert reproj < 2.0
    assert e_fit[m.expression_names.index("jawOpen")] > 0.1
    assert (e_fit >= 0).all() and (e_fit <= 1).all()


def test_synthesize_small_dataset(ict_model, tmp_path):
    cfg = SynthConfig(n_identities=2, n_views=6, resolution=32, layout="grid",
                      grid_elevations=(0.0, 25.0), prior_views_per_identity=2, supersample=1)
    synthesize_dataset(ict_model, tmp_path / "ds", cfg)
    idx = read_dataset(tmp_path / "ds")
    assert [r.identity for r in idx.identities] == ["ict_00000", "ict_00001"]
    firsts = []
    for r in idx.identities:
        assert len(r.views) == 6
        assert sum(v.input_candidate for v in r.views) >= 1
        assert len(r.prior_per_view) == 1          # + the default prior = 2
        prior = PriorMesh.load(r.prior_path())
        assert prior.head_model == "ict_facekit" and len(prior.faces) > 1000
        for v in r.views:
            rgba = load_rgba(r, v)
            assert rgba.shape == (32, 32, 4)
            # the head (camera target) is in the middle of every view, the corner is empty
            kk = np.array([[v.intrinsics.fx, 0, v.intrinsics.cx],
                           [0, v.intrinsics.fy, v.intrinsics.cy], [0, 0, 1]])
            uv, _ = project(np.array([[0.0, -0.01, 0.02]]), v.w2c_array, kk)
            assert np.allclose(uv, 16, atol=1e-6)
            assert rgba[16, 16, 3] == 255 and rgba[0, 0, 3] == 0
        firsts.append(load_rgba(r, r.views[0]).astype(int))
    assert np.abs(firsts[0] - firsts[1]).mean() > 2      # two different people
    # seeded: the same config writes the same images
    synthesize_dataset(ict_model, tmp_path / "ds2", cfg)
    r2 = read_dataset(tmp_path / "ds2").identities[0]
    np.testing.assert_array_equal(load_rgba(r2, r2.views[0]), firsts[0].astype(np.uint8))


def test_synth_config_checks():
    with pytest.raises(ValueError):
        SynthConfig(prior="oracle").validate()
