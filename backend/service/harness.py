"""TEST HARNESS ONLY: a synthetic workload for the service's load, fault and benchmark
scripts (scripts/loadtest_service.py, scripts/fault_service.py, scripts/bench_transport.py)
and tests. It makes no head: it sleeps through N progress steps and returns pseudo-random
bytes derived from the request (so a client can recompute the SHA-256 it must receive). It is
never offered by `gen3dface serve`; it runs only through

    python -m gen3dface.backend.service.harness --bind tcp://127.0.0.1:PORT --insecure ...

Options it understands (in the submit's `options`; other keys are ignored):
    steps (int, default --events), step_s (float), result_bytes (int), previews (int),
    fail ("oom" | "cuda_oom" | "internal" | a protocol error code such as "NO_FACE"),
    busy (bool, default --busy: each step keeps a CPU busy for step_s instead of sleeping).

With `--ray local|auto|HOST:PORT --ray-workers N` the jobs run on N Ray worker actors
(backend/service/ray_backend.py) instead of the in-process worker thread.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..contracts import PipelineError

STAGES = ("decode", "face", "fit", "generate", "reconstruct", "texture", "export")


@dataclass
class SyntheticResult:
    glb: bytes
    sidecar: dict


def _tiny_png(i: int) -> bytes:
    from ..images import encode_png

    return encode_png(np.full((16, 16, 3), i % 256, np.uint8))


def expected_result(image: bytes, result_bytes: int) -> bytes:
    """The bytes the synthetic workload returns for this image (pure function of the input)."""
    seed = int.from_bytes(hashlib.sha256(image).digest()[:8], "little")
    return np.random.default_rng(seed).bytes(int(result_bytes))


@dataclass
class SyntheticWorkload:
    steps: int = 20
    step_s: float = 0.005
    result_bytes: int = 30 << 20
    completions: Path | None = None     # append sha256(image) here per completed job
    busy: bool = False                  # steps spin the CPU (holding the GIL) instead of sleeping

    def capabilities(self) -> dict:
        return {"device": "cpu", "gpu_name": None, "generators": ["synthetic-test-harness"],
                "head_model": None, "output_kinds": [], "test_harness": True}

    def parse_options(self, options: dict) -> dict:
        o = dict(options or {})
        try:
            out = {"steps": int(o.get("steps", self.steps)), "step_s": float(o.get("step_s", self.step_s)),
                   "result_bytes": int(o.get("result_bytes", self.result_bytes)),
                   "fail": o.get("fail"), "previews": int(o.get("previews", 0)),
                   "busy": bool(o.get("busy", self.busy))}
        except (TypeError, ValueError, OverflowError):
            raise PipelineError("BAD_REQUEST", "synthetic options must be numbers") from None
        if not (0 <= out["steps"] <= 10_000 and 0 <= out["step_s"] <= 60
                and 0 <= out["result_bytes"] <= 1 << 30):
            raise PipelineError("BAD_REQUEST", "synthetic options out of range")
        return out

    def run(self, image, rig, options, sink, cancel) -> SyntheticResult:
        o = options if isinstance(options, dict) else self.parse_options({})
        n = max(1, o["steps"])
        for i in range(n):
            cancel.raise_if_cancelled()
            if o.get("busy"):
                end = time.perf_counter() + o["step_s"]
                while time.perf_counter() < end:
                    pass
            else:
                time.sleep(o["step_s"])
            stage = STAGES[min(len(STAGES) - 1, i * len(STAGES) // n)]
            sink.progress(stage, (i + 1) / n, f"synthetic step {i + 1}/{n}")
            if i < o["previews"]:
                sink.preview(f"step{i}", _tiny_png(i))
            if i == n // 2 and o["fail"] == "oom":
                raise MemoryError("synthetic host out-of-memory")
            if i == n // 2 and o["fail"] == "cuda_oom":
                import torch
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB "
                                                  "(synthetic)")
            if i == n // 2 and o["fail"] == "internal":
                raise RuntimeError("synthetic internal failure")
            if i == n // 2 and o["fail"]:
                raise PipelineError(str(o["fail"]), "synthetic failure")
        cancel.raise_if_cancelled()
        glb = expected_result(image, o["result_bytes"])
        if self.completions is not None:
            with open(self.completions, "a") as f:
                f.write(hashlib.sha256(image).hexdigest() + "\n")
        return SyntheticResult(glb, {"generator": "synthetic-test-harness", "steps": n})


def _server_curve(folder):
    if not folder:
        return None
    from ...protocol.curve import ServerCurve
    return ServerCurve.load(folder)


def main(argv: list[str] | None = None) -> int:
    from .config import ServiceConfig
    from .server import Server, load_key

    p = argparse.ArgumentParser(prog="python -m gen3dface.backend.service.harness",
                                description="TEST HARNESS: the service with a synthetic workload.")
    p.add_argument("--bind", required=True)
    p.add_argument("--key-file")
    p.add_argument("--insecure", action="store_true")
    p.add_argument("--queue", type=int, default=64)
    p.add_argument("--state-dir")
    p.add_argument("--keep-results", type=float, default=600.0)
    p.add_argument("--keep-results-mb", type=float, default=4096)
    p.add_argument("--on-client-lost", default="keep", choices=("cancel", "keep"))
    p.add_argument("--events", type=int, default=20)
    p.add_argument("--step-s", type=float, default=0.005)
    p.add_argument("--result-mb", type=float, default=30.0)
    p.add_argument("--completions")
    p.add_argument("--heartbeat-s", type=float, default=1.0)
    p.add_argument("--replay-cache", type=int, default=200_000, help="replay cache entries")
    p.add_argument("--curve-dir", help="CURVE: the server key folder (gen3dface keys init)")
    p.add_argument("--busy", action="store_true", help="steps keep a CPU busy instead of sleeping")
    p.add_argument("--result-part-kb", type=int, default=None,
                   help="result_part size for clients that ask for parts (default: the server's)")
    p.add_argument("--result-parts-min-kb", type=int, default=None,
                   help="results at least this large go in parts (default: the server's)")
    p.add_argument("--ray", help="run the jobs on Ray worker actors: local | auto | HOST:PORT")
    p.add_argument("--ray-workers", type=int, default=2)
    p.add_argument("--ray-cpus-per-worker", type=float, default=1.0)
    p.add_argument("--ray-local-cpus", type=int, default=None, help="--ray local: the cluster's CPUs")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if not args.bind.startswith(("tcp://127.", "tcp://localhost:", "ipc://", "inproc://")):
        print("the test harness binds loopback addresses only", file=sys.stderr)
        return 2
    workload = SyntheticWorkload(steps=args.events, step_s=args.step_s,
                                 result_bytes=int(args.result_mb * (1 << 20)),
                                 completions=Path(args.completions) if args.completions else None,
                                 busy=args.busy)
    cfg = ServiceConfig(bind=args.bind, key=load_key(args.key_file) if args.key_file else None,
                        insecure=args.insecure, queue_size=args.queue,
                        keep_results_s=args.keep_results,
                        keep_results_bytes=int(args.keep_results_mb * (1 << 20)),
                        on_client_lost=args.on_client_lost,
                        state_dir=Path(args.state_dir) if args.state_dir else None,
                        heartbeat_s=args.heartbeat_s, client_timeout_s=3 * args.heartbeat_s,
                        replay_max_nonces=args.replay_cache,
                        curve=_server_curve(args.curve_dir),
                        **({"result_part_bytes": args.result_part_kb << 10}
                           if args.result_part_kb else {}),
                        **({"result_parts_min_bytes": args.result_parts_min_kb << 10}
                           if args.result_parts_min_kb is not None else {}))
    backend = workload
    if args.ray:
        from .ray_backend import RayBackend, RaySettings

        backend = RayBackend(lambda: workload, workload.parse_options,
                             RaySettings(address=args.ray, workers=args.ray_workers,
                                         cpus_per_worker=args.ray_cpus_per_worker,
                                         local_cpus=args.ray_local_cpus, log_to_driver=False),
                             queue_size_hint=args.queue)
    server = Server(cfg, lambda: backend)
    endpoint = server.start()
    import signal
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: server.stop())
    print(f"harness serving on {endpoint} (pid {os.getpid()})", file=sys.stderr, flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())


def png_bomb(width: int = 20000, height: int = 20000, file_bytes: int = 48 * 1024) -> bytes:
    """A valid-looking PNG (8-bit RGB) that DECLARES width x height pixels but is only about
    `file_bytes` long: the IDAT holds a zlib stream of zero rows, cut where the budget ends
    (a decoder would inflate it to far more than the file). For the decompression-bomb checks."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    comp, row, idat = zlib.compressobj(9), b"\0" * (1 + 3 * width), bytearray()
    while len(idat) < file_bytes - 100:
        idat += comp.compress(row * 64)
    idat = bytes(idat[: file_bytes - 100])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


class ServerThread:
    """A Server with the synthetic workload on a loopback port, served from a thread
    (tests and benchmarks): `with ServerThread(key=...) as st: st.endpoint ...`."""

    def __init__(self, workload=None, **config):
        from .config import ServiceConfig
        from .server import Server

        config.setdefault("bind", "tcp://127.0.0.1:0")
        if config.get("key") is None:
            config.setdefault("insecure", True)
        self.workload = workload or SyntheticWorkload(steps=20, step_s=0.001, result_bytes=1 << 16)
        self.server = Server(ServiceConfig(**config), lambda: self.workload)
        self.endpoint = None
        self._thread = None

    def __enter__(self) -> "ServerThread":
        import threading

        self.endpoint = self.server.start()
        self._thread = threading.Thread(target=self.server.serve_forever, name="server", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.stop()
        self._thread.join(10)


class RawClient:
    """A bare DEALER speaking the protocol frame by frame (tests, fuzzing, benchmarks); the
    product's client is gen3dface.protocol.client."""

    def __init__(self, endpoint: str, key: bytes | None, ctx=None):
        import zmq

        from ...protocol.envelope import Codec, Limits
        from ...protocol.signing import Signer

        self.zmq = zmq
        self.ctx = ctx or zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.codec = Codec(Signer(key), Limits.for_client())

    def send(self, msg) -> None:
        self.sock.send_multipart(self.codec.encode(msg))

    def send_frames(self, frames) -> None:
        self.sock.send_multipart(frames)

    def recv(self, timeout_s: float = 5.0):
        """The next message (decoded and checked), or None after timeout_s."""
        if not self.sock.poll(int(timeout_s * 1000)):
            return None
        return self.codec.decode(self.sock.recv_multipart(copy=False))

    def recv_until(self, types, timeout_s: float = 30.0, job_id=None):
        """All messages up to and including the first whose type is in `types`."""
        import time as _t

        out, deadline = [], _t.monotonic() + timeout_s
        while _t.monotonic() < deadline:
            m = self.recv(max(0.0, deadline - _t.monotonic()))
            if m is None:
                break
            if m.msg_type == "ping":
                from ...protocol import messages as _m
                pong = _m.ping()
                pong.msg_type = "pong"
                self.send(pong)
                continue
            out.append(m)
            if m.msg_type in types and (job_id is None or m.content.get("job_id") == job_id):
                return out
        raise TimeoutError(f"no {types} within {timeout_s} s; got {[m.msg_type for m in out]}")

    def close(self) -> None:
        self.sock.close(0)


def free_tcp_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MiB (Linux /proc)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for pid {pid}")


class HarnessProcess:
    """The harness server in a child process (so it can be SIGKILLed and its memory measured).

        with HarnessProcess(port, key_file=..., state_dir=...) as hp: hp.endpoint, hp.pid
    """

    def __init__(self, port: int | None = None, *, key_file=None, state_dir=None, events: int = 20,
                 step_s: float = 0.005, result_mb: float = 30.0, queue: int = 64,
                 completions=None, heartbeat_s: float = 1.0, extra: list[str] | None = None,
                 curve_dir=None):
        self.port = port or free_tcp_port()
        self.endpoint = f"tcp://127.0.0.1:{self.port}"
        self.args = [sys.executable, "-m", "gen3dface.backend.service.harness", "--bind", self.endpoint,
                     "--events", str(events), "--step-s", str(step_s), "--result-mb", str(result_mb),
                     "--queue", str(queue), "--heartbeat-s", str(heartbeat_s)]
        self.args += ["--key-file", str(key_file)] if key_file else ["--insecure"]
        if state_dir:
            self.args += ["--state-dir", str(state_dir)]
        if completions:
            self.args += ["--completions", str(completions)]
        if curve_dir:
            self.args += ["--curve-dir", str(curve_dir)]
        self.args += extra or []
        self.proc = None

    def start(self, timeout_s: float = 30.0) -> "HarnessProcess":
        import subprocess

        self.proc = subprocess.Popen(self.args, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:          # the child prints one line once bound
            line = self.proc.stderr.readline()
            if "harness serving on" in line:
                import collections
                import threading

                self.log = collections.deque(maxlen=200)   # keep draining: a full pipe would block it
                threading.Thread(target=lambda: [self.log.append(x) for x in self.proc.stderr],
                                 daemon=True).start()
                return self
            if not line and self.proc.poll() is not None:
                break
        raise RuntimeError(f"the harness server did not start: {self.args}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        import signal

        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except Exception:
                self.kill()

    def __enter__(self) -> "HarnessProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
