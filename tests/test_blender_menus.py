"""Every item of the installed extension's option menus, sent to a real `gen3dface serve`:
none is refused (BAD_REQUEST). Before any backend answered, the menus offer the vocabulary's
choices (protocol/options.py); after Test connection, what the backend's capabilities say.

The extension is built and installed as in test_blender_addon.py; each item runs the Generate
operator on a blank photo, so a job whose options were accepted ends in NO_FACE (fast), and a
refused one in BAD_REQUEST.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from conftest import run_blender_scenario
from test_blender_addon import blender_env, extension_zip, start_serve  # noqa: F401 (fixture)

OPTIONS = ("generator", "quality", "texture_size", "output_kind")


def scenario_menus(args_json: str) -> None:
    a = json.loads(args_json)
    import bpy
    r = bpy.ops.extensions.package_install_files(filepath=a["zip"], repo="user_default",
                                                 enable_on_install=True)
    assert r == {"FINISHED"}, r
    pkg = "bl_ext.user_default.gen3dface"
    runtime = sys.modules[pkg + ".blender.runtime"]
    properties = sys.modules[pkg + ".blender.properties"]
    prefs = bpy.context.preferences.addons[pkg].preferences
    props = bpy.context.scene.gen3dface
    prefs.key_file = a["key"]
    prefs.address = a["address"]
    prefs.connect_timeout = 5.0
    props.rig_source = "NONE"
    props.photo_path = a["blank"]
    out = {"offline_menus": {o: [i[0] for i in properties.menu_items(o)] for o in OPTIONS},
           "defaults": {o: getattr(props, o) for o in OPTIONS}}
    out["test_connection"] = bpy.ops.gen3dface.test_connection() == {"FINISHED"}
    out["menus"] = {o: [i[0] for i in properties.menu_items(o)] for o in OPTIONS}

    def generate(label):
        props.result_name = label
        assert bpy.ops.gen3dface.generate() == {"FINISHED"}
        t0 = time.monotonic()
        while True:
            nxt = runtime.poll()
            if nxt is None:
                break
            assert time.monotonic() - t0 < 120, f"{label}: no end"
            time.sleep(nxt)
        v = runtime.current_job().tracker.view()
        return {"state": v.state.value, "code": v.error.code if v.error else None,
                "message": v.error.message if v.error else None,
                "sent": props.generate_options().to_dict()}

    out["jobs"] = {}
    for option in OPTIONS:
        for item in out["menus"][option]:
            for o in OPTIONS:                       # the others at their defaults
                setattr(props, o, out["defaults"][o])
            setattr(props, option, item)
            out["jobs"][f"{option}={item}"] = generate(f"{option}_{item}")
    for o in OPTIONS:
        setattr(props, o, out["defaults"][o])
    props.neutral = True
    props.seed = properties.SEED_MAX
    out["jobs"]["neutral+max seed"] = generate("neutral")
    bpy.ops.preferences.addon_disable(module=pkg)
    with open(a["out"], "w") as f:
        json.dump(out, f, indent=1)


@pytest.mark.blender
@pytest.mark.slow
def test_every_menu_item_is_accepted_by_a_real_serve(tmp_path, extension_zip, data_dir,  # noqa: F811
                                                     blender_python):
    import numpy as np
    from PIL import Image

    from gen3dface.protocol import options as vocabulary

    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((128, 128, 3), 235, np.uint8)).save(blank)
    proc, address, key = start_serve(tmp_path, data_dir)
    try:
        out = tmp_path / "out.json"
        args = {"zip": str(extension_zip), "address": address, "key": str(key),
                "blank": str(blank), "out": str(out)}
        p = subprocess.run([blender_python, __file__, "menus", json.dumps(args)],
                           capture_output=True, text=True, timeout=600,
                           env=blender_env(tmp_path / "blender"), cwd=tmp_path)
        assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-4000:]
    finally:
        proc.kill()
        proc.wait()
    res = json.loads(out.read_text())
    offline = {o: [str(v) for v in vocabulary.OPTIONS[o].choices] for o in OPTIONS}
    assert res["offline_menus"] == offline
    assert res["defaults"] == {o: str(vocabulary.DEFAULTS[o]) for o in OPTIONS}
    assert res["test_connection"]
    menus = res["menus"]
    # this backend has no checkpoint: no "gen3dface" generator and no free-form surface
    assert menus["generator"] == ["auto", "offline"]
    assert menus["output_kind"] == ["rigged"]
    assert menus["texture_size"] == [str(s) for s in vocabulary.TEXTURE_SIZES]
    assert menus["quality"] == list(vocabulary.QUALITIES)
    jobs = res["jobs"]
    assert len(jobs) == sum(len(v) for v in menus.values()) + 1
    for label, job in jobs.items():
        assert job["code"] != "BAD_REQUEST", (label, job)
        assert job["state"] == "failed" and job["code"] == "NO_FACE", (label, job)
    for option in OPTIONS:
        for item in menus[option]:
            assert str(jobs[f"{option}={item}"]["sent"][option]) == item
    assert jobs["neutral+max seed"]["sent"]["neutral"] is True
    assert jobs["neutral+max seed"]["sent"]["seed"] == 2 ** 31 - 1


if __name__ == "__main__":
    run_blender_scenario(globals()["scenario_" + sys.argv[1]], *sys.argv[2:])
