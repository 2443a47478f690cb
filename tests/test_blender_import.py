"""Importing a result GLB with the add-on's importer (bpy wheel, headless).

The GLB here is made by `make_test_glb` (below): the layout the export stage writes (nodes
Head / EyeLeft / EyeRight / Teeth in the head frame, metres; 56 morph targets named through
mesh.extras.targetNames on Head; a "HeadSkin" material with an embedded PNG texture), so the
importer is tested without the pipeline. The end-to-end test with a real `gen3dface serve`
is tests/test_blender_addon.py. Each bpy test runs in a subprocess (this file run as a
script), so Blender state never leaks between tests.
"""
from __future__ import annotations

import json
import math
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from conftest import run_blender_scenario

from gen3dface.backend.headmodel.arkit import EXPORTED_NAMES

REPO = Path(__file__).resolve().parents[1]

# The 56 names our heads carry: Apple ARKit's 52 in ARKit's order, then ICT-FaceKit's split
# browInnerUp_L/_R and cheekPuff_L/_R (backend/headmodel/arkit.py).
TARGET_NAMES = list(EXPORTED_NAMES)
assert len(TARGET_NAMES) == 56


def _png(img: np.ndarray) -> bytes:
    h, w, c = img.shape
    raw = np.concatenate([np.zeros((h, 1), np.uint8), img.reshape(h, w * c)], axis=1)

    def chunk(tag, body):
        return struct.pack(">I", len(body)) + tag + body + struct.pack(
            ">I", zlib.crc32(tag + body) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw.tobytes(), 1)) + chunk(b"IEND", b""))


def _sphere(n_lat: int, n_lon: int, radius: float, centre):
    """UV sphere: positions (V,3) float32, uvs (V,2), triangles (T,3) uint32."""
    lat = np.linspace(0, math.pi, n_lat)
    lon = np.linspace(0, 2 * math.pi, n_lon)
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    pos = np.stack([np.sin(la) * np.sin(lo), np.cos(la), np.sin(la) * np.cos(lo)], -1)
    pos = (pos * radius + np.asarray(centre)).reshape(-1, 3).astype(np.float32)
    uv = np.stack([lo / (2 * math.pi), la / math.pi], -1).reshape(-1, 2).astype(np.float32)
    tris = []
    for i in range(n_lat - 1):
        for j in range(n_lon - 1):
            a, b = i * n_lon + j, i * n_lon + j + 1
            c, d = a + n_lon, b + n_lon
            tris += [(a, c, b), (b, c, d)]
    return pos, uv, np.asarray(tris, np.uint32)


def make_test_glb(texture_px: int = 64, head_res: int = 24, seed: int = 0,
                  noise_texture: bool = False) -> tuple[bytes, dict]:
    """A GLB in the export layout; returns (glb bytes, facts for assertions)."""
    rng = np.random.default_rng(seed)
    bin_parts, views, accessors = [], [], []

    def add(arr: np.ndarray, target=None, minmax=False) -> int:
        off = sum(len(p) for p in bin_parts)
        data = arr.tobytes()
        pad = (-len(data)) % 4
        bin_parts.append(data + b"\0" * pad)
        view = {"buffer": 0, "byteOffset": off, "byteLength": len(data)}
        if target:
            view["target"] = target
        views.append(view)
        ctype = {np.float32: 5126, np.uint32: 5125}[arr.dtype.type]
        typ = {1: "SCALAR", 2: "VEC2", 3: "VEC3"}[1 if arr.ndim == 1 else arr.shape[1]]
        acc = {"bufferView": len(views) - 1, "componentType": ctype, "count": len(arr),
               "type": typ}
        if minmax:
            acc["min"] = arr.min(0).tolist()
            acc["max"] = arr.max(0).tolist()
        accessors.append(acc)
        return len(accessors) - 1

    parts = {"Head": (head_res, 2 * head_res, 0.1, (0, 0, 0)),
             "EyeLeft": (8, 12, 0.012, (0.032, 0.03, 0.07)),
             "EyeRight": (8, 12, 0.012, (-0.032, 0.03, 0.07)),
             "Teeth": (6, 10, 0.02, (0.0, -0.04, 0.06))}
    meshes, nodes, counts = [], [], {}
    for name, (nl, nn, r, c) in parts.items():
        pos, uv, tris = _sphere(nl, nn, r, c)
        counts[name] = len(pos)
        prim = {"attributes": {"POSITION": add(pos, 34962, True), "TEXCOORD_0": add(uv, 34962)},
                "indices": add(tris.ravel(), 34963), "material": 0 if name == "Head" else 1}
        mesh = {"name": name, "primitives": [prim]}
        if name == "Head":
            targets = []
            for k in range(len(TARGET_NAMES)):
                d = np.zeros_like(pos)
                d[rng.integers(0, len(pos), 20)] = rng.normal(0, 0.002, (20, 3))
                targets.append({"POSITION": add(d.astype(np.float32), 34962, True)})
            prim["targets"] = targets
            mesh["weights"] = [0.0] * len(TARGET_NAMES)
            mesh["extras"] = {"targetNames": list(TARGET_NAMES)}
        meshes.append(mesh)
        nodes.append({"name": name, "mesh": len(meshes) - 1})
    if noise_texture:
        tex = rng.integers(0, 256, (texture_px, texture_px, 3), dtype=np.uint8)
    else:
        yy, xx = np.mgrid[0:texture_px, 0:texture_px]
        tex = np.stack([xx * 255 // texture_px, yy * 255 // texture_px,
                        np.full_like(xx, 128)], -1).astype(np.uint8)
    png = _png(tex)
    off = sum(len(p) for p in bin_parts)
    bin_parts.append(png + b"\0" * ((-len(png)) % 4))
    views.append({"buffer": 0, "byteOffset": off, "byteLength": len(png)})
    blob = b"".join(bin_parts)
    gltf = {
        "asset": {"version": "2.0", "generator": "gen3dface tests"},
        "scene": 0, "scenes": [{"nodes": list(range(len(nodes)))}],
        "nodes": nodes, "meshes": meshes, "accessors": accessors, "bufferViews": views,
        "buffers": [{"byteLength": len(blob)}],
        "images": [{"bufferView": len(views) - 1, "mimeType": "image/png", "name": "HeadSkin"}],
        "textures": [{"source": 0}],
        "materials": [
            {"name": "HeadSkin", "pbrMetallicRoughness": {
                "baseColorTexture": {"index": 0}, "metallicFactor": 0.0,
                "roughnessFactor": 0.6}},
            {"name": "Eye", "pbrMetallicRoughness": {"baseColorFactor": [1, 1, 1, 1]}}],
    }
    js = json.dumps(gltf, separators=(",", ":")).encode()
    js += b" " * ((-len(js)) % 4)
    glb = (struct.pack("<III", 0x46546C67, 2, 12 + 8 + len(js) + 8 + len(blob))
           + struct.pack("<II", len(js), 0x4E4F534A) + js
           + struct.pack("<II", len(blob), 0x004E4942) + blob)
    return glb, {"counts": counts, "targets": list(TARGET_NAMES)}


# --------------------------------------------------------------------------------------------
# subprocess scenarios (run this file as a script)
# --------------------------------------------------------------------------------------------

def scenario_import(out_json: str) -> None:
    import bpy
    from mathutils import Vector

    from gen3dface.blender_addon.blender.importer import import_glb
    from gen3dface.blender_addon.core import rig as core_rig

    glb, facts = make_test_glb()
    path = Path(out_json).with_suffix(".glb")
    path.write_bytes(glb)
    # a scene in centimetres: 1 BU = 0.01 m; rig centre at (10, 20, 150) BU
    scene = bpy.context.scene
    scene.unit_settings.system = "METRIC"
    scene.unit_settings.scale_length = 0.01
    h2w = core_rig.head_to_world_at((10.0, 20.0, 150.0), 0.01)
    sidecar = {"generator": "offline", "head_model": "ict_facekit", "fallbacks": ["a", "b"],
               "warnings": [], "landmark_error_px": 1.5, "timings_s": {"fit": 0.2}}
    names = import_glb(path, "Face", h2w, 0.01, sidecar)
    res = {"names": names, "facts": facts, "objects": {}}
    for n in names:
        o = bpy.data.objects[n]
        info = {"type": o.type, "collections": [c.name for c in o.users_collection],
                "parent": o.parent.name if o.parent else None,
                "world_centre": list(sum((o.matrix_world @ Vector(v.co) for v in o.data.vertices),
                                         Vector()) / len(o.data.vertices)) if o.type == "MESH" else
                list(o.matrix_world.translation)}
        if o.type == "MESH":
            info["n_verts"] = len(o.data.vertices)
            keys = o.data.shape_keys.key_blocks if o.data.shape_keys else []
            info["shape_keys"] = [k.name for k in keys]
            imgs = []
            for slot in o.material_slots:
                if slot.material and slot.material.use_nodes:
                    for node in slot.material.node_tree.nodes:
                        if getattr(node, "image", None) is not None:
                            imgs.append({"material": slot.material.name,
                                         "packed": node.image.packed_file is not None,
                                         "size": list(node.image.size)})
            info["images"] = imgs
        info["props"] = {k: (o[k] if isinstance(o[k], (str, int, float)) else o[k].to_dict())
                         for k in o.keys() if k.startswith("gen3dface_")}
        res["objects"][n] = info
    Path(out_json).write_text(json.dumps(res))


def run_scenario(python: str, name: str, *args: str, timeout: float = 120) -> None:
    p = subprocess.run([python, __file__, name, *args], capture_output=True, text=True,
                       timeout=timeout, cwd=REPO)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]


@pytest.mark.blender
def test_import_glb_names_shape_keys_texture_placement_props(tmp_path, blender_python):
    pytest.importorskip("bpy")
    out = tmp_path / "res.json"
    run_scenario(blender_python, "import", str(out))
    res = json.loads(out.read_text())
    objs = res["objects"]
    assert res["names"][0] == "Face"
    assert set(res["names"]) == {"Face", "Face_Head", "Face_EyeLeft", "Face_EyeRight",
                                 "Face_Teeth"}
    for n in res["names"]:
        assert objs[n]["collections"] == ["Face"]
    head = objs["Face_Head"]
    assert head["n_verts"] == res["facts"]["counts"]["Head"]
    assert head["shape_keys"][0] == "Basis"
    assert head["shape_keys"][1:] == res["facts"]["targets"]          # ARKit's 52 + 4 extras
    assert len(head["shape_keys"]) == 57
    assert any(i["material"].startswith("HeadSkin") and i["packed"] and i["size"] == [64, 64]
               for i in head["images"])
    assert head["parent"] == "Face"
    # placement: the head frame origin at the rig centre in BU; its vertices' centre there
    assert np.allclose(objs["Face"]["world_centre"], (10, 20, 150), atol=1e-4)
    assert np.allclose(head["world_centre"], (10, 20, 150), atol=0.5)
    # the left eye (+X head = subject's left) lands at +X in Blender, eyes in front (-Y)
    # and above (+Z) the centre: (0.032, 0.03, 0.07) m -> (3.2, -7, 3) cm
    eye = np.array(objs["Face_EyeLeft"]["world_centre"]) - (10, 20, 150)
    assert np.allclose(eye, (3.2, -7.0, 3.0), atol=0.3)
    props = objs["Face"]["props"]
    assert props["gen3dface_generator"] == "offline"
    assert props["gen3dface_fallbacks"] == "a; b"
    assert props["gen3dface_landmark_error_px"] == pytest.approx(1.5)
    assert props["gen3dface_timings_s"] == {"fit": pytest.approx(0.2)}
    assert json.loads(props["gen3dface_sidecar"])["head_model"] == "ict_facekit"
    assert objs["Face_Head"]["props"]["gen3dface_part"] == "Head"


if __name__ == "__main__":
    run_blender_scenario(globals()["scenario_" + sys.argv[1]], *sys.argv[2:])
