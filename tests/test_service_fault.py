"""The server as a separate process: SIGKILL mid-job, restart, resubmission with the same
idempotency key completes exactly once (job records persist in --state-dir)."""
from __future__ import annotations

import time

import numpy as np

from gen3dface.backend.images import encode_png
from gen3dface.backend.service.harness import HarnessProcess, expected_result, free_tcp_port
from gen3dface.protocol.client import Client, ClientConfig
from gen3dface.protocol.signing import generate_key_file


def test_sigkill_mid_job_then_restart_completes_exactly_once(tmp_path):
    key_file = tmp_path / "key"
    key = generate_key_file(key_file)
    state, completions = tmp_path / "state", tmp_path / "completions.txt"
    port = free_tcp_port()
    image = encode_png(np.random.default_rng(9).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    opts = dict(key_file=key_file, state_dir=state, completions=completions, events=40,
                step_s=0.05, result_mb=1.0, heartbeat_s=0.25)
    first = HarnessProcess(port, **opts).start()
    client = Client(first.endpoint, key=key, config=ClientConfig(heartbeat_s=0.25, backoff_initial_s=0.25,
                                                                 backoff_max_s=0.5))
    try:
        job = client.submit(image, idempotency_key="exactly-once")
        while job.stage is None:                       # running on the first server
            client.poll(0.1)
        first.kill()
        t_kill = time.monotonic()
        events = []
        while "disconnected" not in events and time.monotonic() - t_kill < 10:
            events += [e.kind for e in client.poll(0.1)]
        detected = time.monotonic() - t_kill
        assert "disconnected" in events and detected < 5.0
        with HarnessProcess(port, **opts) as second:   # same port, same state folder
            deadline = time.monotonic() + 30
            while not job.done and time.monotonic() < deadline:
                client.poll(0.1)
            assert job.state == "done", job
            assert job.glb == expected_result(image, 1 << 20)
            with Client(second.endpoint, key=key) as other:   # the same key from another client
                again = other.run_job(image, idempotency_key="exactly-once", deadline_s=30)
            assert again.glb == job.glb and again.job_id == job.job_id
            assert len(completions.read_text().split()) == 1   # ran to completion exactly once
            assert second.proc.poll() is None
    finally:
        client.close()
        first.stop()
