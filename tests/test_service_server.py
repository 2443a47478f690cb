"""The service over real ZeroMQ sockets on loopback (server in a thread, synthetic workload):
submit/progress/result, idempotency, queue limits, cancel, responsiveness during a job, OOM,
input checks, lost clients."""
from __future__ import annotations

import hashlib
import time

import numpy as np
import pytest

from gen3dface.backend.images import encode_png
from gen3dface.backend.service.harness import (RawClient, ServerThread, SyntheticWorkload,
                                               expected_result, png_bomb)
from gen3dface.protocol import messages
from gen3dface.protocol.cameras import ring_rig

KEY = b"0123456789abcdef0123456789abcdef-test-key"


def photo(seed: int = 0, size: int = 32) -> bytes:
    return encode_png(np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8))


@pytest.fixture
def server():
    w = SyntheticWorkload(steps=20, step_s=0.001, result_bytes=200_000)
    with ServerThread(w, key=KEY, queue_size=2, heartbeat_s=0.1, client_timeout_s=0.3) as st:
        yield st


@pytest.fixture
def client(server):
    c = RawClient(server.endpoint, KEY)
    yield c
    c.close()


def submit(client, image, key, **options):
    client.send(messages.submit(image, "image/png", key, options=options))
    return client.recv_until(("accepted", "error"))[-1]


def test_hello_then_job_with_progress_and_exact_result(client):
    client.send(messages.hello("pytest"))
    caps = client.recv_until(("capabilities",))[-1]
    assert caps.content["pipeline"]["test_harness"] is True
    assert caps.content["limits"]["max_part_bytes"] > 0
    img = photo(1)
    acc = submit(client, img, "job-1")
    assert acc.msg_type == "accepted" and acc.content["state"] == "queued"
    job_id = acc.content["job_id"]
    msgs = client.recv_until(("result", "error"), job_id=job_id)
    progress = [m for m in msgs if m.msg_type == "progress"]
    assert len(progress) >= 20
    assert [p.content["fraction"] for p in progress][-1] == 1.0
    result = msgs[-1]
    assert result.msg_type == "result"
    glb = result.buffers[0]
    assert glb == expected_result(img, 200_000)
    assert result.content["sha256"] == hashlib.sha256(glb).hexdigest()


def test_same_idempotency_key_returns_the_same_job_without_running_again(client, server):
    img = photo(2)
    job_id = submit(client, img, "same").content["job_id"]
    client.recv_until(("result",), job_id=job_id)
    again = submit(client, img, "same")
    assert again.content["job_id"] == job_id and again.content["duplicate"] is True
    assert client.recv_until(("result",))[-1].buffers[0] == expected_result(img, 200_000)
    assert server.server.store.get(job_id).runs == 1
    other = submit(client, photo(3), "same")             # same key, different photo
    assert other.msg_type == "error" and other.content["code"] == "IDEMPOTENCY_CONFLICT"


def test_queue_full_is_answered_at_once(client):
    long = {"steps": 200, "step_s": 0.01}
    ids = [submit(client, photo(10 + i), f"q{i}", **long) for i in range(3)]
    assert [m.msg_type for m in ids] == ["accepted"] * 3     # one running + two waiting
    t0 = time.perf_counter()
    full = submit(client, photo(20), "q-full", **long)
    assert full.msg_type == "error" and full.content["code"] == "QUEUE_FULL"
    assert time.perf_counter() - t0 < 2.0
    for m in ids:
        client.send(messages.job_request("cancel", m.content["job_id"]))


def test_cancel_queued_running_unknown_and_finished(client, server):
    running = submit(client, photo(30), "c-run", steps=1000, step_s=0.01).content["job_id"]
    queued = submit(client, photo(31), "c-queued", steps=1000, step_s=0.01).content["job_id"]
    client.recv_until(("progress",), job_id=running)
    client.send(messages.job_request("cancel", queued))
    reply = client.recv_until(("cancel_reply",))[-1]
    assert reply.content == {**reply.content, "job_id": queued, "state": "cancelled"}
    client.send(messages.job_request("cancel", running))
    msgs = client.recv_until(("error",), job_id=running, timeout_s=5)
    assert msgs[-1].content["code"] == "CANCELLED"
    assert server.server.store.get(running).state.value == "cancelled"
    client.send(messages.job_request("cancel", "0" * 32))          # unknown: no-op
    assert client.recv_until(("cancel_reply",))[-1].content["known"] is False
    done = submit(client, photo(32), "c-done").content["job_id"]
    client.recv_until(("result",), job_id=done)
    client.send(messages.job_request("cancel", done))              # finished: no-op
    assert client.recv_until(("cancel_reply",))[-1].content["state"] == "done"
    assert server.server.store.result(done) is not None


def test_socket_loop_answers_while_a_job_runs(client):
    job_id = submit(client, photo(40), "busy", steps=100, step_s=0.02).content["job_id"]
    client.recv_until(("progress",), job_id=job_id)
    client.send(messages.ping())
    client.send(messages.job_request("status", job_id))
    seen = client.recv_until(("status_reply",), timeout_s=2)
    assert "pong" in [m.msg_type for m in seen]
    assert seen[-1].content["state"] == "running"
    client.send(messages.job_request("cancel", job_id))


def test_out_of_memory_is_reported_and_the_next_job_runs(client):
    oom = submit(client, photo(50), "oom", fail="oom").content["job_id"]
    err = client.recv_until(("error",), job_id=oom)[-1]
    assert err.content["code"] == "OUT_OF_MEMORY"
    nxt = submit(client, photo(51), "after-oom").content["job_id"]
    assert client.recv_until(("result",), job_id=nxt)[-1].buffers[0] == expected_result(photo(51), 200_000)


@pytest.mark.parametrize("case", ["bomb", "not_image", "gif", "nan_rig", "too_many_cameras",
                                  "unknown_type", "bad_key", "fetch_unknown"])
def test_bad_requests_get_coded_errors_and_run_nothing(client, server, case):
    rig = ring_rig(4, resolution=64).to_dict()
    if case == "bomb":
        t0 = time.perf_counter()
        client.send(messages.submit(png_bomb(), "image/png", "bomb"))
        code = "BAD_IMAGE"
    elif case == "not_image":
        client.send(messages.submit(b"hello, not a photo" * 10, "image/png", "x"))
        code = "BAD_IMAGE"
    elif case == "gif":
        client.send(messages.submit(b"GIF89a" + bytes(200), "image/png", "x"))
        code = "BAD_IMAGE"
    elif case == "nan_rig":
        rig["cameras"][0]["cam_to_world"][0][3] = 12345.5
        frames = client.codec.encode(messages.submit(photo(), "image/png", "x", rig=rig))
        frames[3] = frames[3].replace(b"12345.5", b"1e999")   # parses to inf (JSON has no Infinity)
        frames[1] = client.codec.signer.sign(frames[2], frames[3], [hashlib.sha256(frames[4]).digest()])
        client.send_frames(frames)
        code = "BAD_REQUEST"
    elif case == "too_many_cameras":
        d = ring_rig(64, resolution=64).to_dict()
        d["cameras"].append(dict(d["cameras"][0], name="one-too-many"))
        client.send(messages.submit(photo(), "image/png", "x", rig=d))
        code = "BAD_REQUEST"
    elif case == "unknown_type":
        client.send(messages.Message("make_coffee", {}))
        code = "BAD_REQUEST"
    elif case == "bad_key":
        m = messages.submit(photo(), "image/png", "x")
        m.content["idempotency_key"] = "../../etc/passwd"
        client.send(m)
        code = "BAD_REQUEST"
    else:
        client.send(messages.job_request("fetch_result", "f" * 32))
        code = "NOT_FOUND"
    err = client.recv_until(("error",))[-1]
    assert err.content["code"] == code, err.content
    if case == "bomb":
        print(f"bomb refused in {(time.perf_counter() - t0) * 1000:.1f} ms")
    assert server.server.counters["submitted"] == 0


def test_preview_frames_are_forwarded(client):
    job_id = submit(client, photo(60), "pv", previews=2).content["job_id"]
    msgs = client.recv_until(("result",), job_id=job_id)
    previews = [m for m in msgs if m.msg_type == "preview"]
    assert len(previews) == 2 and previews[0].buffers[0].startswith(b"\x89PNG")


@pytest.mark.parametrize("policy", ["cancel", "keep"])
def test_vanished_client_policy(policy):
    w = SyntheticWorkload(steps=60, step_s=0.01, result_bytes=1000)
    with ServerThread(w, key=KEY, heartbeat_s=0.1, client_timeout_s=0.3, on_client_lost=policy) as st:
        c = RawClient(st.endpoint, KEY)
        c.send(messages.submit(photo(70), "image/png", "lost"))
        job_id = c.recv_until(("accepted",))[-1].content["job_id"]
        c.close()                                      # goes silent: no pongs, no pings
        job = st.server.store.get(job_id)
        deadline = time.monotonic() + 5
        while not job.state.finished and time.monotonic() < deadline:
            time.sleep(0.02)
        assert job.state.value == ("cancelled" if policy == "cancel" else "done")
        c2 = RawClient(st.endpoint, KEY)                # a new connection fetches what was kept
        c2.send(messages.job_request("fetch_result", job_id))
        last = c2.recv_until(("result", "error"))[-1]
        if policy == "keep":
            assert last.msg_type == "result" and last.buffers[0] == expected_result(photo(70), 1000)
        else:
            assert last.content["code"] == "CANCELLED"
        c2.close()


def test_two_clients_attached_to_one_job_both_get_its_events(server):
    a, b = RawClient(server.endpoint, KEY), RawClient(server.endpoint, KEY)
    img = photo(80)
    job_id = submit(a, img, "shared", steps=30, step_s=0.005).content["job_id"]
    dup = submit(b, img, "shared", steps=30, step_s=0.005)
    assert dup.content["job_id"] == job_id and dup.content["duplicate"] is True
    for c in (a, b):
        msgs = c.recv_until(("result",), job_id=job_id)
        assert msgs[-1].buffers[0] == expected_result(img, 200_000)
        assert any(m.msg_type == "progress" for m in msgs)
    assert server.server.store.get(job_id).runs == 1
    a.close(), b.close()
