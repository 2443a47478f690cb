"""Protocol 1.3: results in parts (SPEC 5.7, `hello.result_parts`, `result_part`).

Both sides are tested against code written from SPEC.md alone (raw pyzmq, hmac, hashlib,
json; nothing of gen3dface.protocol on that side):
* a SPEC client against the real server: it asks for parts, checks every piece's HMAC and
  its place, and gets the synthetic workload's exact bytes; without `result_parts` (a 1.2
  client) the same result comes whole, in one buffer;
* gen3dface.protocol.client.Client against a SPEC server: good streams (signed, insecure,
  bytes and zero_copy), a tampered piece, a piece out of place and a wrong whole-file
  sha256 in insecure mode: the GLB is handed out only when every byte was verified, and a
  stream that cannot complete is fetched again, then ends BAD_RESULT.
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

import numpy as np
import pytest
import zmq

from gen3dface.backend.images import encode_png
from gen3dface.backend.service import jobs as jobs_mod
from gen3dface.backend.service.harness import ServerThread, SyntheticWorkload, expected_result
from gen3dface.protocol import messages
from gen3dface.protocol.client import MAX_REFETCHES, Client, ClientConfig
from gen3dface.protocol.envelope import Message
from gen3dface.protocol.errors import ProtocolError
from gen3dface.protocol.signing import supported_digests

KEY = b"0123456789abcdef0123456789abcdef-parts"
MAGIC = b"G3F1"
PART = 64 << 10                       # the smallest part size a server may be configured with
SIZE = 5 * PART + 12345               # six pieces, the last one short


def photo(seed: int = 0) -> bytes:
    return encode_png(np.random.default_rng(seed).integers(0, 255, (32, 32, 3), dtype=np.uint8))


# ---- the wire, from SPEC 2-4 alone ------------------------------------------------------------

def spec_sign(key, header: bytes, content: bytes, buffers) -> bytes:
    if key is None:
        return b""
    s = (MAGIC + struct.pack(">Q", len(header)) + header + struct.pack(">Q", len(content))
         + content + struct.pack(">I", len(buffers))
         + b"".join(hashlib.sha256(b).digest() for b in buffers))
    return hmac.new(key, s, hashlib.sha256).hexdigest().encode("ascii")


def spec_frames(key, msg_type: str, content: dict, buffers=(), parent=None, session=None):
    header = json.dumps({"protocol": "gen3dface", "version": "1.3", "msg_id": uuid.uuid4().hex,
                         "msg_type": msg_type, "parent_id": parent, "session": session,
                         "timestamp": time.time(), "nonce": uuid.uuid4().hex}).encode()
    body = json.dumps(content).encode()
    return [MAGIC, spec_sign(key, header, body, buffers), header, body, *buffers]


def spec_read(key, frames):
    """(header, content, buffers) of a received message, its signature checked (SPEC 4)."""
    assert frames[0] == MAGIC
    sig, header_b, content_b, buffers = frames[1], frames[2], frames[3], frames[4:]
    assert hmac.compare_digest(spec_sign(key, header_b, content_b, buffers), sig)
    return json.loads(header_b), json.loads(content_b), buffers


class SpecClient:
    """A client of the real server written from SPEC alone."""

    def __init__(self, endpoint: str, key: bytes, result_parts: bool):
        self.key, self.session = key, uuid.uuid4().hex
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        hello = {"client": "spec-test"}
        if result_parts:
            hello["result_parts"] = True
        self.send("hello", hello)
        assert self.recv()[0]["msg_type"] == "capabilities"

    def send(self, msg_type, content, buffers=()):
        frames = spec_frames(self.key, msg_type, content, buffers, session=self.session)
        self.sock.send_multipart(frames)
        return json.loads(frames[2])["msg_id"]

    def recv(self, timeout_s=10.0):
        assert self.sock.poll(int(timeout_s * 1000)), "no message from the server"
        return spec_read(self.key, self.sock.recv_multipart())

    def close(self):
        self.sock.close(0)
        self.ctx.term()

    def result(self, job_request: tuple) -> tuple[dict, bytes, int]:
        """Send a submit/fetch_result; return (result content, GLB, pieces) per SPEC 5.7."""
        mid = self.send(*job_request)
        while True:
            h, c, bufs = self.recv()
            if h["msg_type"] == "ping":
                self.send("pong", {})
            if h["msg_type"] == "result":
                break
            assert h["msg_type"] in ("accepted", "progress", "preview", "ping"), (h, c)
        assert h["parent_id"] == mid
        if c.get("parts") is None:
            assert len(bufs) == 1
            return c, bufs[0], 0
        assert bufs == [] and c["size"] >= c["parts"]
        glb = bytearray()
        for i in range(c["parts"]):
            ph, pc, pb = self.recv()            # signature checked in spec_read
            assert ph["msg_type"] == "result_part" and ph["parent_id"] == h["parent_id"]
            assert (pc["job_id"], pc["sha256"], pc["parts"], pc["size"]) == \
                (c["job_id"], c["sha256"], c["parts"], c["size"])
            assert pc["index"] == i and pc["offset"] == len(glb) and len(pb) == 1
            glb += pb[0]
        assert len(glb) == c["size"]
        return c, bytes(glb), c["parts"]


@pytest.fixture
def server():
    w = SyntheticWorkload(steps=2, step_s=0.001, result_bytes=SIZE)
    with ServerThread(w, key=KEY, heartbeat_s=0.5, client_timeout_s=5,
                      result_part_bytes=PART, result_parts_min_bytes=0) as st:
        yield st


def test_a_spec_client_asking_for_parts_gets_every_piece_signed_and_in_place(server):
    image = photo(1)
    c = SpecClient(server.endpoint, KEY, result_parts=True)
    try:
        content, glb, n = c.result(("submit", {"idempotency_key": "k1", "options": {},
                                               "image": {"media_type": "image/png"}}, [image]))
        assert n == 6 and glb == expected_result(image, SIZE)
        assert content["sha256"] == hashlib.sha256(glb).hexdigest()
        # a kept result, fetched: the same pieces (their digests kept with the result)
        content2, glb2, n2 = c.result(("fetch_result", {"job_id": content["job_id"]}))
        assert (glb2, n2) == (glb, 6)
    finally:
        c.close()


def test_results_below_the_servers_threshold_go_whole_also_to_1_3_clients():
    w = SyntheticWorkload(steps=2, step_s=0.001, result_bytes=SIZE)
    with ServerThread(w, key=KEY, result_part_bytes=PART, result_parts_min_bytes=SIZE + 1) as st:
        c = SpecClient(st.endpoint, KEY, result_parts=True)
        try:
            content, glb, n = c.result(("submit", {"idempotency_key": "k0", "options": {},
                                                   "image": {"media_type": "image/png"}},
                                        [photo(0)]))
            assert n == 0 and glb == expected_result(photo(0), SIZE)
        finally:
            c.close()


def test_a_1_2_client_still_gets_the_whole_result_in_one_buffer(server):
    image = photo(2)
    c = SpecClient(server.endpoint, KEY, result_parts=False)
    try:
        content, glb, n = c.result(("submit", {"idempotency_key": "k2", "options": {},
                                               "image": {"media_type": "image/png"}}, [image]))
        assert n == 0 and glb == expected_result(image, SIZE) and "parts" not in content
    finally:
        c.close()


def test_the_server_hashes_the_pieces_once_per_result_not_per_fetch(server, monkeypatch):
    calls = []
    real = jobs_mod.part_digests
    monkeypatch.setattr(jobs_mod, "part_digests",
                        lambda glb, n, algorithm="sha256": calls.append(algorithm) or
                        real(glb, n, algorithm))
    image = photo(3)
    # once per digest this install computes (sha256, and blake3 for 1.4 clients), at store
    every = sorted(supported_digests())
    with Client(server.endpoint, key=KEY) as client:
        r = client.run_job(image, deadline_s=30)
        assert r.glb == expected_result(image, SIZE) and sorted(calls) == every
        job = server.server.store.get(r.job_id)
        assert job.result_part_bytes == PART and len(job.result_part_sha256) == 6
        for name in every:
            if name != "sha256":
                assert len(job.result_digests[name]["parts"]) == 6
        for _ in range(3):
            h = client.fetch_result(r.job_id)
            while not h.done:
                client.poll(0.05)
            assert bytes(h.glb) == r.glb
            client.forget(h)
    assert sorted(calls) == every


@pytest.mark.parametrize("zero_copy", [False, True])
@pytest.mark.parametrize("keyed", [True, False])
def test_client_receives_parts_from_the_real_server(zero_copy, keyed):
    w = SyntheticWorkload(steps=2, step_s=0.001, result_bytes=SIZE)
    cfg = dict(key=KEY) if keyed else dict(insecure=True)
    seen = []
    with ServerThread(w, heartbeat_s=0.5, client_timeout_s=5, result_part_bytes=PART,
                      result_parts_min_bytes=0, **cfg) as st:
        with Client(st.endpoint, config=ClientConfig(zero_copy=zero_copy),
                    **({"key": KEY} if keyed else {"insecure": True})) as client:
            real = client._on_message
            client._on_message = lambda m, c: seen.append(m.msg_type) or real(m, c)
            h = client.submit(photo(4))
            while not h.done:
                client.poll(0.05)
            assert h.state == "done" and bytes(h.glb) == expected_result(photo(4), SIZE)
            assert isinstance(h.glb, memoryview if zero_copy else bytes)
    assert seen.count("result_part") == 6 and seen.count("result") == 1


def test_a_reused_buffer_never_overwrites_a_result_the_caller_still_holds(server):
    """zero_copy assembles into a mapping that is reused once the caller has let go of the
    result in it; a result still held (a memoryview, a numpy array over it) is never touched."""
    from gen3dface.protocol import client as client_mod

    fresh = []
    real_take = client_mod._SpareBuffers.take

    def take(self, size):
        m, f = real_take(self, size)
        fresh.append(f)
        return m, f

    images = [photo(10 + i) for i in range(4)]
    with Client(server.endpoint, key=KEY, config=ClientConfig(zero_copy=True)) as client:
        client._spare.take = take.__get__(client._spare)
        ids = [client.run_job(im, deadline_s=30).job_id for im in images]
        fresh.clear()

        def fetch(job_id):
            h = client.fetch_result(job_id)
            while not h.done:
                client.poll(0.05)
            client.forget(h)
            return h.glb

        held = fetch(ids[0])                               # may reuse run_job's buffers
        arr = np.frombuffer(fetch(ids[1]), np.uint8)      # held through numpy only
        third = fetch(ids[2])
        assert fresh[-1] is True                           # both kept mappings are held
        assert bytes(held) == expected_result(images[0], SIZE)
        assert arr.tobytes() == expected_result(images[1], SIZE)
        del held, arr, third                               # all let go: reused from now on
        again = fetch(ids[3])
        assert fresh[-1] is False and bytes(again) == expected_result(images[3], SIZE)


def test_with_curve_results_over_one_part_go_in_parts(tmp_path):
    """On a CURVE server every result over one part goes in parts (libzmq encrypts small
    messages much faster than one big frame); the client's CURVE key owns the job."""
    import argparse

    from gen3dface.backend.commands import keys as keys_cmd
    from gen3dface.protocol.curve import ServerCurve

    def keys(*argv):                        # `gen3dface keys ...`, as a studio makes them
        p = argparse.ArgumentParser(prog="gen3dface")
        keys_cmd.add_parser(p.add_subparsers(dest="command", required=True))
        args = p.parse_args(["keys", *argv])
        assert args.func(args) == 0

    d, people = tmp_path / "server", tmp_path / "people"
    keys("init", "--dir", str(d))
    keys("client", "alice", "--out", str(people), "--dir", str(d), "--allow")
    w = SyntheticWorkload(steps=2, step_s=0.001, result_bytes=SIZE)
    seen = []
    with ServerThread(w, key=KEY, curve=ServerCurve.load(d), result_part_bytes=PART,
                      heartbeat_s=0.5, client_timeout_s=5) as st:
        with Client(st.endpoint, key=KEY, server_public_key=str(d / "server.key"),
                    client_key_file=str(people / "alice.key_secret"),
                    config=ClientConfig(zero_copy=True)) as client:
            real = client._on_message
            client._on_message = lambda m, c: seen.append(m.msg_type) or real(m, c)
            r = client.run_job(photo(5), deadline_s=30)
    assert r.glb == expected_result(photo(5), SIZE) and seen.count("result_part") == 6


# ---- the client against a server written from SPEC alone --------------------------------------

class SpecServer(threading.Thread):
    """Answers hello, ping and fetch_result (job "j1", a result of SIZE bytes in PART pieces)
    as SPEC 5.7 says, with the faults `plan` names, one per fetch in turn:
    "good", "tamper" (one piece's bytes changed after signing), "swap" (pieces 1 and 2 in
    each other's place), "stop" (the stream ends before its last piece), "wrong_sha" (the
    announced sha256 is of other bytes; only insecure mode notices)."""

    def __init__(self, key, plan):
        super().__init__(daemon=True)
        self.key, self.plan = key, list(plan)
        self.glb = os.urandom(SIZE)
        self.sha = hashlib.sha256(self.glb).hexdigest()
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind("tcp://127.0.0.1:*")
        self.address = self.sock.getsockopt(zmq.LAST_ENDPOINT).decode()
        self.fetches = 0
        self.hello = None
        self._halt = threading.Event()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self._halt.set()
        self.join(5)
        self.sock.close(0)
        self.ctx.term()

    def send(self, routing, t, content, buffers=(), parent=None, tamper=False):
        frames = spec_frames(self.key, t, content, buffers, parent)
        if tamper:
            b = bytearray(frames[-1])
            b[len(b) // 2] ^= 1
            frames[-1] = bytes(b)
        self.sock.send_multipart([routing, *frames])

    def run(self):
        while not self._halt.is_set():
            if not self.sock.poll(50):
                continue
            routing, *frames = self.sock.recv_multipart()
            h, c, _ = spec_read(self.key, frames) if self.key else (
                json.loads(frames[2]), json.loads(frames[3]), None)
            t, mid = h["msg_type"], h["msg_id"]
            if t == "hello":
                self.hello = c
                self.send(routing, "capabilities", {"protocol_version": "1.3",
                                                    "instance": "spec-server"}, parent=mid)
            elif t == "ping":
                self.send(routing, "pong", {"instance": "spec-server"}, parent=mid)
            elif t == "status":                 # the client's probe of a silent job (SPEC 8)
                self.send(routing, "status_reply", {"job_id": "j1", "state": "done",
                                                    "result_available": True}, parent=mid)
            elif t == "fetch_result":
                fault = self.plan[min(self.fetches, len(self.plan) - 1)]
                self.fetches += 1
                self.send(routing, "accepted", {"job_id": "j1", "state": "done",
                                                "duplicate": True}, parent=mid)
                self.stream(routing, mid, fault)

    def stream(self, routing, parent, fault):
        n = -(-SIZE // PART)
        sha = hashlib.sha256(b"other bytes").hexdigest() if fault == "wrong_sha" else self.sha
        self.send(routing, "result", {"job_id": "j1", "sidecar": {"generator": "spec"},
                                      "sha256": sha, "parts": n, "size": SIZE}, parent=parent)
        order = list(range(n))
        if fault == "swap":
            order[1], order[2] = order[2], order[1]
        if fault == "stop":
            order = order[:-1]
        for i in order:
            off = i * PART
            self.send(routing, "result_part", {
                "job_id": "j1", "sha256": sha, "index": i, "parts": n, "offset": off,
                "size": SIZE}, [self.glb[off:off + PART]], parent=parent,
                tamper=fault == "tamper" and i == 3)


def fetch(address, key, timeout_s=10.0, **config):
    kw = {"key": key} if key else {"insecure": True}
    with Client(address, config=ClientConfig(job_silence_s=1.0, **config), **kw) as client:
        client.wait_connected(5)
        h = client.fetch_result("j1")
        end = time.monotonic() + timeout_s
        while not h.done and time.monotonic() < end:
            client.poll(0.05)
        return h


@pytest.mark.parametrize("zero_copy", [False, True])
@pytest.mark.parametrize("key", [KEY, None])
def test_client_assembles_a_spec_servers_parts(key, zero_copy):
    with SpecServer(key, ["good"]) as srv:
        h = fetch(srv.address, key, zero_copy=zero_copy)
        assert srv.hello.get("result_parts") is True
        assert h.state == "done" and bytes(h.glb) == srv.glb and srv.fetches == 1
        assert h.sidecar == {"generator": "spec"}


@pytest.mark.parametrize("fault", ["tamper", "swap", "stop"])
def test_a_stream_that_cannot_complete_is_fetched_again(fault):
    with SpecServer(KEY, [fault, "good"]) as srv:
        h = fetch(srv.address, KEY, timeout_s=15)
        assert h.state == "done" and bytes(h.glb) == srv.glb and srv.fetches == 2


def test_a_tampered_piece_every_time_ends_bad_result_and_hands_nothing_out():
    with SpecServer(KEY, ["tamper"]) as srv:
        h = fetch(srv.address, KEY)
        assert h.state == "failed" and h.error.code == "BAD_RESULT" and h.glb is None
        assert srv.fetches == MAX_REFETCHES + 1


def test_insecure_mode_checks_the_whole_files_sha256():
    with SpecServer(None, ["wrong_sha"]) as srv:
        h = fetch(srv.address, None)
        assert h.state == "failed" and h.error.code == "BAD_RESULT" and h.glb is None


def test_a_1_2_style_client_does_not_ask_for_parts():
    with SpecServer(KEY, ["good"]) as srv:
        fetch(srv.address, KEY, timeout_s=1, result_parts=False)
        assert "result_parts" not in srv.hello


# ---- message validation (SPEC 6) ---------------------------------------------------------------

def _part(**over):
    c = {"job_id": "j1", "sha256": "a" * 64, "index": 0, "parts": 2, "offset": 0, "size": 10}
    c.update(over)
    return c


@pytest.mark.parametrize("content,buffers,ok", [
    (_part(), [b"12345"], True),
    (_part(index=1, offset=5), [b"67890"], True),
    (_part(index=2), [b"1"], False),                    # index >= parts
    (_part(offset=8), [b"123"], False),                 # runs past size
    (_part(), [b""], False),                            # an empty piece
    (_part(), [], False),                               # no buffer
    (_part(sha256="A" * 64), [b"1"], False),            # not lowercase hex
    (_part(size=1), [b"1"], False),                     # size < parts
])
def test_result_part_validation(content, buffers, ok):
    msg = Message("result_part", content, buffers)
    if ok:
        messages.validate(msg, "to_client")
    else:
        with pytest.raises(ProtocolError) as e:
            messages.validate(msg, "to_client")
        assert e.value.code == "BAD_REQUEST"


def test_result_with_parts_carries_no_buffer_and_needs_size_and_sha256():
    base = {"job_id": "j1", "sidecar": {}, "sha256": "b" * 64, "parts": 3, "size": 100}
    messages.validate(Message("result", base, []), "to_client")
    for bad, bufs in ((base, [b"x"]), ({**base, "size": None}, []),
                      ({**base, "sha256": None}, []), ({**base, "parts": 0}, [])):
        with pytest.raises(ProtocolError):
            messages.validate(Message("result", bad, bufs), "to_client")
    # without parts: exactly one buffer, as in 1.2
    messages.validate(Message("result", {"job_id": "j1", "sidecar": {}}, [b"glb"]), "to_client")
    with pytest.raises(ProtocolError):       # a server type: never sent to a server
        messages.validate(Message("result_part", _part(), [b"1"]), "to_server")


def test_only_result_parts_are_hashed_on_worker_threads():
    """Pieces of a result in parts are hashed on the client's workers (each while the next
    arrives); a large message that comes whole is hashed by decode on the receiving thread,
    which measured faster than handing it to a worker and waiting for it (issue 19). Both
    are verified: the GLB is the workload's exact bytes."""
    big_part = 512 << 10
    size = 3 * big_part + 999
    w = SyntheticWorkload(steps=2, step_s=0.001, result_bytes=size)
    for min_bytes, parts in ((0, True), (size + 1, False)):
        with ServerThread(w, key=KEY, heartbeat_s=0.5, client_timeout_s=5,
                          result_part_bytes=big_part, result_parts_min_bytes=min_bytes) as st:
            with Client(st.endpoint, key=KEY) as client:
                hashed = []
                real = client._codec.buffer_digests
                client._codec.buffer_digests = lambda f: hashed.append(len(f)) or real(f)
                image = photo(7 if parts else 8)
                r = client.run_job(image, deadline_s=30)
                assert r.glb == expected_result(image, size)
                # (the 999-byte last piece is small enough to hash inline)
                assert len(hashed) == (3 if parts else 0), (parts, hashed)
