"""The one strict config loader (backend/config_loader.py) and the three configs built with
it: the training config, the multi-view diffusion model's config (checkpoint JSON) and the
reconstruction settings. An unknown key is refused with its name in the message."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from gen3dface.backend.config_loader import ConfigError, build, update


@dataclass
class Inner:
    size: int = 4
    widths: tuple = (1, 2)


@dataclass
class Outer:
    name: str = "x"
    inner: Inner = field(default_factory=Inner)
    maybe: Inner | None = None
    roots: list = field(default_factory=list)


def test_build_nests_converts_and_refuses_unknown_keys_by_name():
    o = build(Outer, {"inner": {"widths": [3, 4, 5]}, "maybe": {"size": 1}, "roots": ["a"]})
    assert o.inner.widths == (3, 4, 5) and o.maybe.size == 1 and o.roots == ["a"]
    assert build(Outer, None) == Outer() and build(Outer, {"maybe": None}).maybe is None
    with pytest.raises(ConfigError, match=r"\[outer\.inner\] unknown keys: sise \(known: size, "
                                          r"widths\)") as e:
        build(Outer, {"inner": {"sise": 3}}, "outer")
    assert e.value.keys == ("sise",) and e.value.where == "outer.inner"
    with pytest.raises(ConfigError, match=r"\[inner\] must be a table"):
        build(Outer, {"inner": 3})
    with pytest.raises(ConfigError, match="must be a table"):
        build(Outer, [1, 2])
    o = update(Outer(), {"inner": {"size": 9}, "name": "y"})
    assert o.inner.size == 9 and o.inner.widths == (1, 2) and o.name == "y"
    with pytest.raises(ConfigError, match="unknown keys: nmae"):
        update(Outer(), {"nmae": "y"})


def test_train_config_refuses_unknown_keys_in_every_table():
    from gen3dface.backend.train.config import config_from_dict

    for d, key in (({"train": {"max_step": 3}}, "max_step"), ({"trian": {}}, "trian"),
                   ({"model": {"prest": "tiny"}}, "prest"),
                   ({"data": {"root": ["x"]}}, "root"),
                   ({"optim": {"lr": 1.0}}, "lr"),
                   ({"synth": {"landmark_fit": {"reg": 1.0}}}, "reg")):
        with pytest.raises(ValueError, match=key) as e:
            config_from_dict(d)
        assert isinstance(e.value, ConfigError) and e.value.keys == (key,)
    cfg = config_from_dict({"optim": {"betas": [0.8, 0.9]}, "data": {"roots": ["d"]},
                            "synth": {"landmark_fit": {"reg_identity": 2.0}}})
    assert cfg.optim.betas == (0.8, 0.9) and cfg.data.roots == ["d"]
    assert cfg.synth.landmark_fit.reg_identity == 2.0
    with pytest.raises(ValueError, match=r"\[model\] must be a table"):
        config_from_dict({"model": "tiny"})


def test_mvdiff_config_round_trips_and_refuses_unknown_keys():
    from gen3dface.backend.mvdiff.config import MVDiffusionConfig

    cfg = MVDiffusionConfig.tiny()
    d = json.loads(json.dumps(cfg.to_dict()))          # lists where the config has tuples
    back = MVDiffusionConfig.from_dict(d)
    assert back == cfg and isinstance(back.frustum.channels, tuple)
    bad = json.loads(json.dumps(cfg.to_dict()))
    bad["volume"]["net_chanels"] = [8, 8]
    with pytest.raises(ConfigError, match=r"\[volume\] unknown keys: net_chanels"):
        MVDiffusionConfig.from_dict(bad)
    bad = json.loads(json.dumps(cfg.to_dict()))
    bad["atention"] = {}
    with pytest.raises(ConfigError, match="unknown sections: atention"):
        MVDiffusionConfig.from_dict(bad)


def test_reconstruction_settings_name_the_unknown_key():
    from gen3dface.backend.contracts import PipelineError
    from gen3dface.backend.recon.adapter import recon_config
    from gen3dface.backend.recon.stage import ReconConfig

    for bad, words in (({"sdff": {}}, "unknown keys: sdff"),
                       ({"sdf": {"itrations": 3}}, "[reconstruction_settings.sdf] unknown keys: itrations"),
                       ({"sdf": {"preset": "tiny", "itrations": 3}}, "itrations"),
                       ({"registration": {"hull": {"res": 3}}}, "registration.hull] unknown keys: res"),
                       ({"registration": 3}, "must be a table"),
                       ({"output_kind": "both"}, "output_kind")):
        with pytest.raises(PipelineError) as e:
            recon_config(ReconConfig, "rigged", "cpu", 512, bad)
        assert e.value.code == "BAD_REQUEST" and words in e.value.message, e.value.message
    cfg = recon_config(ReconConfig, "both", "cpu", 512,
                       {"registration": {"sweep_range_m": [0.01, 0.002], "hull": {"resolution": 32}},
                        "sdf": {"preset": "tiny", "iterations": 3}, "init_grid": 40.0})
    assert cfg.registration.sweep_range_m == (0.01, 0.002)
    assert cfg.registration.hull.resolution == 32 and cfg.init_grid == 40
    assert cfg.sdf.iterations == 3 and cfg.sdf.n_levels == 6 and cfg.sdf.device == "cpu"


def test_training_model_overrides_use_the_loader():
    pytest.importorskip("torch")
    from gen3dface.backend.train.config import ModelSpec
    from gen3dface.backend.train.loop import build_model

    with pytest.raises(ConfigError, match=r"\[model\.overrides\.volume\] unknown keys: chanels"):
        build_model(ModelSpec(preset="tiny", overrides={"volume": {"chanels": 8}}))
    with pytest.raises(ConfigError, match="unknown sections: volum"):
        build_model(ModelSpec(preset="tiny", overrides={"volum": {}}))
