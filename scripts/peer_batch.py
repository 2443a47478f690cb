"""Run the eos peer (../shared/tools/peer_eos/peer.py) on many photos in one process.

usage: PEER_VENV/bin/python scripts/peer_batch.py PEER_SCRIPT JOBS.json

JOBS.json: {"share": EOS_SHARE_DIR or null, "jobs": [{"photo": P, "out": OUT.glb}, ...]}

Each job is exactly `peer.py PHOTO OUT.glb [--share DIR]` (its own `main()`, its own argument
parsing and files), except that the peer's models are loaded once for the whole list instead
of once per photo: its `load_models` is wrapped in a cache. The peer's own per-photo timings
land in OUT.sidecar.json (`timing_s`). One line per job on stdout:
`PEER_JOB {"job": i, "ok": ..., "seconds": ..., "error": ...}`. Runs under the peer's venv
(eos-py, dlib), never the project's.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import sys
import time
import traceback


def load_peer(script: str):
    spec = importlib.util.spec_from_file_location("peer_eos_peer", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    cache = {}
    original = mod.load_models

    def load_models_once(share):
        key = str(share)
        if key not in cache:
            cache[key] = original(share)
        return cache[key]

    mod.load_models = load_models_once
    return mod


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    peer = load_peer(argv[0])
    with open(argv[1]) as f:
        spec = json.load(f)
    failed = 0
    for i, job in enumerate(spec["jobs"]):
        args = [argv[0], job["photo"], job["out"]]
        if spec.get("share"):
            args += ["--share", spec["share"]]
        rec = {"job": i, "photo": job["photo"], "out": job["out"]}
        t0 = time.perf_counter()
        out, err = io.StringIO(), io.StringIO()
        saved = sys.argv
        try:
            sys.argv = args
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                peer.main()
            rec["ok"] = True
        except SystemExit as e:             # peer.py exits 2 when dlib finds no face
            rec.update(ok=e.code in (0, None), error=f"exit {e.code}: {err.getvalue().strip()}")
        except Exception as e:
            rec.update(ok=False, error=f"{type(e).__name__}: {e}",
                       traceback=traceback.format_exc(limit=3))
        finally:
            sys.argv = saved
        failed += not rec["ok"]
        rec["seconds"] = round(time.perf_counter() - t0, 3)
        rec["log"] = out.getvalue().strip().splitlines()[:2]
        print("PEER_JOB " + json.dumps(rec), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
