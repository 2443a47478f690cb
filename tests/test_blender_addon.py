"""The built extension, installed as a user installs it, driving a real `gen3dface serve`
(bpy wheel, headless).

How Blender is driven (README, "Blender extension > Tests"):
- every scenario runs in its own Python subprocess (this file run as a script) with fresh
  BLENDER_USER_CONFIG / _SCRIPTS / _EXTENSIONS / _DATAFILES folders, so the extension is
  installed into an empty user repository with bpy.ops.extensions.package_install_files
  (repo "user_default", enable_on_install) exactly as from Preferences > Get Extensions >
  Install from Disk, and its wheels (pyzmq) are installed by Blender;
- the bpy module has no event loop, so bpy.app.timers never fire by themselves: the scenario
  checks that Generate registered the add-on's timer callback and then calls that same
  callback (runtime.poll) from its loop every 0.1 s, as Blender's timer would, measuring how
  long each call holds the "main thread";
- `gen3dface serve` runs as a real subprocess on a free loopback port with a key file.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import run_blender_scenario

from gen3dface.backend.headmodel.arkit import EXPORTED_NAMES
from gen3dface.protocol.envelope import PROTOCOL_VERSION

REPO = Path(__file__).resolve().parents[1]
SERVE = ("import argparse, sys\n"
         "from gen3dface.backend.commands import serve\n"
         "p = argparse.ArgumentParser(); s = p.add_subparsers(); serve.add_parser(s)\n"
         "a = p.parse_args(['serve', *sys.argv[1:]]); sys.exit(a.func(a))\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def blender_env(root: Path) -> dict:
    env = dict(os.environ)
    for k in ("CONFIG", "SCRIPTS", "EXTENSIONS", "DATAFILES"):
        d = root / k.lower()
        d.mkdir(parents=True, exist_ok=True)
        env[f"BLENDER_USER_{k}"] = str(d)
    return env


@pytest.fixture(scope="module")
def extension_zip(tmp_path_factory) -> Path:
    pytest.importorskip("bpy")
    out = tmp_path_factory.mktemp("dist")
    cmd = [sys.executable, str(REPO / "scripts" / "build_extension.py"), "--out", str(out)]
    cache = REPO / "dist" / "wheel_cache"
    if cache.is_dir() and any(cache.glob("pyzmq-*.whl")):
        cmd += ["--wheels-dir", str(cache)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    return next(out.glob("gen3dface-*.zip"))


def start_serve(tmp: Path, assets: Path):
    """`gen3dface serve` (the serve command's own parser and handler) on a free port."""
    port = free_port()
    key = tmp / "serve.key"
    log = open(tmp / "serve.log", "wb")
    proc = subprocess.Popen([sys.executable, "-c", SERVE, "--bind", f"tcp://127.0.0.1:{port}",
                             "--new-key-file", str(key), "--ephemeral", "--assets", str(assets)],
                            stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
    log.close()
    end = time.monotonic() + 60
    while b"listening on" not in (tmp / "serve.log").read_bytes():
        assert proc.poll() is None and time.monotonic() < end, (tmp / "serve.log").read_text()
        time.sleep(0.2)
    return proc, f"tcp://127.0.0.1:{port}", key


# --------------------------------------------------------------------------------------------
# the scenario (runs inside the subprocess)
# --------------------------------------------------------------------------------------------

def scenario_panel(args_json: str) -> None:
    a = json.loads(args_json)
    import bpy
    r = bpy.ops.extensions.package_install_files(filepath=a["zip"], repo="user_default",
                                                 enable_on_install=True)
    assert r == {"FINISHED"}, r
    pkg = "bl_ext.user_default.gen3dface"
    assert pkg in bpy.context.preferences.addons, list(bpy.context.preferences.addons.keys())
    mod = sys.modules[pkg]
    runtime = sys.modules[pkg + ".blender.runtime"]
    wire = sys.modules[pkg + ".wire"]
    import zmq
    site = (Path(bpy.utils.user_resource("EXTENSIONS")) / ".local" / "lib"
            / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages")
    out = {"wire_source": wire.SOURCE, "zmq_file": zmq.__file__,
           "wheel_installed": (site / "zmq" / "__init__.py").is_file(), "steps": {}}

    prefs = bpy.context.preferences.addons[pkg].preferences
    prefs.key_file = a["key"]
    prefs.connect_timeout = 3.0
    prefs.job_timeout = 300.0
    scene = bpy.context.scene
    props = scene.gen3dface
    scene.cursor.location = (0.5, 1.0, 1.5)
    props.rig_source = "RING"
    props.ring_cameras = 8
    props.quality = "draft"
    props.texture_size = "512"

    def run(name, photo, address, on_tick=None, timeout=240.0):
        prefs.address = address
        props.photo_path = photo
        props.result_name = name
        t0 = time.monotonic()
        res = bpy.ops.gen3dface.generate()
        assert res == {"FINISHED"}, res
        assert bpy.app.timers.is_registered(runtime.poll)
        max_tick, ticks, stages = 0.0, 0, []
        while True:
            s = time.perf_counter()
            nxt = runtime.poll()
            max_tick = max(max_tick, time.perf_counter() - s)
            ticks += 1
            job = runtime.current_job()
            v = job.tracker.view()
            if v.stage and (not stages or stages[-1] != v.stage):
                stages.append(v.stage)
            if on_tick:
                on_tick(job)
            if nxt is None:
                break
            assert time.monotonic() - t0 < timeout, f"{name}: no end after {timeout} s"
            time.sleep(nxt)
        v = job.tracker.view()
        step = {"state": v.state.value, "seconds": time.monotonic() - t0, "stages": stages,
                "max_tick_ms": max_tick * 1000, "stall_ms": job.max_poll_ms, "ticks": ticks,
                "import_s": job.import_seconds, "objects": list(job.cell_objects),
                "error": v.error.to_dict() if v.error else None,
                "n_previews": len(v.previews)}
        out["steps"][name] = step
        return step

    # 0. online access is off in the bpy module: a remote backend is refused before any
    #    socket exists; Test connection to the loopback backend shows what it offers
    out["online_access"] = bool(bpy.app.online_access)
    prefs.address = "tcp://192.0.2.10:5555"
    props.photo_path = a["photo"]
    try:                             # an operator's ERROR report raises in background mode
        refused = bpy.ops.gen3dface.generate() == {"CANCELLED"}
    except RuntimeError as e:
        refused = "Allow Online Access" in str(e)
    out["remote_refused"] = refused and runtime.current_job() is None
    prefs.address = a["address"]
    out["test_connection"] = (bpy.ops.gen3dface.test_connection() == {"FINISHED"},
                              runtime.connection_report())

    # 1. no backend: a clear error within 5 s, nothing hangs
    run("Unreachable", a["photo"], f"tcp://127.0.0.1:{a['dead_port']}", timeout=10)

    # 2. a real job: import checks
    step = run("Face", a["photo"], a["address"])
    if step["state"] == "done":
        objs = {}
        for n in step["objects"]:
            o = bpy.data.objects[n]
            d = {"type": o.type, "parent": o.parent.name if o.parent else None,
                 "collections": [c.name for c in o.users_collection],
                 "location": list(o.matrix_world.translation)}
            if o.type == "MESH":
                d["n_verts"] = len(o.data.vertices)
                d["shape_keys"] = ([k.name for k in o.data.shape_keys.key_blocks]
                                   if o.data.shape_keys else [])
                d["images"] = [(n2.image.name, n2.image.packed_file is not None,
                                list(n2.image.size))
                               for s in o.material_slots if s.material and s.material.use_nodes
                               for n2 in s.material.node_tree.nodes
                               if getattr(n2, "image", None) is not None]
                d["materials"] = [s.material.name for s in o.material_slots if s.material]
                import numpy as np
                co = np.array([tuple(o.matrix_world @ v.co) for v in o.data.vertices])
                d["bbox"] = [co.min(0).tolist(), co.max(0).tolist()]
            d["generator"] = o.get("gen3dface_generator")
            d["sidecar"] = json.loads(o["gen3dface_sidecar"]) if "gen3dface_sidecar" in o else None
            objs[n] = d
        out["objects"] = objs

    # 3. a photo without a face: the backend's message is shown
    run("Blank", a["blank"], a["address"])

    # 4. cancel mid-job
    def cancel_when_running(job):
        if job.tracker.stage in ("face", "fit") and job.tracker.state.value == "running":
            bpy.ops.gen3dface.cancel()
    run("Cancelled", a["photo"], a["address"], on_tick=cancel_when_running)

    # 5. the backend is killed mid-job: a clear error, the main thread stays responsive
    def kill_when_running(job):
        if job.tracker.stage in ("face", "fit") and not out.get("killed"):
            os.kill(a["serve_pid"], signal.SIGKILL)
            out["killed"] = time.monotonic()
    run("Killed", a["photo"], a["address"], on_tick=kill_when_running)
    out["killed_to_error_s"] = time.monotonic() - out.pop("killed", time.monotonic())

    # unregister stops everything cleanly
    bpy.ops.preferences.addon_disable(module=pkg)
    out["disabled"] = pkg not in bpy.context.preferences.addons
    Path(a["out"]).write_text(json.dumps(out, indent=1))


@pytest.mark.blender
@pytest.mark.slow
def test_installed_extension_against_real_serve(tmp_path, extension_zip, data_dir, faces_dir,
                                                blender_python):
    import numpy as np
    from PIL import Image
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((256, 256, 3), 235, np.uint8)).save(blank)
    proc, address, key = start_serve(tmp_path, data_dir)
    try:
        out = tmp_path / "out.json"
        args = {"zip": str(extension_zip), "address": address, "key": str(key),
                "photo": str(faces_dir / "obama.jpg"), "blank": str(blank),
                "dead_port": free_port(), "serve_pid": proc.pid, "out": str(out)}
        p = subprocess.run([blender_python, __file__, "panel", json.dumps(args)],
                           capture_output=True, text=True, timeout=900,
                           env=blender_env(tmp_path / "blender"), cwd=tmp_path)
        assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-4000:]
    finally:
        proc.kill()
        proc.wait()
    res = json.loads(out.read_text())
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "objects"}
                      for k, v in res["steps"].items()}, indent=1))
    # the extension runs its bundled protocol and Blender-installed pyzmq wheel
    assert res["wire_source"] == "bundled"
    # (Blender installed the bundled pyzmq wheel into the user extensions' site-packages; in
    # this venv the venv's own pyzmq may come first on sys.path)
    assert res["wheel_installed"]

    if not res["online_access"]:
        assert res["remote_refused"]
    ok, lines = res["test_connection"]
    assert ok and any("Device: cpu" in ln for ln in lines) and f"protocol {PROTOCOL_VERSION}" in lines[0]
    assert any("offline" in ln for ln in lines)

    s = res["steps"]["Unreachable"]
    assert s["state"] == "failed" and s["error"]["code"] == "CLIENT_UNREACHABLE"
    assert s["seconds"] < 5.0 and "gen3dface serve" in s["error"]["advice"]

    s = res["steps"]["Face"]
    assert s["state"] == "done", s
    assert s["stages"][-1] == "import" and "fit" in s["stages"]
    objs = res["objects"]
    assert set(objs) == {"Face", "Face_Head", "Face_EyeLeft", "Face_EyeRight", "Face_Teeth"}
    head = objs["Face_Head"]
    sidecar = head["sidecar"]
    assert head["n_verts"] > 1000
    assert head["shape_keys"][0] == "Basis"
    assert head["shape_keys"][1:] == sidecar["glb"]["morph_targets"]
    assert head["shape_keys"][1:] == list(EXPORTED_NAMES)       # ARKit's 52 + 4 extras
    assert any(img[1] and img[2][0] >= 256 for img in head["images"]), head["images"]
    assert any(m.startswith("HeadSkin") for m in head["materials"])
    assert all(objs[n]["collections"] == ["Face"] for n in objs)
    assert objs["Face"]["location"] == pytest.approx([0.5, 1.0, 1.5])
    lo, hi = (np.array(b) for b in head["bbox"])
    centre = (lo + hi) / 2
    assert np.allclose(centre[[0, 2]], (0.5, 1.5), atol=0.12)      # head around the cursor
    assert 0.1 < hi[2] - lo[2] < 0.5                                 # upright, head-sized
    assert objs["Face"]["generator"] == sidecar["generator"]
    assert s["stall_ms"] < 100.0, s

    s = res["steps"]["Blank"]
    assert s["state"] == "failed" and s["error"]["code"] == "NO_FACE", s
    assert s["error"]["message"] and "face" in s["error"]["advice"]

    s = res["steps"]["Cancelled"]
    assert s["state"] == "cancelled" and s["objects"] == [], s

    s = res["steps"]["Killed"]
    assert s["state"] == "failed" and s["error"]["code"] == "DISCONNECTED", s
    assert res["killed_to_error_s"] < 15.0
    assert s["max_tick_ms"] < 100.0, s
    assert res["disabled"]


if __name__ == "__main__":
    run_blender_scenario(globals()["scenario_" + sys.argv[1]], *sys.argv[2:])
