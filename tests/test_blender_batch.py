"""Batch from Blender's command line against a real `gen3dface serve` (bpy wheel, headless).

Two entry points, one implementation (blender_addon/core/batch.py + blender/batch_bpy.py):
- `blender -b --python scripts/blender_batch.py -- ...`: run here as
  `python scripts/blender_batch.py -- ...` (the bpy wheel is Blender as a Python module);
- `blender -b -c gen3dface ...`: the bpy module cannot parse `-c`, so the test installs the
  built extension, checks that it registered the `gen3dface` command with
  bpy.utils.register_cli_command, and calls the registered handler with the arguments, as
  Blender does after parsing `-c gen3dface`.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_blender_scenario

from test_blender_addon import REPO, blender_env, extension_zip, start_serve  # noqa: F401


def scenario_cli_command(args_json: str) -> None:
    a = json.loads(args_json)
    import bpy
    assert bpy.ops.extensions.package_install_files(
        filepath=a["zip"], repo="user_default", enable_on_install=True) == {"FINISHED"}
    cli = sys.modules["bl_ext.user_default.gen3dface.blender.cli"]
    assert cli._handle is not None, "the extension did not register its -c command"
    code = cli._command(a["argv"])
    # the batch started from an empty scene, and the add-on is still enabled and registered
    import addon_utils
    assert cli._handle is not None
    assert addon_utils.check("bl_ext.user_default.gen3dface")[1], "the add-on was disabled"
    print("OBJECTS " + json.dumps(sorted(o.name for o in bpy.data.objects)))
    sys.exit(code)


def scenario_inspect_blend(path: str) -> None:
    import bpy
    bpy.ops.wm.open_mainfile(filepath=path)
    print("OBJECTS " + json.dumps(sorted(o.name for o in bpy.data.objects)))
    print("TYPES " + json.dumps(sorted({o.type for o in bpy.data.objects})))


def blend_objects(blender_python, blend, env) -> tuple[list, list]:
    p = subprocess.run([blender_python, str(Path(__file__)), "inspect_blend", str(blend)],
                       capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    line = lambda tag: json.loads(next(x for x in p.stdout.splitlines()
                                       if x.startswith(tag + " "))[len(tag) + 1:])
    return line("OBJECTS"), line("TYPES")


@pytest.mark.blender
@pytest.mark.slow
def test_batch_both_entry_points(tmp_path, extension_zip, data_dir, faces_dir, blender_python):
    import numpy as np
    from PIL import Image
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(faces_dir / "biden.jpg", photos / "biden.jpg")
    Image.fromarray(np.full((200, 200, 3), 240, np.uint8)).save(photos / "blank.png")
    proc, address, key = start_serve(tmp_path, data_dir)
    common = ["--address", address, "--key-file", str(key), "--quality", "draft",
              "--texture-size", "512", "--connect-timeout", "20", "--job-timeout", "300"]
    try:
        # 1. the --python fallback over a folder: the blank photo fails -> exit code 1
        out1 = tmp_path / "run1"
        p = subprocess.run(
            [sys.executable, str(REPO / "scripts" / "blender_batch.py"), "--", str(photos),
             "--blend", str(out1 / "heads.blend"), "--glb-dir", str(out1 / "glb"),
             "--summary", str(out1 / "summary.json"), *common],
            capture_output=True, text=True, timeout=600, cwd=tmp_path,
            env=blender_env(tmp_path / "b1"))
        assert p.returncode == 1, p.stdout[-3000:] + p.stderr[-3000:]
        s = json.loads((out1 / "summary.json").read_text())
        assert s["photos"] == 2 and s["succeeded"] == 1 and s["exit_code"] == 1
        assert s["failed"][0]["photo"].endswith("blank.png")
        assert s["failed"][0]["code"] == "NO_FACE" and s["failed"][0]["message"]
        assert "FAILED" in p.stderr and "blank.png" in p.stderr
        ok = [i for i in s["items"] if i["ok"]][0]
        assert Path(ok["glb_path"]).read_bytes()[:4] == b"glTF"
        assert ok["objects"][0] == "biden" and "biden_Head" in ok["objects"]
        assert (out1 / "heads.blend").stat().st_size > 100_000
        assert json.loads((out1 / "glb" / "biden.sidecar.json").read_text())["generator"]
        # no startup cube/camera/light around the heads: the batch starts from an empty scene
        names, types = blend_objects(blender_python, out1 / "heads.blend", blender_env(tmp_path / "b1"))
        assert not {"Cube", "Camera", "Light"} & set(names), names
        assert "biden_Head" in names and types == sorted(set(types) - {"CAMERA", "LIGHT"})
        # the default 16-camera ring was sent with the job: the head sits centred on it
        cam = json.loads(Path(ok["glb_path"]).with_name("biden.sidecar.json").read_text())["camera"]
        assert "blender_cam_to_world" in cam

        # 2. the extension's `-c gen3dface` command on single-face photos -> exit code 0,
        #    heads in a grid, a ring rig sent with each job
        out2 = tmp_path / "run2"
        argv = [str(faces_dir / "alfw1.png"), str(photos / "biden.jpg"), "--cameras", "8",
                "--blend", str(out2 / "heads.blend"), "--summary", str(out2 / "summary.json"),
                "--spacing", "0.6", *common]
        p = subprocess.run(
            [blender_python, str(Path(__file__)), "cli_command",
             json.dumps({"zip": str(extension_zip), "argv": argv})],
            capture_output=True, text=True, timeout=600, cwd=tmp_path,
            env=blender_env(tmp_path / "b2"))
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
        names = json.loads(next(x for x in p.stdout.splitlines()
                                if x.startswith("OBJECTS "))[len("OBJECTS "):])
        assert not {"Cube", "Camera", "Light"} & set(names), names
        s = json.loads((out2 / "summary.json").read_text())
        assert s["succeeded"] == 2 and s["failed"] == [] and s["exit_code"] == 0
        cells = [tuple(i["cell"]) for i in s["items"]]
        assert cells[0] != cells[1] and abs(cells[0][0] - cells[1][0]) == pytest.approx(0.6)
    finally:
        proc.kill()
        proc.wait()

    # 3. bad arguments -> exit code 2 with a message, before any network traffic; --help -> 0
    script = [sys.executable, str(REPO / "scripts" / "blender_batch.py"), "--"]
    p = subprocess.run([*script, str(photos)], capture_output=True, text=True, timeout=120,
                       env=blender_env(tmp_path / "b3"))
    assert p.returncode == 2 and "--blend" in p.stderr
    p = subprocess.run([*script, str(photos), "--glb-dir", str(tmp_path / "g")],
                       capture_output=True, text=True, timeout=120, env=blender_env(tmp_path / "b3"))
    assert p.returncode == 2 and "--key-file" in p.stderr and "Preferences" not in p.stderr
    p = subprocess.run([*script, "--help"], capture_output=True, text=True, timeout=120,
                       env=blender_env(tmp_path / "b3"))
    assert p.returncode == 0 and "--cameras" in p.stdout, p.stderr[-2000:]


if __name__ == "__main__":
    run_blender_scenario(globals()["scenario_" + sys.argv[1]], *sys.argv[2:])
