"""The backend service: one ROUTER socket, a bounded job queue, one worker thread.

    clients (DEALER) ──► ROUTER ── socket loop (main thread) ──► JobQueue ──► Worker thread
                                         ▲                                        │
                                         └──── inproc wake-up ◄── Outbox ◄────────┘

The socket loop never runs a job: it checks and queues submits, answers hello/status/ping/
fetch_result/cancel at once and forwards what the worker reports (progress, previews,
results, errors) to the client attached to the job. All socket calls happen in the loop's
thread. Every incoming message is decoded and validated by the protocol package (limits,
signature, replay window, schema); whatever fails gets an `error` reply, and nothing a client
sends can stop the loop: each message is handled inside its own try/except.

Clients and heartbeats (protocol/SPEC.md, section 8): a client is known by its header
`session` (or its routing id when it sends none), so a client that reconnects with a new
socket is the same client and its jobs' events follow its newest routing id. Clients ping
every beat; any valid message is a sign of life. The server also pings every client attached
to a live job each `heartbeat_s`. A client silent for 3 x its heartbeat (or one that sent
`bye`, or whose routing id became unreachable) is lost: with `on_client_lost="cancel"` its
queued and running jobs are cancelled; with "keep" (default) they run on and their results
wait for `fetch_result` or a duplicate `submit`.
"""
from __future__ import annotations

import dataclasses
import errno
import fcntl
import logging
import threading
import time
import uuid
from pathlib import Path

import zmq

from ...protocol.errors import ERROR_CODES
from ..images import MAX_PIXELS
from ..contracts import PipelineError
from . import checks, wire
from .config import ServiceConfig
from .jobqueue import JobQueue, QueueFull
from .jobs import INTERRUPTED_MESSAGES, Job, JobState, JobStore, result_digests
from .worker import Outbox, Worker
from .workload import WorkloadFactory

log = logging.getLogger("gen3dface.service")

JOB_REQUESTS = ("cancel", "status", "fetch_result")   # their content's job_id is validated

SERVER_VERSION = "0.1.0"
SHUTDOWN_LINGER_MS = 1000
# Without CURVE a result goes in parts (1.3) from this size: a 6.1 MB result measured no
# faster in parts on loopback, a 64 MB one 1.4x faster; with CURVE every result over one part
# goes in parts (libzmq encrypts 2 MiB messages about 4x faster than one 64 MB frame)
PLAIN_PARTS_MIN_BYTES = 16 << 20         # how long a stopping server tries to deliver its last messages
load_key = wire.load_key          # key file -> bytes (owner-only permissions; protocol/SPEC.md)


def wire_state(state: JobState) -> str:
    """Job state as the protocol names it: an interrupted job is `failed` (with error code
    INTERRUPTED) until it is resubmitted; protocol 1.x has no state of its own for it."""
    return "failed" if state is JobState.INTERRUPTED else state.value


def wire_code(code: str | None) -> str | None:
    return code if code is None or code in ERROR_CODES else "INTERNAL"


class StateDirLocked(RuntimeError):
    pass


def lock_state_dir(state_dir: Path):
    """Hold an exclusive lock on <state>/lock for the server's lifetime (one server per folder)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    f = open(state_dir / "lock", "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise StateDirLocked(f"another gen3dface server uses the state folder {state_dir}; "
                             "stop it or give this one its own --state-dir") from None
    return f


Route = tuple                     # every routing-id frame a message arrived with (bytes, ...)


@dataclasses.dataclass
class ClientInfo:
    routing: Route                    # all of them: a client behind a ROUTER/DEALER proxy has 2+
    last_seen: float
    timeout_s: float
    result_parts: bool = False        # (1.3) its hello asked for results as result_part messages
    digest: str = wire.SHA256         # (1.4) the buffer digest for what we send it (its hello)


class Server:
    def __init__(self, config: ServiceConfig, workload_factory: WorkloadFactory):
        self.config = config
        self._lock_file = lock_state_dir(config.state_dir) if config.state_dir else None
        self.workload = workload_factory()
        self.capabilities = dict(self.workload.capabilities())
        # New at every start: clients compare it across pongs to notice a restart at once
        # (SPEC 5.2 and 8.4) and resubmit with their idempotency keys.
        self.instance = uuid.uuid4().hex
        self.store = JobStore(config.state_dir, config.keep_results_s, config.keep_results_bytes)
        self.store.result_part_bytes = config.result_part_bytes
        self.queue = JobQueue(config.queue_size)
        limits = wire.Limits.for_server()
        if config.max_part_bytes is not None:
            limits = dataclasses.replace(limits, max_part_bytes=int(config.max_part_bytes),
                                         max_total_bytes=min(limits.max_total_bytes,
                                                             4 * int(config.max_part_bytes)))
        self.codec = wire.make_codec(config.key, limits, config.replay_max_nonces)
        self.curve = config.curve           # ServerCurve (keys + allow-list) or None
        self.ctx: zmq.Context | None = None       # made in start(), terminated at shutdown
        self.sock: zmq.Socket | None = None
        self.endpoint: str | None = None
        self._wake_addr = f"inproc://gen3dface-wake-{id(self)}"
        self._wake_lock = threading.Lock()
        self._wake_tx: zmq.Socket | None = None
        self.outbox = Outbox(self._wake)
        # a workload may bring its own executor (ray_backend: one dispatcher per worker actor)
        make_worker = getattr(self.workload, "make_worker", None)
        self.worker = (make_worker(self.queue, self.store, self.outbox) if make_worker is not None
                       else Worker(self.workload, self.queue, self.store, self.outbox))
        self.clients: dict[tuple, ClientInfo] = {}    # ("s", session) | ("r", routing id)
        self._stop = threading.Event()
        self._last_beat = 0.0
        self._last_sweep = 0.0
        self.counters = {"received": 0, "rejected": 0, "submitted": 0, "sent": 0, "dropped": 0,
                         "lost_clients": 0, "internal": 0}

    # ---- life cycle --------------------------------------------------------------------
    def start(self) -> str:
        """Bind and start the worker; returns the bound endpoint (port 0 -> the real port)."""
        checks.warm_up()
        self.ctx = zmq.Context()
        self.auth = None
        if self.curve is not None:          # ZAP: only allow-listed client keys get in
            from zmq.auth.thread import ThreadAuthenticator

            self.auth = ThreadAuthenticator(self.ctx, log=logging.getLogger("gen3dface.zap"))
            self.auth.start()
            self.auth.configure_curve_callback(domain=wire.ZAP_DOMAIN,
                                               credentials_provider=self.curve.allow)
        self.sock = wire.make_router_socket(self.ctx, self.config.bind, self.codec.limits,
                                            self.config.heartbeat_s, curve=self.curve)
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._wake_rx = self.ctx.socket(zmq.PULL)
        self._wake_rx.bind(self._wake_addr)
        self._wake_tx = self.ctx.socket(zmq.PUSH)
        self._wake_tx.setsockopt(zmq.SNDHWM, 1)
        self._wake_tx.setsockopt(zmq.LINGER, 0)
        self._wake_tx.connect(self._wake_addr)
        self.worker.start()
        return self.endpoint

    def _wake(self) -> None:
        with self._wake_lock:
            if self._wake_tx is not None:
                try:
                    self._wake_tx.send(b"", zmq.NOBLOCK)
                except zmq.ZMQError:
                    pass                       # a wake-up is already pending

    def stop(self) -> None:
        """Ask the loop to finish (thread-safe; also from a signal handler)."""
        self._stop.set()
        self._wake()

    def serve_forever(self) -> None:
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        poller.register(self._wake_rx, zmq.POLLIN)
        timeout_ms = int(self.config.housekeeping_s * 1000)
        try:
            while not self._stop.is_set():
                ready = dict(poller.poll(timeout_ms))
                if self._wake_rx in ready:
                    while True:
                        try:
                            self._wake_rx.recv(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                self._guarded(self._forward_events)
                if self.sock in ready:
                    for _ in range(100):          # bounded: events and housekeeping get a turn
                        try:
                            frames = self.sock.recv_multipart(zmq.NOBLOCK, copy=False)
                        except zmq.Again:
                            break
                        self._on_frames_guarded(frames)
                self._guarded(self._housekeeping)
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        """Graceful stop: the running job is cancelled and, like every queued job, ends
        INTERRUPTED (reason "server_shutdown"): each attached client gets that `error` now,
        and a resubmission with the same key after the restart runs the job again."""
        running = self.worker.current
        self.worker.stop()
        self.worker.join(timeout=5)
        self._forward_events()                 # the running job's outcome, if it stopped
        stuck = [running] if running is not None and not running.state.finished else []
        for job in stuck + self.queue.drain():
            if job.state.finished:
                continue
            job.cancel_reason = job.cancel_reason or "server_shutdown"
            job.cancel.cancel()
            self.store.set_state(job, JobState.INTERRUPTED, "INTERRUPTED",
                                 INTERRUPTED_MESSAGES["server_shutdown"],
                                 {"reason": "server_shutdown"})
            for to, parent in list(job.watchers.values()):
                self._send_outcome(to, job, parent_id=parent)
        with self._wake_lock:
            self._wake_tx.close(0)
            self._wake_tx = None
        self._wake_rx.close(0)
        # Let the last messages (the INTERRUPTED errors above) leave before the context ends:
        # term() waits for them, at most SHUTDOWN_LINGER_MS.
        self.sock.close(SHUTDOWN_LINGER_MS)
        if self.auth is not None:
            self.auth.stop()
        self.ctx.term()
        self.store.close()
        if self._lock_file is not None:
            self._lock_file.close()

    def _guarded(self, step) -> None:
        """Run one step of the loop; a bug in it is logged and the loop goes on."""
        try:
            step()
        except Exception:
            self.counters["internal"] += 1
            log.exception("%s failed; serving on", getattr(step, "__name__", step))

    def _on_frames_guarded(self, frames) -> None:
        """The last resort around one received message: whatever escapes its handling is
        logged, answered with INTERNAL where a routing id can be found, and the loop serves
        the next message (SPEC 5.0: the server never dies of a bad message)."""
        try:
            self._on_frames(frames)
        except Exception as e:
            self.counters["internal"] += 1
            log.exception("a message could not be handled; answered INTERNAL, serving on")
            try:
                routing, _ = wire.split_routing(frames, router=True)
                if routing:
                    self._error(tuple(routing), "INTERNAL", "the server failed to handle this "
                                f"message ({type(e).__name__}); it keeps running. Please report it "
                                "with the server log")
            except Exception:
                log.exception("could not answer it either")

    # ---- sending -----------------------------------------------------------------------
    def _send(self, routing: Route | None, msg_type: str, content: dict, buffers=(),
              parent_id: str | None = None, digests=None, digest: str = wire.SHA256) -> bool:
        """One message to `routing`; `digests` (of `digest`, the algorithm the client offered,
        1.4) when the buffers' digests are already known."""
        if not routing:
            return False
        msg = wire.Message(msg_type, content, list(buffers), parent_id=parent_id,
                           routing=list(routing), digests=digests, digest=digest)
        try:
            frames = self.codec.encode(msg)
        except (TypeError, ValueError) as e:    # e.g. a NaN in a sidecar: not JSON
            log.error("could not encode %s: %s", msg_type, e)
            if msg_type == "error":
                return False
            return self._send(routing, "error", {
                "code": "INTERNAL", "message": f"the server could not encode its {msg_type} "
                f"message ({type(e).__name__}: {e})"[:4000],
                "job_id": content.get("job_id") if wire.valid_id(content.get("job_id")) else None},
                parent_id=parent_id)
        try:
            self.sock.send_multipart(frames, zmq.NOBLOCK, copy=len(buffers) == 0)
            self.counters["sent"] += 1
            return True
        except zmq.ZMQError as e:
            self.counters["dropped"] += 1
            if e.errno == errno.EHOSTUNREACH:   # ROUTER_MANDATORY: that client is gone
                self._routing_unreachable(routing)
            else:                               # EAGAIN: its send queue is full; results stay kept
                log.warning("could not send %s to a client: %s", msg_type, e)
            return False

    def _digest_for(self, client) -> str:
        info = self.clients.get(client) if client is not None else None
        return info.digest if info is not None and not self.config.insecure else wire.SHA256

    def _error(self, routing, code: str, message: str, parent_id=None, job_id=None, **extra) -> None:
        """An `error` to `routing`. parent_id and job_id are only echoed when they are valid
        protocol ids: nothing a client sent unchecked travels back (SPEC 5.0)."""
        content = {"code": wire_code(code), "message": message[:4000],
                   "job_id": job_id if wire.valid_id(job_id) else None, **extra}
        parent_id = parent_id if wire.valid_id(parent_id) else None
        self._send(routing, "error", content, parent_id=parent_id)

    # ---- receiving ---------------------------------------------------------------------
    def _on_frames(self, frames) -> None:
        self.counters["received"] += 1
        try:
            msg = self.codec.decode(frames, router=True, sender=self._identity(frames))
            content = wire.messages.validate(msg, "to_server")
        except wire.ProtocolError as e:
            self.counters["rejected"] += 1
            # decode errors carry the routing frames; a validation error is about a decoded
            # message, whose routing frames split_routing finds again
            routing = tuple(getattr(e, "routing", None) or wire.split_routing(frames, True)[0])
            if routing:
                self._error(routing, e.code, e.message, parent_id=wire.reply_parent(e.header),
                            job_id=e.job_id)
            return
        except Exception as e:                  # a codec bug must not stop the server
            self.counters["rejected"] += 1
            log.exception("decode failed")
            routing, _ = wire.split_routing(frames, router=True)
            self._error(tuple(routing), "INTERNAL", f"could not read the message ({type(e).__name__})")
            return
        msg.content = content
        routing = tuple(msg.routing)
        client = self._seen(msg, routing)
        handler = self._handlers.get(msg.msg_type)
        try:
            if handler is not None:
                handler(self, routing, client, msg)
        except PipelineError as e:
            extra = {"retry_after_s": 5.0} if e.code == "QUEUE_FULL" else {}
            if e.details:
                extra["details"] = dict(e.details)
            # the job_id a request named (cancel/status/fetch_result; validated there), never
            # an unchecked field of another type (a submit's content may hold anything)
            job_id = content.get("job_id") if msg.msg_type in JOB_REQUESTS else None
            self._error(routing, e.code, e.message, parent_id=msg.msg_id, job_id=job_id, **extra)
        except Exception as e:
            log.exception("handling %s failed", msg.msg_type)
            self._error(routing, "INTERNAL", f"internal error ({type(e).__name__}: {e})"[:300],
                        parent_id=msg.msg_id)

    def _identity(self, frames) -> str | None:
        """The CURVE public key (Z85) the connection authenticated with; None without CURVE.
        libzmq puts the ZAP handler's User-Id on every frame of the message."""
        if self.curve is None:
            return None
        try:
            uid = frames[-1].get("User-Id")
        except (AttributeError, zmq.ZMQError):
            return None
        return uid if isinstance(uid, str) and uid else None

    def _seen(self, msg, routing: Route) -> tuple:
        """Record a sign of life; returns the client's key. A session that comes back on a new
        routing id takes its live jobs' events along. Sessions are scoped by identity: another
        CURVE identity naming the same session is another client."""
        key = ("s", msg.identity, msg.session) if msg.session else ("r", routing)
        now = time.monotonic()
        info = self.clients.get(key)
        hb = msg.content.get("heartbeat_s") if msg.msg_type in ("hello", "ping", "pong") else None
        if info is None:
            info = self.clients[key] = ClientInfo(routing, now, self.config.client_timeout_s)
        elif info.routing != routing:
            info.routing = routing
            for job in self.store.jobs.values():
                if key in job.watchers and not job.state.finished:
                    job.watchers[key][0] = routing
        info.last_seen = now
        if msg.msg_type == "hello":
            info.result_parts = msg.content.get("result_parts") is True
            info.digest = wire.choose_digest(msg.content.get("digests"))
        if isinstance(hb, (int, float)) and hb > 0:
            info.timeout_s = 3.0 * float(hb)
        return key

    def _attach(self, job: Job, routing: Route, client: tuple, msg) -> None:
        job.watchers[client] = [routing, msg.msg_id]

    def _on_hello(self, routing, client, msg) -> None:
        self._send(routing, "capabilities", {
            "server": f"gen3dface/{SERVER_VERSION}", "protocol_version": wire.PROTOCOL_VERSION,
            "heartbeat_s": self.config.heartbeat_s, "pipeline": self.capabilities,
            "limits": {**self.codec.limits.to_dict(), "max_image_pixels": MAX_PIXELS,
                       "max_cameras": checks.MAX_CAMERAS},
            "queue": {"length": len(self.queue), "max": self.config.queue_size,
                      "running": len(self.worker.running_jobs())},
            "keep_results_s": self.config.keep_results_s, "insecure": self.config.insecure,
            "on_client_lost": self.config.on_client_lost, "instance": self.instance,
            "curve": self.curve is not None, "digests": list(wire.supported_digests()),
            "admin": self.curve is not None and self.curve.allow.is_admin(msg.identity),
            **({"cluster": self.worker.cluster_info()} if hasattr(self.worker, "cluster_info") else {})},
            parent_id=msg.msg_id)

    def _on_ping(self, routing, client, msg) -> None:
        self._send(routing, "pong", {"heartbeat_s": self.config.heartbeat_s,
                                     "instance": self.instance}, parent_id=msg.msg_id)

    def _on_pong(self, routing, client, msg) -> None:
        pass                                    # a sign of life, already recorded

    def _on_bye(self, routing, client, msg) -> None:
        self._client_lost(client)

    def _on_submit(self, routing, client, msg) -> None:
        c = msg.content
        image = msg.buffers[0]
        key = checks.check_idempotency_key(c.get("idempotency_key"))
        rig_dict = c.get("rig")
        options_dict = c.get("options") or {}
        digest = checks.request_digest(image, rig_dict, options_dict)
        known = self.store.job_for_key(key, msg.identity)
        if known is not None and known.state is not JobState.INTERRUPTED:
            job, how = self.store.submit(key, digest, msg.identity)   # "existing" or CONFLICT
        else:
            checks.check_image(image, (c.get("image") or {}).get("media_type"))
            rig = checks.check_rig(rig_dict)
            options = self._parse_options(options_dict)
            job, how = self.store.submit(key, digest, msg.identity)
        if how == "existing":
            self._attach(job, routing, client, msg)
            self._send(routing, "accepted", self._accepted(job, duplicate=True), parent_id=msg.msg_id)
            if job.state.finished:
                self._send_outcome(routing, job, parent_id=msg.msg_id, client=client)
            return
        self._attach(job, routing, client, msg)
        job.image, job.rig, job.options = image, rig, options
        try:
            self.queue.put(job)
        except QueueFull as e:
            if how == "new":
                self.store.forget(job.job_id)
            else:
                self.store.set_state(job, JobState.INTERRUPTED, "INTERRUPTED",
                                     INTERRUPTED_MESSAGES["server_restart"],
                                     {"reason": "server_restart"})
            raise PipelineError("QUEUE_FULL", f"{e}; try again later") from None
        self.counters["submitted"] += 1
        self._send(routing, "accepted", {**self._accepted(job, duplicate=False), "rerun": how == "rerun"},
                   parent_id=msg.msg_id)

    def _parse_options(self, options: dict):
        """The workload's options; a value it cannot take (10**400 where a float is needed, a
        list where a number is) is the client's BAD_REQUEST, not the server's INTERNAL."""
        try:
            return self.workload.parse_options(options)
        except PipelineError:
            raise
        except (ArithmeticError, TypeError, ValueError, KeyError) as e:
            raise PipelineError("BAD_REQUEST", f"bad options: {type(e).__name__}: {e}"[:300]) from None

    def _accepted(self, job: Job, duplicate: bool) -> dict:
        return {"job_id": job.job_id, "idempotency_key": job.idempotency_key,
                "state": wire_state(job.state), "duplicate": duplicate,
                "queue_position": self.queue.position(job.job_id) if job.state is JobState.QUEUED else None}

    def _send_outcome(self, routing, job: Job, parent_id=None, client=None) -> None:
        """The terminal event of a finished job: `result`, or `error` (CANCELLED, the failure)."""
        if job.state is JobState.DONE:
            res = self.store.result(job.job_id)
            if res is None:
                self._error(routing, "NOT_FOUND", "the result is no longer kept; resubmit",
                            parent_id, job.job_id)
                return
            self._send_result(routing, job, res[0], res[1], parent_id, client)
        elif job.state is JobState.INTERRUPTED:
            self._error(routing, "INTERRUPTED",
                        job.error_message or INTERRUPTED_MESSAGES["server_restart"], parent_id,
                        job.job_id, details=job.error_details or {"reason": "server_restart"})
        else:
            extra = {"details": job.error_details} if job.error_details else {}
            self._error(routing, job.error_code or "INTERNAL", job.error_message or "the job failed",
                        parent_id, job.job_id, **extra)

    def _send_result(self, routing, job: Job, glb, sidecar: dict, parent_id=None,
                     client=None) -> bool:
        """The `result` of a job. To a client whose hello asked for result_parts (1.3) a GLB
        of at least result_parts_min_bytes (and over one part) goes as `result` (no buffer;
        parts, size) + one `result_part` per piece, each signed on its own (SPEC 5.7): the
        client verifies a piece while the next is in flight. The digests (SHA-256, or the one
        the client's hello offered, 1.4) are the ones kept with the result: never re-hashed."""
        content = {"job_id": job.job_id, "sidecar": sidecar, "sha256": job.result_sha256,
                   "media_type": "model/gltf-binary"}
        info = self.clients.get(client) if client is not None else None
        digest = self._digest_for(client)
        part = self.config.result_part_bytes
        min_bytes = self.config.result_parts_min_bytes
        if min_bytes is None:         # CURVE encrypts 2 MiB messages ~4x faster than one big one
            min_bytes = 0 if self.curve is not None else PLAIN_PARTS_MIN_BYTES
        if (info is not None and info.result_parts and job.result_sha256
                and len(glb) > part and len(glb) >= min_bytes):
            return self._send_parts(routing, job, glb, content, parent_id, part, digest)
        digests = None
        if job.result_sha256:
            digests, changed = result_digests(job, glb, digest, None)
            if changed:
                self.store.save(job)
        return self._send(routing, "result", content, [glb], parent_id=parent_id,
                          digests=digests, digest=digest)

    def _send_parts(self, routing, job: Job, glb, content: dict, parent_id, part: int,
                    digest: str) -> bool:
        size = len(glb)
        digests, changed = result_digests(job, glb, digest, part)
        if changed:
            self.store.save(job)
        n = len(digests)
        if not self._send(routing, "result", {**content, "parts": n, "size": size},
                          parent_id=parent_id):
            return False
        mv = memoryview(glb)
        for i, d in enumerate(digests):
            off = i * part
            if not self._send(routing, "result_part", {
                    "job_id": job.job_id, "sha256": job.result_sha256, "index": i, "parts": n,
                    "offset": off, "size": size}, [mv[off:off + part]], parent_id=parent_id,
                    digests=[d], digest=digest):
                return False           # the client re-fetches an incomplete result (SPEC 5.7)
        return True

    def _job(self, msg) -> tuple[str, Job | None]:
        """The job a cancel/status/fetch_result names: None when unknown; NOT_FOUND when it
        belongs to another CURVE identity and the sender is not an admin (SPEC 12)."""
        job_id = msg.content.get("job_id")
        job = self.store.get(job_id)
        if job is not None and not self._may_see(job, msg.identity):
            raise PipelineError("NOT_FOUND", f"no job {job_id} for this identity (a job "
                                "belongs to the CURVE key that submitted it)")
        return job_id, job

    def _may_see(self, job: Job, identity: str | None) -> bool:
        if self.curve is None:
            return True                       # one identity: everyone who holds the key
        return job.owner == identity or self.curve.allow.is_admin(identity)

    def _on_cancel(self, routing, client, msg) -> None:
        job_id, job = self._job(msg)
        if job is None or job.state.finished:     # unknown or finished: a harmless no-op
            self._send(routing, "cancel_reply", {"job_id": job_id, "known": job is not None,
                                                 "state": wire_state(job.state) if job else "unknown"},
                       parent_id=msg.msg_id)
            return
        job.cancel_reason = job.cancel_reason or "request"
        job.cancel.cancel()
        if self.queue.remove(job_id) is not None:  # queued: gone at once
            self.store.set_state(job, JobState.CANCELLED, "CANCELLED", "cancelled by request")
            self._send(routing, "cancel_reply", {"job_id": job_id, "state": "cancelled", "known": True},
                       parent_id=msg.msg_id)
            for to, parent in list(job.watchers.values()):
                self._error(to, "CANCELLED", "cancelled by request", parent, job_id)
            return
        # running: the worker stops at its next check and then reports error CANCELLED
        self._send(routing, "cancel_reply", {"job_id": job_id, "state": wire_state(job.state),
                                             "known": True, "cancelling": True}, parent_id=msg.msg_id)

    def _on_status(self, routing, client, msg) -> None:
        job_id, job = self._job(msg)
        server = {"queue_length": len(self.queue), "queue_max": self.config.queue_size,
                  "running": len(self.worker.running_jobs()), "jobs_kept": len(self.store.jobs)}
        if job_id is None:
            content = {"job_id": None, "server": server}
        elif job is None:
            content = {"job_id": job_id, "state": "unknown", "server": server}
        else:
            content = {**self._status_content(job), "server": server}
        self._send(routing, "status_reply", content, parent_id=msg.msg_id)

    def _status_content(self, job: Job) -> dict:
        c = {"job_id": job.job_id, "state": wire_state(job.state), "stage": job.stage or None,
             "fraction": job.fraction, "result_available": job.state is JobState.DONE,
             "queue_position": self.queue.position(job.job_id) if job.state is JobState.QUEUED else None,
             "error": ({"code": wire_code(job.error_code), "message": job.error_message,
                        **({"details": job.error_details} if job.error_details else {})}
                       if job.error_code and job.state is not JobState.DONE else None),
             "sha256": job.result_sha256, "runs": job.runs}
        if job.finished_at and job.state.finished:
            c["expires_in_s"] = max(0.0, job.finished_at + self.config.keep_results_s - time.time())
        return c

    def _on_fetch_result(self, routing, client, msg) -> None:
        """Attach the sender to the job like a duplicate submit: accepted, then its events."""
        job_id, job = self._job(msg)
        if job is None:
            raise PipelineError("NOT_FOUND", "no such job (unknown, or its result is no longer kept)")
        self._attach(job, routing, client, msg)
        self._send(routing, "accepted", self._accepted(job, duplicate=True), parent_id=msg.msg_id)
        if job.state.finished:
            self._send_outcome(routing, job, parent_id=msg.msg_id, client=client)

    _handlers = {"hello": _on_hello, "ping": _on_ping, "pong": _on_pong, "bye": _on_bye,
                 "submit": _on_submit, "cancel": _on_cancel, "status": _on_status,
                 "fetch_result": _on_fetch_result}

    # ---- worker events and housekeeping ------------------------------------------------
    def _forward_events(self) -> None:
        for event in self.outbox.drain():
            for client, (to, parent) in list(event[1].watchers.items()):
                try:
                    self._forward(to, parent, event, client)
                except Exception:
                    log.exception("forwarding %s failed", event[0])

    def _forward(self, to: Route, parent: str, event: tuple, client=None) -> None:
        """One worker event to one attached client (parent_id: what attached it)."""
        kind, job = event[0], event[1]
        if kind == "started":
            self._send(to, "progress", {"job_id": job.job_id, "stage": "queue", "fraction": 1.0,
                                        "message": "started"}, parent_id=parent)
        elif kind == "progress":
            self._send(to, "progress", {"job_id": job.job_id, "stage": event[2], "fraction": event[3],
                                        "message": event[4]}, parent_id=parent)
        elif kind == "preview":
            self._send(to, "preview", {"job_id": job.job_id, "name": event[2], "media_type": "image/png",
                                       "stage": job.stage or None}, [event[3]], parent_id=parent,
                       digest=self._digest_for(client))
        elif kind == "result":
            self._send_result(to, job, event[2], event[3], parent_id=parent, client=client)
        elif kind == "cancelled":
            self._error(to, "CANCELLED", "cancelled by request", parent, job.job_id)
        elif kind == "failed":
            extra = {"details": event[4]} if len(event) > 4 and event[4] else {}
            self._error(to, event[2], event[3], parent, job.job_id, **extra)

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if now - self._last_beat >= self.config.heartbeat_s:
            self._last_beat = now
            live = [j for j in self.store.jobs.values() if not j.state.finished]
            for routing in {w[0] for j in live for w in j.watchers.values()}:
                self._send(routing, "ping", {"heartbeat_s": self.config.heartbeat_s})
            for key, info in list(self.clients.items()):
                if now - info.last_seen > info.timeout_s:
                    self._client_lost(key)
        if now - self._last_sweep >= 1.0:
            self._last_sweep = now
            self.store.sweep()

    def _routing_unreachable(self, routing: Route) -> None:
        for key, info in list(self.clients.items()):
            if info.routing == routing:
                self._client_lost(key)
        for job in self.store.jobs.values():   # nothing more is sent there; results stay kept
            for key in [k for k, w in job.watchers.items() if w[0] == routing]:
                del job.watchers[key]

    def _client_lost(self, key: tuple) -> None:
        """Policy "keep": the client's jobs run on (events still go to its routing id while
        it is reachable; results are kept). "cancel": detach it, and cancel its queued and
        running jobs that no other client is attached to."""
        if self.clients.pop(key, None) is None:
            return
        self.counters["lost_clients"] += 1
        if self.config.on_client_lost != "cancel":
            return
        for job in list(self.store.jobs.values()):
            if job.watchers.pop(key, None) is None or job.state.finished or job.watchers:
                continue
            log.info("client lost: cancelling job %s", job.job_id)
            job.cancel_reason = job.cancel_reason or "client_lost"
            job.cancel.cancel()
            if self.queue.remove(job.job_id) is not None:
                self.store.set_state(job, JobState.CANCELLED, "CANCELLED", "the client went away")
