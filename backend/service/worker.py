"""The worker thread: takes jobs from the queue, runs the workload, reports through an outbox.

Why a thread and not a process: torch, numpy, PIL and zlib release the GIL in their heavy
calls, so the socket loop in the main thread keeps answering pings, status, cancel and new
submits while a job runs (the tests measure this); results (tens of MB) need no copy between
processes; and a CUDA context lives in one process. What a thread cannot do is kill a stage
that never returns: stages check their CancelToken between steps, which bounds cancellation
by the longest step. A job that crashes the interpreter (a segfault in native code) takes the
server down; the job journal (jobs.py) makes the client's resubmission after a restart safe.

Events (tuples) go into `Outbox`; the socket loop drains it after a wake-up:
    ("started", job)                       ("progress", job, stage, fraction, message)
    ("preview", job, name, png_bytes)      ("result", job, glb_bytes, sidecar_dict)
    ("failed", job, code, message, details_or_None)                   ("cancelled", job)

A job cancelled because the server is stopping (`stop()`) is not CANCELLED but INTERRUPTED
(reason "server_shutdown"): its client did not ask for it, and a resubmission with the same
idempotency key after the restart runs it again.
"""
from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import time
from typing import Callable

from ..contracts import JobCancelled, PipelineError
from .jobqueue import JobQueue
from .jobs import INTERRUPTED_MESSAGES, Job, JobState, JobStore
from .workload import Workload, free_memory, is_out_of_memory

log = logging.getLogger("gen3dface.service")

MAX_PREVIEW_BYTES = 8 << 20


def _plain(details: dict | None) -> dict | None:
    """A PipelineError's details as plain JSON values (numpy scalars become numbers), or None."""
    if not details:
        return None
    try:
        return json.loads(json.dumps(details, default=lambda o: o.item() if hasattr(o, "item")
                                     else str(o)))
    except (TypeError, ValueError):
        return None


class Outbox:
    """Thread-safe event list plus a wake-up callback (the loop's inproc socket)."""

    def __init__(self, wake: Callable[[], None] = lambda: None):
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self.wake = wake

    def put(self, *event) -> None:
        self._q.put(event)
        self.wake()

    def drain(self, limit: int = 1000) -> list[tuple]:
        out = []
        while len(out) < limit:
            try:
                out.append(self._q.get_nowait())
            except queue.Empty:
                break
        return out


class RetryElsewhere(Exception):
    """Raised by a workload whose executor was lost before the job ended (the Ray backend's
    worker actor or its node died): the job goes back to the head of the queue (state QUEUED
    again) and its clients get a `progress` event with this message, not a terminal error."""


class _JobSink:
    def __init__(self, job: Job, outbox: Outbox):
        self.job, self.outbox = job, outbox

    def progress(self, stage: str, fraction: float, message: str = "") -> None:
        fraction = min(1.0, max(0.0, float(fraction)))
        self.job.stage, self.job.fraction = str(stage), fraction
        self.outbox.put("progress", self.job, str(stage), fraction, str(message)[:500])

    def preview(self, name: str, png: bytes) -> None:
        if isinstance(png, (bytes, bytearray)) and len(png) <= MAX_PREVIEW_BYTES:
            self.outbox.put("preview", self.job, str(name)[:100], bytes(png))


class Worker(threading.Thread):
    def __init__(self, workload: Workload, jobs: JobQueue, store: JobStore, outbox: Outbox):
        super().__init__(name="gen3dface-worker", daemon=True)
        self.workload, self.jobs, self.store, self.outbox = workload, jobs, store, outbox
        self.current: Job | None = None
        self._stop_event = threading.Event()

    def running_jobs(self) -> list[Job]:
        job = self.current
        return [job] if job is not None else []

    def stop(self) -> None:
        self._stop_event.set()
        self.jobs.close()
        job = self.current
        if job is not None:
            if job.cancel_reason is None:
                job.cancel_reason = "server_shutdown"
            job.cancel.cancel()

    def run(self) -> None:
        while not self._stop_event.is_set():
            job = self.jobs.take(timeout=0.5)
            if job is None:
                continue
            self.current = job
            if self._stop_event.is_set():          # taken just as the server began to stop
                job.cancel_reason = job.cancel_reason or "server_shutdown"
                job.cancel.cancel()
            try:
                self.run_job(job)
            finally:
                self.current = None

    def _interrupted(self, job: Job) -> None:
        details = {"reason": "server_shutdown"}
        message = INTERRUPTED_MESSAGES["server_shutdown"]
        self.store.set_state(job, JobState.INTERRUPTED, "INTERRUPTED", message, details)
        self.outbox.put("failed", job, "INTERRUPTED", message, details)

    def run_job(self, job: Job) -> None:
        if job.cancel.cancelled:
            if job.cancel_reason == "server_shutdown":
                self._interrupted(job)
                return
            self.store.set_state(job, JobState.CANCELLED, "CANCELLED", "cancelled before it started")
            self.outbox.put("cancelled", job)
            return
        self.store.set_state(job, JobState.RUNNING)
        self.outbox.put("started", job)
        t0 = time.perf_counter()
        outcome: tuple = ()
        try:
            result = self.workload.run(job.image, job.rig, job.options, _JobSink(job, self.outbox),
                                       job.cancel)
            job.cancel.raise_if_cancelled()    # cancelled during the last step: honour it
            glb, sidecar = bytes(result.glb), dict(result.sidecar)
            del result
            sha = hashlib.sha256(glb).hexdigest()
            self.store.store_result(job, glb, sidecar, sha)
            outcome = ("result", job, glb, sidecar)
        except JobCancelled:
            if job.cancel_reason == "server_shutdown":
                outcome = ("failed", job, "INTERRUPTED", INTERRUPTED_MESSAGES["server_shutdown"],
                           {"reason": "server_shutdown"})
            else:
                outcome = ("cancelled", job)
        except RetryElsewhere as e:
            outcome = ("retry", job, str(e))
        except PipelineError as e:
            outcome = ("failed", job, e.code, e.message, _plain(e.details))
        except BaseException as e:                     # noqa: BLE001 - the server must survive
            if is_out_of_memory(e):
                kind = "GPU" if "cuda" in str(e).lower() or type(e).__name__ == "OutOfMemoryError" else "host"
                outcome = ("failed", job, "OUT_OF_MEMORY",
                           f"the job ran out of {kind} memory; try a smaller texture size or "
                           "draft quality, or run fewer jobs at once", None)
            elif isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            else:
                log.exception("job %s failed", job.job_id)
                outcome = ("failed", job, "INTERNAL", f"internal error ({type(e).__name__}); "
                           "see the server log", None)
            e.__traceback__ = None                     # drop the frames that hold big tensors
            del e
            free_memory()
        if outcome[0] == "retry":
            log.warning("job %s goes back to the queue: %s", job.job_id, outcome[2])
            self.store.set_state(job, JobState.QUEUED)
            job.stage, job.fraction = "queue", 0.0
            self.outbox.put("progress", job, "queue", 0.0, outcome[2][:500])
            self.jobs.put_front(job)
            return
        if outcome[0] == "cancelled":
            self.store.set_state(job, JobState.CANCELLED, "CANCELLED", "cancelled by request")
        elif outcome[0] == "failed" and outcome[2] == "INTERRUPTED":
            self.store.set_state(job, JobState.INTERRUPTED, outcome[2], outcome[3], outcome[4])
        elif outcome[0] == "failed":
            self.store.set_state(job, JobState.FAILED, outcome[2], outcome[3], outcome[4])
        log.info("job %s %s in %.2f s", job.job_id, outcome[0], time.perf_counter() - t0)
        self.outbox.put(*outcome)
