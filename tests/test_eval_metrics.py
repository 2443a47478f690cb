"""scripts/eval_mvdiff.py: its metric functions on known inputs and the train / held-out split."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ev():
    spec = importlib.util.spec_from_file_location("eval_mvdiff", REPO / "scripts" / "eval_mvdiff.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _image(seed=0, size=32):
    return np.random.default_rng(seed).random((size, size, 3))


def test_identical_images_give_inf_psnr_and_unit_ssim(ev):
    a = _image()
    assert ev.psnr(a, a.copy()) == math.inf
    assert ev.ssim(a, a.copy()) == pytest.approx(1.0, abs=1e-9)


def test_known_noise_gives_expected_psnr(ev):
    # PSNR = 10 log10(1 / MSE): a constant offset of 0.1 -> 20 dB exactly; Gaussian noise of
    # sigma 0.05 (no clipping on a mid-grey image) -> about 26.02 dB
    a = np.full((64, 64, 3), 0.5)
    assert ev.psnr(a, a + 0.1) == pytest.approx(20.0, abs=1e-9)
    noisy = a + np.random.default_rng(1).normal(0.0, 0.05, a.shape)
    assert ev.psnr(a, noisy) == pytest.approx(-20 * math.log10(0.05), abs=0.1)
    assert ev.ssim(a, noisy) < 0.5          # pure noise on a flat image: little structure
    assert ev.ssim(_image(0), _image(1)) < 0.1


def test_ssim_orders_degradations_and_handles_small_images(ev):
    a = _image(2, 16)
    light = np.clip(a + np.random.default_rng(3).normal(0, 0.02, a.shape), 0, 1)
    heavy = np.clip(a + np.random.default_rng(3).normal(0, 0.2, a.shape), 0, 1)
    assert 1.0 > ev.ssim(a, light) > ev.ssim(a, heavy)
    assert ev.ssim(_image(4, 5), _image(4, 5)) == pytest.approx(1.0)   # 5-pixel window
    with pytest.raises(ValueError):
        ev.psnr(a, a[:8])


def test_summarize(ev):
    s = ev.summarize([1.0, 3.0])
    assert (s["mean"], s["std"], s["n"]) == (2.0, 1.0, 2)
    assert ev.summarize([])["n"] == 0


def test_heldout_seed_is_disjoint_and_checked(ev, ict_model, tmp_path):
    """Tiny real synthetic sets: the held-out config draws other heads than the training one,
    and check_disjoint catches a held-out set that is the training set under another name."""
    from gen3dface.backend.synth.ict_heads import SynthConfig, synthesize_dataset
    train_cfg = SynthConfig(n_identities=2, n_views=2, resolution=16, supersample=1,
                            layout="grid", grid_elevations=(0.0,), prior="neutral",
                            prior_views_per_identity=1)
    held_cfg = ev.heldout_synth_config(train_cfg, 2)
    assert held_cfg.seed == train_cfg.seed + ev.HELDOUT_SEED_OFFSET
    assert held_cfg.n_identities == 2 and held_cfg.resolution == train_cfg.resolution
    synthesize_dataset(ict_model, tmp_path / "train", train_cfg)
    synthesize_dataset(ict_model, tmp_path / "held", held_cfg)
    # same folder names (ict_00000, ict_00001), different heads
    assert ev.check_disjoint([tmp_path / "held"], [tmp_path / "train"]) == 2
    synthesize_dataset(ict_model, tmp_path / "copy", train_cfg)   # the train heads again
    with pytest.raises(ValueError, match="held-out identities also occur"):
        ev.check_disjoint([tmp_path / "copy"], [tmp_path / "train"])
    with pytest.raises(ValueError, match="held-out range"):
        ev.heldout_synth_config(held_cfg, 2)


def test_pick_views_takes_the_most_frontal_input(ev, tmp_path):
    from gen3dface.backend.data.format import (DatasetWriter, ViewData, ViewIntrinsics,
                                               orbit_w2c, read_dataset)
    intr = ViewIntrinsics(8, 8, 10.0, 10.0, 4.0, 4.0)
    rgba = np.zeros((8, 8, 4), np.uint8)
    views = [ViewData(f"v{i}", rgba, orbit_w2c(az, 0.0, 1.0), intr, abs(az) <= 45)
             for i, az in enumerate((40.0, -5.0, 90.0, 180.0, -120.0))]
    with DatasetWriter(tmp_path / "d") as w:
        w.add_identity("a", views)
    ident = read_dataset(tmp_path / "d").identities[0]
    inp, targets = ev.pick_views(ident)
    assert inp.name == "v1" and len(targets) == 4 and "v1" not in [t.name for t in targets]
    assert len(ev.pick_views(ident, max_targets=2)[1]) == 2
