"""How long Blender's main thread stalls while a large result arrives, outside the import.

    python scripts/bench_blender_import.py [--mb 50] [--repeats 3]

Runs the bpy wheel headless with the add-on as the built extension (installed into temporary
BLENDER_USER_* folders), a backend subprocess on loopback (the service's synthetic test
workload, `python -m gen3dface.backend.service.harness`, returning --mb MiB), and drives the
add-on's timer callback (runtime.poll) every 0.1 s as Blender would. Prints, per run:
- the longest poll() outside the import itself (the stall the artist feels while the result is
  received, verified and written: all of that runs on the add-on's network thread);
- for comparison, the longest poll() of the protocol client's non-blocking mode used directly
  on the main thread (receive + HMAC/SHA-256 verification of the 50 MB frame there);
- the import itself, measured separately on a real GLB of about the same size (the synthetic
  backend returns random bytes, not a GLB).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=float, default=50.0)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="g3f-bench-"))
    for k in ("CONFIG", "SCRIPTS", "EXTENSIONS", "DATAFILES"):
        (tmp / k.lower()).mkdir()
        os.environ[f"BLENDER_USER_{k}"] = str(tmp / k.lower())
    subprocess.run([sys.executable, str(REPO / "scripts" / "build_extension.py"), "--out",
                    str(tmp / "dist")] + (["--wheels-dir", str(REPO / "dist" / "wheel_cache")]
                                          if (REPO / "dist" / "wheel_cache").is_dir() else []),
                   check=True, stdout=subprocess.DEVNULL)
    zip_path = next((tmp / "dist").glob("gen3dface-*.zip"))

    from gen3dface.protocol import signing
    key_file = tmp / "key"
    signing.generate_key_file(key_file)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "gen3dface.backend.service.harness",
                               "--bind", f"tcp://127.0.0.1:{port}", "--key-file", str(key_file),
                               "--result-mb", str(a.mb), "--events", "20", "--step-s", "0.02"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import bpy
        bpy.ops.extensions.package_install_files(filepath=str(zip_path), repo="user_default",
                                                 enable_on_install=True)
        pkg = "bl_ext.user_default.gen3dface"
        runtime = sys.modules[pkg + ".blender.runtime"]
        worker = sys.modules[pkg + ".core.worker"]
        settings = sys.modules[pkg + ".core.settings"]
        photo_mod = sys.modules[pkg + ".core.photo"]
        import numpy as np
        photo = photo_mod.encode_png(np.full((64, 64, 3), 128, np.uint8))
        conn = settings.ConnectionSettings(f"tcp://127.0.0.1:{port}", str(key_file), 30.0, 300.0)
        ok, lines = worker.fetch_capabilities(conn)
        assert ok, lines

        print(f"result size: {a.mb:g} MiB; poll interval 0.1 s; {a.repeats} runs")
        stalls = []
        for r in range(a.repeats):
            req = worker.JobRequest(photo + bytes(r), "image/png", "bench.png", None,
                                    {"steps": 20, "step_s": 0.02})
            job = runtime.start_job(conn, req, settings.ImportSettings("Bench"), "Bench",
                                    bpy.context.scene.name)
            t0 = time.monotonic()
            while runtime.poll() is not None:
                time.sleep(0.1)
            recv_s = job.worker.receive_seconds
            stalls.append(job.max_poll_ms)
            print(f"  add-on (network thread): max main-thread stall {job.max_poll_ms:6.2f} ms "
                  f"outside the import; result written by the thread in {recv_s * 1000:.0f} ms;"
                  f" job {time.monotonic() - t0:.1f} s")

        # the same traffic through the protocol client's non-blocking mode on this thread
        client_mod = sys.modules[pkg + ".protocol.client"] if pkg + ".protocol.client" in \
            sys.modules else __import__(pkg + ".protocol.client", fromlist=["x"])
        direct = []
        for r in range(a.repeats):
            c = client_mod.Client(conn.address, key_file=str(key_file))
            c.wait_connected(30)
            h = c.submit(photo + b"d" + bytes(r), options={"steps": 20, "step_s": 0.02})
            worst = 0.0
            while not h.done:
                s = time.perf_counter()
                c.poll(0)
                worst = max(worst, time.perf_counter() - s)
                time.sleep(0.1)
            c.close()
            direct.append(worst * 1000)
            print(f"  client polled on the main thread:   max stall {worst * 1000:6.2f} ms")

        # the import itself, on a real GLB of about the requested size
        sys.path.insert(0, str(REPO / "tests"))      # the test module imports its conftest
        spec = importlib.util.spec_from_file_location("t", REPO / "tests" / "test_blender_import.py")
        t = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(t)
        px = int((a.mb * (1 << 20) / 3) ** 0.5)
        glb, _ = t.make_test_glb(texture_px=px, head_res=60, noise_texture=True)
        path = tmp / "big.glb"
        path.write_bytes(glb)
        importer = sys.modules[pkg + ".blender.importer"]
        s = time.perf_counter()
        importer.import_glb(path, "BigImport", settings.ImportSettings().head_to_world)
        imp = time.perf_counter() - s
        print(f"  import itself: {len(glb) / (1 << 20):.1f} MiB GLB ({px}x{px} texture) "
              f"imported in {imp * 1000:.0f} ms")
        print(f"SUMMARY add-on stall outside import: median {statistics.median(stalls):.2f} ms, "
              f"max {max(stalls):.2f} ms | client on main thread: median "
              f"{statistics.median(direct):.1f} ms | import {imp * 1000:.0f} ms")
        runtime.shutdown()
    finally:
        server.kill()
        server.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
