"""The client library against a minimal in-test ROUTER peer (the real server's end-to-end tests
belong to the service): blocking and non-blocking modes, heartbeats, reconnection with the same
idempotency key, cancel, deadlines, local photo checks, key mismatch."""
from __future__ import annotations

import hashlib
import struct
import threading
import time
import zlib

import pytest
import zmq

from gen3dface.protocol import messages as M
from gen3dface.protocol.client import Client, ClientConfig, JobError
from gen3dface.protocol.envelope import Codec, Limits
from gen3dface.protocol.errors import ProtocolError
from gen3dface.protocol.signing import Signer
from gen3dface.protocol.transport import Channel, is_loopback_endpoint, make_router

KEY = b"c" * 32
HB = 0.2     # fast heartbeats for tests


def tiny_png(w=32, h=32) -> bytes:
    chunk = lambda t, d: (struct.pack(">I", len(d)) + t + d
                          + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF))
    raw = b"".join(b"\x00" + bytes([120, 90, 60]) * w for _ in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


PHOTO = tiny_png()


class MiniServer(threading.Thread):
    """Just enough of a server to exercise the client: hello, ping, submit (with idempotency),
    cancel, status, fetch_result. Jobs progress on a timer inside the I/O loop."""

    def __init__(self, endpoint="tcp://127.0.0.1:*", key=KEY, steps=3, step_s=0.02,
                 fail_with=None, bad_sha=False, answer_pings=True):
        super().__init__(daemon=True)
        self.ctx = zmq.Context()
        self.sock = make_router(self.ctx, endpoint, Limits.for_server(), HB)
        self.endpoint = self.sock.getsockopt(zmq.LAST_ENDPOINT).decode()
        self.chan = Channel(self.sock, Codec(Signer(key)))
        self.steps, self.step_s, self.fail_with, self.bad_sha = steps, step_s, fail_with, bad_sha
        self.answer_pings = answer_pings
        self.stop_flag = threading.Event()
        self.paused = threading.Event()
        self.jobs = {}           # job_id -> dict
        self.by_key = {}
        self.received = []       # (msg_type, content)
        self.auth_failures = 0
        self.instance = f"inst-{id(self)}"

    def run(self):
        try:
            while not self.stop_flag.is_set():
                if self.paused.is_set():
                    time.sleep(0.01)
                    continue
                if self.chan.readable(0.01):
                    try:
                        msg = self.chan.recv()
                        content = M.validate(msg, "to_server")
                    except ProtocolError as e:
                        self.auth_failures += e.code == "AUTH"
                        self.chan.send(M.error_from_exception(e))
                        continue
                    self.received.append((msg.msg_type, content))
                    self.handle(msg, content)
                self.tick()
        finally:
            self.sock.close(0)
            self.ctx.term()

    def handle(self, msg, c):
        t = msg.msg_type
        if t == "hello":
            self.chan.send(msg.reply("capabilities", {
                "server": "mini", "protocol_version": "1.0", "heartbeat_s": HB,
                "instance": self.instance,
                "pipeline": {}, "limits": dict(Limits.for_server().to_dict(),
                                               max_image_pixels=40_000_000)}))
        elif t == "ping" and self.answer_pings:
            self.chan.send(msg.reply("pong", {"instance": self.instance}))
        elif t == "submit":
            key = c["idempotency_key"]
            if key in self.by_key:
                job = self.jobs[self.by_key[key]]
                job["routing"], job["parent"] = msg.routing, msg.msg_id
                self.chan.send(msg.reply("accepted", {"job_id": job["id"], "state": job["state"],
                                                      "duplicate": True}))
                return
            jid = f"job{len(self.jobs)}"
            self.by_key[key] = jid
            self.jobs[jid] = {"id": jid, "routing": msg.routing, "parent": msg.msg_id,
                              "state": "queued", "step": 0, "next": time.monotonic(),
                              "photo": msg.buffers[0]}
            self.chan.send(msg.reply("accepted", {"job_id": jid, "idempotency_key": key,
                                                  "state": "queued", "queue_position": 0}))
        elif t == "cancel":
            job = self.jobs.get(c["job_id"])
            if job and job["state"] in ("queued", "running"):
                job["state"] = "cancelled"
                self.job_event(job, "error", {"job_id": job["id"], "code": "CANCELLED",
                                              "message": "cancelled"})
            self.chan.send(msg.reply("cancel_reply", {
                "job_id": c["job_id"], "state": job["state"] if job else "unknown",
                "known": job is not None}))
        elif t == "status":
            job = self.jobs.get(c["job_id"] or "")
            self.chan.send(msg.reply("status_reply", {
                "job_id": c["job_id"], "state": job["state"] if job else "unknown",
                "result_available": bool(job and job["state"] == "done"),
                "server": {"queue_length": 0}}))
        elif t == "fetch_result":
            job = self.jobs.get(c["job_id"])
            if job is None:
                self.chan.send(M.error_reply(msg, "NOT_FOUND", "no such job", c["job_id"]))
                return
            job["routing"], job["parent"] = msg.routing, msg.msg_id
            self.chan.send(msg.reply("accepted", {"job_id": job["id"], "state": job["state"],
                                                  "duplicate": True}))
            if job["state"] == "done":
                self.send_result(job)

    def job_event(self, job, msg_type, content, buffers=()):
        from gen3dface.protocol.envelope import Message
        self.chan.send(Message(msg_type, content, list(buffers), parent_id=job["parent"],
                               routing=list(job["routing"])))

    def send_result(self, job):
        glb = b"glTF" + hashlib.sha256(job["photo"]).digest() * 1000
        sha = "0" * 64 if self.bad_sha else hashlib.sha256(glb).hexdigest()
        self.job_event(job, "result", {"job_id": job["id"], "sidecar": {"generator": "mini"},
                                       "sha256": sha}, [glb])

    def tick(self):
        now = time.monotonic()
        for job in self.jobs.values():
            if job["state"] not in ("queued", "running") or now < job["next"]:
                continue
            job["state"], job["next"] = "running", now + self.step_s
            if job["step"] < self.steps:
                self.job_event(job, "progress", {"job_id": job["id"], "stage": "fit",
                                                 "fraction": job["step"] / self.steps,
                                                 "message": f"step {job['step']}"})
                if job["step"] == 1:
                    self.job_event(job, "preview", {"job_id": job["id"], "name": "crop"},
                                   [PHOTO])
                job["step"] += 1
            elif self.fail_with:
                job["state"] = "failed"
                self.job_event(job, "error", {"job_id": job["id"], "code": self.fail_with,
                                              "message": "no face in the photo"})
            else:
                job["state"] = "done"
                self.send_result(job)

    def stop(self):
        self.stop_flag.set()
        self.join(5)


@pytest.fixture
def server():
    s = MiniServer()
    s.start()
    yield s
    s.stop()


def make_client(endpoint, key=KEY, **kw):
    return Client(endpoint, key, config=ClientConfig(heartbeat_s=HB, backoff_initial_s=0.1,
                                                     backoff_max_s=0.4, **kw))


def expected_glb(photo=PHOTO):
    return b"glTF" + hashlib.sha256(photo).digest() * 1000


def test_blocking_run_job(server):
    progress, previews = [], []
    with make_client(server.endpoint) as c:
        caps = c.wait_connected(5)
        assert caps["server"] == "mini"
        r = c.run_job(PHOTO, options={"seed": 2}, deadline_s=10,
                      on_progress=lambda s, f, m: progress.append((s, f, m)),
                      on_preview=lambda n, b: previews.append((n, b)))
    assert r.glb == expected_glb() and r.sidecar == {"generator": "mini"}
    assert [p[1] for p in progress] == [0.0, 1 / 3, 2 / 3] and progress[0][2] == "step 0"
    assert previews == [("crop", PHOTO)]
    submits = [c for t, c in server.received if t == "submit"]
    assert len(submits) == 1 and submits[0]["options"] == {"seed": 2}
    assert submits[0]["image"]["media_type"] == "image/png"


def test_non_blocking_poll_never_waits(server):
    c = make_client(server.endpoint)
    try:
        job = c.submit(PHOTO, idempotency_key="nb-1")
        kinds, worst = [], 0.0
        end = time.monotonic() + 10
        while not job.done and time.monotonic() < end:
            t = time.perf_counter()
            evs = c.poll()
            worst = max(worst, time.perf_counter() - t)
            kinds += [e.kind for e in evs if e.job is job]
            time.sleep(0.005)
        assert job.state == "done" and job.glb == expected_glb()
        assert kinds[0] == "accepted" and kinds[-1] == "result"
        assert kinds.count("progress") == 3 and kinds.count("preview") == 1
        assert job.previews["crop"] == ("image/png", PHOTO)
        assert worst < 0.5, f"poll() took {worst * 1e3:.1f} ms"     # (a blocking bug: >= 1 s)
        assert c.submit(PHOTO, idempotency_key="nb-1") is job   # same key, same handle
    finally:
        c.close()


def test_server_error_code_raises_job_error():
    s = MiniServer(fail_with="NO_FACE")
    s.start()
    try:
        with make_client(s.endpoint) as c:
            with pytest.raises(JobError) as e:
                c.run_job(PHOTO, deadline_s=10)
        assert e.value.code == "NO_FACE" and "no face" in e.value.message
    finally:
        s.stop()


def test_cancel_running_job():
    s = MiniServer(steps=1000, step_s=0.01)
    s.start()
    try:
        with make_client(s.endpoint) as c:
            job = c.submit(PHOTO)
            c.cancel(job)                       # before accepted: sent once the id is known
            kinds = []
            end = time.monotonic() + 10
            while not job.done and time.monotonic() < end:
                kinds += [e.kind for e in c.poll(0.05) if e.job is job]
            assert job.state == "cancelled" and "cancelled" in kinds
            assert job.error.code == "CANCELLED"
    finally:
        s.stop()


def test_deadline_cancels_and_raises_timeout():
    s = MiniServer(steps=1000, step_s=0.01)
    s.start()
    try:
        with make_client(s.endpoint) as c:
            t = time.monotonic()
            with pytest.raises(JobError) as e:
                c.run_job(PHOTO, deadline_s=0.5)
            assert e.value.code == "TIMEOUT" and time.monotonic() - t < 2.0
            deadline = time.monotonic() + 2
            while not any(t == "cancel" for t, _ in s.received) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert any(t == "cancel" for t, _ in s.received)
    finally:
        s.stop()


def test_client_learns_server_is_gone_within_three_beats(server):
    with make_client(server.endpoint) as c:
        c.wait_connected(5)
        server.paused.set()                    # the server stops answering anything
        t0 = time.monotonic()
        lost = None
        while time.monotonic() - t0 < 5 and lost is None:
            for ev in c.poll(0.05):
                if ev.kind == "disconnected":
                    lost = time.monotonic() - t0
        # not before the third missed beat, and soon after it (slack for a loaded CI host)
        assert lost is not None and 2 * HB <= lost <= 3 * HB + 0.5, lost
        server.paused.clear()                  # comes back: a new socket reconnects
        kinds = []
        t0 = time.monotonic()
        while "reconnected" not in kinds and time.monotonic() - t0 < 5:
            kinds += [e.kind for e in c.poll(0.05)]
        assert "reconnected" in kinds


def test_restart_resubmits_with_same_idempotency_key():
    a = MiniServer(steps=1000, step_s=0.02)
    a.start()
    endpoint = a.endpoint
    c = make_client(endpoint)
    try:
        job = c.submit(PHOTO, idempotency_key="survive-1")
        end = time.monotonic() + 5
        while job.stage is None and time.monotonic() < end:
            c.poll(0.05)
        assert job.job_id == "job0"
        a.stop()                               # backend dies mid-job
        kinds = []
        end = time.monotonic() + 5
        while "disconnected" not in kinds and time.monotonic() < end:
            kinds += [e.kind for e in c.poll(0.05)]
        assert "disconnected" in kinds
        b = MiniServer(endpoint=endpoint, steps=2)  # restarted on the same address
        b.start()
        try:
            end = time.monotonic() + 10
            while not job.done and time.monotonic() < end:
                kinds += [e.kind for e in c.poll(0.05)]
            assert job.state == "done" and job.glb == expected_glb()
            assert "reconnected" in kinds
            subs = [cc["idempotency_key"] for t, cc in b.received if t == "submit"]
            assert subs and set(subs) == {"survive-1"}
            assert len(b.jobs) == 1              # ran exactly once on the new server
        finally:
            b.stop()
    finally:
        c.close()


def test_fetch_result_attaches_to_finished_job(server):
    with make_client(server.endpoint) as c:
        r = c.run_job(PHOTO, deadline_s=10)
    with make_client(server.endpoint) as c2:     # another client, later
        h = c2.fetch_result(r.job_id)
        end = time.monotonic() + 5
        while not h.done and time.monotonic() < end:
            c2.poll(0.05)
        assert h.state == "done" and h.glb == r.glb
        h2 = c2.fetch_result("no-such-job")
        end = time.monotonic() + 5
        while not h2.done and time.monotonic() < end:
            c2.poll(0.05)
        assert h2.state == "failed" and h2.error.code == "NOT_FOUND"


def test_status_blocking(server):
    with make_client(server.endpoint) as c:
        r = c.run_job(PHOTO, deadline_s=10)
        st = c.status(r.job_id, timeout_s=5)
        assert st["state"] == "done" and st["result_available"] is True
        assert c.status("zzz", timeout_s=5)["state"] == "unknown"


def test_corrupt_result_detected():
    s = MiniServer(bad_sha=True)
    s.start()
    try:
        with make_client(s.endpoint) as c:
            with pytest.raises(JobError, match="SHA-256"):
                c.run_job(PHOTO, deadline_s=10)
    finally:
        s.stop()


def test_wrong_key_reported_as_auth(server):
    with make_client(server.endpoint, key=b"w" * 32) as c:
        t = time.monotonic()
        with pytest.raises(JobError) as e:
            c.wait_connected(5)
        assert e.value.code == "AUTH" and "different keys" in e.value.message
        assert time.monotonic() - t < 2
    assert server.auth_failures >= 1
    assert not any(t == "submit" for t, _ in server.received)


def test_insecure_client_refused_by_keyed_server(server):
    c = Client(server.endpoint, insecure=True, config=ClientConfig(heartbeat_s=HB))
    try:
        with pytest.raises(JobError) as e:
            c.wait_connected(5)
        assert e.value.code == "AUTH"
    finally:
        c.close()


def test_local_checks_before_sending(server):
    bomb = bytearray(tiny_png())
    bomb[16:24] = struct.pack(">II", 20000, 20000)
    with make_client(server.endpoint) as c:
        c.wait_connected(5)
        with pytest.raises(ProtocolError) as e:
            c.submit(bytes(bomb))
        assert e.value.code == "BAD_IMAGE"
        with pytest.raises(ProtocolError) as e:
            c.submit(b"GIF89a....")
        assert e.value.code == "BAD_IMAGE"
        c.config.server_limits = Limits(max_part_bytes=len(PHOTO) - 1)
        with pytest.raises(ProtocolError) as e:
            c.submit(PHOTO)
        assert e.value.code == "TOO_LARGE"
        c.config.server_limits = Limits()
        with pytest.raises(ValueError):
            c.submit(PHOTO, rig={"cameras": [{"cam_to_world": [[0]] * 4, "intrinsics": {}}]})
    assert not any(t == "submit" for t, _ in server.received)


def test_client_needs_key_or_explicit_insecure():
    with pytest.raises(ValueError, match="insecure=True"):
        Client("tcp://127.0.0.1:1")


def test_client_answers_server_pings(server):
    with make_client(server.endpoint) as c:
        c.wait_connected(5)
        from gen3dface.protocol.envelope import Message
        # a submit tells the server our routing id; then the (paused) server pings us
        job = c.submit(PHOTO)
        end = time.monotonic() + 5
        while job.job_id is None and time.monotonic() < end:
            c.poll(0.05)
        server.paused.set()
        time.sleep(0.05)
        ping = Message("ping", {}, routing=list(server.jobs[job.job_id]["routing"]))
        server.chan.send(ping)
        got = None
        end = time.monotonic() + 2
        while got is None and time.monotonic() < end:
            if server.chan.readable(0.05):
                m = server.chan.recv()
                if m.msg_type == "pong":
                    got = m
            c.poll(0)
        server.paused.clear()
        assert got is not None and got.parent_id == ping.msg_id


@pytest.mark.parametrize("endpoint,loop", [
    ("tcp://127.0.0.1:5555", True), ("tcp://localhost:1", True), ("tcp://[::1]:5", True),
    ("ipc:///tmp/x", True), ("tcp://0.0.0.0:5555", False), ("tcp://*:5555", False),
    ("tcp://10.0.0.2:5555", False), ("tcp://example.com:1", False)])
def test_is_loopback_endpoint(endpoint, loop):
    assert is_loopback_endpoint(endpoint) is loop


@pytest.mark.parametrize("zero_copy", [False, True])
def test_buffer_types(server, zero_copy):
    with make_client(server.endpoint, zero_copy=zero_copy) as c:
        job = c.submit(PHOTO)
        end = time.monotonic() + 10
        while not job.done and time.monotonic() < end:
            c.poll(0.05)
        assert job.glb == expected_glb()
        assert isinstance(job.glb, memoryview if zero_copy else bytes)
        assert isinstance(job.previews["crop"][1], memoryview if zero_copy else bytes)
        assert isinstance(c.run_job(PHOTO, deadline_s=10).glb, bytes)


def test_quick_restart_detected_by_instance_id():
    """A server back before the liveness window ends: the old socket reconnects by itself and
    the new `instance` id in its pongs makes the client resubmit at once."""
    a = MiniServer(steps=1000, step_s=0.02)
    a.start()
    c = make_client(a.endpoint, job_silence_s=60.0)
    try:
        job = c.submit(PHOTO, idempotency_key="quick-1")
        end = time.monotonic() + 5
        while job.stage is None and time.monotonic() < end:
            c.poll(0.05)
        a.stop()
        b = MiniServer(endpoint=a.endpoint, steps=2)
        b.start()
        try:
            kinds, t0 = [], time.monotonic()
            while not job.done and time.monotonic() - t0 < 10:
                kinds += [(e.kind, e.data.get("restarted")) for e in c.poll(0.05)]
            assert job.state == "done" and time.monotonic() - t0 < 5
            assert ("reconnected", True) in kinds and ("disconnected", None) not in kinds, kinds
            assert [cc["idempotency_key"] for t, cc in b.received if t == "submit"] == ["quick-1"]
        finally:
            b.stop()
    finally:
        c.close()
