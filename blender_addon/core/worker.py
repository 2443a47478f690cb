"""The network side of a job (no bpy): the protocol client (wire.load("client")) driven from a
background thread for the panel, or in blocking mode for batch.

Panel (JobWorker): one daemon thread owns the ZeroMQ client (sockets are not thread-safe) and
uses its non-blocking API in a loop of short polls; it posts plain tuples to a queue that the
main thread drains from a bpy.app.timers callback (the dream-textures pattern):

    ("accepted", job_id, queue_position)      ("progress", stage, fraction, message)
    ("preview", name, png_bytes)              ("result", glb_path, sidecar)
    ("error", code, message)                  ("cancelled",)

Receiving, verifying (the HMAC covers the SHA-256 of the GLB frame) and writing a large GLB
to a temporary file all happen on this thread, so the main thread only imports a file.
Cancel: the main thread sets a flag; the thread sends `cancel` and waits for the server's
CANCELLED (or gives up after CANCEL_GRACE_S and reports cancelled anyway).

Batch (run_job): the client's blocking mode with deadlines, on the calling thread (in
`blender -b` timers do not fire while a script runs).

Keys: an empty key file means insecure mode (a development server started with --insecure,
loopback only); otherwise the key file is loaded by the protocol (owner-only permissions).
A backend on another machine also needs CURVE (SPEC section 12): the server's public key and
this artist's key file from the connection settings go to the client as they are.
"""
from __future__ import annotations

import queue
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..wire import load
from .batch import JobError, JobOutput
from .messages import UNREACHABLE, interrupted_message
from .settings import BackendOffer, ConnectionSettings

POLL_S = 0.05                 # worker thread's poll granularity (cancel latency)
CANCEL_GRACE_S = 5.0          # wait this long for the server's CANCELLED after a cancel
CLIENT_NAME = "gen3dface-blender/0.1.0"


@dataclass(frozen=True)
class JobRequest:
    photo: bytes
    media_type: str
    photo_name: str
    rig: object | None          # wire.cameras.Rig or None
    options: dict


def make_client(connection: ConnectionSettings):
    """A protocol Client for these settings (JobError AUTH when the key file is unusable)."""
    client_mod = load("client")
    errors = load("errors")
    # zero_copy: the GLB stays a read-only view of the received ZeroMQ frame until it is
    # written to the temp file (no copy of a result that can be tens of MB).
    config = client_mod.ClientConfig(client_name=CLIENT_NAME, zero_copy=True)
    curve = {}
    if connection.curve:
        curve = {"server_public_key": connection.server_public_key.strip(),
                 "client_key_file": connection.client_key_file.strip()}
    try:
        if connection.key_file:
            return client_mod.Client(connection.address, key_file=connection.key_file,
                                     config=config, **curve)
        return client_mod.Client(connection.address, insecure=True, config=config, **curve)
    except errors.ProtocolError as e:
        raise JobError(e.code, e.message) from None
    except ValueError as e:
        raise JobError("BAD_REQUEST", str(e)) from None


def connect(client, connection: ConnectionSettings) -> dict:
    """Wait for the server's capabilities (remembered for the panel's menus, BackendOffer);
    no answer -> JobError(UNREACHABLE)."""
    client_mod = load("client")
    try:
        caps = client.wait_connected(connection.connect_timeout_s)
    except client_mod.JobError as e:
        if e.code == "DISCONNECTED":
            raise JobError(UNREACHABLE, f"No backend answered at {connection.address} within "
                           f"{connection.connect_timeout_s:g} s") from None
        raise JobError(e.code, e.message) from None
    BackendOffer.remember(connection.address, caps)    # the panel's menus offer what it can do
    return caps


def _give_up_s(connection: ConnectionSettings) -> float:
    return connection.connect_timeout_s


def run_job(connection: ConnectionSettings, request: JobRequest, on_event=None) -> JobOutput:
    """Blocking: connect, submit, wait for the result within the job timeout."""
    client_mod = load("client")
    errors = load("errors")
    client = make_client(connection)
    try:
        connect(client, connection)
        res = client.run_job(request.photo, rig=request.rig, options=request.options,
                             deadline_s=connection.job_timeout_s, on_event=on_event,
                             give_up_disconnected_s=_give_up_s(connection),
                             name=request.photo_name)
        return JobOutput(glb=bytes(res.glb), sidecar=dict(res.sidecar))
    except client_mod.JobError as e:
        raise JobError(e.code, e.message) from None
    except errors.ProtocolError as e:           # refused before sending (BAD_IMAGE, TOO_LARGE)
        raise JobError(e.code, e.message) from None
    except ValueError as e:                     # a bad rig (CameraError)
        raise JobError("BAD_REQUEST", str(e)) from None
    finally:
        client.close()


def fetch_capabilities(connection: ConnectionSettings) -> tuple[bool, list[str]]:
    """(ok, lines to show) for the Test connection button."""
    try:
        client = make_client(connection)
    except JobError as e:
        return False, [f"{e.code}: {e.message}"]
    try:
        caps = connect(client, connection)
    except JobError as e:
        from .messages import user_error
        return False, [user_error(e.code, e.message).message, user_error(e.code, "").advice]
    finally:
        client.close()
    return True, describe_capabilities(caps)


def describe_capabilities(caps: dict) -> list[str]:
    p = caps.get("pipeline") or {}
    q = caps.get("queue") or {}
    gens = ", ".join(str(g) for g in p.get("generators") or []) or "none"
    kinds = ", ".join(str(k) for k in p.get("output_kinds") or []) or "?"
    model = p.get("head_model")
    if isinstance(model, dict):
        model = model.get("name", "?") + (" (fallback)" if model.get("fallback") else "")
    return [f"Connected: {caps.get('server', '?')}, protocol {caps.get('protocol_version', '?')}",
            f"Device: {p.get('device', '?')}, GPU: {p.get('gpu_name') or 'none'}",
            f"Generators: {gens}; outputs: {kinds}; head model: {model or 'none'}",
            f"Queue: {q.get('length', '?')} waiting of {q.get('max', '?')}, "
            f"{q.get('running', '?')} running",
            "Connection: " + ("encrypted (CURVE), signed" + (", admin" if caps.get("admin") else "")
                              if caps.get("curve") else
                              "signed, not encrypted" if not caps.get("insecure") else
                              "INSECURE (unsigned, development only)")]


class JobWorker(threading.Thread):
    """One panel job on a background thread; see the module docstring."""

    def __init__(self, connection: ConnectionSettings, request: JobRequest, out_dir: Path,
                 clock=time.monotonic):
        super().__init__(name="gen3dface-job", daemon=True)
        self.connection, self.request, self.out_dir = connection, request, Path(out_dir)
        self.events: queue.Queue = queue.Queue()
        self._cancel = threading.Event()
        self._peeked = None
        self.clock = clock
        self.receive_seconds = 0.0        # time from the result message to the file on disk

    # main thread
    def cancel(self) -> None:
        self._cancel.set()

    def next_event(self, peek: bool = False):
        if self._peeked is None:
            try:
                self._peeked = self.events.get_nowait()
            except queue.Empty:
                return None
        ev = self._peeked
        if not peek:
            self._peeked = None
        return ev

    # worker thread
    def run(self) -> None:
        try:
            self._run()
        except JobError as e:
            self.events.put(("error", e.code, e.message))
        except Exception as e:                       # never die silently
            self.events.put(("error", "INTERNAL", f"{type(e).__name__}: {e}"))

    def _run(self) -> None:
        errors = load("errors")
        client = make_client(self.connection)
        try:
            connect(client, self.connection)
            if self._cancel.is_set():
                self.events.put(("cancelled",))
                return
            try:
                h = client.submit(self.request.photo, rig=self.request.rig,
                                  options=self.request.options, name=self.request.photo_name,
                                  idempotency_key=uuid.uuid4().hex)
            except errors.ProtocolError as e:
                raise JobError(e.code, e.message) from None
            except ValueError as e:
                raise JobError("BAD_REQUEST", str(e)) from None
            self._loop(client, h)
        finally:
            client.close()

    def _loop(self, client, h) -> None:
        c = self.connection
        end = self.clock() + c.job_timeout_s
        lost_since = None
        cancel_sent = None
        while True:
            if self._cancel.is_set() and cancel_sent is None:
                client.cancel(h)
                cancel_sent = self.clock()
            for ev in client.poll(POLL_S):
                if ev.kind == "disconnected":
                    lost_since = lost_since or self.clock()
                elif ev.kind in ("connected", "reconnected"):
                    lost_since = None
                elif ev.job is not h:
                    continue
                elif ev.kind == "accepted":
                    self.events.put(("accepted", h.job_id, ev.data.get("queue_position")))
                elif ev.kind == "progress":
                    self.events.put(("progress", ev.data.get("stage", ""),
                                     float(ev.data.get("fraction", 0.0)),
                                     ev.data.get("message", "")))
                elif ev.kind == "preview":
                    self.events.put(("preview", ev.data.get("name", "preview"),
                                     bytes(ev.data["image"])))
                elif ev.kind == "result":
                    self._deliver(client, h)
                    return
                elif ev.kind == "cancelled":
                    if self._cancel.is_set():
                        self.events.put(("cancelled",))
                    else:                     # not ours (a 1.0 backend that was stopped, or
                        # its lost-client policy); 1.1 backends send INTERRUPTED when stopping
                        self.events.put(("error", "CANCELLED", "The backend cancelled the job "
                                         f"({ev.data.get('message') or 'it was stopped'})"))
                    return
                elif ev.kind == "error":
                    code = ev.data.get("code", "INTERNAL")
                    message = ev.data.get("message", "")
                    if code == "INTERRUPTED":      # the backend stopped (SPEC 5.8), not us
                        message = interrupted_message(ev.data.get("details"))
                    self.events.put(("error", code, message))
                    return
            now = self.clock()
            if cancel_sent is not None and (now - cancel_sent > CANCEL_GRACE_S
                                            or lost_since is not None):
                self.events.put(("cancelled",))       # the server never confirmed; we stop
                return
            if lost_since is not None and now - lost_since > _give_up_s(c):
                raise JobError("DISCONNECTED", f"The backend at {c.address} stopped answering "
                               f"during the job (last stage: {h.stage or 'none'})")
            if now > end:
                client.cancel(h)
                client.poll(0)
                raise JobError("TIMEOUT", f"The job did not finish within {c.job_timeout_s:g} s "
                               f"(last stage: {h.stage or 'none'})")

    def _deliver(self, client, h) -> None:
        t0 = self.clock()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"result-{uuid.uuid4().hex}.glb"
        with open(path, "wb") as f:
            f.write(h.glb)                    # a memoryview of the frame: no extra copy
        sidecar = dict(h.sidecar or {})
        client.forget(h)
        self.receive_seconds = self.clock() - t0
        if self._cancel.is_set():
            path.unlink(missing_ok=True)
            self.events.put(("cancelled",))
        else:
            self.events.put(("result", str(path), sidecar))
