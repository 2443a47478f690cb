"""Job records, idempotency keys and kept results.

A job is created by a SUBMIT and identified by a server-made `job_id` (32 hex digits). The
client may give an `idempotency_key` (any short string): a second submit with the same key
returns the same job instead of a new one, also after the server restarted, so a client that
lost its connection can resubmit safely and the work is done once.

Persistence (when the store has a state folder):
    <state>/jobs.jsonl       one JSON object per line, a full snapshot of a job record after
                             each state change; the last line of a job wins; rewritten
                             (compacted) at start-up.
    <state>/results/<job_id>.glb, <job_id>.json
                             the result of a finished job, kept `keep_results_s` seconds.
Lines are written with one write() each and flushed (they survive a SIGKILL of the server;
they are not fsync'ed, so a power cut may lose the last ones). Paths are only ever made from
job ids this module generated and checked against JOB_ID_RE; nothing a client sends becomes a
path. A job that was queued or running when the server died is loaded as INTERRUPTED: it has
no result, and a resubmission with its key runs it again under the same job id. A graceful
stop marks its queued and running jobs INTERRUPTED too (reason "server_shutdown"). On the wire
an interrupted job is state `failed` with error code INTERRUPTED and details {"reason": ...}
(protocol/SPEC.md 5.8, 5.13).
"""
from __future__ import annotations

import collections
import enum
import json
import mmap
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...protocol.signing import SHA256, buffer_digest, supported_digests
from ..contracts import CancelToken, PipelineError

JOB_ID_RE = re.compile(r"^[0-9a-f]{32}$")
MAX_IDEMPOTENCY_KEY = 200

# Why a job was interrupted (error code INTERRUPTED, details {"reason": ...}) and what the
# person who submitted it should read.
INTERRUPTED_MESSAGES = {
    "server_shutdown": "the backend was stopped while this job was queued or running; start it "
                       "again and resubmit the job (the same idempotency_key runs it again)",
    "server_restart": "the backend stopped (it crashed or was killed) during this job and has "
                      "restarted; resubmit with the same idempotency_key to run it again",
    "result_lost": "the backend restarted and no longer has this job's result file; resubmit "
                   "with the same idempotency_key to run it again",
}


class JobState(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"   # the server stopped while the job was queued or running

    @property
    def finished(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.CANCELLED, JobState.INTERRUPTED)


@dataclass
class Job:
    job_id: str
    idempotency_key: str | None
    request_digest: str                 # SHA-256 over image, rig and options (see checks.py)
    state: JobState = JobState.QUEUED
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished_at: float | None = None
    error_code: str | None = None
    error_message: str | None = None
    error_details: dict | None = None   # e.g. {"reason": "server_shutdown"} for INTERRUPTED
    result_sha256: str | None = None
    result_size: int | None = None
    # (protocol 1.3) SHA-256 of each piece of the GLB when it is sent as result_part messages
    # (SPEC 5.7): computed once when the result is stored, so a fetch never hashes the GLB
    result_part_bytes: int | None = None
    result_part_sha256: list | None = None
    # (protocol 1.4) the same digests in the other algorithm a client may offer (BLAKE3,
    # where installed): {"blake3": {"whole": hex, "parts": [hex, ...]}}, pieces of
    # result_part_bytes; kept with the result like the SHA-256 ones
    result_digests: dict | None = None
    runs: int = 0                       # how many times the worker started it
    owner: str | None = None            # CURVE public key of the identity that submitted it
    stage: str = ""
    fraction: float = 0.0
    # not persisted:
    # clients attached to the job's events: client key -> [routing id, msg_id of the
    # submit/fetch_result that attached it] (a client is its session, or its routing id)
    watchers: dict = field(default_factory=dict)
    image: bytes | None = None
    rig: Any = None
    options: Any = None
    cancel: CancelToken = field(default_factory=CancelToken)
    # who asked for the cancel: "request" (a client's cancel), "client_lost" (policy cancel),
    # "server_shutdown" (a graceful stop; the job ends INTERRUPTED, not CANCELLED)
    cancel_reason: str | None = None

    PERSISTED = ("job_id", "idempotency_key", "request_digest", "state", "created", "started",
                 "finished_at", "error_code", "error_message", "error_details", "result_sha256",
                 "result_size", "result_part_bytes", "result_part_sha256", "result_digests",
                 "runs", "owner", "stage", "fraction")

    def interrupt(self, reason: str) -> None:
        """Set the error fields of an INTERRUPTED job (the caller sets the state)."""
        self.error_code = "INTERRUPTED"
        self.error_message = INTERRUPTED_MESSAGES.get(reason, INTERRUPTED_MESSAGES["server_restart"])
        self.error_details = {"reason": reason}

    def record(self) -> dict:
        d = {k: getattr(self, k) for k in self.PERSISTED}
        d["state"] = self.state.value
        return d

    @classmethod
    def from_record(cls, d: dict) -> "Job":
        kw = {k: d.get(k) for k in cls.PERSISTED if k in d}
        kw["state"] = JobState(kw["state"])
        kw["runs"] = int(kw.get("runs") or 0)
        kw["fraction"] = float(kw.get("fraction") or 0.0)
        kw["stage"] = kw.get("stage") or ""
        return cls(**kw)

    def status(self) -> dict:
        """What a STATUS reply says about the job."""
        return {"job_id": self.job_id, "state": self.state.value, "stage": self.stage,
                "fraction": round(self.fraction, 4), "created": self.created,
                "started": self.started, "finished": self.finished_at,
                "error": ({"code": self.error_code, "message": self.error_message}
                          if self.error_code else None),
                "result_available": self.state is JobState.DONE,
                "result_sha256": self.result_sha256, "result_size": self.result_size}


def part_digests(glb, part_bytes: int, algorithm: str = SHA256) -> list[str]:
    """Hex digest (SHA-256 unless named) of each `part_bytes` piece of `glb` (the last may
    be shorter)."""
    mv = memoryview(glb)
    return [buffer_digest(mv[i:i + part_bytes], algorithm).hex()
            for i in range(0, len(mv), part_bytes)]


def result_digests(job: "Job", glb, algorithm: str, part_bytes: int | None) -> tuple[list[bytes], bool]:
    """The digests a `result` (part_bytes None: the whole GLB) or its `result_part` pieces
    (part_bytes) are signed with, in `algorithm`: the ones kept with the job, else hashed now
    and kept. Returns (digests, whether the job changed and should be saved)."""
    size = len(glb)
    n = -(-size // part_bytes) if part_bytes else 1
    changed = False
    if part_bytes and (job.result_part_bytes != part_bytes or not job.result_part_sha256
                       or len(job.result_part_sha256) != n):
        # kept by an older server or with another part size: hash once, then keep them
        job.result_part_bytes = part_bytes
        job.result_part_sha256 = part_digests(glb, part_bytes)
        job.result_digests = {k: {"whole": v.get("whole")} for k, v in
                              (job.result_digests or {}).items()}
        changed = True
    if algorithm == SHA256:
        hexes = job.result_part_sha256 if part_bytes else [job.result_sha256]
        return [bytes.fromhex(h) for h in hexes], changed
    kept = dict((job.result_digests or {}).get(algorithm) or {})
    key = "parts" if part_bytes else "whole"
    have = kept.get(key)
    if not have or (part_bytes and len(have) != n):
        have = part_digests(glb, part_bytes, algorithm) if part_bytes else \
            buffer_digest(glb, algorithm).hex()
        kept[key] = have
        job.result_digests = {**(job.result_digests or {}), algorithm: kept}
        changed = True
    return [bytes.fromhex(h) for h in (have if part_bytes else [have])], changed


def new_job_id() -> str:
    return uuid.uuid4().hex


class ResultStore:
    """GLB bytes + sidecar dict per job id: on disk under a folder, or in memory (folder None).
    From disk, the last OPEN_KEPT results read stay open (their mapping and parsed sidecar):
    a repeated fetch_result then costs no file reads (0.2 ms of the 6.1 MB fetch here)."""

    OPEN_KEPT = 4

    def __init__(self, folder: Path | None):
        self.folder = folder
        self._mem: dict[str, tuple[bytes, dict]] = {}
        self._open: collections.OrderedDict[str, tuple[Any, dict]] = collections.OrderedDict()
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            for p in folder.glob("*.tmp"):
                p.unlink(missing_ok=True)

    def _paths(self, job_id: str) -> tuple[Path, Path]:
        if not JOB_ID_RE.match(job_id):          # only ids this server made reach here
            raise ValueError(f"not a job id: {job_id!r}")
        return self.folder / f"{job_id}.glb", self.folder / f"{job_id}.json"

    def put(self, job_id: str, glb: bytes, sidecar: dict) -> None:
        if self.folder is None:
            self._mem[job_id] = (glb, sidecar)
            return
        self._open.pop(job_id, None)
        glb_path, json_path = self._paths(job_id)
        for path, data in ((glb_path, glb), (json_path, json.dumps(sidecar).encode())):
            tmp = path.with_suffix(path.suffix + ".tmp")
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)

    def get(self, job_id: str) -> tuple[Any, dict] | None:
        """(GLB bytes-like, sidecar), both read-only to the caller (the pair may be handed out
        again). From disk the GLB is a read-only memoryview of an mmap
        of the file: ZeroMQ sends it straight from the page cache (no read, no copy); the
        mapping lives as long as a reference to it (pyzmq holds one until the send is done),
        and deleting the file meanwhile is safe."""
        if self.folder is None:
            return self._mem.get(job_id)
        if job_id in self._open:
            self._open.move_to_end(job_id)
            return self._open[job_id]
        glb_path, json_path = self._paths(job_id)
        try:
            sidecar = json.loads(json_path.read_text())
            with open(glb_path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                glb = memoryview(mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ)) if size else b""
        except (OSError, ValueError):
            return None
        self._open[job_id] = (glb, sidecar)
        while len(self._open) > self.OPEN_KEPT:
            self._open.popitem(last=False)
        return glb, sidecar

    def delete(self, job_id: str) -> None:
        if self.folder is None:
            self._mem.pop(job_id, None)
            return
        self._open.pop(job_id, None)
        for p in self._paths(job_id):
            p.unlink(missing_ok=True)

    def known_ids(self) -> set[str]:
        if self.folder is None:
            return set(self._mem)
        return {p.stem for p in self.folder.glob("*.glb") if JOB_ID_RE.match(p.stem)}


class JobStore:
    """All jobs the server knows, by id and by (owner, idempotency key); thread-safe. The
    owner is the CURVE identity that submitted the job (None without CURVE): keys are per
    identity, so two identities' keys of the same spelling are two keys.

    `keep_s`: finished jobs (and their results) are forgotten this long after they finished;
    `keep_bytes`: and the oldest finished ones go first when results exceed this many bytes.
    """

    def __init__(self, state_dir: Path | None, keep_s: float = 3600.0, keep_bytes: int = 4 << 30):
        self.state_dir = state_dir
        self.keep_s = keep_s
        self.keep_bytes = keep_bytes
        self.result_part_bytes: int | None = None   # set by the server (ServiceConfig)
        self._lock = threading.RLock()
        self.jobs: dict[str, Job] = {}
        self.by_key: dict[tuple, str] = {}       # (owner or "", idempotency key) -> job id
        self._journal = None
        self._lines = 0
        self.results = ResultStore(state_dir / "results" if state_dir is not None else None)
        if state_dir is not None:
            self._load()

    # ---- persistence ---------------------------------------------------------------
    def _load(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        path = self.state_dir / "jobs.jsonl"
        if path.exists():
            with open(path, "rb") as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                        if rec.get("forget"):
                            self.jobs.pop(rec.get("job_id"), None)
                            continue
                        job = Job.from_record(rec)
                    except (ValueError, KeyError, TypeError):
                        continue          # a torn last line after a crash
                    if not JOB_ID_RE.match(job.job_id or ""):
                        continue
                    self.jobs[job.job_id] = job
        have = self.results.known_ids()
        for job in self.jobs.values():
            if job.state in (JobState.QUEUED, JobState.RUNNING):
                job.state, job.finished_at = JobState.INTERRUPTED, time.time()
                job.interrupt("server_restart")
            if job.state is JobState.DONE and job.job_id not in have:
                job.state = JobState.INTERRUPTED     # result file lost: run again on resubmit
                job.interrupt("result_lost")
            if job.idempotency_key:
                self.by_key[(job.owner or "", job.idempotency_key)] = job.job_id
        for orphan in have - set(self.jobs):
            self.results.delete(orphan)
        self._compact()

    def _compact(self) -> None:
        """Rewrite the journal with one line per known job (at start-up, and when it grew)."""
        path = self.state_dir / "jobs.jsonl"
        with self._lock:
            if self._journal is not None:
                self._journal.close()
            tmp = path.with_suffix(".tmp")
            with open(tmp, "w") as f:
                for job in self.jobs.values():
                    f.write(json.dumps(job.record()) + "\n")
            os.replace(tmp, path)
            self._journal = open(path, "a", buffering=1)
            self._lines = len(self.jobs)

    def save(self, job: Job) -> None:
        """Append the job's current record to the journal (call after every state change)."""
        if self._journal is not None:
            with self._lock:
                self._journal.write(json.dumps(job.record()) + "\n")
                self._journal.flush()
                self._lines += 1

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    # ---- lookups and changes ---------------------------------------------------------
    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self.jobs.get(job_id) if isinstance(job_id, str) else None

    def job_for_key(self, key: str | None, owner: str | None = None) -> Job | None:
        """The job this identity's idempotency key names, if the store remembers it."""
        if key is None:
            return None
        with self._lock:
            return self.jobs.get(self.by_key.get((owner or "", key), ""))

    def submit(self, key: str | None, digest: str, owner: str | None = None) -> tuple[Job, str]:
        """The job for this submit and what happened: "new", "existing" or "rerun".

        "rerun": the key names a job that was interrupted (server restart): the same job
        goes back to QUEUED. A key reused for a DIFFERENT request (photo, rig or options) is
        IDEMPOTENCY_CONFLICT, with the key's job in its details; nothing changes.
        """
        with self._lock:
            if key is not None:
                job = self.jobs.get(self.by_key.get((owner or "", key), ""))
                if job is not None:
                    if job.request_digest != digest:
                        raise PipelineError(
                            "IDEMPOTENCY_CONFLICT", f"idempotency_key {key!r} already names job "
                            f"{job.job_id}, made from a different photo, rig or options; use a "
                            "new key for a new job (or send the same inputs to get that job)",
                            idempotency_key=key, job_id=job.job_id)
                    if job.state is JobState.INTERRUPTED:
                        job.state, job.cancel = JobState.QUEUED, CancelToken()
                        job.error_code = job.error_message = job.finished_at = None
                        job.error_details, job.cancel_reason = None, None
                        job.stage, job.fraction, job.created = "", 0.0, time.time()
                        self.save(job)
                        return job, "rerun"
                    return job, "existing"
            job = Job(job_id=new_job_id(), idempotency_key=key, request_digest=digest,
                      owner=owner)
            self.jobs[job.job_id] = job
            if key is not None:
                self.by_key[(owner or "", key)] = job.job_id
            self.save(job)
            return job, "new"

    def forget(self, job_id: str) -> None:
        """Drop a job that never got going (e.g. refused because the queue was full)."""
        with self._lock:
            job = self.jobs.pop(job_id, None)
            slot = (job.owner or "", job.idempotency_key) if job is not None else None
            if job is not None and job.idempotency_key and self.by_key.get(slot) == job_id:
                del self.by_key[slot]
            if job is not None and self._journal is not None:
                self._journal.write(json.dumps({"job_id": job_id, "forget": True}) + "\n")
                self._journal.flush()
                self._lines += 1

    def set_state(self, job: Job, state: JobState, code: str | None = None, message: str | None = None,
                  details: dict | None = None) -> None:
        with self._lock:
            job.state = state
            now = time.time()
            if state is JobState.RUNNING:
                job.started = now
                job.runs += 1
            if state.finished:
                job.finished_at = now
                job.image = None                 # free the input as soon as it is no longer needed
                job.error_code, job.error_message, job.error_details = code, message, details
            self.save(job)

    def store_result(self, job: Job, glb: bytes, sidecar: dict, sha256: str,
                     part_bytes: int | None = None) -> None:
        """Keep the result; with `part_bytes`, also the SHA-256 of each piece of that size
        (result_part messages, SPEC 5.7), and the same in each other digest this install
        computes (BLAKE3, 1.4), hashed here once, in the worker's thread."""
        self.results.put(job.job_id, glb, sidecar)
        job.result_sha256, job.result_size = sha256, len(glb)
        job.result_digests = None
        part_bytes = part_bytes or self.result_part_bytes
        if part_bytes and len(glb) > part_bytes:
            job.result_part_bytes = int(part_bytes)
            job.result_part_sha256 = part_digests(glb, part_bytes)
        for algorithm in supported_digests():
            if algorithm != SHA256:
                result_digests(job, glb, algorithm, None)
                if job.result_part_sha256:
                    result_digests(job, glb, algorithm, job.result_part_bytes)
        self.set_state(job, JobState.DONE)

    def result(self, job_id: str) -> tuple[bytes, dict] | None:
        job = self.get(job_id)
        if job is None or job.state is not JobState.DONE:
            return None
        return self.results.get(job.job_id)

    def sweep(self, now: float | None = None) -> list[str]:
        """Forget finished jobs past their retention (time, then total bytes); returns their ids."""
        now = time.time() if now is None else now
        with self._lock:
            finished = sorted((j for j in self.jobs.values() if j.state.finished and j.finished_at is not None),
                              key=lambda j: j.finished_at)
            gone = [j for j in finished if now - j.finished_at > self.keep_s]
            total = sum(j.result_size or 0 for j in finished if j not in gone and j.state is JobState.DONE)
            for j in finished:
                if total <= self.keep_bytes:
                    break
                if j not in gone and j.state is JobState.DONE:
                    gone.append(j)
                    total -= j.result_size or 0
            for j in gone:
                self.results.delete(j.job_id)
                self.forget(j.job_id)
            if self._journal is not None and self._lines > 4 * len(self.jobs) + 1000:
                self._compact()
            return [j.job_id for j in gone]
