"""The client's blocking API (batch, `blender -b`, the CLI), as a mixin of Client.

BlockingMixin holds the calls that wait: wait_connected, request, status, wait,
cancel_and_wait and run_job. They are built only on the poll-based core in client.py
(poll, submit, cancel, forget, _send, and the state poll() keeps: state, endpoint, session,
capabilities, _events, _replies, _waiting), in the way jupyter_client's BlockingKernelClient
is built on its KernelClient. Events a blocking call sees but does not consume are put back
in front of the queue for the next poll(). Like the rest of the client: one thread only.
"""
from __future__ import annotations

import collections
import math
import time
from typing import Callable

from . import messages as M
from .cameras import Rig
from .envelope import Message
from .jobs import Event, JobError, JobHandle, JobInterrupted, JobResult

CANCEL_WAIT_S = 2.0      # how long Ctrl-C in wait() waits for the server to confirm a cancel


class BlockingMixin:
    """Blocking calls with deadlines over the non-blocking core; mixed into Client (which
    provides poll, submit, cancel, forget, _send and the attributes they read)."""

    def _park(self, parked: list) -> None:
        """Put events seen by a blocking call back in front of the queue for poll()."""
        if parked:
            self._events = collections.deque(parked + list(self._events))

    def wait_connected(self, timeout_s: float = 10.0) -> dict:
        """Block until the server has answered `hello`; returns its capabilities.
        JobError(DISCONNECTED) when it does not answer in time, JobError(AUTH) when it
        refuses our signature (or we cannot verify its messages)."""
        end = time.monotonic() + timeout_s
        parked: list[Event] = []
        try:
            while self.state != "connected":
                left = end - time.monotonic()
                if left <= 0:
                    raise JobError("DISCONNECTED", f"no answer from the server at "
                                   f"{self.endpoint} within {timeout_s:.1f} s (is `gen3dface "
                                   "serve` running there, with the same key?)")
                for ev in self.poll(min(left, 0.25)):
                    if ev.kind == "error" and ev.job is None and ev.data.get("code") in (
                            "AUTH", "UNSUPPORTED_VERSION"):
                        raise JobError(ev.data["code"], ev.data["message"])
                    if ev.kind not in ("connected", "reconnected", "disconnected"):
                        parked.append(ev)
        finally:
            self._park(parked)
        return self.capabilities or {}

    def request(self, msg: Message, timeout_s: float = 10.0) -> Message:
        """Send a request and block until its direct reply (parent_id == msg_id) arrives;
        events seen meanwhile are kept for the next poll(). An `error` reply raises JobError."""
        self._waiting.add(msg.msg_id)
        parked: list[Event] = []
        try:
            self._send(msg)
            end = time.monotonic() + timeout_s
            while msg.msg_id not in self._replies:
                left = end - time.monotonic()
                if left <= 0:
                    raise JobError("TIMEOUT", f"no reply to {msg.msg_type} within "
                                   f"{timeout_s:.1f} s")
                parked.extend(self.poll(min(left, 0.25)))
            reply = self._replies.pop(msg.msg_id)
        finally:
            self._waiting.discard(msg.msg_id)
            self._replies.pop(msg.msg_id, None)
            self._park(parked)
        if reply.msg_type == "error":
            raise JobError(reply.content.get("code", "INTERNAL"),
                           reply.content.get("message", ""))
        return reply

    def status(self, job_id: str | None = None, timeout_s: float = 10.0) -> dict:
        """Blocking `status`: the status_reply content."""
        reply = self.request(M.job_request("status", job_id, self.session), timeout_s)
        return M.validate(reply, "to_client")

    def wait(self, h: JobHandle, deadline_s: float | None = 3600.0,
             on_progress: Callable[[str, float, str], None] | None = None,
             on_preview: Callable[[str, bytes], None] | None = None,
             on_event: Callable[[Event], None] | None = None,
             give_up_disconnected_s: float | None = None,
             cancel_wait_s: float = CANCEL_WAIT_S) -> JobHandle:
        """Block until submitted job `h` ends; returns h, done (h.glb, h.sidecar: memoryviews
        with zero_copy). Heartbeats, reconnection and resubmission run meanwhile. Raises
        JobError with the server's code (NO_FACE, BAD_IMAGE, ...), CANCELLED, TIMEOUT
        (deadline passed; the job is cancelled on the server) or DISCONNECTED (server gone for
        longer than give_up_disconnected_s, if given). On Ctrl-C it sends `cancel`, waits up to
        cancel_wait_s for the server to confirm, and raises JobInterrupted."""
        end = math.inf if deadline_s is None else time.monotonic() + deadline_s
        lost_since: float | None = None
        try:
            while not h.done:
                now = time.monotonic()
                if now >= end:
                    self.cancel(h)
                    self.poll(0)
                    raise JobError("TIMEOUT", f"the job did not finish within {deadline_s:.0f} s "
                                   f"(last stage: {h.stage or 'none'})", job_id=h.job_id)
                for ev in self.poll(min(end - now, 0.25)):
                    if on_event:
                        on_event(ev)
                    if ev.kind == "disconnected":
                        lost_since = lost_since or time.monotonic()
                    elif ev.kind in ("connected", "reconnected"):
                        lost_since = None
                    elif ev.job is not h:
                        if ev.kind == "error" and ev.job is None and h.job_id is None \
                                and ev.data.get("code") == "AUTH":
                            raise JobError("AUTH", ev.data["message"])
                        continue
                    elif ev.kind == "progress" and on_progress:
                        on_progress(h.stage or "", h.fraction, h.message)
                    elif ev.kind == "preview" and on_preview:
                        on_preview(ev.data["name"], ev.data["image"])
                if (lost_since is not None and give_up_disconnected_s is not None
                        and time.monotonic() - lost_since > give_up_disconnected_s):
                    raise JobError("DISCONNECTED", f"the server at {self.endpoint} has not "
                                   f"answered for {give_up_disconnected_s:.0f} s",
                                   job_id=h.job_id)
        except KeyboardInterrupt:
            confirmed = self.cancel_and_wait(h, cancel_wait_s)
            self.forget(h)
            raise JobInterrupted(h.job_id, h.idempotency_key, confirmed) from None
        except BaseException:
            self.forget(h)      # later events of this job are ignored
            raise
        if h.state != "done":
            self.forget(h)
            raise h.error or JobError("INTERNAL", "the job ended without a result",
                                      job_id=h.job_id)
        return h

    def cancel_and_wait(self, h: JobHandle, wait_s: float = CANCEL_WAIT_S) -> bool:
        """Send `cancel` for h (at once, or as soon as its job id is known) and wait up to
        wait_s for the job to end. True when the server confirmed: the job ended, or its
        cancel_reply said it is cancelled or stopping."""
        self.cancel(h)
        confirmed = h.done
        end = time.monotonic() + wait_s
        while not h.done and time.monotonic() < end:
            for ev in self.poll(min(0.1, max(0.0, end - time.monotonic()))):
                if ev.kind == "cancel_reply" and ev.data.get("job_id") == h.job_id:
                    confirmed = confirmed or bool(ev.data.get("cancelling")) or \
                        ev.data.get("state") in ("cancelled", "failed", "done")
        return confirmed or h.done

    def run_job(self, image: bytes, rig: Rig | dict | None = None,
                options: dict | None = None,
                on_progress: Callable[[str, float, str], None] | None = None,
                on_preview: Callable[[str, bytes], None] | None = None,
                deadline_s: float | None = 3600.0, idempotency_key: str | None = None,
                on_event: Callable[[Event], None] | None = None,
                give_up_disconnected_s: float | None = None, name: str = "") -> JobResult:
        """Submit and block until the result (`wait`); the GLB comes back as bytes."""
        h = self.submit(image, rig, options, idempotency_key, name)
        self.wait(h, deadline_s, on_progress, on_preview, on_event, give_up_disconnected_s)
        self.forget(h)
        return JobResult(h.job_id or "", bytes(h.glb or b""), h.sidecar or {})
