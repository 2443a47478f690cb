"""GLB export: structure (named meshes, 53 ARKit morph targets, accessors, metres), what the
morph targets do (jawOpen moves the lower teeth, eyeLook* rotate the eyeballs), Khronos
glTF-Validator, and re-import in headless Blender."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import gltf_validator_report

from gen3dface.backend.export.gltf import read_accessor, read_glb
from gen3dface.backend.export.head_glb import ExportConfig, HeadAsset, write_head_glb
from gen3dface.backend.texture.eyes import bake_eye_textures, eyeball
from gen3dface.backend.texture.layout import SkinLayout

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def glb_bytes(ict_model):
    m = ict_model
    lay = SkinLayout.of(m)
    tex = np.zeros((64, 64 * lay.n_tiles, 3), np.uint8)
    tex[..., 0] = 200
    weights = np.zeros(m.n_expressions)
    weights[m.expression_names.index("jawOpen")] = 0.25
    asset = HeadAsset(m, m.vertices, weights, tex, lay, bake_eye_textures(m, m.vertices, 32),
                      {"generator": "test"})
    return write_head_glb(asset, ExportConfig(skin_image_format="png"))


@pytest.fixture(scope="module")
def glb_path(glb_bytes, tmp_path_factory):
    p = tmp_path_factory.mktemp("glb") / "head.glb"
    p.write_bytes(glb_bytes)
    return p


def _mesh(doc, name):
    return next(m for m in doc["meshes"] if m["name"] == name)


def test_structure(glb_bytes, ict_model):
    doc, binary = read_glb(glb_bytes)
    assert [n["name"] for n in doc["nodes"]] == ["Head", "EyeLeft", "EyeRight", "Teeth"]
    head = _mesh(doc, "Head")
    names = head["extras"]["targetNames"]
    assert names == ict_model.expression_names and len(names) == 53
    assert head["weights"][names.index("jawOpen")] == pytest.approx(0.25)
    for mesh in doc["meshes"]:
        for prim in mesh["primitives"]:
            pos = doc["accessors"][prim["attributes"]["POSITION"]]
            n = pos["count"]
            assert doc["accessors"][prim["attributes"]["NORMAL"]]["count"] == n
            assert doc["accessors"][prim["attributes"]["TEXCOORD_0"]]["count"] == n
            assert len(prim["targets"]) == len(mesh["extras"]["targetNames"])
            idx = read_accessor(doc, binary, prim["indices"])
            assert idx.max() < n and len(idx) % 3 == 0
            # metres: a head is ~0.3 m tall, not 30
            assert max(abs(x) for x in pos["min"] + pos["max"]) < 0.4
    skin = doc["materials"][head["primitives"][0]["material"]]
    assert skin["name"] == "HeadSkin"
    img = doc["images"][doc["textures"][skin["pbrMetallicRoughness"]["baseColorTexture"]["index"]]["source"]]
    assert img["mimeType"] == "image/png"
    uv = read_accessor(doc, binary, head["primitives"][0]["attributes"]["TEXCOORD_0"])
    assert uv.min() >= 0 and uv.max() <= 1


def test_morph_targets_do_what_they_say(glb_bytes, ict_model):
    doc, binary = read_glb(glb_bytes)
    teeth = _mesh(doc, "Teeth")
    tn = teeth["extras"]["targetNames"]
    prim = teeth["primitives"][0]
    jaw = read_accessor(doc, binary, prim["targets"][tn.index("jawOpen")]["POSITION"])
    pos = read_accessor(doc, binary, prim["attributes"]["POSITION"])
    moved = np.linalg.norm(jaw, axis=1) > 2e-3
    assert moved.any() and pos[moved, 1].mean() < pos[~moved, 1].mean()   # lower teeth move
    assert jaw[moved, 1].mean() < 0                                          # ... down
    eye = _mesh(doc, "EyeLeft")
    en = eye["extras"]["targetNames"]
    assert {"eyeLookUpLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft"} <= set(en)
    assert not any(n.endswith("Right") and n.startswith("eyeLook") for n in en)
    p = read_accessor(doc, binary, eye["primitives"][0]["attributes"]["POSITION"])
    c = eyeball(ict_model.vertices, ict_model, "Left").centre
    for name, axis, sign in (("eyeLookUpLeft", 1, 1), ("eyeLookOutLeft", 0, 1),
                             ("eyeLookInLeft", 0, -1)):
        d = read_accessor(doc, binary, eye["primitives"][0]["targets"][en.index(name)]["POSITION"])
        front = p[:, 2] > np.percentile(p[:, 2], 95)        # the cornea
        assert np.sign(d[front, axis].mean()) == sign, name
        r0 = np.linalg.norm(p - c, axis=1)
        r1 = np.linalg.norm(p + d - c, axis=1)
        assert np.abs(r1 - r0).max() < 2e-4               # a rotation about the eye centre
    # Head deltas decode (sparse accessors) to the model's expression basis
    head = _mesh(doc, "Head")
    hp = read_accessor(doc, binary, head["primitives"][0]["attributes"]["POSITION"])
    k = ict_model.expression_names.index("mouthSmileLeft")
    d = read_accessor(doc, binary, head["primitives"][0]["targets"][k]["POSITION"])
    big = np.argmax(np.linalg.norm(d, axis=1))
    vid = np.argmin(np.linalg.norm(ict_model.vertices - hp[big], axis=1))
    np.testing.assert_allclose(d[big], ict_model.expression_basis[k, vid], atol=1e-6)


def test_khronos_validator(glb_path):
    report = gltf_validator_report(glb_path)
    assert report["issues"]["numErrors"] == 0, report["issues"]["messages"][:10]
    assert report["issues"]["numWarnings"] == 0, report["issues"]["messages"][:10]
    assert report["_returncode"] == 0


BPY_SCRIPT = r"""
import json, sys, bpy
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.import_scene.gltf(filepath=sys.argv[-1])
out = {}
for ob in bpy.data.objects:
    if ob.type != 'MESH':
        continue
    keys = ob.data.shape_keys
    out[ob.name] = {"keys": [k.name for k in keys.key_blocks][1:] if keys else [],
                    "jaw": keys.key_blocks["jawOpen"].value if keys and "jawOpen" in keys.key_blocks else None,
                    "dims": list(ob.dimensions), "mats": [m.name for m in ob.data.materials]}
imgs = [[i.name, list(i.size)] for i in bpy.data.images]
print("RESULT" + json.dumps({"objects": out, "images": imgs}))
"""


@pytest.mark.blender
def test_blender_reimport(glb_path):
    pytest.importorskip("bpy")
    r = subprocess.run([sys.executable, "-c", BPY_SCRIPT, str(glb_path)], capture_output=True,
                       text=True, timeout=240)
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("RESULT")), None)
    assert line, r.stdout[-2000:] + r.stderr[-2000:]
    res = json.loads(line[len("RESULT"):])
    objs = res["objects"]
    assert set(objs) == {"Head", "EyeLeft", "EyeRight", "Teeth"}
    assert len(objs["Head"]["keys"]) == 53 and "eyeBlinkLeft" in objs["Head"]["keys"]
    assert objs["Head"]["jaw"] == pytest.approx(0.25, abs=1e-6)
    w, depth, height = objs["Head"]["dims"]
    assert 0.2 < height < 0.4 and height > w       # upright in Blender (Z up), metres
    assert objs["Head"]["mats"] == ["HeadSkin"]
    assert any(name.startswith("HeadSkin") and size[0] > 0 for name, size in res["images"])
