"""A stand-in backend written from protocol/SPEC.md alone: raw pyzmq, hmac and json, none of
gen3dface's own code (not the real server, not gen3dface.protocol).

It speaks enough of the protocol for one client at a time (SPEC 1-5, 8: hello/capabilities,
ping/pong, submit/accepted, job events, cancel, status, fetch_result, bye), signs every
message with the shared key (SPEC 4) and checks the client's signatures. What each job gets
back is chosen by the photo's display name (`submit.image.name`) through `plan`:

    good            progress, a small preview, a small valid GLB with a node "Head"
    random          random bytes as the result, with a matching sha256
    truncated       the good GLB cut in half, with a matching sha256
    wrong_sha       the good GLB with the sha256 of something else
    gltf_error      a GLB whose structure is fine but whose second mesh has an accessor of
                    componentType 9999: Blender's importer builds the first mesh, then fails
    preview_bomb    a PNG preview whose header declares 60000 x 60000 pixels, then a good GLB
    preview_paths   previews named "../../escape" and "/tmp/abs", then a good GLB
    deep_sidecar    a good GLB whose sidecar is nested 64 levels deep (parses)
    deeper_sidecar  a good GLB whose sidecar is nested 100 000 levels deep (no JSON parser
                    reads that)
    flood           3000 progress messages at once, then a good GLB
    silence         `accepted`, then nothing for the job (pings still answered)
    hold            like silence, and `held` is set (a test then interrupts the client)
    lost            `accepted`, then the backend goes away (socket closed, thread ends)

    with FakeBackend({"b.png": "random"}, key=KEY) as fake:
        ... fake.address ...; fake.received  # [(msg_type, content)], in order
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import struct
import threading
import time
import uuid
import zlib

import zmq

MAGIC = b"G3F1"
VERSION = "1.1"
BEHAVIOURS = ("good", "random", "truncated", "wrong_sha", "gltf_error", "preview_bomb",
              "preview_paths", "deep_sidecar", "deeper_sidecar", "flood", "silence", "hold",
              "lost")


# ---- payloads -------------------------------------------------------------------------------

def png_bytes(width: int = 32, height: int = 32, rgb=(200, 150, 120)) -> bytes:
    """A real PNG (8-bit RGB), made with zlib alone."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    row = b"\x00" + bytes(rgb) * width
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2,
                                                                0, 0, 0))
            + chunk(b"IDAT", zlib.compress(row * height)) + chunk(b"IEND", b""))


def png_bomb(width: int = 60000, height: int = 60000) -> bytes:
    """A few hundred bytes whose PNG header declares width x height pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2,
                                                                0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 4096)) + chunk(b"IEND", b""))


def tiny_glb(names=("Head",), bad_accessor_in: str | None = None) -> bytes:
    """A valid glTF 2.0 GLB (glTF spec, "GLB File Format Specification"): one triangle mesh
    per name, each on a node of that name. bad_accessor_in: that mesh's indices accessor gets
    componentType 9999 (the structure stays valid; the importer fails on it)."""
    bin_ = b""
    nodes, meshes, accessors, views = [], [], [], []
    for i, name in enumerate(names):
        pos = struct.pack("<9f", 0.0, 0.0, 0.0, 0.1, 0.0, 0.0, 0.0, 0.1, 0.0 + 0.01 * i)
        idx = struct.pack("<3H", 0, 1, 2) + b"\x00\x00"          # padded to 4 bytes
        views.append({"buffer": 0, "byteOffset": len(bin_), "byteLength": 36})
        bin_ += pos
        views.append({"buffer": 0, "byteOffset": len(bin_), "byteLength": 6})
        bin_ += idx
        accessors.append({"bufferView": len(views) - 2, "componentType": 5126, "count": 3,
                          "type": "VEC3", "min": [0.0, 0.0, 0.0],
                          "max": [0.1, 0.1, 0.01 * i]})
        accessors.append({"bufferView": len(views) - 1,
                          "componentType": 9999 if name == bad_accessor_in else 5123,
                          "count": 3, "type": "SCALAR"})
        meshes.append({"name": name, "primitives": [{"attributes": {"POSITION": len(accessors) - 2},
                                                     "indices": len(accessors) - 1}]})
        nodes.append({"name": name, "mesh": i})
    gltf = {"asset": {"version": "2.0", "generator": "fake_backend"}, "scene": 0,
            "scenes": [{"nodes": list(range(len(nodes)))}], "nodes": nodes, "meshes": meshes,
            "accessors": accessors, "bufferViews": views, "buffers": [{"byteLength": len(bin_)}]}
    js = json.dumps(gltf).encode("utf-8")
    js += b" " * (-len(js) % 4)
    bin_ += b"\x00" * (-len(bin_) % 4)
    body = (struct.pack("<II", len(js), 0x4E4F534A) + js
            + struct.pack("<II", len(bin_), 0x004E4942) + bin_)
    return b"glTF" + struct.pack("<II", 2, 12 + len(body)) + body


GOOD_GLB = tiny_glb(("Head", "EyeLeft"))
GLTF_ERROR_GLB = tiny_glb(("Head", "Teeth"), bad_accessor_in="Teeth")


def nested(depth: int) -> str:
    """JSON text of `depth` nested arrays (built as text: no recursion)."""
    return "[" * depth + "]" * depth


# ---- the wire (SPEC 2-4) ----------------------------------------------------------------------

def sign(key: bytes | None, header: bytes, content: bytes, buffers) -> bytes:
    if key is None:
        return b""
    s = (MAGIC + struct.pack(">Q", len(header)) + header + struct.pack(">Q", len(content))
         + content + struct.pack(">I", len(buffers))
         + b"".join(hashlib.sha256(b).digest() for b in buffers))
    return hmac.new(key, s, hashlib.sha256).hexdigest().encode("ascii")


class FakeBackend(threading.Thread):
    def __init__(self, plan: dict | None = None, key: bytes | None = None,
                 default: str = "good", heartbeat_s: float = 1.0):
        super().__init__(daemon=True, name="fake-backend")
        self.plan, self.key, self.default = dict(plan or {}), key, default
        self.heartbeat_s = heartbeat_s
        self.instance = uuid.uuid4().hex
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.MAXMSGSIZE, 64 * 1024 * 1024)
        self.sock.bind("tcp://127.0.0.1:*")
        self.address = self.sock.getsockopt(zmq.LAST_ENDPOINT).decode()
        self.received: list = []          # (msg_type, content) of every valid message
        self.bad_signatures = 0
        self.held = threading.Event()
        self.gone = threading.Event()
        self._halt = threading.Event()
        self._jobs: dict = {}             # idempotency key -> job dict
        self._n = 0

    # context manager
    def __enter__(self) -> "FakeBackend":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(timeout=5)
        if not self.sock.closed:
            self.sock.close(0)
        self.ctx.term()

    def names(self, msg_type: str) -> list:
        return [c for t, c in list(self.received) if t == msg_type]

    # sending
    def send(self, routing, msg_type: str, content: dict, buffers=(), parent=None) -> None:
        header = json.dumps({"protocol": "gen3dface", "version": VERSION,
                             "msg_id": uuid.uuid4().hex, "msg_type": msg_type,
                             "parent_id": parent, "session": None, "timestamp": time.time(),
                             "nonce": uuid.uuid4().hex}).encode("utf-8")
        body = content if isinstance(content, bytes) else json.dumps(content).encode("utf-8")
        buffers = [bytes(b) for b in buffers]
        frames = [*routing, MAGIC, sign(self.key, header, body, buffers), header, body, *buffers]
        try:
            self.sock.send_multipart(frames, flags=zmq.NOBLOCK)
        except zmq.ZMQError:
            pass

    # the loop
    def run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        while not self._halt.is_set() and not self.gone.is_set():
            if not dict(poller.poll(50)):
                continue
            while not self.gone.is_set():
                try:
                    frames = self.sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                self.handle(frames)
        if self.gone.is_set():
            self.sock.close(0)              # the backend "crashed": nothing answers any more

    def handle(self, frames) -> None:
        try:
            i = frames.index(MAGIC)
        except ValueError:
            return
        routing, rest = frames[:i], frames[i + 1:]
        if len(rest) < 3:
            return
        sig, header_b, content_b, buffers = rest[0], rest[1], rest[2], rest[3:]
        if self.key is not None and not hmac.compare_digest(
                sign(self.key, header_b, content_b, buffers), sig):
            self.bad_signatures += 1
            self.send(routing, "error", {"code": "AUTH", "message": "bad signature"})
            return
        header, content = json.loads(header_b), json.loads(content_b)
        t, mid = header["msg_type"], header["msg_id"]
        self.received.append((t, content))
        if t == "hello":
            self.send(routing, "capabilities", {
                "server": "fake_backend/0", "protocol_version": VERSION,
                "heartbeat_s": self.heartbeat_s,
                "pipeline": {"device": "cpu", "gpu_name": None, "generators": ["offline"],
                             "generators_unavailable": {}, "output_kinds": ["rigged"],
                             "texture_sizes": [512, 1024, 2048]},
                "limits": {}, "queue": {"length": 0, "max": 8, "running": 0},
                "instance": self.instance, "keep_results_s": 600, "insecure": self.key is None,
                "on_client_lost": "keep"}, parent=mid)
        elif t == "ping":
            self.send(routing, "pong", {"heartbeat_s": self.heartbeat_s,
                                        "instance": self.instance}, parent=mid)
        elif t == "submit":
            self.submit(routing, mid, content, buffers)
        elif t == "cancel":
            job = next((j for j in self._jobs.values() if j["id"] == content.get("job_id")), None)
            if job is None:
                self.send(routing, "cancel_reply", {"job_id": content.get("job_id"),
                                                    "state": "unknown", "known": False},
                          parent=mid)
                return
            self.send(routing, "cancel_reply", {"job_id": job["id"], "state": "cancelled",
                                                "known": True, "cancelling": True}, parent=mid)
            if not job["ended"]:
                job["ended"] = True
                self.send(routing, "error", {"code": "CANCELLED", "message": "cancelled",
                                             "job_id": job["id"]}, parent=job["parent"])
        elif t == "status":
            self.send(routing, "status_reply", {"job_id": content.get("job_id"),
                                                "state": "running", "result_available": False},
                      parent=mid)
        elif t == "fetch_result":
            self.send(routing, "error", {"code": "NOT_FOUND", "message": "not kept",
                                         "job_id": content.get("job_id")}, parent=mid)

    def submit(self, routing, mid, content, buffers) -> None:
        key = content["idempotency_key"]
        name = (content.get("image") or {}).get("name") or ""
        if key in self._jobs:                        # a resubmission: re-attach
            job = self._jobs[key]
            job["parent"] = mid
            self.send(routing, "accepted", {"job_id": job["id"], "idempotency_key": key,
                                            "state": "running", "duplicate": True}, parent=mid)
            return
        self._n += 1
        job = {"id": f"job-{self._n}", "key": key, "name": name, "parent": mid, "ended": False,
               "behaviour": self.plan.get(name, self.default)}
        self._jobs[key] = job
        self.send(routing, "accepted", {"job_id": job["id"], "idempotency_key": key,
                                        "state": "queued", "queue_position": 0,
                                        "duplicate": False}, parent=mid)
        self.events(routing, job)

    def events(self, routing, job) -> None:
        b, jid, parent = job["behaviour"], job["id"], job["parent"]

        def ev(t, c, bufs=()):
            self.send(routing, t, dict(c, job_id=jid) if isinstance(c, dict) else c, bufs,
                      parent=parent)

        def result(glb: bytes, sidecar=None, sha: str | None = None):
            job["ended"] = True
            ev("result", {"media_type": "model/gltf-binary",
                          "sidecar": sidecar if sidecar is not None else
                          {"generator": "fake", "warnings": []},
                          "sha256": sha or hashlib.sha256(glb).hexdigest()}, [glb])

        if b in ("silence", "hold"):
            if b == "hold":
                self.held.set()
            return
        if b == "lost":
            self.gone.set()
            return
        ev("progress", {"stage": "decode", "fraction": 0.0, "message": "reading the photo"})
        if b == "flood":
            for i in range(3000):
                ev("progress", {"stage": "fit", "fraction": (i % 100) / 100.0, "message": ""})
        if b == "preview_bomb":
            ev("preview", {"name": "crop", "media_type": "image/png"}, [png_bomb()])
        elif b == "preview_paths":
            for n in ("../../escape", "/tmp/abs"):
                ev("preview", {"name": n, "media_type": "image/png"}, [png_bytes(16, 16)])
        else:
            ev("preview", {"name": "crop", "media_type": "image/png"}, [png_bytes(32, 32)])
        ev("progress", {"stage": "export", "fraction": 1.0, "message": "done"})
        if b == "random":
            result(os.urandom(4096))
        elif b == "truncated":
            result(GOOD_GLB[:len(GOOD_GLB) // 2])
        elif b == "wrong_sha":
            result(GOOD_GLB, sha=hashlib.sha256(b"something else").hexdigest())
        elif b == "gltf_error":
            result(GLTF_ERROR_GLB)
        elif b == "deep_sidecar":
            result(GOOD_GLB, sidecar={"generator": "fake", "deep": json.loads(nested(64))})
        elif b == "deeper_sidecar":
            job["ended"] = True
            body = ('{"job_id": "%s", "media_type": "model/gltf-binary", "sha256": "%s", '
                    '"sidecar": {"generator": "fake", "deep": %s}}'
                    % (jid, hashlib.sha256(GOOD_GLB).hexdigest(), nested(100_000)))
            ev("result", body.encode("utf-8"), [GOOD_GLB])
        else:
            result(GOOD_GLB)
