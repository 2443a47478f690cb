"""The training proof at CI size: a tiny model on a tiny synthetic ICT set; the loss falls by at
least half; a checkpoint is written, resumed (the resumed run ends with bit-identical weights
to the uninterrupted one), and the exported model is loaded and sampled by the inference code."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def smoke_cfg(tmp_path_factory, ict_npz):
    from gen3dface.backend.train.config import load_config
    mp = pytest.MonkeyPatch()
    mp.setenv("GEN3DFACE_ASSETS", str(ict_npz.parents[1]))   # the synthesiser finds ICT here
    root = tmp_path_factory.mktemp("smoke")
    cfg = load_config(REPO / "configs" / "smoke_cpu.toml")
    cfg.data.roots = [str(root / "data")]
    cfg.train.output_dir = str(root / "run")
    yield cfg
    mp.undo()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_smoke_train_resume_and_load(smoke_cfg, tmp_path):
    from gen3dface.backend.train.loop import Trainer
    cfg = smoke_cfg
    steps = cfg.train.max_steps
    half = steps // 2
    assert cfg.train.checkpoint_every == half
    result = Trainer(cfg, log=lambda m: None).run()
    (s0, first), (s1, last) = result["eval"][0], result["eval"][-1]
    assert (s0, s1) == (0, steps)
    assert np.isfinite(last) and last <= 0.5 * first, result["eval"]
    out = Path(cfg.train.output_dir)
    assert (out / "checkpoints" / f"step_{half:07d}" / "trainer_state.json").is_file()
    assert list((out / "samples").glob("step_*.png"))
    assert list((out / "logs").rglob("events.out.tfevents.*"))

    # resume from the mid-run checkpoint in a fresh folder: same final weights
    resumed = tmp_path / "resumed"
    shutil.copytree(out / "checkpoints" / f"step_{half:07d}",
                    resumed / "checkpoints" / f"step_{half:07d}")
    cfg.train.output_dir = str(resumed)
    r2 = Trainer(cfg, log=lambda m: None).run()
    assert r2["step"] == steps
    from safetensors.torch import load_file
    for name in ("mvdiff_modules.safetensors", "unet/diffusion_pytorch_model.safetensors"):
        a, b = load_file(str(out / "model" / name)), load_file(str(resumed / "model" / name))
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)

    # the exported folder loads in the inference code and generates views
    from gen3dface.backend.data.dataset import MultiViewDataset
    from gen3dface.backend.mvdiff.model import MultiViewDiffusion
    from gen3dface.backend.mvdiff.sampling import SamplerConfig, sample_views
    from gen3dface.backend.train.objective import collate, k_to_vec
    from dataclasses import replace
    model = MultiViewDiffusion.from_pretrained(out / "model")
    ds = MultiViewDataset(replace(cfg.data, image_size=model.resolution, return_prior_mesh=True))
    b = collate([ds[0]])
    with torch.no_grad():
        cond = model.condition((b["input_image"] + 1) / 2, b["prior_vertices"], b["prior_faces"])
        lat = sample_views(model, cond, b["target_w2c"], k_to_vec(b["target_K"]), b["input_w2c"],
                           k_to_vec(b["input_K"]), SamplerConfig(steps=4, guidance=2.0), seed=1)
        imgs = model.decode_latents(lat[0])
    assert imgs.shape == (cfg.data.n_target_views, 3, 16, 16) and torch.isfinite(imgs).all()
