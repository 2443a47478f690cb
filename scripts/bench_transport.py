#!/usr/bin/env python
"""Throughput of a large result over tcp loopback: the service's protocol vs raw pyzmq, in
the same run, plain and with CURVE.

Every process is separate: raw servers, the harness server, and this client process.

  raw pyzmq            a ROUTER child answers each request with the same N MB frame
                       (copy=False on both sides, nothing hashed, no CURVE): the reference.
  raw pyzmq + CURVE    the same child on a CURVE socket: what libzmq's encryption alone costs.
  protocol             the harness server (python -m gen3dface.backend.service.harness, HMAC
                       key, results kept in its state folder); the client is
                       gen3dface.protocol.client.Client, which verifies every byte (the HMAC
                       over each message and the SHA-256 of each buffer) before it hands the
                       GLB out:
    streamed           a job's result as it finishes, to the client that submitted it: the
                       time from the `result` header's timestamp (stamped when the server
                       starts encoding it; same host, same clock) to the verified GLB in hand;
    fetch_result       Client.fetch_result of a kept result: the time from the call to the
                       verified GLB in hand (a round trip, like raw pyzmq's).
                       Protocol 1.3 clients ask for result_part messages (SPEC 5.7); the
                       "1.2 client" rows are the same Client with result_parts=False (one
                       frame, hashed after it arrived) and SHA-256: the old path, in the
                       same run. 1.4 clients offer BLAKE3 buffer digests (SPEC 4); the
                       "1.3 client" row is the same Client offering only SHA-256.
                       zero_copy reuses the buffer of a result the caller has let go (this
                       script drops each GLB); the "kept" rows do not, as for a caller that
                       keeps every GLB (fresh pages each time).
  raw chunked          (for reference) the child sends the same bytes as separate 2 MiB
                       messages, nothing hashed: libzmq moves many smaller messages faster
                       than one big frame on this host.

Ratios are median(raw pyzmq, no CURVE) / median(ours) for the same N, rounds interleaved.

    python scripts/bench_transport.py                       # 64 MB and 6.1 MB, 7 rounds
    python scripts/bench_transport.py --mb 64 --fetch-mb 6.1 --rounds 9 --no-curve
"""
from __future__ import annotations

import argparse
import os
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
    if len(sys.argv) > 3:                       # CURVE: server public + secret key (Z85)
        s.curve_server = True
        s.curve_publickey, s.curve_secretkey = sys.argv[3].encode(), sys.argv[4].encode()
    s.bind(sys.argv[1])
    sizes = [int(x) for x in sys.argv[2].split(",")]
    payloads = {n: bytes(range(256)) * (n // 256) for n in sizes}
    print("ready", flush=True)
    while True:
        ident, req = s.recv_multipart()
        if req == b"quit":
            break
        n, chunk = (int(x) for x in req.split(b","))
        mv = memoryview(payloads[n])
        if chunk == 0:
            s.send_multipart([ident, mv], copy=False)
        else:
            for i in range(0, n, chunk):
                s.send_multipart([ident, mv[i:i + chunk]], copy=False)
    s.close(0)
    ctx.term()
""")

CHUNK = 2 << 20
# Client variants: (zero_copy, result_parts, digests offered). "kept": zero_copy without
# reusing the buffer of a result the caller has let go (a caller that keeps every GLB: fresh
# pages each time); "1.3 client": offers only SHA-256 (protocol 1.4 lets a client offer
# BLAKE3, section 4), so every buffer is signed and checked with SHA-256 as before 1.4
VARIANTS = {"zero_copy": (True, True, None), "zero_copy, kept": (True, True, None),
            "zero_copy, 1.3 client (SHA-256)": (True, True, ("sha256",)),
            "zero_copy, 1.2 client": (True, False, ("sha256",)), "bytes": (False, True, None),
            "bytes, 1.2 client": (False, False, ("sha256",))}


class RawPeer:
    def __init__(self, sizes: list[int], curve: tuple | None = None):
        endpoint = f"tcp://127.0.0.1:{free_tcp_port()}"
        args = [sys.executable, "-c", RAW_SERVER, endpoint, ",".join(map(str, sizes))]
        self.ctx = zmq.Context()
        self.d = self.ctx.socket(zmq.DEALER)
        self.d.setsockopt(zmq.LINGER, 0)
        if curve:
            server_pub, server_sec = zmq.curve_keypair()
            args += [server_pub.decode(), server_sec.decode()]
            pub, sec = zmq.curve_keypair()
            self.d.curve_serverkey, self.d.curve_publickey, self.d.curve_secretkey = \
                server_pub, pub, sec
        self.child = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        assert self.child.stdout.readline().strip() == "ready"
        self.d.connect(endpoint)
        for n in sizes:
            self.once(n)                         # warm-up

    def once(self, n: int, chunk: int = 0) -> float:
        t0 = time.perf_counter()
        self.d.send(b"%d,%d" % (n, chunk))
        got = 0
        while got < n:
            got += len(self.d.recv(copy=False).buffer)
        dt = time.perf_counter() - t0
        assert got == n
        return dt

    def close(self) -> None:
        self.d.send(b"quit")
        self.d.close(0)
        self.ctx.term()
        self.child.wait(10)


class TimedClient(Client):
    """Client that notes the `result` header's timestamp (when the server began sending)."""

    def _on_result(self, h, msg, c):
        h.result_sent_at = msg.timestamp
        super()._on_result(h, msg, c)


def make_curve(tmp: Path) -> tuple[Path, dict]:
    d, people = tmp / "curve_server", tmp / "curve_people"
    exe = [str(Path(sys.executable).parent / "gen3dface")]      # the `gen3dface keys` command
    subprocess.run([*exe, "keys", "init", "--dir", str(d)], check=True, capture_output=True)
    subprocess.run([*exe, "keys", "client", "bench", "--out", str(people), "--dir", str(d),
                    "--allow"], check=True, capture_output=True)
    return d, {"server_public_key": str(d / "server.key"),
               "client_key_file": str(people / "bench.key_secret")}


class Ours:
    """The harness server with one kept result per size, and the timed cases."""

    def __init__(self, tmp: Path, name: str, fetch_sizes: list[int], stream_size: int,
                 curve_dir: Path | None, client_kw: dict, server_args: list[str] | None = None):
        key_file = tmp / f"key-{name}"
        self.key = generate_key_file(key_file)
        self.kw = dict(key=self.key, **client_kw)
        self.image = encode_png(np.zeros((32, 32, 3), np.uint8))
        # every streamed case keeps another result: with the default 4 GiB cap, 15 rounds
        # evicted the kept results the fetch cases read (NOT_FOUND)
        self.hp = HarnessProcess(key_file=key_file, state_dir=tmp / f"state-{name}", events=1,
                                 step_s=0.0, result_mb=1, curve_dir=curve_dir,
                                 extra=["--keep-results-mb", str(1 << 20), *(server_args or [])]).start()
        self.jobs = {}
        with Client(self.hp.endpoint, **self.kw) as client:
            for n in fetch_sizes:              # make the kept results; warms everything up
                self.jobs[n] = client.run_job(self.image, options={"result_bytes": n},
                                              deadline_s=120).job_id
        self.stream_size = stream_size
        self.clients = {}

    def client(self, variant: str) -> Client:
        if variant not in self.clients:
            zero_copy, parts, digests = VARIANTS[variant]
            c = TimedClient(self.hp.endpoint, config=ClientConfig(
                zero_copy=zero_copy, result_parts=parts, digests=digests), **self.kw)
            if variant == "zero_copy, kept":
                c._spare = None                  # as if the caller kept every GLB it got
            c.wait_connected(30)
            self.clients[variant] = c
        return self.clients[variant]

    def fetch(self, n: int, variant: str) -> float:
        client = self.client(variant)
        t0 = time.perf_counter()
        h = client.fetch_result(self.jobs[n])
        while not h.done:
            client.poll(0.05)
        dt = time.perf_counter() - t0
        assert h.state == "done" and len(h.glb) == n, (h.state, h.error)
        client.forget(h)
        return dt

    def stream(self, variant: str) -> float:
        client = self.client(variant)
        h = client.submit(self.image, options={"result_bytes": self.stream_size,
                                               "steps": 1, "step_s": 0.0})
        while not h.done:
            client.poll(0.05)
        done = time.time()
        assert h.state == "done" and len(h.glb) == self.stream_size, (h.state, h.error)
        client.forget(h)
        return done - h.result_sent_at

    def close(self) -> None:
        for c in self.clients.values():
            c.close()
        self.hp.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mb", type=float, default=64.0, help="streamed and fetched result size")
    p.add_argument("--fetch-mb", type=float, default=6.1, help="a second, smaller fetched size")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--no-curve", action="store_true")
    p.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                   help="passed to the harness server, e.g. --server-arg=--result-parts-min-kb=1024")
    args = p.parse_args()
    big = int(args.mb * (1 << 20)) // 256 * 256
    small = int(args.fetch_mb * (1 << 20)) // 256 * 256
    sizes = sorted({big, small})
    t: dict[str, list[float]] = {}

    def rec(name, dt):
        t.setdefault(name, []).append(dt)

    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        setups = [("plain", None, {})]
        if not args.no_curve:
            d, kw = make_curve(tmp)
            setups.append(("curve", d, kw))
        raw = {"plain": RawPeer(sizes)}
        if not args.no_curve:
            raw["curve"] = RawPeer(sizes, curve=True)
        ours = {name: Ours(tmp, name, sizes, big, d, kw, args.server_arg) for name, d, kw in setups}
        try:
            for _ in range(args.rounds):
                for mode, peer in raw.items():
                    for n in sizes:
                        rec(f"raw {mode} {n}", peer.once(n))
                    rec(f"raw {mode} chunked {big}", peer.once(big, CHUNK))
                for mode, o in ours.items():
                    for variant in VARIANTS:
                        tag = f"{mode} {variant}"
                        rec(f"stream {tag}", o.stream(variant))
                        for n in sizes:      # raw just before each fetch: a paired ratio
                            rec(f"pair raw {tag} {n}", raw["plain"].once(n))
                            rec(f"fetch {tag} {n}", o.fetch(n, variant))
        finally:
            for o in ours.values():
                o.close()
            for peer in raw.values():
                peer.close()

    med = {k: statistics.median(v) for k, v in t.items()}

    def mbs(n, s):
        return n / (1 << 20) / s

    load1 = os.getloadavg()
    print(f"tcp loopback, {args.rounds} rounds, interleaved (after warm-up); medians; "
          f"MB = MiB; {os.cpu_count()} CPUs, load average (1 min) {load0[0]:.2f} at the start, "
          f"{load1[0]:.2f} at the end")
    for mode in raw:
        for n in sizes:
            k = f"raw {mode} {n}"
            print(f"  raw pyzmq{' + CURVE' if mode == 'curve' else ''}, {n / (1 << 20):.1f} MB: "
                  f"{med[k] * 1000:7.1f} ms {mbs(n, med[k]):6.0f} MB/s")
        k = f"raw {mode} chunked {big}"
        print(f"  raw pyzmq{' + CURVE' if mode == 'curve' else ''}, {big / (1 << 20):.1f} MB as "
              f"{CHUNK >> 20} MiB messages: {med[k] * 1000:7.1f} ms {mbs(big, med[k]):6.0f} MB/s")
    print()
    def paired(tag, n):
        """The median over rounds of raw / ours, raw measured just before each fetch: the
        same conditions for both (the plain medians swing with what ran before them)."""
        r, f = t.get(f"pair raw {tag} {n}"), t.get(f"fetch {tag} {n}")
        return statistics.median(a / b for a, b in zip(r, f)) if r and f else None

    print(f"{'case':66s} {'median':>9s} {'MB/s':>6s} {'vs raw':>7s} {'paired':>7s} "
          f"{'vs raw+CURVE':>12s}")
    for mode in ours:
        for variant in VARIANTS:
            tag = f"{mode} {variant}"
            rows = [(f"streamed {big / (1 << 20):.0f} MB", f"stream {tag}", big)]
            rows += [(f"fetch_result {n / (1 << 20):.1f} MB", f"fetch {tag} {n}", n)
                     for n in sorted(sizes, reverse=True)]
            for label, k, n in rows:
                vs = med[f"raw plain {n}"] / med[k]
                vc = f"{med[f'raw curve {n}'] / med[k]:11.2f}x" if mode == "curve" else ""
                name = f"{label}, {'CURVE' if mode == 'curve' else 'plain'}, {variant}"
                pr = paired(tag, n) if k.startswith("fetch ") else None
                pc = f"{pr:6.2f}x" if pr is not None else f"{'':7s}"
                print(f"{name:66s} {med[k] * 1000:7.1f}ms {mbs(n, med[k]):6.0f} "
                      f"{vs:6.2f}x {pc} {vc}")
    print("paired: the median of raw / ours over the rounds, a raw fetch of the same size "
          "(plain) run just before each of ours")
    print("aims (issue 19): streamed 64 MB >= 0.80x raw, fetch_result >= 0.60x raw; the 1.2 "
          "client rows are the same Client without result_parts and with SHA-256, the 1.3 "
          "client row the same Client with SHA-256")
    if "curve" in raw:
        for n in sizes:
            print(f"raw pyzmq + CURVE / raw pyzmq, {n / (1 << 20):.1f} MB: "
                  f"{med[f'raw plain {n}'] / med[f'raw curve {n}']:.2f}x of the throughput")
    return 0


if __name__ == "__main__":
    sys.exit(main())
