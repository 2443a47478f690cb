"""Issue 19: the backend survives anyone on its port. Each test sends the exact message of one
reported fault to a real server (loopback, in a thread) and checks that the server answers it
as protocol/SPEC.md says and keeps serving:

1. a lone surrogate msg_id ("\\ud800", written as a JSON escape) used to kill the server: the
   AUTH error echoed it as parent_id and the envelope's UTF-8 encoding raised;
2. one future-dated message used to lock every client out once the replay cache overflowed;
3. replies lost behind a ROUTER/DEALER proxy (only the first routing-id frame was sent back);
5. a huge-integer timestamp (OverflowError -> INTERNAL without parent_id) and a version
   written in non-ASCII digits ("１.１", accepted as 1.1).
"""
from __future__ import annotations

import hashlib
import json
import threading
import time

import numpy as np
import pytest
import zmq

from gen3dface.backend.images import encode_png
from gen3dface.backend.service.harness import (RawClient, ServerThread, SyntheticWorkload,
                                               expected_result)
from gen3dface.protocol import messages
from gen3dface.protocol.client import Client
from gen3dface.protocol.envelope import Codec, Limits
from gen3dface.protocol.signing import MAGIC, ReplayGuard, Signer

KEY = b"0123456789abcdef0123456789abcdef-crash"
SURROGATE = "\ud800"


def photo(seed: int = 0) -> bytes:
    return encode_png(np.random.default_rng(seed).integers(0, 255, (32, 32, 3), dtype=np.uint8))


def raw_frames(header: dict, content: dict | None = None, buffers=(), key: bytes | None = KEY,
               sign: bool = True) -> list[bytes]:
    """Frames built by hand (json.dumps escapes lone surrogates as \\udXXX, as any JSON
    library a hostile client uses may), signed with `key` when `sign`."""
    full = {"protocol": "gengen", "version": "1.1", "msg_id": "m1", "msg_type": "ping",
            "parent_id": None, "session": None, "timestamp": time.time(),
            "nonce": hashlib.sha256(str(time.perf_counter_ns()).encode()).hexdigest()[:32]}
    full["protocol"] = "gen3dface"
    full.update(header)
    h = json.dumps(full).encode("ascii")
    c = json.dumps(content or {}).encode("ascii")
    sig = Signer(key).sign(h, c, [hashlib.sha256(b).digest() for b in buffers]) if sign and key else b""
    return [MAGIC, sig, h, c, *buffers]


def alive(client: RawClient) -> bool:
    ping = messages.ping()
    client.send(ping)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        m = client.recv(0.5)
        if m is not None and m.msg_type == "pong" and m.parent_id == ping.msg_id:
            return True
    return False


@pytest.fixture
def keyed():
    with ServerThread(key=KEY, heartbeat_s=0.2, client_timeout_s=5) as st:
        yield st


@pytest.fixture
def insecure():
    with ServerThread(heartbeat_s=0.2, client_timeout_s=5) as st:
        yield st


# ---- 1. lone surrogate msg_id -------------------------------------------------------------

@pytest.mark.parametrize("case", ["unsigned_to_keyed", "wrong_key", "signed", "insecure"])
def test_lone_surrogate_msg_id_is_answered_and_the_server_serves_on(keyed, insecure, case):
    st = insecure if case == "insecure" else keyed
    key = None if case == "insecure" else KEY
    frames = raw_frames({"msg_id": SURROGATE}, key=b"w" * 32 if case == "wrong_key" else key,
                        sign=case in ("signed", "wrong_key"))
    assert b'"msg_id": "\\ud800"' in frames[2]          # the exact bytes of the report
    c = RawClient(st.endpoint, key)
    try:
        c.send_frames(frames)
        reply = c.recv(3.0)
        assert reply is not None, "no answer: the server died"
        want = "AUTH" if case in ("unsigned_to_keyed", "wrong_key") else "BAD_REQUEST"
        assert reply.msg_type == "error" and reply.content["code"] == want, reply.content
        assert reply.parent_id is None                 # not a valid msg_id: never echoed
        assert alive(c) and st._thread.is_alive()
    finally:
        c.close()


def test_surrogates_elsewhere_in_a_submit_never_reach_an_encoder(keyed):
    """A submit whose job_id/options/name hold lone surrogates: BAD_IMAGE for the photo, and the
    error names no garbage job_id (the client could not validate it)."""
    c = RawClient(keyed.endpoint, KEY)
    try:
        content = {"idempotency_key": "k1", "job_id": SURROGATE, "options": {SURROGATE: SURROGATE},
                   "image": {"media_type": "image/png", "name": SURROGATE}}
        c.send_frames(raw_frames({"msg_type": "submit", "msg_id": "s1"}, content, [b"not a png" * 4]))
        reply = c.recv(3.0)
        assert reply is not None and reply.content["code"] == "BAD_IMAGE", reply
        assert reply.parent_id == "s1" and reply.content["job_id"] is None
        assert alive(c)
    finally:
        c.close()


# ---- 2. replay cache lock-out ---------------------------------------------------------------

def test_one_future_dated_message_does_not_lock_other_clients_out(keyed):
    keyed.server.codec.replay = ReplayGuard(max_nonces=50)   # small cap: overflows quickly
    a, b = RawClient(keyed.endpoint, KEY), RawClient(keyed.endpoint, KEY)
    try:
        ahead = Codec(Signer(KEY), Limits.for_client(), clock=lambda: time.time() + 290)
        a.send_frames(ahead.encode(messages.ping()))          # accepted: inside the window
        assert a.recv_until(("pong",))[-1].msg_type == "pong"
        for _ in range(60):                                    # overflows the cache of 50
            assert alive(a)
        reply = None
        ping = messages.ping()
        b.send(ping)
        reply = b.recv(3.0)
        assert reply is not None and reply.msg_type == "pong", \
            reply.content if reply is not None else "no reply"
        assert len(keyed.server.codec.replay) <= 50
    finally:
        a.close(), b.close()


def test_replay_guard_evicts_by_timestamp_and_never_forgets_into_a_replay():
    t = [1_700_000_000.0]
    g = ReplayGuard(window_s=300.0, max_nonces=100, clock=lambda: t[0])
    g.check(t[0] + 299.0, "future")                 # one future-dated message
    for i in range(100):
        g.check(t[0] + i * 0.01, f"a{i}")           # everyone else's fresh traffic
    assert len(g) <= 100
    g.check(t[0] + 1.0, "another-client")           # was: "timestamp too old for the replay cache"
    with pytest.raises(Exception, match="replay|too old"):
        g.check(t[0] + 299.0, "future")             # still remembered: the replay is refused
    with pytest.raises(Exception, match="replay|too old"):
        g.check(t[0], "a0")                         # evicted (oldest): refused by the floor
    t[0] += 700                                     # everything expired by time
    g.check(t[0], "later")
    assert len(g) == 1


# ---- 3. replies through a ROUTER/DEALER proxy ----------------------------------------------

class Proxy:
    """zmq.proxy(ROUTER frontend, DEALER backend) in a thread, as a studio's broker would."""

    def __init__(self, backend: str):
        self.ctx = zmq.Context()
        self.backend_endpoint = backend
        self.control = f"inproc://proxy-control-{id(self)}"
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        front = self.ctx.socket(zmq.ROUTER)
        front.setsockopt(zmq.LINGER, 0)
        port = front.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"
        back = self.ctx.socket(zmq.DEALER)
        back.setsockopt(zmq.LINGER, 0)
        back.connect(self.backend_endpoint)
        ctl = self.ctx.socket(zmq.PAIR)
        ctl.bind(self.control)
        self._ready.set()
        try:
            zmq.proxy_steerable(front, back, None, ctl)
        finally:
            for s in (front, back, ctl):
                s.close(0)

    def __enter__(self):
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc):
        s = self.ctx.socket(zmq.PAIR)
        s.connect(self.control)
        s.send(b"TERMINATE")
        self._thread.join(5)
        s.close(0)
        self.ctx.term()


def test_replies_keep_every_routing_frame_through_a_proxy(keyed):
    with Proxy(keyed.endpoint) as proxy:
        c = RawClient(proxy.endpoint, KEY)
        try:
            c.send(messages.hello("via-proxy"))
            caps = c.recv(3.0)
            assert caps is not None and caps.msg_type == "capabilities", "reply lost in the proxy"
            c.send_frames(raw_frames({"msg_id": "unsigned"}, sign=False))    # an error reply too
            err = c.recv(3.0)
            assert err is not None and err.content["code"] == "AUTH" and err.parent_id == "unsigned"
            img = photo(3)
            c.send(messages.submit(img, "image/png", "proxied"))
            job_id = c.recv_until(("accepted",))[-1].content["job_id"]
            res = c.recv_until(("result",), job_id=job_id)[-1]            # job events too
            assert res.buffers[0] == expected_result(img, 1 << 16)
        finally:
            c.close()
        with Client(proxy.endpoint, key=KEY) as client:                     # our client library
            client.wait_connected(5)
            r = client.run_job(photo(4), deadline_s=30)
            assert r.glb == expected_result(photo(4), 1 << 16)
            assert client.status(r.job_id)["state"] == "done"
    # the server saw two routing frames per proxied message
    assert all(len(info.routing) == 2 for info in keyed.server.clients.values())


# ---- 5. huge numbers and non-ASCII digits --------------------------------------------------

@pytest.mark.parametrize("signed", [True, False])
def test_huge_integer_timestamp_is_a_bad_request_naming_its_message(keyed, insecure, signed):
    st, key = (keyed, KEY) if signed else (insecure, None)
    c = RawClient(st.endpoint, key)
    try:
        c.send_frames(raw_frames({"msg_id": "huge-ts", "timestamp": 10 ** 400}, key=key))
        reply = c.recv(3.0)
        assert reply is not None and reply.msg_type == "error"
        assert reply.content["code"] == "BAD_REQUEST", reply.content
        assert reply.parent_id == "huge-ts" and "timestamp" in reply.content["message"]
        assert alive(c)
    finally:
        c.close()


@pytest.mark.parametrize("field,value", [("heartbeat_s", 10 ** 400), ("heartbeat_s", -10 ** 400)],
                         ids=["plus-1e400", "minus-1e400"])
def test_huge_integer_content_fields_are_bad_requests(keyed, field, value):
    c = RawClient(keyed.endpoint, KEY)
    try:
        c.send_frames(raw_frames({"msg_id": "huge-field", "msg_type": "hello"}, {field: value}))
        reply = c.recv(3.0)
        assert reply is not None and reply.content["code"] == "BAD_REQUEST", reply.content
        assert reply.parent_id == "huge-field"
    finally:
        c.close()


@pytest.mark.parametrize("version", ["１.１", "1.١", "1.1\n", "01.1x", " 1.1"])
def test_version_must_be_ascii_digits(keyed, version):
    c = RawClient(keyed.endpoint, KEY)
    try:
        c.send_frames(raw_frames({"msg_id": "v", "version": version}))
        reply = c.recv(3.0)
        assert reply is not None and reply.msg_type == "error", "accepted a non-ASCII version"
        assert reply.content["code"] == "BAD_REQUEST" and reply.parent_id == "v"
        c.send_frames(raw_frames({"msg_id": "v2", "version": "1.10"}))     # any 1.x minor
        assert c.recv(3.0).msg_type == "pong"
    finally:
        c.close()
