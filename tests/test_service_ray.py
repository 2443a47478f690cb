"""The service on a Ray cluster (backend/service/ray_backend.py): a private local cluster
started by this module (2 CPUs, 200 MB object store, no dashboard) and stopped at its end,
with 2 worker actors on the synthetic workload and on the real offline pipeline. Checks that
nothing of the cluster is left running. Needs `ray` (the [ray] extra); skipped without it."""
from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from gen3dface.backend.images import encode_png  # noqa: E402
from gen3dface.backend.service.harness import (RawClient, ServerThread, SyntheticWorkload,  # noqa: E402
                                               expected_result)
from gen3dface.backend.service.ray_backend import RayBackend, RaySettings  # noqa: E402
from gen3dface.protocol import messages  # noqa: E402

pytestmark = pytest.mark.timeout(240)


def _session_processes(session_name: str) -> list[int]:
    """Pids of live (not zombie) processes whose command line names this Ray session."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmd = (d / "cmdline").read_bytes()
            state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if session_name.encode() in cmd and state != "Z":
            out.append(int(d.name))
    return out


@pytest.fixture(scope="module")
def ray_cluster():
    if ray.is_initialized():
        pytest.skip("Ray is already initialised in this process")
    ray.init(num_cpus=2, object_store_memory=200 << 20, include_dashboard=False,
             log_to_driver=False, configure_logging=False)
    node = ray._private.worker._global_node
    session = os.path.basename(node.get_session_dir_path())
    raylets = [p.process for p in node.all_processes.get("raylet", [])]
    assert _session_processes(session), "the cluster's processes should be visible"
    yield
    ray.shutdown()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (_session_processes(session)
                                           or any(r.poll() is None for r in raylets)):
        time.sleep(0.2)
    assert all(r.poll() is not None for r in raylets), "the raylet is still running"
    assert not _session_processes(session), "processes of the test cluster are still running"


def photo(i: int) -> bytes:
    return encode_png(np.random.default_rng(i).integers(0, 255, (24, 24, 3), dtype=np.uint8))


def synthetic_backend(completions: Path | None = None, workers: int = 2, **kw) -> RayBackend:
    steps, step_s, size = kw.pop("steps", 20), kw.pop("step_s", 0.05), kw.pop("result_bytes", 1 << 16)
    factory = lambda: SyntheticWorkload(steps=steps, step_s=step_s, result_bytes=size,  # noqa: E731
                                        completions=completions)
    settings = RaySettings(address="auto", workers=workers, cpus_per_worker=1.0, **kw)
    parse = SyntheticWorkload(steps=steps, step_s=step_s, result_bytes=size).parse_options
    return RayBackend(factory, parse, settings, queue_size_hint=1)


def _sha(b) -> str:
    return hashlib.sha256(bytes(b)).hexdigest()


def test_two_workers_stream_progress_cancel_and_queue_full_on_cluster_capacity(ray_cluster):
    backend = synthetic_backend()
    with ServerThread(backend, queue_size=1) as st:
        c = RawClient(st.endpoint, None)
        c.send(messages.hello("pytest"))
        caps = c.recv_until(("capabilities",))[-1].content
        cluster = caps["cluster"]
        assert cluster["backend"] == "ray" and cluster["workers"] == 2 and cluster["nodes"] == 1
        assert [d["state"] for d in cluster["devices"]] == ["ready", "ready"]
        assert all(d["device"] == "cpu" and d["node"] for d in cluster["devices"])
        assert cluster["capacity"] == 3 and caps["pipeline"]["test_harness"] is True

        # two jobs run at once, one on each worker, streaming events while they run
        long = {"steps": 40, "step_s": 0.05, "previews": 2}
        subs = [messages.submit(photo(i), "image/png", f"k{i}", options=long) for i in (1, 2)]
        seen: list = []
        for n, m in enumerate(subs, 1):      # one at a time: the queue holds 1 until one starts
            c.send(m)
            started: set = set()
            while len(started) < n:
                seen += c.recv_until(("progress",), timeout_s=30)
                started = {m.content["job_id"] for m in seen
                           if m.msg_type == "progress" and m.content["message"] == "started"}
        job1, job2 = (next(m.content["job_id"] for m in seen if m.msg_type == "accepted"
                           and m.parent_id == s.msg_id) for s in subs)
        c.send(messages.job_request("status", None))
        st_reply = c.recv_until(("status_reply",))[-1]
        assert st_reply.content["server"]["running"] == 2

        # the cluster is full at 2 running + 1 waiting: the 4th is QUEUE_FULL at once
        m3 = messages.submit(photo(3), "image/png", "k3", options=long)
        c.send(m3)
        acc3 = c.recv_until(("accepted",), timeout_s=10)[-1]
        assert acc3.parent_id == m3.msg_id and acc3.content["queue_position"] == 0
        job3 = acc3.content["job_id"]
        m4 = messages.submit(photo(4), "image/png", "k4", options=long)
        c.send(m4)
        full = [m for m in c.recv_until(("error",), timeout_s=10) if m.msg_type == "error"][-1]
        assert full.content["code"] == "QUEUE_FULL" and full.parent_id == m4.msg_id

        # cancel: the queued job at once, the running one at its next check (on the actor)
        c.send(messages.job_request("cancel", job3))
        reply = c.recv_until(("cancel_reply",), timeout_s=10)[-1]
        assert reply.content["state"] == "cancelled"
        cancel_msg = messages.job_request("cancel", job2)
        c.send(cancel_msg)
        msgs = c.recv_until(("result",), timeout_s=60, job_id=job1)
        msgs += [] if any(m.msg_type == "error" and m.content.get("job_id") == job2 for m in msgs) \
            else c.recv_until(("error",), timeout_s=30, job_id=job2)
        c.close()
    allm = seen + msgs
    ends2 = [m for m in allm if m.msg_type == "error" and m.content.get("job_id") == job2]
    assert [m.content["code"] for m in ends2] == ["CANCELLED"]
    assert any(m.msg_type == "cancel_reply" and m.content.get("cancelling") for m in msgs)
    assert any(m.msg_type == "error" and m.content.get("job_id") == job3
               and m.content["code"] == "CANCELLED" for m in msgs)
    # job 1: every progress step and both previews came before its result, which is right
    ev1 = [m for m in allm if m.content.get("job_id") == job1]
    steps = [m for m in ev1 if m.msg_type == "progress" and m.content["message"].startswith("synthetic step")]
    assert len(steps) == 40 and [m.msg_type for m in ev1].count("preview") == 2
    assert ev1[-1].msg_type == "result"
    assert ev1[-1].buffers[0] == expected_result(photo(1), 1 << 16)
    assert [m.content["fraction"] for m in steps] == sorted(m.content["fraction"] for m in steps)
    # streamed, not batched at the end: some of job 2's events came in between job 1's
    order = [m.content.get("job_id") for m in allm if m.msg_type == "progress"]
    first2, last1 = order.index(job2), len(order) - 1 - order[::-1].index(job1)
    assert first2 < last1


def test_worker_killed_mid_job_is_reported_and_retried_once_on_another(ray_cluster, tmp_path):
    completions = tmp_path / "completions.txt"
    backend = synthetic_backend(completions, steps=60, step_s=0.05)
    with ServerThread(backend, queue_size=4) as st:
        pool = st.server.worker
        c = RawClient(st.endpoint, None)
        c.send(messages.submit(photo(7), "image/png", "kill-me"))
        msgs = c.recv_until(("progress",), timeout_s=30)
        job_id = msgs[0].content["job_id"]
        msgs += c.recv_until(("progress",), timeout_s=30)    # running on some actor
        victim = next(d for d in pool.dispatchers if d.current is not None and d.current.job_id == job_id)
        victim_actor = victim.actor
        t_kill = time.monotonic()
        ray.kill(victim_actor)
        got = []
        while not any(m.msg_type == "progress" and "lost" in m.content["message"] for m in got):
            got += c.recv_until(("progress",), timeout_s=10, job_id=job_id)
        report_s = time.monotonic() - t_kill
        got += c.recv_until(("result", "error"), timeout_s=60, job_id=job_id)
        c.send(messages.job_request("status", job_id))
        status = c.recv_until(("status_reply",))[-1].content

        # lost twice: the retry is spent, the job ends INTERRUPTED (reason worker_lost)
        c.send(messages.submit(photo(8), "image/png", "kill-me-twice"))
        m2 = c.recv_until(("progress",), timeout_s=30)
        job2 = m2[0].content["job_id"]
        for _ in range(2):
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                d = next((d for d in pool.dispatchers if d.current is not None
                          and d.current.job_id == job2 and d.actor is not None), None)
                if d is not None and d.current.stage not in ("", "queue"):
                    break
                m2 += c.recv_until(("progress", "error", "result"), timeout_s=30, job_id=job2)
            ray.kill(d.actor)
            m2 += c.recv_until(("progress", "error"), timeout_s=10, job_id=job2)
        m2 += [] if m2[-1].msg_type == "error" else c.recv_until(("error",), timeout_s=30, job_id=job2)
        c.close()
    print(f"worker loss reported after {report_s:.2f} s")
    lost = next(m for m in got if m.msg_type == "progress" and "lost" in m.content["message"])
    assert "retrying it on another worker" in lost.content["message"]
    assert "killed" in lost.content["message"]
    assert got[-1].msg_type == "result", got[-1].content
    assert got[-1].buffers[0] == expected_result(photo(7), 1 << 16)
    assert status["state"] == "done" and status["runs"] == 2
    # exactly once: the killed run never completed, the retry did, one result was kept
    assert completions.read_text().split() == [_sha(photo(7))]
    end = m2[-1]
    assert end.msg_type == "error" and end.content["code"] == "INTERRUPTED", end.content
    assert end.content["details"]["reason"] == "worker_lost"
    assert "worker" in end.content["message"] and "idempotency_key" in end.content["message"]
    assert sum(1 for m in m2 if m.msg_type == "progress" and "retrying" in m.content["message"]) == 1


def test_shutdown_interrupts_running_jobs_on_the_cluster(ray_cluster):
    backend = synthetic_backend(steps=2000, step_s=0.01)
    st = ServerThread(backend).__enter__()
    c = RawClient(st.endpoint, None)
    c.send(messages.submit(photo(11), "image/png", "a"))
    c.send(messages.submit(photo(12), "image/png", "b"))
    seen = []
    while sum(1 for m in seen if m.msg_type == "progress" and m.content["message"] == "started") < 2:
        seen += c.recv_until(("progress",), timeout_s=30)
    st.__exit__(None, None, None)
    ends = []
    while len(ends) < 2:
        m = c.recv(10)
        assert m is not None, "each job's client must hear of the shutdown"
        if m.msg_type == "error":
            ends.append(m)
    c.close()
    assert {m.content["code"] for m in ends} == {"INTERRUPTED"}
    assert {m.content["details"]["reason"] for m in ends} == {"server_shutdown"}
    assert not backend.pool.is_alive()


@pytest.mark.slow
def test_real_offline_pipeline_on_two_workers(ray_cluster, data_dir, ict_npz):
    from gen3dface.backend.pipeline.pipeline import JobOptions
    from gen3dface.backend.service.workload import head_pipeline_factory

    faces = sorted(p for p in (data_dir / "faces").glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if len(faces) < 2:
        pytest.skip("needs two portraits in the shared data's faces/")
    backend = RayBackend(head_pipeline_factory(data_dir, "cpu"), JobOptions.from_dict,
                         RaySettings(address="auto", workers=2, start_timeout_s=300))
    opts = {"generator": "offline", "quality": "draft", "texture_size": 512, "output_kind": "rigged"}
    with ServerThread(backend, queue_size=2) as st:
        c = RawClient(st.endpoint, None)
        c.send(messages.hello("pytest"))
        caps = c.recv_until(("capabilities",))[-1].content
        assert caps["cluster"]["workers"] == 2
        assert caps["pipeline"]["head_model"]["name"] == "ict_facekit"
        media = {".png": "image/png"}
        for i, f in enumerate(faces[:2]):
            c.send(messages.submit(f.read_bytes(), media.get(f.suffix.lower(), "image/jpeg"), f"real{i}",
                                   options=opts))
        results, msgs = {}, []
        while len(results) < 2:
            batch = c.recv_until(("result", "error"), timeout_s=220)
            msgs += batch
            end = batch[-1]
            assert end.msg_type == "result", end.content
            results[end.content["job_id"]] = end
        c.close()
    for job_id, res in results.items():
        stages = {m.content["stage"] for m in msgs if m.msg_type == "progress"
                  and m.content["job_id"] == job_id}
        assert {"decode", "face", "fit", "export"} <= stages
        glb = bytes(res.buffers[0])
        assert glb[:4] == b"glTF" and res.content["sha256"] == _sha(glb)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "gen3dface.backend.cli", "serve", "--insecure",
                           "--ephemeral", "--bind", f"tcp://127.0.0.1:{_free_port()}", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_serve_exits_4_with_a_clear_error_when_no_cluster_answers():
    """Nothing listens: refused at once. A port that accepts but never speaks Ray: the
    bounded connect timeout, not a hang. Neither starts a cluster."""
    r = _serve("--ray", f"127.0.0.1:{_free_port()}")
    assert r.returncode == 4, r.stderr
    assert "no Ray cluster answers at 127.0.0.1:" in r.stderr and "ray start --head" in r.stderr

    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    stop = threading.Event()

    def accept_and_hold():
        held = []
        lsock.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(lsock.accept()[0])
            except OSError:
                pass
        for s in held:
            s.close()

    t = threading.Thread(target=accept_and_hold, daemon=True)
    t.start()
    try:
        r = _serve("--ray", f"127.0.0.1:{lsock.getsockname()[1]}", "--ray-connect-timeout", "3")
    finally:
        stop.set()
        t.join(5)
        lsock.close()
    assert r.returncode == 4, r.stderr
    assert "did not accept this server within 3 s" in r.stderr


def test_worker_gone_silent_is_lost_after_the_liveness_window_and_retried(ray_cluster, tmp_path):
    """A node that vanishes (power, network) answers nothing and Ray may take long to notice:
    a worker process stopped with SIGSTOP stands in for it. The liveness ping declares it lost,
    the job runs again on the other worker and completes once."""
    import signal

    completions = tmp_path / "completions.txt"
    backend = synthetic_backend(completions, steps=60, step_s=0.05)   # liveness_s 3 s
    frozen = None
    try:
        with ServerThread(backend, queue_size=4) as st:
            pool = st.server.worker
            c = RawClient(st.endpoint, None)
            c.send(messages.submit(photo(21), "image/png", "freeze-me"))
            msgs = c.recv_until(("progress",), timeout_s=30)
            job_id = msgs[0].content["job_id"]
            msgs += c.recv_until(("progress",), timeout_s=30)
            victim = next(d for d in pool.dispatchers
                          if d.current is not None and d.current.job_id == job_id)
            frozen = victim.info["pid"]
            os.kill(frozen, signal.SIGSTOP)
            t0 = time.monotonic()
            got = []
            while not any(m.msg_type == "progress" and "lost" in m.content["message"] for m in got):
                got += c.recv_until(("progress",), timeout_s=20, job_id=job_id)
            report_s = time.monotonic() - t0
            got += c.recv_until(("result", "error"), timeout_s=60, job_id=job_id)
            c.close()
    finally:
        if frozen is not None:
            try:
                os.kill(frozen, signal.SIGKILL)
            except ProcessLookupError:
                pass
    print(f"silent worker reported after {report_s:.2f} s")
    lost = next(m for m in got if m.msg_type == "progress" and "lost" in m.content["message"])
    assert "liveness" in lost.content["message"] and "retrying" in lost.content["message"]
    assert got[-1].msg_type == "result" and got[-1].buffers[0] == expected_result(photo(21), 1 << 16)
    assert completions.read_text().split() == [_sha(photo(21))]
