"""Servers that stop: a graceful stop ends its jobs with error INTERRUPTED (reason
server_shutdown, not CANCELLED), a killed server's jobs are INTERRUPTED (server_restart) after
it restarts, and in both cases the job's idempotency key runs it again under the same job id.
A server restarted faster than the client's liveness window is noticed through its new
`instance` id, and the client's automatic resubmission completes the job exactly once."""
from __future__ import annotations

import hashlib
import time

import numpy as np

from gen3dface.backend.images import encode_png
from gen3dface.backend.service.harness import (HarnessProcess, ServerThread, SyntheticWorkload,
                                               expected_result, free_tcp_port)
from gen3dface.protocol.client import Client, ClientConfig
from gen3dface.protocol.signing import generate_key_file

KEY = b"0123456789abcdef0123456789abcdef-restart-key"


def photo(seed: int) -> bytes:
    return encode_png(np.random.default_rng(seed).integers(0, 255, (32, 32, 3), dtype=np.uint8))


def poll_until(client, cond, timeout_s=10.0) -> list:
    events, end = [], time.monotonic() + timeout_s
    while not cond() and time.monotonic() < end:
        events += client.poll(0.05)
    assert cond(), events
    return events


def test_graceful_stop_interrupts_jobs_and_their_keys_run_them_again(tmp_path):
    state = tmp_path / "state"
    slow = SyntheticWorkload(steps=500, step_s=0.01, result_bytes=1000)
    st = ServerThread(slow, key=KEY, queue_size=4, heartbeat_s=0.2, client_timeout_s=5.0,
                      state_dir=state).__enter__()
    c = Client(st.endpoint, key=KEY, config=ClientConfig(heartbeat_s=0.2))
    try:
        a = c.submit(photo(1), idempotency_key="run-a")
        b = c.submit(photo(2), idempotency_key="run-b")
        poll_until(c, lambda: a.stage not in (None, "queue") and b.job_id is not None)
        t0 = time.monotonic()
        st.__exit__(None, None, None)                  # SIGTERM / Ctrl-C do this
        events = poll_until(c, lambda: a.done and b.done, 5.0)
        assert time.monotonic() - t0 < 5.0
    finally:
        c.close()
    ends = {e.job.idempotency_key: e for e in events if e.job is not None and e.kind == "error"}
    for h in (a, b):                       # running and queued: both told, neither "cancelled"
        assert h.state == "failed" and h.error.code == "INTERRUPTED", h
        assert ends[h.idempotency_key].data["details"] == {"reason": "server_shutdown"}
        assert "was stopped" in h.error.message

    with ServerThread(SyntheticWorkload(steps=3, step_s=0.0, result_bytes=1000), key=KEY,
                      state_dir=state) as st2, Client(st2.endpoint, key=KEY) as c2:
        c2.wait_connected(10)
        sa, sb = c2.status(a.job_id), c2.status(b.job_id)
        assert sa["state"] == sb["state"] == "failed"
        assert sa["error"]["code"] == "INTERRUPTED"
        assert sa["error"]["details"] == {"reason": "server_shutdown"}
        assert (sa["runs"], sb["runs"]) == (1, 0) and sa["sha256"] is None
        accepted = []
        res = c2.run_job(photo(1), idempotency_key="run-a", deadline_s=30,
                         on_event=lambda e: accepted.append(e.data) if e.kind == "accepted"
                         else None)
        assert res.job_id == a.job_id and res.glb == expected_result(photo(1), 1000)
        assert accepted and accepted[0]["rerun"] is True and accepted[0]["duplicate"] is False
        after = c2.status(a.job_id)
        assert after["state"] == "done" and after["runs"] == 2 and after["error"] is None
        assert after["sha256"] == hashlib.sha256(res.glb).hexdigest()


def test_quick_restart_is_noticed_by_instance_and_the_job_completes_once(tmp_path):
    key_file = tmp_path / "key"
    key = generate_key_file(key_file)
    state, completions = tmp_path / "state", tmp_path / "completions.txt"
    port = free_tcp_port()
    image = photo(7)
    opts = dict(key_file=key_file, state_dir=state, completions=completions, events=40,
                step_s=0.05, result_mb=0.1)
    first = HarnessProcess(port, **opts).start()
    # a liveness window (40 beats) far longer than the restart: the socket never "drops"
    client = Client(first.endpoint, key=key, config=ClientConfig(heartbeat_s=0.25,
                                                                 liveness_beats=40))
    try:
        job = client.submit(image, idempotency_key="quick-restart")
        poll_until(client, lambda: job.stage not in (None, "queue"), 30)
        first_instance = client._server_instance
        first.kill()
        with HarnessProcess(port, **opts) as second:   # same port and state folder
            with Client(second.endpoint, key=key) as other:
                other.wait_connected(10)
                st = other.status(job.job_id)          # before the client resubmits
                assert st["state"] == "failed" and st["runs"] == 1
                assert st["error"]["code"] == "INTERRUPTED"
                assert st["error"]["details"] == {"reason": "server_restart"}
            kinds = []
            events = poll_until(client, lambda: job.done, 30)
            kinds = [(e.kind, e.data.get("restarted")) for e in events]
            assert job.state == "done", job
            assert ("reconnected", True) in kinds and ("disconnected", None) not in kinds, kinds
            assert client._server_instance not in (None, first_instance)
            assert any(e.kind == "accepted" and e.data.get("rerun") for e in events)
            assert job.glb == expected_result(image, int(0.1 * (1 << 20)))
            assert len(completions.read_text().split()) == 1   # ran to completion once
    finally:
        client.close()
        first.stop()
