"""The client's view of jobs: the types that poll() and the blocking calls hand out.

JobHandle (one job, updated by Client.poll()), Event (what poll() returns), JobResult (what
run_job() returns), JobError (a job ended without a result) and JobInterrupted (Ctrl-C in a
blocking wait). All are importable from client.py as well; they live here so that the
poll-based core (client.py) and the blocking API (blocking.py) share them without importing
each other.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from . import messages as M
from .errors import ProtocolError
from .limits import RateLimit
from .result_buffers import _Parts


class JobError(ProtocolError):
    """A job ended without a result (code from the server, or TIMEOUT/DISCONNECTED/AUTH)."""


class JobInterrupted(KeyboardInterrupt):
    """Ctrl-C while waiting for a job: `cancel` was sent; `confirmed` says whether the server
    confirmed it within the wait. job_id is None when the job was not accepted yet."""

    def __init__(self, job_id: str | None, idempotency_key: str, confirmed: bool):
        super().__init__("interrupted")
        self.job_id, self.idempotency_key, self.confirmed = job_id, idempotency_key, confirmed


@dataclass
class JobResult:
    job_id: str
    glb: bytes
    sidecar: dict


class JobHandle:
    """Client-side view of one job. Updated by Client.poll(); read it, don't write it."""

    def __init__(self, idempotency_key: str, image: bytes | None, media_type: str | None,
                 options: dict, rig: dict | None, name: str):
        self.idempotency_key = idempotency_key
        self.job_id: str | None = None
        self.state = "submitting"      # submitting | queued | running | done | failed | cancelled
        self.stage: str | None = None
        self.fraction = 0.0
        self.overall: float | None = None
        self.message = ""
        self.queue_position: int | None = None
        self.glb: bytes | memoryview | None = None   # memoryview only with zero_copy
        self.sidecar: dict | None = None
        self.error: JobError | None = None
        self.previews: dict[str, tuple[str, Any]] = {}   # name -> (media_type, bytes-like)
        self.last_event = time.monotonic()
        self.cancel_requested = False
        self._image, self._media_type, self._options = image, media_type, options
        self._rig, self._name = rig, name
        self._probe_sent = 0.0
        self._rate: RateLimit | None = None      # progress/preview rate (SPEC 11)
        self._request: str | None = None         # what it was made from (IDEMPOTENCY_CONFLICT)
        self._parts: _Parts | None = None        # a result arriving as result_part messages
        self._refetches = 0

    @property
    def done(self) -> bool:
        return self.state in M.TERMINAL_STATES

    def __repr__(self) -> str:
        return (f"JobHandle(key={self.idempotency_key!r}, job_id={self.job_id!r}, "
                f"state={self.state!r}, stage={self.stage!r}, fraction={self.fraction:.2f})")


@dataclass
class Event:
    kind: str
    job: JobHandle | None = None
    data: dict = field(default_factory=dict)
