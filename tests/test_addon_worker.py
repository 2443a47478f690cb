"""The add-on's network worker against a real service (the service's synthetic test workload,
served from a thread on loopback; no bpy)."""
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gen3dface.blender_addon.core.batch import JobError
from gen3dface.blender_addon.core.messages import UNREACHABLE, user_error
from gen3dface.blender_addon.core.settings import ConnectionSettings
from gen3dface.blender_addon.core.worker import JobRequest, JobWorker, fetch_capabilities, run_job

harness = pytest.importorskip("gen3dface.backend.service.harness")
from gen3dface.protocol import signing  # noqa: E402


def photo() -> bytes:
    from gen3dface.blender_addon.core.photo import encode_png
    import numpy as np
    return encode_png(np.full((32, 32, 3), 200, np.uint8))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def keyed(tmp_path):
    key_file = tmp_path / "key"
    key = signing.generate_key_file(key_file)
    return key, str(key_file)


def drain(worker, timeout=20.0):
    events, end = [], time.monotonic() + timeout
    while time.monotonic() < end:
        ev = worker.next_event()
        if ev is None:
            if not worker.is_alive() and worker.next_event(peek=True) is None:
                break
            time.sleep(0.01)
            continue
        events.append(ev)
        if ev[0] in ("result", "error", "cancelled"):
            break
    return events


def test_worker_happy_path_writes_the_result_file(tmp_path, keyed):
    key, key_file = keyed
    with harness.ServerThread(key=key) as st:
        conn = ConnectionSettings(st.endpoint, key_file, 3.0, 30.0)
        ok, lines = fetch_capabilities(conn)
        assert ok and "synthetic-test-harness" in " ".join(lines)
        data = photo()
        req = JobRequest(data, "image/png", "p.png", None,
                         {"steps": 10, "result_bytes": 300_000, "previews": 2})
        w = JobWorker(conn, req, tmp_path / "out")
        w.start()
        events = drain(w)
    kinds = [e[0] for e in events]
    assert kinds[0] == "accepted" and kinds[-1] == "result"
    assert kinds.count("preview") == 2
    assert [e[1] for e in events if e[0] == "progress"][-1] == "export"
    path = Path(events[-1][1])
    assert path.read_bytes() == harness.expected_result(data, 300_000)
    assert events[-1][2]["generator"] == "synthetic-test-harness"


def test_worker_cancel_mid_job(tmp_path, keyed):
    key, key_file = keyed
    with harness.ServerThread(key=key) as st:
        conn = ConnectionSettings(st.endpoint, key_file, 3.0, 30.0)
        w = JobWorker(conn, JobRequest(photo(), "image/png", "p.png", None,
                                       {"steps": 200, "step_s": 0.02}), tmp_path)
        w.start()
        seen = []
        while not any(e[0] == "progress" for e in seen):
            ev = w.next_event()
            if ev:
                seen.append(ev)
            time.sleep(0.01)
        t0 = time.monotonic()
        w.cancel()
        events = drain(w, 10)
        assert events[-1] == ("cancelled",)
        assert time.monotonic() - t0 < 3.0


def test_backend_error_message_reaches_the_panel(tmp_path, keyed):
    key, key_file = keyed
    with harness.ServerThread(key=key) as st:
        conn = ConnectionSettings(st.endpoint, key_file, 3.0, 30.0)
        w = JobWorker(conn, JobRequest(photo(), "image/png", "p.png", None,
                                       {"steps": 4, "fail": "NO_FACE"}), tmp_path)
        w.start()
        events = drain(w)
    assert events[-1] == ("error", "NO_FACE", "synthetic failure")


def test_no_backend_is_a_clear_error_within_the_connect_timeout(tmp_path):
    conn = ConnectionSettings(f"tcp://127.0.0.1:{free_port()}", "", 2.0, 30.0)
    t0 = time.monotonic()
    w = JobWorker(conn, JobRequest(photo(), "image/png", "p.png", None, {}), tmp_path)
    w.start()
    events = drain(w, 10)
    assert time.monotonic() - t0 < 5.0
    assert events[-1][0:2] == ("error", UNREACHABLE)
    assert "No backend answered" in events[-1][2]


def test_wrong_key_is_auth(tmp_path, keyed):
    key, _ = keyed
    other = tmp_path / "other.key"
    signing.generate_key_file(other)
    with harness.ServerThread(key=key) as st:
        ok, lines = fetch_capabilities(ConnectionSettings(st.endpoint, str(other), 2.0, 10.0))
    assert not ok
    assert "key" in " ".join(lines).lower()


def test_blocking_run_job_for_batch(keyed):
    key, key_file = keyed
    data = photo()
    with harness.ServerThread(key=key) as st:
        conn = ConnectionSettings(st.endpoint, key_file, 3.0, 30.0)
        out = run_job(conn, JobRequest(data, "image/png", "p.png", None,
                                       {"steps": 3, "result_bytes": 1000}))
        assert out.glb == harness.expected_result(data, 1000)
        with pytest.raises(JobError) as e:
            run_job(conn, JobRequest(data, "image/png", "p.png", None,
                                     {"steps": 3, "fail": "FACE_TOO_SMALL"}))
        assert e.value.code == "FACE_TOO_SMALL"
        with pytest.raises(JobError) as e:
            run_job(ConnectionSettings(st.endpoint, key_file, 3.0, 0.3),
                    JobRequest(data, "image/png", "p.png", None, {"steps": 100, "step_s": 0.05}))
        assert e.value.code == "TIMEOUT"


def wait_progress(w):
    seen = []
    while not any(e[0] == "progress" for e in seen):
        ev = w.next_event()
        if ev:
            seen.append(ev)
        time.sleep(0.01)


def test_backend_stopped_mid_job_is_reported_not_silently_cancelled(tmp_path, keyed):
    key, key_file = keyed
    st = harness.ServerThread(key=key).__enter__()
    try:
        conn = ConnectionSettings(st.endpoint, key_file, 2.0, 60.0)
        w = JobWorker(conn, JobRequest(photo(), "image/png", "p.png", None,
                                       {"steps": 1000, "step_s": 0.02}), tmp_path)
        w.start()
        wait_progress(w)
    finally:
        st.__exit__(None, None, None)          # graceful stop: the server cancels its jobs
    events = drain(w, 20)
    assert events[-1][0:2] == ("error", "INTERRUPTED")
    assert events[-1][2] == "The backend was stopped while the job ran"
    text = user_error(events[-1][1], events[-1][2]).text
    assert text == "The backend was stopped while the job ran. Start it again and press Generate."


def test_backend_killed_mid_job_is_a_clear_error(tmp_path, keyed):
    key, key_file = keyed
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gen3dface.backend.service.harness",
                             "--bind", f"tcp://127.0.0.1:{port}", "--key-file", key_file],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        conn = ConnectionSettings(f"tcp://127.0.0.1:{port}", key_file, 2.0, 60.0)
        end = time.monotonic() + 30
        while not fetch_capabilities(conn)[0]:          # the subprocess is starting
            assert time.monotonic() < end and proc.poll() is None
        w = JobWorker(conn, JobRequest(photo(), "image/png", "p.png", None,
                                       {"steps": 2000, "step_s": 0.02}), tmp_path)
        w.start()
        wait_progress(w)
        proc.kill()                            # no goodbye: the process just vanishes
        t0 = time.monotonic()
        events = drain(w, 40)
    finally:
        proc.kill()
        proc.wait()
    assert events[-1][0:2] == ("error", "DISCONNECTED")
    assert "stopped answering" in events[-1][2]
    # 3 missed heartbeats (3 s) + the give-up time (the connect timeout, 2 s here)
    assert time.monotonic() - t0 < 10.0
