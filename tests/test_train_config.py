"""Training configuration, LR schedule, collate and the CLI's example config (fast tests)."""
from __future__ import annotations

import json

import pytest
import torch

from gen3dface.backend.train.config import config_from_dict, load_config, to_toml
from gen3dface.backend.train.objective import collate, k_to_vec
from gen3dface.backend.train.schedule import lr_multipliers, unet_lr


def test_paper_schedule():
    # UNet: 1e-6 at step 0, linear to 5e-5 at step 100, then flat; others at 5e-4 throughout
    assert unet_lr(0) == pytest.approx(1e-6)
    assert unet_lr(50) == pytest.approx(1e-6 + 0.5 * (5e-5 - 1e-6))
    assert unet_lr(100) == unet_lr(48000) == pytest.approx(5e-5)
    m_unet, m_other = lr_multipliers(1e-6, 5e-5, 100)
    assert m_unet(0) * 5e-5 == pytest.approx(1e-6) and m_other(10) == 1.0


def test_schedule_drives_a_real_optimizer():
    p1, p2 = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([{"params": [p1], "lr": 5e-5}, {"params": [p2], "lr": 5e-4}])
    sch = torch.optim.lr_scheduler.LambdaLR(opt, lr_multipliers(1e-6, 5e-5, 100))
    seen = []
    for _ in range(120):
        seen.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sch.step()
    assert seen[0][0] == pytest.approx(1e-6) and seen[100][0] == pytest.approx(5e-5)
    assert all(s[1] == pytest.approx(5e-4) for s in seen)
    assert all(a[0] <= b[0] for a, b in zip(seen, seen[1:]))


def test_config_files_and_errors(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[model]\npreset = "tiny"\n[data]\nroots = ["d"]\nn_target_views = 3\n'
                 '[train]\noutput_dir = "out"\nmax_steps = 7\n')
    cfg = load_config(p)
    assert cfg.model.preset == "tiny" and cfg.train.max_steps == 7
    assert cfg.data.roots == [str(tmp_path / "d")] and cfg.train.output_dir == str(tmp_path / "out")
    j = tmp_path / "c.json"
    j.write_text(json.dumps({"train": {"batch_size": 16}}))
    assert load_config(j).train.batch_size == 16
    with pytest.raises(ValueError, match="unknown keys: batchsize"):
        config_from_dict({"train": {"batchsize": 8}})
    with pytest.raises(ValueError, match="unknown sections"):
        config_from_dict({"trian": {}})
    with pytest.raises(ValueError, match="mixed_precision"):
        config_from_dict({"train": {"mixed_precision": "fp8"}})


def test_example_config_parses_back(tmp_path, capsys):
    from gen3dface.backend.cli import main
    assert main(["train", "--example-config"]) == 0
    text = capsys.readouterr().out
    (tmp_path / "ex.toml").write_text(text)
    cfg = load_config(tmp_path / "ex.toml")
    # the paper's recipe is the default
    assert (cfg.optim.unet_lr, cfg.optim.unet_lr_start, cfg.optim.warmup_steps,
            cfg.optim.other_lr, cfg.train.batch_size, cfg.train.max_steps,
            cfg.train.mixed_precision) == (5e-5, 1e-6, 100, 5e-4, 8, 48000, "bf16")
    assert cfg.data.n_target_views == 16


def test_shipped_configs_parse():
    from pathlib import Path
    root = Path(__file__).resolve().parents[1] / "configs"
    for name in ("smoke_cpu.toml", "full_sd15_multigpu.toml"):
        load_config(root / name)


def test_to_toml_round_trip():
    import tomllib
    d = {"a": 1, "b": {"c": [1.5, 2.0], "d": "x\"y", "e": {"f": True}}, "g": None}
    assert tomllib.loads(to_toml(d)) == {"a": 1, "b": {"c": [1.5, 2.0], "d": "x\"y",
                                                       "e": {"f": True}}}


def _sample(n_vert, faces, v=2):
    return {"input_image": torch.zeros(3, 4, 4), "input_mask": torch.zeros(1, 4, 4),
            "input_w2c": torch.eye(4), "input_K": torch.eye(3),
            "target_images": torch.zeros(v, 3, 4, 4), "target_masks": torch.zeros(v, 1, 4, 4),
            "target_w2c": torch.eye(4).repeat(v, 1, 1), "target_K": torch.eye(3).repeat(v, 1, 1),
            "prior_vertices": torch.rand(n_vert, 3), "prior_faces": faces,
            "identity": "i", "input_view": "a", "target_views": ["b"] * v}


def test_collate_stacks_one_topology_and_soups_mixed_ones():
    f = torch.tensor([[0, 1, 2], [1, 2, 3]])
    b = collate([_sample(4, f), _sample(4, f)])
    assert b["prior_vertices"].shape == (2, 4, 3) and torch.equal(b["prior_faces"], f)
    f2 = torch.tensor([[0, 1, 2], [0, 2, 3], [0, 3, 4]])
    s1, s2 = _sample(4, f), _sample(5, f2)
    b = collate([s1, s2], soup_triangles=16)
    assert b["prior_vertices"].shape == (2, 48, 3) and b["prior_faces"].shape == (16, 3)
    # every soup triangle is a triangle of its own mesh
    tris1 = {tuple(map(tuple, s1["prior_vertices"][t].tolist())) for t in f}
    soup = b["prior_vertices"][0].reshape(16, 3, 3)
    assert all(tuple(map(tuple, t.tolist())) in tris1 for t in soup)


def test_k_to_vec():
    k = torch.tensor([[10.0, 0, 3], [0, 11, 4], [0, 0, 1]])
    assert k_to_vec(k).tolist() == [10, 11, 3, 4]
