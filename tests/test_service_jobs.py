"""Job store (idempotency keys, persistence across restarts, retention), queue and worker,
without sockets."""
from __future__ import annotations

import time

import pytest

from gen3dface.backend.contracts import PipelineError
from gen3dface.backend.service.harness import SyntheticWorkload, expected_result
from gen3dface.backend.service.jobqueue import JobQueue, QueueFull
from gen3dface.backend.service.jobs import JobState, JobStore
from gen3dface.backend.service.worker import Outbox, Worker


def test_same_key_same_job_and_other_request_refused(tmp_path):
    store = JobStore(tmp_path)
    a, how_a = store.submit("k1", "digest-1")
    b, how_b = store.submit("k1", "digest-1")
    c, how_c = store.submit(None, "digest-1")
    assert (how_a, how_b, how_c) == ("new", "existing", "new")
    assert a is b and c.job_id != a.job_id
    with pytest.raises(PipelineError) as e:
        store.submit("k1", "digest-2")
    assert e.value.code == "IDEMPOTENCY_CONFLICT" and e.value.details["job_id"] == a.job_id
    store.close()


def test_records_survive_restart_and_interrupted_job_reruns_under_same_id(tmp_path):
    store = JobStore(tmp_path)
    done, _ = store.submit("done", "d1")
    store.set_state(done, JobState.RUNNING)
    store.store_result(done, b"glb-bytes", {"generator": "x"}, "sha")
    running, _ = store.submit("running", "d2")
    store.set_state(running, JobState.RUNNING)
    # no close(): as after a SIGKILL
    again = JobStore(tmp_path)
    assert again.get(done.job_id).state is JobState.DONE
    assert again.result(done.job_id) == (b"glb-bytes", {"generator": "x"})
    assert again.get(running.job_id).state is JobState.INTERRUPTED
    job, how = again.submit("running", "d2")
    assert how == "rerun" and job.job_id == running.job_id and job.state is JobState.QUEUED
    job2, how2 = again.submit("done", "d1")
    assert how2 == "existing" and job2.state is JobState.DONE
    store.close(), again.close()


def test_torn_journal_line_is_ignored(tmp_path):
    store = JobStore(tmp_path)
    job, _ = store.submit("k", "d")
    with open(tmp_path / "jobs.jsonl", "a") as f:
        f.write('{"job_id": "abc", "sta')
    again = JobStore(tmp_path)
    assert again.get(job.job_id) is not None and len(again.jobs) == 1
    store.close(), again.close()


def test_retention_by_time_and_bytes(tmp_path):
    store = JobStore(tmp_path, keep_s=10.0, keep_bytes=25)
    jobs = []
    for i in range(3):
        j, _ = store.submit(f"k{i}", f"d{i}")
        store.store_result(j, b"x" * 10, {}, "s")
        j.finished_at = 1000.0 + i
        jobs.append(j)
    gone = store.sweep(now=1005.0)            # 30 bytes > 25: the oldest goes
    assert gone == [jobs[0].job_id]
    assert store.result(jobs[1].job_id) is not None
    gone = store.sweep(now=1011.5)             # past 10 s: the second goes, the third stays
    assert gone == [jobs[1].job_id]
    assert store.get(jobs[2].job_id) is not None
    assert store.submit("k0", "other")[1] == "new"   # a forgotten key is free again
    assert not (tmp_path / "results" / f"{jobs[0].job_id}.glb").exists()
    store.close()


def test_nothing_a_client_names_becomes_a_path(tmp_path):
    store = JobStore(tmp_path)
    assert store.get("../../etc/passwd") is None
    assert store.result("../../etc/passwd") is None
    with pytest.raises(ValueError):
        store.results._paths("../x")
    store.close()


def test_queue_is_bounded_and_removable():
    store = JobStore(None)
    q = JobQueue(2)
    a, _ = store.submit(None, "a")
    b, _ = store.submit(None, "b")
    c, _ = store.submit(None, "c")
    q.put(a), q.put(b)
    t0 = time.perf_counter()
    with pytest.raises(QueueFull):
        q.put(c)
    assert time.perf_counter() - t0 < 0.05
    assert q.remove(a.job_id) is a and q.position(b.job_id) == 0
    assert q.take(timeout=0.01) is b and q.take(timeout=0.01) is None


def _run_worker(workload, jobs_with_options):
    store, q, out = JobStore(None), JobQueue(16), Outbox()
    worker = Worker(workload, q, store, out)
    jobs = []
    for image, opts in jobs_with_options:
        job, _ = store.submit(None, image.hex())
        job.image, job.options = image, workload.parse_options(opts)
        q.put(job)
        jobs.append(job)
    worker.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(j.state.finished for j in jobs):
        time.sleep(0.01)
    worker.stop()
    worker.join(2)
    return store, jobs, out.drain(100000)


def test_worker_survives_oom_and_errors_and_runs_the_next_job():
    pytest.importorskip("torch")                 # imported here, not inside the worker's deadline
    w = SyntheticWorkload(steps=4, step_s=0.001, result_bytes=1000)
    store, jobs, events = _run_worker(w, [(b"a", {"fail": "oom"}), (b"b", {"fail": "internal"}),
                                          (b"c", {"fail": "NO_FACE"}), (b"e", {"fail": "cuda_oom"}),
                                          (b"d", {})])
    failed = {e[1].job_id: e[2] for e in events if e[0] == "failed"}
    assert failed == {jobs[0].job_id: "OUT_OF_MEMORY", jobs[1].job_id: "INTERNAL",
                      jobs[2].job_id: "NO_FACE", jobs[3].job_id: "OUT_OF_MEMORY"}
    gpu_msg = [e[3] for e in events if e[0] == "failed" and e[1] is jobs[3]][0]
    assert "GPU" in gpu_msg
    results = [e for e in events if e[0] == "result"]
    assert len(results) == 1 and results[0][2] == expected_result(b"d", 1000)
    assert store.result(jobs[4].job_id)[0] == expected_result(b"d", 1000)
    assert [j.state for j in jobs] == [JobState.FAILED] * 4 + [JobState.DONE]
    progress = [e for e in events if e[0] == "progress" and e[1] is jobs[4]]
    assert len(progress) == 4 and progress[-1][3] == 1.0


def test_out_of_memory_is_recognised():
    import torch

    from gen3dface.backend.service.workload import is_out_of_memory

    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory"))
    assert is_out_of_memory(MemoryError())
    assert is_out_of_memory(RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: "
                                         "can't allocate memory: you tried to allocate 1 bytes"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("out of memory"))    # only allocator error types


def test_a_cancel_during_the_last_step_is_honoured():
    class LastStep(SyntheticWorkload):
        def run(self, image, rig, options, sink, cancel):
            res = super().run(image, rig, options, sink, cancel)
            cancel.cancel()                       # arrives after the last check
            return res

    store, jobs, events = _run_worker(LastStep(steps=2, step_s=0, result_bytes=10), [(b"x", {})])
    assert jobs[0].state is JobState.CANCELLED and store.result(jobs[0].job_id) is None
    assert [e[0] for e in events][-1] == "cancelled"


def test_worker_cancels_a_running_job_quickly():
    w = SyntheticWorkload(steps=1000, step_s=0.01, result_bytes=10)
    store, q, out = JobStore(None), JobQueue(4), Outbox()
    worker = Worker(w, q, store, out)
    job, _ = store.submit(None, "x")
    job.image, job.options = b"x", w.parse_options({})
    q.put(job)
    worker.start()
    while job.state is not JobState.RUNNING:
        time.sleep(0.005)
    t0 = time.perf_counter()
    job.cancel.cancel()
    while not job.state.finished:
        time.sleep(0.002)
    assert time.perf_counter() - t0 < 0.5
    assert job.state is JobState.CANCELLED
    worker.stop()
    worker.join(2)


def test_journal_is_compacted_as_jobs_are_forgotten(tmp_path):
    store = JobStore(tmp_path, keep_s=0.0)
    for i in range(400):
        j, _ = store.submit(f"k{i}", f"d{i}")
        store.store_result(j, b"x", {}, "s")
        j.finished_at = 0.0
    store.sweep(now=10.0)
    lines = (tmp_path / "jobs.jsonl").read_text().splitlines()
    assert not store.jobs and len(lines) < 400       # 1200 lines written, then compacted
    store.close()
    assert not JobStore(tmp_path).jobs
