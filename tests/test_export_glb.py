"""GLB export: structure (named meshes, ARKit's 52 morph targets in ARKit's order plus ICT's 4
split extras, accessors, metres), what the morph targets do (jawOpen moves the lower teeth,
eyeLook* rotate the eyeballs, browInnerUp/cheekPuff are the sums of the split shapes, tongueOut
puts the tongue out past the lower incisors), Khronos glTF-Validator, and re-import in headless
Blender."""
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
from gen3dface.backend.headmodel.arkit import ARKIT_BLENDSHAPES
from gen3dface.backend.headmodel.tongue import tongue_parts
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
    weights[m.expression_names.index("browInnerUpLeft")] = 0.6
    weights[m.expression_names.index("browInnerUpRight")] = 0.2
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
    assert names[:52] == list(ARKIT_BLENDSHAPES) and len(names) == 56
    assert names[52:] == ["browInnerUp_L", "browInnerUp_R", "cheekPuff_L", "cheekPuff_R"]
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
    t = head["extras"]["targetNames"].index("mouthSmileLeft")
    d = read_accessor(doc, binary, head["primitives"][0]["targets"][t]["POSITION"])
    big = np.argmax(np.linalg.norm(d, axis=1))
    vid = np.argmin(np.linalg.norm(ict_model.vertices - hp[big], axis=1))
    np.testing.assert_allclose(d[big], ict_model.expression_basis[k, vid], atol=1e-6)


def _targets(doc, binary, mesh_name):
    mesh = _mesh(doc, mesh_name)
    prim = mesh["primitives"][0]
    pos = read_accessor(doc, binary, prim["attributes"]["POSITION"]).astype(np.float64)
    return pos, {n: read_accessor(doc, binary, t["POSITION"]).astype(np.float64)
                 for n, t in zip(mesh["extras"]["targetNames"], prim["targets"])}


def _glb_ids(pos, model_vertices, ids):
    """Indices into the GLB mesh's vertices of the model's vertices `ids` (same positions:
    the fixture exports the template itself)."""
    from scipy.spatial import cKDTree
    d, i = cKDTree(pos).query(model_vertices[ids])
    assert d.max() < 1e-6
    return i


def test_summed_shapes_are_the_sums_of_the_split_ones(glb_bytes, ict_model):
    doc, binary = read_glb(glb_bytes)
    pos, t = _targets(doc, binary, "Head")
    for arkit, (left, right) in (("browInnerUp", ("browInnerUp_L", "browInnerUp_R")),
                                 ("cheekPuff", ("cheekPuff_L", "cheekPuff_R"))):
        both = t[left] + t[right]
        assert np.abs(t[arkit]).max() > 2e-3, arkit               # it moves something
        # equal up to the export's per-vertex zero threshold (morph_epsilon) on each side
        np.testing.assert_allclose(t[arkit], both, atol=2 * ExportConfig().morph_epsilon + 1e-7)
        # and the split shapes are ICT's own, left on the subject's left (+x)
        i = ict_model.expression_names.index(left.replace("_L", "Left"))
        big = np.argmax(np.linalg.norm(t[left], axis=1))
        assert pos[big, 0] > 0
        vid = np.argmin(np.linalg.norm(ict_model.vertices - pos[big], axis=1))
        np.testing.assert_allclose(t[left][big], ict_model.expression_basis[i, vid], atol=1e-6)
    # the fitted split weights (0.6 left, 0.2 right) land exactly: common part on browInnerUp
    head = _mesh(doc, "Head")
    w = dict(zip(head["extras"]["targetNames"], head["weights"]))
    assert w["browInnerUp"] == pytest.approx(0.2)
    assert w["browInnerUp_L"] == pytest.approx(0.4) and w["browInnerUp_R"] == pytest.approx(0.0)
    assert w["tongueOut"] == 0.0 and w["cheekPuff"] == 0.0


def test_tongue_out_puts_the_tongue_out_past_the_lower_incisors(glb_bytes, ict_model):
    doc, binary = read_glb(glb_bytes)
    pos, t = _targets(doc, binary, "Teeth")
    assert "tongueOut" in t and "jawOpen" in t
    parts = tongue_parts(ict_model)
    tongue = _glb_ids(pos, ict_model.vertices, parts.tongue)
    lower = _glb_ids(pos, ict_model.vertices, parts.lower_incisors)
    upper = _glb_ids(pos, ict_model.vertices, parts.upper_incisors)
    out = pos + t["tongueOut"]
    tip = tongue[np.argmax(pos[tongue, 2])]
    # at rest the tip is behind the lower incisors; with tongueOut it is in front of them...
    assert pos[tip, 2] < pos[lower, 2].max()
    assert out[tongue, 2].max() > out[lower, 2].max() + 0.01
    assert out[tip, 2] - pos[tip, 2] > 0.015                   # forward by more than 1.5 cm
    assert out[tip, 1] < pos[tip, 1]                            # ... and down
    # ... over the lower teeth, not through them: where the tongue passes over the lower
    # incisors' crowns (their top 3 mm) it stays above their edge and below the upper edge
    edge = out[lower, 1].max()
    crown = lower[out[lower, 1] > edge - 0.003]
    inc_z = (out[crown, 2].min(), out[crown, 2].max())
    over = tongue[(out[tongue, 2] > inc_z[0]) & (out[tongue, 2] < inc_z[1])
                  & (np.abs(out[tongue, 0]) < 0.005)]
    assert len(over) >= 3
    assert out[over, 1].min() > edge
    assert out[over, 1].max() < out[upper, 1].min()
    # the jaw is partly open: the lower incisors move with it, less than with jawOpen = 1
    drop = pos[lower, 1].max() - out[lower, 1].max()
    assert 0.2 * (-t["jawOpen"][lower, 1].min()) < drop < 0.8 * (-t["jawOpen"][lower, 1].min())
    # the gums and the floor of the mouth that follow the tongue stay behind the lower
    # incisors (not pulled out through the lower lip)
    followers = _glb_ids(pos, ict_model.vertices,
                         parts.movable[~np.isin(parts.movable, parts.tongue)])
    assert len(followers) > 50
    assert out[followers, 2].max() <= out[lower, 2].max() + 1e-6
    # the upper teeth and the eyes do not move
    assert np.abs(t["tongueOut"][upper]).max() == 0.0
    assert "tongueOut" not in _mesh(doc, "EyeLeft")["extras"]["targetNames"]


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
    assert objs["Head"]["keys"][:52] == list(ARKIT_BLENDSHAPES)
    assert len(objs["Head"]["keys"]) == 56
    assert objs["Head"]["jaw"] == pytest.approx(0.25, abs=1e-6)
    w, depth, height = objs["Head"]["dims"]
    assert 0.2 < height < 0.4 and height > w       # upright in Blender (Z up), metres
    assert objs["Head"]["mats"] == ["HeadSkin"]
    assert any(name.startswith("HeadSkin") and size[0] > 0 for name, size in res["images"])


def _welded_head_triangles(doc, binary):
    """(positions per GLB vertex, the Head mesh's triangles of every primitive, the same
    triangles with vertices at one position merged)."""
    head = _mesh(doc, "Head")
    prim0 = head["primitives"][0]
    pos = read_accessor(doc, binary, prim0["attributes"]["POSITION"]).astype(np.float64)
    tris = np.concatenate([read_accessor(doc, binary, p["indices"]).reshape(-1, 3)
                           for p in head["primitives"]])
    _, weld = np.unique(np.round(pos / 1e-7).astype(np.int64), axis=0, return_inverse=True)
    return pos, tris, weld.ravel()[tris]


def test_the_bust_is_closed_by_a_cap_facing_out(glb_bytes, ict_model):
    """Seen from behind and above, an open bust bottom shows the inside of the chest (and a
    hole where back faces are culled): the GLB's skin is closed, every edge between two
    triangles running opposite ways (one orientation, outward), the cap below the neck facing
    down, one skin texel for all of it, following its rim in every morph target."""
    doc, binary = read_glb(glb_bytes)
    pos, tris, welded = _welded_head_triangles(doc, binary)
    directed = np.concatenate([welded[:, [0, 1]], welded[:, [1, 2]], welded[:, [2, 0]]])
    _, counts = np.unique(np.sort(directed, 1), axis=0, return_counts=True)
    assert (counts == 2).all(), f"{(counts == 1).sum()} open edges"
    assert len(np.unique(directed, axis=0)) == len(directed)      # each way once: oriented
    # the cap: triangles on vertices after the template's own (the last k + 1 GLB vertices)
    head = _mesh(doc, "Head")
    prim = head["primitives"][0]
    n = len(pos)
    cap_tris = tris[(tris >= n - 55).all(1)]
    assert len(cap_tris) == 54                    # ICT's cut: one loop of 54 edges
    a, b, c = (pos[cap_tris[:, j]] for j in range(3))
    nrm = np.cross(b - a, c - a).sum(0)
    assert nrm[1] < -0.9 * np.linalg.norm(nrm)   # faces down, out of the bust
    assert pos[n - 55:, 1].max() < ict_model.vertices[:, 1].min() + 0.07
    uv = read_accessor(doc, binary, prim["attributes"]["TEXCOORD_0"])
    assert np.ptp(uv[n - 55:], axis=0).max() == 0.0
    # every cap vertex on the rim moves with the rim's own vertex, the centre with their mean
    rim_twin = {}
    for i in range(n - 55, n - 1):
        same = np.flatnonzero(np.abs(pos[:n - 55] - pos[i]).max(1) < 1e-7)
        assert len(same) >= 1         # (two where the UV seam at the back splits it)
        rim_twin[i] = same[0]
    for t, name in zip(prim["targets"], head["extras"]["targetNames"]):
        d = read_accessor(doc, binary, t["POSITION"]).astype(np.float64)
        for i, j in rim_twin.items():
            np.testing.assert_allclose(d[i], d[j], atol=1e-7, err_msg=name)
        np.testing.assert_allclose(d[n - 1], d[list(rim_twin)].mean(0), atol=3e-5,   # epsilon
                                   err_msg=name)
