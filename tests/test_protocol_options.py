"""The job options' one vocabulary (protocol/options.py) and everyone who reads it: the
backend's JobOptions, the CLI's argparse choices, export, reconstruction, the add-on's
settings and batch command (pure Python: no torch, no bpy)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from gen3dface.protocol import options as vocabulary
from gen3dface.protocol.options import (DEFAULTS, OPTIONS, OptionError, offered_choices,
                                        validate)

REPO = Path(__file__).resolve().parents[1]


def test_defaults_and_normalisation():
    assert validate({}) == DEFAULTS == {"generator": "auto", "seed": 0, "quality": "standard",
                                        "texture_size": 1024, "output_kind": "rigged",
                                        "neutral": False, "delit_texture": False,
                                        "neck_skin": True}
    assert validate(None) == DEFAULTS
    got = validate({"texture_size": 2048.0, "seed": 2 ** 32 - 1, "quality": None,
                    "some_newer_option": 1})
    assert got["texture_size"] == 2048 and isinstance(got["texture_size"], int)
    assert got["seed"] == 2 ** 32 - 1 and got["quality"] == "standard"
    assert "some_newer_option" not in got


@pytest.mark.parametrize("key,value,words", [
    ("texture_size", 256, "512, 1024, 2048"), ("texture_size", 4096, "512, 1024, 2048"),
    ("texture_size", True, "512"), ("texture_size", "1024", "512"), ("texture_size", 1024.5, "512"),
    ("seed", -1, "[0, 2^32)"), ("seed", 2 ** 32, "[0, 2^32)"), ("seed", 1.0, "integer"),
    ("seed", True, "integer"), ("generator", "magic", "auto, offline, gen3dface"),
    ("quality", "ultra", "draft"), ("output_kind", "mesh", "rigged"),
    ("neutral", 1, "true or false"), ("delit_texture", "yes", "true or false"),
    ("neck_skin", "no", "true or false")])
def test_bad_values_name_their_option(key, value, words):
    with pytest.raises(OptionError) as e:
        validate({key: value})
    assert e.value.key == key and f"option {key}=" in str(e.value) and words in str(e.value)


def test_strict_refuses_unknown_keys_by_name():
    with pytest.raises(OptionError, match="'texture'") as e:
        validate({"texture": 1024}, strict=True)
    assert e.value.key == "texture"
    with pytest.raises(OptionError, match="object"):
        validate(["generator"])


def test_offered_choices_follow_the_capabilities_within_the_vocabulary():
    offline = offered_choices(None)
    assert offline == {n: o.choices for n, o in OPTIONS.items() if o.kind == "choice"}
    caps = {"generators": ["offline"], "output_kinds": ["rigged"],
            "texture_sizes": [512, 1024, 2048, 4096]}
    got = offered_choices(caps)
    assert got["generator"] == ("auto", "offline")
    assert got["output_kind"] == ("rigged",)
    assert got["texture_size"] == (512, 1024, 2048)      # 4096 would be refused: not offered
    assert got["quality"] == vocabulary.QUALITIES         # not reported: the vocabulary's
    assert offered_choices({"texture_sizes": []})["texture_size"] == vocabulary.TEXTURE_SIZES


def test_the_backend_job_options_use_the_vocabulary():
    from gen3dface.backend.contracts import PipelineError
    from gen3dface.backend.pipeline.pipeline import TEXTURE_SIZES, JobOptions

    assert JobOptions().to_dict() == DEFAULTS
    assert TEXTURE_SIZES is vocabulary.TEXTURE_SIZES
    with pytest.raises(PipelineError) as e:
        JobOptions.from_dict({"texture_size": 256})
    assert e.value.code == "BAD_REQUEST" and "texture_size" in e.value.message
    assert JobOptions.from_dict({"seed": 2 ** 31 + 1, "neutral": True}).seed == 2 ** 31 + 1


def test_export_reconstruction_and_cli_use_the_vocabulary():
    import argparse

    from gen3dface.backend.commands import run, submit
    from gen3dface.backend.export import result_glb
    from gen3dface.backend.recon import stage

    assert result_glb.OUTPUT_KINDS is vocabulary.OUTPUT_KINDS
    assert stage.OUTPUT_KINDS is vocabulary.OUTPUT_KINDS
    assert stage.ReconConfig().surface_texture_size == DEFAULTS["texture_size"]
    for mod in (run, submit):
        p = argparse.ArgumentParser()
        mod.add_parser(p.add_subparsers())
        acts = {a.dest: a for a in p._subparsers._group_actions[0].choices[mod.__name__.rsplit(".", 1)[1]]._actions}
        assert tuple(acts["generator"].choices) == vocabulary.GENERATORS
        assert tuple(acts["quality"].choices) == vocabulary.QUALITIES
        assert tuple(acts["output_kind"].choices) == vocabulary.OUTPUT_KINDS
    p = argparse.ArgumentParser()
    run.add_parser(p.add_subparsers())
    a = p.parse_args(["run", "x.png", "-o", "x.glb"])
    assert {k: getattr(a, k) for k in ("generator", "seed", "quality", "texture_size",
                                       "output_kind")} == {k: DEFAULTS[k] for k in (
        "generator", "seed", "quality", "texture_size", "output_kind")}
    # submit sends only what was given: neither flag leaves neck_skin to the backend's default
    p = argparse.ArgumentParser()
    submit.add_parser(p.add_subparsers())
    sent = [submit._job_options(p.parse_args(["submit", "x.png", "-o", "x.glb", *flag]))
            for flag in ([], ["--neck-skin"], ["--no-neck-skin"])]
    assert sent == [{}, {"neck_skin": True}, {"neck_skin": False}]


def test_the_addon_settings_and_batch_use_the_vocabulary():
    from gen3dface.blender_addon.core import batch, settings
    from gen3dface.blender_addon.core.settings import (BackendOffer, GenerateOptions,
                                                       SettingsError)

    assert settings.TEXTURE_SIZES == vocabulary.TEXTURE_SIZES
    assert GenerateOptions().to_dict() == {k: v for k, v in DEFAULTS.items()
                                           if k not in ("neutral", "delit_texture")}
    assert GenerateOptions(seed=2 ** 31 + 7).to_dict()["seed"] == 2 ** 31 + 7   # as the backend
    assert GenerateOptions(delit_texture=True).to_dict()["delit_texture"] is True
    assert GenerateOptions(neck_skin=True).to_dict()["neck_skin"] is True
    assert GenerateOptions(neck_skin=False).to_dict()["neck_skin"] is False  # sent: not the default
    for bad in (256, 4096):     # the sizes the panel offered and the backend refused
        with pytest.raises(SettingsError, match="texture_size"):
            GenerateOptions(texture_size=bad)
    with pytest.raises(batch.UsageError):
        batch.settings_from_args(["x.png", "--glb-dir", "o", "--insecure", "--texture-size",
                                  "256"])
    BackendOffer.forget()
    assert BackendOffer.choices("tcp://127.0.0.1:1") == offered_choices(None)
    BackendOffer.remember("tcp://127.0.0.1:1", {"pipeline": {"output_kinds": ["rigged"]}})
    assert BackendOffer.choices("tcp://127.0.0.1:1")["output_kind"] == ("rigged",)
    assert BackendOffer.choices("tcp://127.0.0.1:2") == offered_choices(None)
    BackendOffer.forget()


VOCABULARY_TUPLES = {tuple(o.choices) for o in OPTIONS.values() if o.choices}


def test_no_module_writes_the_choices_out_again():
    """The choice tuples appear as literals in protocol/options.py only."""
    found = []
    for top in ("backend", "blender_addon", "protocol"):
        for path in sorted((REPO / top).rglob("*.py")):
            if path == REPO / "protocol" / "options.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, (ast.Tuple, ast.List)) and len(node.elts) >= 3 and all(
                        isinstance(e, ast.Constant) for e in node.elts):
                    if tuple(e.value for e in node.elts) in VOCABULARY_TUPLES:
                        found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not found, found
