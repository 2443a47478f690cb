#!/usr/bin/env python
"""Faults and cancel on the Ray backend (prints figures; test harness workload).

A private local Ray cluster (2 CPUs, 200 MB object store, no dashboard) and a server with 2
worker actors on the synthetic workload, in this process. Each round submits a 3 s job and,
once it runs, does one of:
    kill     ray.kill of the actor running it
    silence  SIGSTOP of that actor's process (a node gone silent; found by the liveness ping)
    cancel   a client `cancel`
and measures the time until the client hears of it (the `progress` "lost ... retrying", or
the `error CANCELLED`). For kill and silence it then checks that the job reran on the other
worker and completed exactly once (one completion line, the right bytes).

    python scripts/fault_service_ray.py              # 5 rounds of each
    python scripts/fault_service_ray.py --rounds 2 kill
"""
from __future__ import annotations

import argparse
import hashlib
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from gen3dface.backend.images import encode_png
from gen3dface.backend.service.harness import RawClient, ServerThread, SyntheticWorkload, expected_result
from gen3dface.backend.service.ray_backend import RayBackend, RaySettings
from gen3dface.protocol import messages

SIZE = 1 << 16


def photo(i: int) -> bytes:
    return encode_png(np.random.default_rng(1000 + i).integers(0, 255, (24, 24, 3), dtype=np.uint8))


def one_round(kind: str, i: int, st, client, completions: Path) -> tuple[float, bool]:
    pool = st.server.worker
    image = photo(i)
    client.send(messages.submit(image, "image/png", f"{kind}-{i}"))
    msgs = client.recv_until(("progress",), timeout_s=60)
    job_id = msgs[0].content["job_id"]
    while True:                                 # until it runs on an actor, a few steps in
        msgs += client.recv_until(("progress",), timeout_s=60, job_id=job_id)
        d = next((d for d in pool.dispatchers if d.current is not None
                  and d.current.job_id == job_id and d.actor is not None), None)
        if d is not None and msgs[-1].content["message"].startswith("synthetic step 5"):
            break
    pid = d.info["pid"]
    t0 = time.monotonic()
    if kind == "kill":
        import ray
        ray.kill(d.actor)
    elif kind == "silence":
        os.kill(pid, signal.SIGSTOP)
    else:
        client.send(messages.job_request("cancel", job_id))
    try:
        if kind == "cancel":
            got = client.recv_until(("error",), timeout_s=30, job_id=job_id)
            return time.monotonic() - t0, got[-1].content["code"] == "CANCELLED"
        got = []
        while not any(m.msg_type == "progress" and "lost" in m.content["message"] for m in got):
            got += client.recv_until(("progress",), timeout_s=30, job_id=job_id)
        seconds = time.monotonic() - t0
        got += client.recv_until(("result", "error"), timeout_s=60, job_id=job_id)
        sha = hashlib.sha256(image).hexdigest()
        once = completions.read_text().split().count(sha) == 1
        ok = got[-1].msg_type == "result" and bytes(got[-1].buffers[0]) == expected_result(image, SIZE)
        return seconds, ok and once
    finally:
        if kind == "silence":
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("kinds", nargs="*", default=["kill", "silence", "cancel"])
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    import ray

    ray.init(num_cpus=2, object_store_memory=200 << 20, include_dashboard=False,
             log_to_driver=False, configure_logging=False)
    good = True
    try:
        with tempfile.TemporaryDirectory() as tmp:
            completions = Path(tmp) / "completions.txt"
            completions.touch()
            factory = lambda: SyntheticWorkload(steps=60, step_s=0.05, result_bytes=SIZE,  # noqa: E731
                                                completions=completions)
            parse = SyntheticWorkload(steps=60, step_s=0.05, result_bytes=SIZE).parse_options
            backend = RayBackend(factory, parse, RaySettings(address="auto", workers=2), queue_size_hint=4)
            with ServerThread(backend, queue_size=4) as st:
                client = RawClient(st.endpoint, None)
                n = 0
                for kind in args.kinds:
                    times, oks = [], 0
                    for _ in range(args.rounds):
                        n += 1
                        s, ok = one_round(kind, n, st, client, completions)
                        times.append(s)
                        oks += ok
                    good &= oks == args.rounds
                    what = "the job CANCELLED" if kind == "cancel" else "rerun, completed once"
                    print(f"{kind:8s} reported after: median {statistics.median(times):.3f} s, "
                          f"min {min(times):.3f} s, max {max(times):.3f} s; {what}: "
                          f"{oks}/{args.rounds}", flush=True)
                client.close()
    finally:
        ray.shutdown()
    print("PASS" if good else "FAIL")
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
