#!/usr/bin/env python
"""Throughput of a large result over tcp loopback: the service's protocol vs raw pyzmq.

Both sides run in separate processes, in the same run:
  raw pyzmq   a ROUTER child process answers each request with the same N MB frame
              (copy=False on both sides): the ceiling for one multipart message on this host;
  protocol    the harness server (python -m gen3dface.backend.service.harness, signed with a
              key, results kept in its state folder) answers `fetch_result` for a finished
              N MB job; the client (gen3dface.protocol.client.Client) verifies the HMAC over
              the frames and the SHA-256 of the GLB, as every real client does; once with
              the GLB handed over as bytes (default) and once as a memoryview (zero_copy).

    python scripts/bench_transport.py                 # 64 MB, 7 rounds
    python scripts/bench_transport.py --mb 16 --rounds 3
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import zmq

from gen3dface.backend.images import encode_png
from gen3dface.backend.service.harness import HarnessProcess, free_tcp_port
from gen3dface.protocol.client import Client, ClientConfig
from gen3dface.protocol.signing import generate_key_file

RAW_SERVER = textwrap.dedent("""
    import sys, zmq
    ctx = zmq.Context()
    s = ctx.socket(zmq.ROUTER)
    s.bind(sys.argv[1])
    payload = bytes(range(256)) * (int(sys.argv[2]) // 256)
    print("ready", flush=True)
    while True:
        ident, req = s.recv_multipart()
        if req == b"quit":
            break
        s.send_multipart([ident, payload], copy=False)
    s.close(0)
    ctx.term()
""")


def bench_raw(nbytes: int, rounds: int) -> list[float]:
    endpoint = f"tcp://127.0.0.1:{free_tcp_port()}"
    child = subprocess.Popen([sys.executable, "-c", RAW_SERVER, endpoint, str(nbytes)],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    ctx = zmq.Context()
    d = ctx.socket(zmq.DEALER)
    d.setsockopt(zmq.LINGER, 0)
    d.connect(endpoint)
    times = []
    for i in range(rounds + 1):
        t0 = time.perf_counter()
        d.send(b"go")
        frame = d.recv(copy=False)
        dt = time.perf_counter() - t0
        assert len(frame.buffer) == nbytes
        if i:                                   # the first round warms up the connection
            times.append(dt)
    d.send(b"quit")
    d.close(0)
    ctx.term()
    child.wait(10)
    return times


def bench_protocol(nbytes: int, rounds: int, tmp: Path) -> dict[str, list[float]]:
    """fetch_result round trips, with the client's default (GLB as bytes) and zero_copy."""
    key_file = tmp / "key"
    key = generate_key_file(key_file)
    image = encode_png(np.zeros((32, 32, 3), np.uint8))
    times: dict[str, list[float]] = {"bytes": [], "zero_copy": []}
    with HarnessProcess(key_file=key_file, state_dir=tmp / "state", events=1, step_s=0.0,
                        result_mb=nbytes / (1 << 20)) as hp:
        with Client(hp.endpoint, key=key) as client:
            job_id = client.run_job(image, deadline_s=120).job_id   # makes the result; warms up
        for i in range(rounds + 1):
            for mode in times:
                with Client(hp.endpoint, key=key, config=ClientConfig(zero_copy=mode == "zero_copy")) as client:
                    client.wait_connected(30)
                    t0 = time.perf_counter()
                    h = client.fetch_result(job_id)
                    while not h.done:
                        client.poll(0.05)
                    dt = time.perf_counter() - t0
                    assert h.state == "done" and len(h.glb) == nbytes
                    if i:
                        times[mode].append(dt)
    return times


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mb", type=float, default=64.0)
    p.add_argument("--rounds", type=int, default=7)
    args = p.parse_args()
    nbytes = int(args.mb * (1 << 20)) // 256 * 256
    with tempfile.TemporaryDirectory() as tmp:
        raw = bench_raw(nbytes, args.rounds)
        ours = bench_protocol(nbytes, args.rounds, Path(tmp))
        raw2 = bench_raw(nbytes, args.rounds)             # again, to see the host's drift
    raw_all = raw + raw2
    mb = nbytes / (1 << 20)

    def line(name, ts):
        return (f"{name:20s} median {statistics.median(ts) * 1000:7.1f} ms  "
                f"{mb / statistics.median(ts):7.0f} MB/s   best {mb / min(ts):7.0f} MB/s")

    print(f"{mb:.0f} MB result over tcp loopback, {args.rounds} rounds each (after one warm-up):")
    print(line("raw pyzmq", raw_all))
    for mode, ts in ours.items():
        print(line(f"protocol ({mode})", ts))
    for mode, ts in ours.items():
        ratio = statistics.median(raw_all) / statistics.median(ts)
        print(f"protocol ({mode}) / raw throughput (medians): {ratio:.2f}x  (aim: >= 0.5x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
