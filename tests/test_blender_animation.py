"""A Live Link Face take drives an exported head in headless Blender, through the built
extension installed as a user installs it (bpy wheel; README, "Drive the head with an iPhone
take").

The head is the real export (write_head_glb on ICT-FaceKit: ARKit's 52 + 4 extras), imported
with the installed add-on's importer and saved as a .blend. The take is written by the test
with Live Link Face's real 63-column header (tests/test_addon_livelink.py: livelink_csv). Then
- `blender -b -c gen3dface animate HEAD.blend take.csv --save OUT.blend`: the bpy module cannot
  parse `-c`, so the scenario calls the handler the extension registered with
  bpy.utils.register_cli_command, as Blender does (tests/test_blender_batch.py does the same);
- the panel's operator (gen3dface.animate_take) on the open scene;
and malformed takes are refused by both with the scene and the files untouched.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import run_blender_scenario
from test_addon_livelink import livelink_csv, value

from test_blender_addon import blender_env, extension_zip  # noqa: F401

N_ROWS = 6
ROTATIONS = {"HeadYaw": [0.0, 0.5, 0.0, 0.0, 0.0, 0.0],          # normalized: 0.5 = 45 deg
             "HeadPitch": [0.0, 0.0, 0.0, -0.25, 0.0, 0.0],
             "LeftEyeYaw": [0.0, 0.0, 0.2, 0.0, 0.0, 0.0]}      # 18 deg toward the left
CHECKED = ("jawOpen", "tongueOut", "browInnerUp", "cheekPuff", "mouthLeft", "eyeBlinkRight",
           "eyeLookInLeft")


def scenario_animate(args_json: str) -> None:
    a = json.loads(args_json)
    import bpy
    from mathutils import Vector
    assert bpy.ops.extensions.package_install_files(
        filepath=a["zip"], repo="user_default", enable_on_install=True) == {"FINISHED"}
    pkg = "bl_ext.user_default.gen3dface"
    cli = sys.modules[pkg + ".blender.cli"]
    import importlib
    importer = importlib.import_module(pkg + ".blender.importer")
    rig = importlib.import_module(pkg + ".core.rig")
    out = {}

    # usage errors, and a .blend without a head: exit 2, nothing written
    out["usage_code"] = cli._command(["animate"])
    out["help_code"] = cli._command(["animate", "--help"])
    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.ops.wm.save_as_mainfile(filepath=a["empty_blend"])
    out["no_head_code"] = cli._command(["animate", a["empty_blend"], a["csv"], "--save",
                                        a["bad_out"]])

    # a head in a .blend, as the panel or the batch command leaves it
    bpy.ops.wm.read_homefile(use_empty=True)
    importer.import_glb(a["glb"], "Face", rig.head_to_world_at((0.0, 0.0, 0.0), 1.0), 1.0)
    bpy.ops.wm.save_as_mainfile(filepath=a["head_blend"])
    head_bytes = Path(a["head_blend"]).read_bytes()

    # 1. the command line: a malformed take -> exit 2, nothing written
    code = cli._command(["animate", a["head_blend"], a["bad_csv"], "--save", a["bad_out"]])
    out["bad_code"] = code
    out["bad_out_exists"] = Path(a["bad_out"]).exists()
    out["head_blend_unchanged"] = Path(a["head_blend"]).read_bytes() == head_bytes
    # 2. the command line: the good take
    out["code"] = cli._command(["animate", a["head_blend"], a["csv"], "--save", a["out"]])
    out["head_blend_unchanged_after"] = Path(a["head_blend"]).read_bytes() == head_bytes

    # 3. what OUT.blend holds
    bpy.ops.wm.open_mainfile(filepath=a["out"])
    scene = bpy.context.scene
    out["fps"] = scene.render.fps / scene.render.fps_base
    out["range"] = [scene.frame_start, scene.frame_end]
    head, teeth = bpy.data.objects["Face_Head"], bpy.data.objects["Face_Teeth"]
    eye, root = bpy.data.objects["Face_EyeLeft"], bpy.data.objects["Face"]
    kb = head.data.shape_keys.key_blocks
    nose_local = max((v.co for v in head.data.vertices), key=lambda c: -c.y).copy()
    co = [v.co for v in eye.data.vertices]
    eye_centre_local = Vector([(min(c[k] for c in co) + max(c[k] for c in co)) / 2
                               for k in range(3)])
    cornea_local = min((v.co for v in eye.data.vertices), key=lambda c: c.y).copy()
    frames = []
    for i in range(a["n_rows"]):
        scene.frame_set(scene.frame_start + i)
        frames.append({
            "frame": scene.frame_current,
            "head": {n: kb[n].value for n in a["checked"]},
            "teeth": {n: teeth.data.shape_keys.key_blocks[n].value
                      for n in ("jawOpen", "tongueOut")},
            "nose": list(head.matrix_world @ nose_local),
            "root": list(root.matrix_world.translation),
            "eye_centre": list(eye.matrix_world @ eye_centre_local),
            "cornea": list(eye.matrix_world @ cornea_local),
        })
    out["frames"] = frames

    def paths(id_data):
        ad = id_data.animation_data
        return sorted({fc.data_path for fc in ad.action.fcurves}) if ad and ad.action else []
    out["eye_key_paths"] = paths(eye.data.shape_keys)
    out["teeth_key_paths"] = paths(teeth.data.shape_keys)
    out["head_key_paths"] = paths(head.data.shape_keys)

    # 4. the panel's operator: a malformed take leaves the scene as it was
    def state():
        return {"fps": [scene.render.fps, scene.render.fps_base],
                "range": [scene.frame_start, scene.frame_end],
                "actions": sorted(x.name for x in bpy.data.actions),
                "assigned": sorted(f"{o.name}:{o.animation_data.action.name}"
                                   for o in list(bpy.data.objects) + list(bpy.data.shape_keys)
                                   if o.animation_data and o.animation_data.action),
                "rotation_mode": root.rotation_mode}
    before = state()
    bpy.context.view_layer.objects.active = head
    try:
        r = bpy.ops.gen3dface.animate_take(filepath=a["bad_csv"])
        out["op_bad"] = sorted(r)
    except RuntimeError as e:          # an operator's ERROR report raises in scripts
        out["op_bad"] = str(e)
    out["op_bad_untouched"] = state() == before
    # 5. the operator with the good take, keeping the scene's 24 fps: keys at take times
    scene.render.fps, scene.render.fps_base = 24, 1.0
    r = bpy.ops.gen3dface.animate_take(filepath=a["csv"], time="scene", start_frame=100)
    out["op_good"] = sorted(r)
    scene.frame_set(100, subframe=0.4)            # row 1 is at 1/60 s = frame 100 + 0.4
    out["op_row1_jaw"] = kb["jawOpen"].value
    scene.frame_set(100, subframe=0.8)
    out["op_row2_jaw"] = kb["jawOpen"].value
    out["op_fps"] = scene.render.fps / scene.render.fps_base
    print("RESULT " + json.dumps(out))


@pytest.fixture(scope="module")
def head_glb(ict_model, tmp_path_factory) -> Path:
    from gen3dface.backend.export.head_glb import ExportConfig, HeadAsset, write_head_glb
    from gen3dface.backend.texture.eyes import bake_eye_textures
    from gen3dface.backend.texture.layout import SkinLayout
    m = ict_model
    lay = SkinLayout.of(m)
    tex = np.full((32, 32 * lay.n_tiles, 3), 180, np.uint8)
    asset = HeadAsset(m, m.vertices, np.zeros(m.n_expressions), tex, lay,
                      bake_eye_textures(m, m.vertices, 16), {"generator": "test"})
    p = tmp_path_factory.mktemp("anim") / "head.glb"
    p.write_bytes(write_head_glb(asset, ExportConfig(skin_image_format="jpeg")))
    return p


@pytest.mark.blender
@pytest.mark.slow
def test_live_link_face_take_keys_the_head(tmp_path, extension_zip, head_glb, blender_python):
    good = livelink_csv(N_ROWS, rotations=ROTATIONS)
    (tmp_path / "take.csv").write_text(good)
    lines = good.splitlines()
    cells = lines[2].split(",")
    cells[lines[0].split(",").index("JawOpen")] = "oops"       # row 3 of the file
    bad = "\n".join([lines[0], lines[1], ",".join(cells), *lines[3:]]) + "\n"
    (tmp_path / "bad.csv").write_text(bad)
    args = {"zip": str(extension_zip), "glb": str(head_glb),
            "head_blend": str(tmp_path / "head.blend"), "csv": str(tmp_path / "take.csv"),
            "bad_csv": str(tmp_path / "bad.csv"), "out": str(tmp_path / "out" / "anim.blend"),
            "bad_out": str(tmp_path / "bad_out.blend"), "n_rows": N_ROWS,
            "empty_blend": str(tmp_path / "empty.blend"),
            "checked": list(CHECKED)}
    p = subprocess.run([blender_python, str(Path(__file__)), "animate", json.dumps(args)],
                       capture_output=True, text=True, timeout=600,
                       env=blender_env(tmp_path / "b"))
    line = next((x for x in p.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert p.returncode == 0 and line, p.stdout[-3000:] + p.stderr[-3000:]
    r = json.loads(line[len("RESULT "):])

    assert r["usage_code"] == 2 and r["help_code"] == 0 and r["no_head_code"] == 2
    assert "has no Gen3D-Face head" in p.stderr
    # the malformed take: refused with its row and column, nothing written
    assert r["bad_code"] == 2 and not r["bad_out_exists"] and r["head_blend_unchanged"]
    assert "row 3" in p.stderr and "not a number" in p.stderr
    # the good one: keyed and saved to --save, the input left alone
    assert r["code"] == 0 and r["head_blend_unchanged_after"]
    assert r["fps"] == 60.0 and r["range"] == [1, N_ROWS]
    for i, f in enumerate(r["frames"]):
        assert f["frame"] == 1 + i
        for n in CHECKED:
            expected = value(n[0].upper() + n[1:], i)
            assert f["head"][n] == pytest.approx(expected, abs=1e-6), (i, n)
        for n in ("jawOpen", "tongueOut"):
            assert f["teeth"][n] == pytest.approx(value(n[0].upper() + n[1:], i), abs=1e-6)
    # the Teeth mesh has the jaw and tongue keyed; the left eye's gaze comes from its rotation,
    # so its eyeLook* keys are not keyed (the Head's are: they move the lids)
    assert 'key_blocks["tongueOut"].value' in r["teeth_key_paths"]
    assert not any("eyeLook" in x for x in r["eye_key_paths"])
    assert 'key_blocks["eyeLookInLeft"].value' in r["head_key_paths"]
    assert len(r["head_key_paths"]) == 52

    # head rotation: row 1 yaws 45 deg toward the subject's left (+X), about the head root
    def yaw_of(f):
        d = np.subtract(f["nose"], f["root"])
        return math.degrees(math.atan2(d[0], -d[1]))
    fr = r["frames"]
    assert yaw_of(fr[0]) == pytest.approx(0.0, abs=0.5)
    assert yaw_of(fr[1]) == pytest.approx(45.0, abs=0.5)
    # row 3 pitches -22.5 deg: nose up
    d0, d3 = np.subtract(fr[0]["nose"], fr[0]["root"]), np.subtract(fr[3]["nose"], fr[3]["root"])
    pitch = math.degrees(math.atan2(d3[2], -d3[1]) - math.atan2(d0[2], -d0[1]))
    assert pitch == pytest.approx(22.5, abs=0.5)
    # the left eye turns about its own centre: 18 deg toward +X on row 2, centre fixed
    np.testing.assert_allclose(fr[2]["eye_centre"], fr[0]["eye_centre"], atol=1e-6)
    c0 = np.subtract(fr[0]["cornea"], fr[0]["eye_centre"])
    c2 = np.subtract(fr[2]["cornea"], fr[2]["eye_centre"])
    turn = math.degrees(math.atan2(c2[0], -c2[1]) - math.atan2(c0[0], -c0[1]))
    assert turn == pytest.approx(18.0, abs=0.5)

    # the operator: the malformed take is refused with the scene untouched ...
    assert "not a number" in str(r["op_bad"]) and r["op_bad_untouched"]
    # ... and the good one keys at the take's times on a 24 fps scene
    assert r["op_good"] == ["FINISHED"] and r["op_fps"] == 24.0
    assert r["op_row1_jaw"] == pytest.approx(value("JawOpen", 1), abs=1e-6)
    assert r["op_row2_jaw"] == pytest.approx(value("JawOpen", 2), abs=1e-6)


if __name__ == "__main__":
    run_blender_scenario(globals()["scenario_" + sys.argv[1]], *sys.argv[2:])
