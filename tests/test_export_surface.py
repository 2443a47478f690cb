"""GLB export of the free-form surface: "surface" (node "Surface" alone) and "both" (the rigged
head's nodes plus "Surface" as one more root node). A marching-cubes sphere with xatlas UVs
and a texture whose colour encodes the head-frame position is exported; the test reads the
GLB back (structure, bounds in metres, texture orientation through glTF's top-left UVs),
runs Khronos glTF-Validator when installed, and re-imports in headless Blender."""
from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import gltf_validator_report

from gen3dface.backend.export.gltf import read_accessor, read_glb
from gen3dface.backend.export.head_glb import ExportConfig, HeadAsset
from gen3dface.backend.export.result_glb import (glb_mesh_names, output_kind_of,
                                                 write_result_glb)
from gen3dface.backend.export.surface_glb import SurfaceAsset
from gen3dface.backend.headmodel.arkit import EXPORTED_NAMES
from gen3dface.backend.recon.meshing import MeshingConfig, field_to_mesh
from gen3dface.backend.texture.eyes import bake_eye_textures
from gen3dface.backend.texture.layout import SkinLayout
from gen3dface.backend.texture.raster import rasterize_uv

REPO = Path(__file__).resolve().parents[1]
R = 0.1                     # sphere radius, metres
CENTRE = np.array([0.0, 0.02, 0.01])
TEX = 256
RIGGED = ["Head", "EyeLeft", "EyeRight", "Teeth"]


def position_colour(p: np.ndarray) -> np.ndarray:
    """(M, 3) head-frame points on the sphere -> RGB in [0, 255]: a smooth map whose three
    channels follow x, y and z, so any flip of the atlas shows."""
    return np.clip((np.asarray(p) - CENTRE) / R * 110.0 + 128.0, 0, 255)


@pytest.fixture(scope="module")
def sphere():
    """A marching-cubes sphere with xatlas UVs, and its atlas painted by position_colour."""
    n = 40
    ax = np.linspace(-0.13, 0.13, n)
    g = np.stack(np.meshgrid(ax, ax, ax, indexing="ij"), -1)
    field = np.linalg.norm(g, axis=-1) - R
    mesh = field_to_mesh(field, CENTRE + ax[0], ax[1] - ax[0],
                         MeshingConfig(target_faces=3000, uv_resolution=TEX))
    raster = rasterize_uv(mesh.uvs[mesh.uv_faces], TEX, 1)
    cov = raster.covered
    f = mesh.faces[raster.tri[cov]]
    p = np.einsum("mk,mkc->mc", raster.bary[cov], mesh.vertices[f])
    tex = np.zeros((TEX, TEX, 3), np.uint8)
    tex[cov] = np.round(position_colour(p)).astype(np.uint8)
    return mesh, tex


@pytest.fixture(scope="module")
def head_asset(ict_model):
    m = ict_model
    lay = SkinLayout.of(m)
    tex = np.full((64, 64 * lay.n_tiles, 3), 180, np.uint8)
    w = np.zeros(m.n_expressions)
    w[m.expression_names.index("jawOpen")] = 0.25
    return HeadAsset(m, m.vertices, w, tex, lay, bake_eye_textures(m, m.vertices, 32),
                     {"generator": "test"})


@pytest.fixture(scope="module")
def glbs(sphere, head_asset):
    mesh, tex = sphere
    surf = SurfaceAsset.from_mesh(mesh, tex, extras={"note": "test sphere"})
    cfg = ExportConfig(skin_image_format="png")
    return {"surface": write_result_glb(None, surf, cfg),
            "both": write_result_glb(head_asset, surf, cfg)}


@pytest.fixture(scope="module")
def glb_files(glbs, tmp_path_factory):
    d = tmp_path_factory.mktemp("surface_glb")
    out = {}
    for kind, data in glbs.items():
        out[kind] = d / f"{kind}.glb"
        out[kind].write_bytes(data)
    return out


def _mesh(doc, name):
    return next(m for m in doc["meshes"] if m["name"] == name)


def _decode_image(doc, binary, index) -> np.ndarray:
    from PIL import Image

    view = doc["bufferViews"][doc["images"][index]["bufferView"]]
    data = binary[view.get("byteOffset", 0): view.get("byteOffset", 0) + view["byteLength"]]
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_surface_only(glbs, sphere):
    mesh, _ = sphere
    doc, binary = read_glb(glbs["surface"])
    assert [n["name"] for n in doc["nodes"]] == ["Surface"]
    assert doc["scenes"][0]["nodes"] == [0]
    assert doc["nodes"][0]["extras"] == {"gen3dface_role": "free_form_surface",
                                         "note": "test sphere"}
    assert [m["name"] for m in doc["meshes"]] == ["Surface"]
    assert [m["name"] for m in doc["materials"]] == ["SurfaceSkin"]
    assert [i["name"] for i in doc["images"]] == ["SurfaceSkin_baseColor"]
    assert doc["asset"]["extras"]["output_kind"] == "surface"
    surf = doc["meshes"][0]
    assert "extras" not in surf and "weights" not in surf          # no morph targets
    (prim,) = surf["primitives"]
    assert "targets" not in prim
    assert doc["materials"][prim["material"]]["pbrMetallicRoughness"]["baseColorTexture"] == \
        {"index": 0}
    # metres, head frame: the sphere's bounds, written where it is
    acc = doc["accessors"][prim["attributes"]["POSITION"]]
    np.testing.assert_allclose(acc["min"], CENTRE - R, atol=2e-3)
    np.testing.assert_allclose(acc["max"], CENTRE + R, atol=2e-3)
    pos = read_accessor(doc, binary, prim["attributes"]["POSITION"])
    nrm = read_accessor(doc, binary, prim["attributes"]["NORMAL"])
    assert len(pos) == len(mesh.uvs)                # split at the atlas seams, one UV each
    np.testing.assert_allclose(np.linalg.norm(nrm, axis=1), 1.0, atol=1e-5)
    assert (np.einsum("ij,ij->i", nrm, pos - CENTRE) > 0).mean() > 0.99    # outward
    ind = read_accessor(doc, binary, prim["indices"]).reshape(-1, 3)
    assert len(ind) == len(mesh.faces)


def test_atlas_texture_reads_back_through_gltf_uvs(glbs):
    """Sample the embedded image at each triangle's centroid UV, with glTF's top-left
    origin: the colour is the one painted for that point of the sphere. Reading the same
    UVs bottom-left (forgetting the flip) would not match."""
    doc, binary = read_glb(glbs["surface"])
    prim = doc["meshes"][0]["primitives"][0]
    pos = read_accessor(doc, binary, prim["attributes"]["POSITION"]).astype(np.float64)
    uv = read_accessor(doc, binary, prim["attributes"]["TEXCOORD_0"]).astype(np.float64)
    tri = read_accessor(doc, binary, prim["indices"]).reshape(-1, 3)
    img = _decode_image(doc, binary, 0)
    assert img.shape == (TEX, TEX, 3)
    c_uv, c_pos = uv[tri].mean(1), pos[tri].mean(1)
    expected = position_colour(c_pos)

    def sample(u, v):
        x = np.clip((u * TEX).astype(int), 0, TEX - 1)
        y = np.clip((v * TEX).astype(int), 0, TEX - 1)
        return img[y, x].astype(np.float64)

    err = np.abs(sample(c_uv[:, 0], c_uv[:, 1]) - expected).max(1)
    assert np.median(err) < 4 and np.mean(err < 12) > 0.97
    flipped = np.abs(sample(c_uv[:, 0], 1.0 - c_uv[:, 1]) - expected).max(1)
    assert np.median(flipped) > 40


def test_both_has_the_rig_and_the_surface(glbs, ict_model, head_asset):
    doc, binary = read_glb(glbs["both"])
    names = [n["name"] for n in doc["nodes"]]
    assert names == RIGGED + ["Surface"]
    assert doc["scenes"][0]["nodes"] == list(range(5))              # all root nodes
    assert all("children" not in n for n in doc["nodes"])
    assert [m["name"] for m in doc["meshes"]] == names
    assert glb_mesh_names(head_asset, SurfaceAsset(np.zeros((3, 3)), np.zeros((1, 3)))) == names
    mats = [m["name"] for m in doc["materials"]]
    assert "HeadSkin" in mats and "SurfaceSkin" in mats and mats.count("SurfaceSkin") == 1
    assert {"HeadSkin_baseColor", "SurfaceSkin_baseColor"} <= {i["name"] for i in doc["images"]}
    assert doc["asset"]["extras"]["output_kind"] == "both"
    assert doc["asset"]["extras"]["generator"] == "test"
    # ARKit's 52 target names (+ ICT's 4 split extras) on the rigged Head only; none on Surface
    head = _mesh(doc, "Head")
    assert head["extras"]["targetNames"] == list(EXPORTED_NAMES)
    assert head["weights"][head["extras"]["targetNames"].index("jawOpen")] == pytest.approx(0.25)
    surf = _mesh(doc, "Surface")
    assert "extras" not in surf and all("targets" not in p for p in surf["primitives"])
    assert doc["materials"][surf["primitives"][0]["material"]]["name"] == "SurfaceSkin"
    for m in doc["meshes"]:
        if m["name"] != "Surface":
            assert all(n in EXPORTED_NAMES for n in m["extras"]["targetNames"])
    # both in metres in the same frame: the head is ~25 cm tall, the sphere 20 cm across
    hp = doc["accessors"][head["primitives"][0]["attributes"]["POSITION"]]
    assert 0.15 < hp["max"][1] - hp["min"][1] < 0.4
    sp = doc["accessors"][surf["primitives"][0]["attributes"]["POSITION"]]
    np.testing.assert_allclose(np.subtract(sp["max"], sp["min"]), 2 * R, atol=4e-3)
    # the surface's texture is the sphere's atlas, not the head's
    tex_idx = doc["materials"][surf["primitives"][0]["material"]]["pbrMetallicRoughness"][
        "baseColorTexture"]["index"]
    img = _decode_image(doc, binary, doc["textures"][tex_idx]["source"])
    assert img.shape == (TEX, TEX, 3) and img.std() > 20


def test_bad_surfaces_are_refused(sphere):
    mesh, tex = sphere
    with pytest.raises(ValueError, match="nothing to export"):
        output_kind_of(None, None)
    no_uv = SurfaceAsset(mesh.vertices, mesh.faces, texture=tex)
    with pytest.raises(ValueError, match="needs UVs"):
        write_result_glb(None, no_uv)
    bad_map = SurfaceAsset.from_mesh(mesh, tex)
    bad_map.vmapping = np.roll(mesh.vmapping, 1)
    with pytest.raises(ValueError, match="vmapping"):
        write_result_glb(None, bad_map)
    with pytest.raises(ValueError, match="faces"):
        write_result_glb(None, SurfaceAsset(mesh.vertices, mesh.faces + len(mesh.vertices)))
    # without a texture: a plain material, no UVs needed
    doc, _ = read_glb(write_result_glb(None, SurfaceAsset(mesh.vertices, mesh.faces)))
    assert "TEXCOORD_0" not in doc["meshes"][0]["primitives"][0]["attributes"]
    assert doc["materials"][0]["name"] == "SurfaceSkin" and "images" not in doc


@pytest.mark.parametrize("kind", ["surface", "both"])
def test_khronos_validator(glb_files, kind):
    report = gltf_validator_report(glb_files[kind])
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
                    "dims": list(ob.dimensions), "mats": [m.name for m in ob.data.materials],
                    "parent": ob.parent.name if ob.parent else None,
                    "role": ob.get("gen3dface_role"), "hidden": ob.hide_get(),
                    "uv": [u.name for u in ob.data.uv_layers]}
print("RESULT" + json.dumps(out))
"""


@pytest.mark.blender
def test_blender_reimport_both(glb_files):
    pytest.importorskip("bpy")
    r = subprocess.run([sys.executable, "-c", BPY_SCRIPT, str(glb_files["both"])],
                       capture_output=True, text=True, timeout=240)
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("RESULT")), None)
    assert line, r.stdout[-2000:] + r.stderr[-2000:]
    objs = json.loads(line[len("RESULT"):])
    assert set(objs) == set(RIGGED + ["Surface"])
    surf, head = objs["Surface"], objs["Head"]
    assert surf["keys"] == [] and surf["mats"] == ["SurfaceSkin"] and surf["uv"]
    assert surf["parent"] is None and surf["role"] == "free_form_surface"
    assert surf["hidden"] is False               # imported visible (glTF has no visibility)
    assert head["keys"] == list(EXPORTED_NAMES)
    assert head["mats"] == ["HeadSkin"]
    np.testing.assert_allclose(surf["dims"], 2 * R, atol=4e-3)    # metres
    assert 0.2 < head["dims"][2] < 0.4 and head["dims"][2] > head["dims"][0]  # upright


ADDON_IMPORT_SCRIPT = r"""
import json, sys, bpy
bpy.ops.wm.read_factory_settings(use_empty=True)
from gen3dface.blender_addon.blender.importer import import_glb
from gen3dface.protocol.cameras import HEAD_TO_BLENDER
names = import_glb(sys.argv[-1], "Job", HEAD_TO_BLENDER)
out = {n: {"hidden": bpy.data.objects[n].hide_get(), "hide_render": bpy.data.objects[n].hide_render}
       for n in names}
print("RESULT" + json.dumps(out))
"""


@pytest.mark.blender
def test_addon_import_of_both_hides_the_surface(glb_files):
    """Through the add-on's importer, "both" keeps the animatable head visible and brings the
    overlapping free-form surface in hidden (viewport and render)."""
    pytest.importorskip("bpy")
    r = subprocess.run([sys.executable, "-c", ADDON_IMPORT_SCRIPT, str(glb_files["both"])],
                       capture_output=True, text=True, timeout=240)
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("RESULT")), None)
    assert line, r.stdout[-2000:] + r.stderr[-2000:]
    objs = json.loads(line[len("RESULT"):])
    assert objs["Job_Surface"] == {"hidden": True, "hide_render": True}
    assert objs["Job_Head"] == {"hidden": False, "hide_render": False}
