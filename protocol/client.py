"""The one client library used by the Blender add-on, the CLI and batch jobs.

Two ways to use it, both on ONE thread (ZeroMQ sockets are not thread-safe):

Non-blocking (Blender timers; nothing here ever waits when timeout_s == 0):

    client = Client("tcp://127.0.0.1:5555", key_file="~/.config/gen3dface/key")
    job = client.submit(photo_bytes, rig=rig, options={"seed": 1})
    # in a bpy.app.timers callback, every ~0.1 s:
    for ev in client.poll():          # drains what has arrived; returns at once
        if ev.kind == "progress": ...  # ev.job.stage, ev.job.fraction, ev.data["message"]
        elif ev.kind == "result": ...  # ev.job.glb, ev.job.sidecar (dict)
        elif ev.kind in ("error", "cancelled"): ...   # ev.data["code"], ev.data["message"]

A backend on another machine (CURVE, SPEC.md section 12) also needs its public key and this
client's own key file:

    client = Client("tcp://gpu-host:5555", key_file="signing.key",
                    server_public_key="server.key", client_key_file="alice.key_secret")

Blocking with deadlines (batch, `blender -b`, CLI):

    with Client(endpoint, key=key) as client:
        result = client.run_job(photo_bytes, options=..., on_progress=print, deadline_s=600)

Binary data in events and handles (job.glb, previews, ev.data["image"]) is bytes; with
ClientConfig(zero_copy=True) it is a read-only memoryview over the received ZeroMQ frame
instead (one copy of a large GLB saved; len, ==, slicing, hashing, file.write and io.BytesIO
work on it). run_job() always returns bytes.

Large results (protocol 1.3, SPEC.md 5.7): the client asks for them in pieces
(ClientConfig.result_parts, on by default); each piece is a signed message of its own whose
SHA-256 is computed on a worker thread while the next pieces arrive, and the GLB is handed
out only when every piece has been verified and put in its place. A 1.2 server simply sends
results whole. With zero_copy the pieces are assembled in an anonymous mapping; the mapping
of a result the caller has let go (no memoryview or array over it left) is reused for the
next one of about its size, so its pages need not be faulted in again (at most two mappings
of at most 256 MiB each stay resident for that).

Event kinds: connected, disconnected, reconnected, accepted, progress, preview, result,
error, cancelled, status, cancel_reply. Heartbeats, reconnection (a new socket after three
missed beats) and resubmission with the same idempotency key are automatic: SPEC.md
section 8.

Where it lives: this module is the poll-based core (Client: connection, heartbeats,
reconnection, sending, poll() and the handling of every message) and ClientConfig; the
blocking calls (wait_connected, request, status, wait, cancel_and_wait, run_job) are
BlockingMixin in blocking.py, a base class of Client; JobHandle, Event, JobResult, JobError
and JobInterrupted are in jobs.py; the buffers a result_part stream is assembled in are in
result_buffers.py. Everything is importable from here as before.
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field

import zmq

from . import messages as M
from .blocking import CANCEL_WAIT_S, BlockingMixin   # CANCEL_WAIT_S: re-exported
from .cameras import Rig
from .envelope import Codec, Limits, Message, PROTOCOL_VERSION
from .errors import ERROR_CODES, ProtocolError
from .images import MAX_PIXELS, check_image
from .jobs import Event, JobError, JobHandle, JobInterrupted, JobResult  # the last two: re-exported
from .limits import (BAD_RESULT, CLIENT_CODES, RECEIVE_LIMIT, LimitError, RateLimit,
                     ReceiveLimits, check_preview, check_result)
from .curve import ClientCurve
from .result_buffers import _Parts, _Prefault, _SpareBuffers   # the last two: re-exported
from .signing import SHA256, ReplayGuard, Signer, choose_digest, load_key, supported_digests
from .transport import (DEFAULT_HEARTBEAT_S, LIVENESS_BEATS, Channel, handshake_failure,
                        handshake_monitor, make_dealer)

CLIENT_NAME = "gen3dface-client"


@dataclass
class ClientConfig:
    heartbeat_s: float = DEFAULT_HEARTBEAT_S   # ping interval
    liveness_beats: int = LIVENESS_BEATS       # server presumed gone after this many silent beats
    backoff_initial_s: float = 1.0             # reconnect back-off: 1, 2, 4, ... capped
    backoff_max_s: float = 8.0
    job_silence_s: float = 30.0                # probe a silent accepted job with `status`
    max_messages_per_poll: int = 200           # bounds the time one poll() may take
    client_name: str = CLIENT_NAME
    limits: Limits = field(default_factory=Limits.for_client)   # what we accept
    server_limits: Limits = field(default_factory=Limits.for_server)  # updated by capabilities
    max_image_pixels: int = MAX_PIXELS
    zero_copy: bool = False                    # buffers as memoryviews (see module docstring)
    receive_limits: ReceiveLimits = field(default_factory=ReceiveLimits)   # SPEC 11
    result_parts: bool = True                  # (1.3) ask for large results as result_part
                                               # messages: each piece is verified while the
                                               # next is in flight (SPEC 5.7)
    digests: tuple | None = None               # (1.4) buffer digests offered in hello, best
                                               # first; None: all this install computes
                                               # (blake3 when installed, sha256); ("sha256",)
                                               # behaves as a 1.3 client


MAX_REFETCHES = 3        # an incomplete or out-of-order result_part stream is fetched again
PARALLEL_HASH_BYTES = 256 << 10   # messages with this many buffer bytes are hashed on threads
HASH_THREADS = 3                  # worker threads: two hash pieces, one faults in pages
HASH_WAIT_S = 0.0002              # how often _drain looks for new messages while hashing
RESULT_PART_MARK = b'"result_part"'  # in a header: hash its pieces on the workers


def _request_digest(image: bytes, rig: dict | None, options: dict | None) -> str:
    """What a job is made from, for telling a reused idempotency key apart (SPEC 5.3)."""
    h = hashlib.sha256(hashlib.sha256(image).digest())
    h.update(json.dumps([rig, options or {}], sort_keys=True, default=str).encode())
    return h.hexdigest()


class Client(BlockingMixin):
    """Talks to one backend. See the module docstring. Not thread-safe. This class is the
    poll-based core; the blocking calls (wait, run_job, ...) come from BlockingMixin."""

    def __init__(self, endpoint: str, key: bytes | None = None, *, key_file: str | None = None,
                 insecure: bool = False, config: ClientConfig | None = None,
                 context: zmq.Context | None = None, clock=time.time,
                 server_public_key: str | None = None, client_key_file: str | None = None,
                 curve: ClientCurve | None = None):
        """key / key_file: the HMAC signing key (or insecure=True on a loopback development
        server). server_public_key (40 Z85 characters or the server.key file) and
        client_key_file (this client's NAME.key_secret): CURVE, required by a server off this
        host (SPEC section 12); ProtocolError(AUTH) for an unusable key file."""
        if (server_public_key is None) != (client_key_file is None):
            raise ValueError("CURVE needs both the server's public key and this client's key "
                             "file (or neither)")
        if curve is None and server_public_key is not None:
            curve = ClientCurve.load(server_public_key, client_key_file)
        self._curve = curve
        if key is None and key_file is not None:
            key = load_key(key_file)
        if key is None and not insecure:
            raise ValueError("a key (or key_file) is required; pass insecure=True only for "
                             "a development server on loopback started with --insecure")
        if key is not None and insecure:
            raise ValueError("give either a key or insecure=True, not both")
        self.endpoint = endpoint
        # a private copy: capabilities update its server limits
        self.config = dataclasses.replace(config) if config else ClientConfig()
        self.session = uuid.uuid4().hex
        self.capabilities: dict | None = None
        self._send_digest = SHA256          # (1.4) for buffers we send: what the server takes
        self.jobs: dict[str, JobHandle] = {}                # idempotency key -> handle
        self._by_job_id: dict[str, JobHandle] = {}
        self._by_request: dict[str, JobHandle] = {}         # submit/fetch msg_id -> handle
        self._replies: dict[str, Message | ProtocolError] = {}   # blocking requests
        self._waiting: set[str] = set()
        self._reply_ready = False                          # poll(): a request()'s reply came
        self._events: collections.deque[Event] = collections.deque()
        self._outbox: collections.deque[Message] = collections.deque()
        self._own_ctx = context is None
        self._ctx = context or zmq.Context()
        self._codec = Codec(Signer(key), self.config.limits, ReplayGuard(clock=clock), clock,
                            zero_copy=self.config.zero_copy)
        self._codec.zero_copy_types = frozenset({"result_part"})   # assembled by _Parts
        self._chan: Channel | None = None
        self._pool: ThreadPoolExecutor | None = None      # hashes large messages (_drain)
        self._spare = _SpareBuffers()                      # result_part assembly buffers
        self.state = "connecting"          # connecting | connected | disconnected | closed
        self._ever_connected = False
        self._server_instance: str | None = None
        self._backoff = self.config.backoff_initial_s
        self._next_reconnect = 0.0
        self._open_socket()

    # ---- connection management -----------------------------------------------------------
    @property
    def _heartbeat(self) -> float:
        server = (self.capabilities or {}).get("heartbeat_s") or 0.0
        return max(self.config.heartbeat_s, float(server))

    def _open_socket(self) -> None:
        now = time.monotonic()
        sock = make_dealer(self._ctx, self.endpoint, self.config.limits, self.config.heartbeat_s,
                           curve=self._curve)
        self._monitor = handshake_monitor(sock)       # a refused handshake is otherwise silent
        self._handshake_reported = False
        self._chan = Channel(sock, self._codec)
        self._last_seen = now
        self._next_ping = now + self.config.heartbeat_s
        self._outbox.clear()
        self._send_digest = SHA256          # until this connection's capabilities say more
        self._send(self._hello())

    def _close_socket(self) -> None:
        if self._chan is not None:
            try:
                self._chan.sock.disable_monitor()
            except zmq.ZMQError:
                pass
            self._monitor.close(0)
            self._chan.close()
            self._chan = None

    def _check_handshake(self) -> None:
        """A failed handshake (CURVE key not allowed, wrong server key, CURVE on one side
        only) becomes one `error` event AUTH per socket; the socket keeps retrying."""
        why = handshake_failure(self._monitor, self._curve is not None)
        if why and not self._handshake_reported and self.state != "connected":
            self._handshake_reported = True
            self._events.append(Event("error", None, {"code": "AUTH", "message": why}))

    def _lost(self, now: float) -> None:
        """No sign of life for `liveness_beats` beats: drop the socket, schedule a new one."""
        self._close_socket()
        if self.state in ("connected", "connecting"):
            self._events.append(Event("disconnected", data={
                "was_connected": self.state == "connected",
                "message": f"no answer from {self.endpoint} for "
                           f"{self.config.liveness_beats * self._heartbeat:.1f} s"}))
        self.state = "disconnected"
        self._next_reconnect = now + self._backoff
        self._backoff = min(self._backoff * 2, self.config.backoff_max_s)

    def _resubmit_all(self) -> None:
        for h in self.jobs.values():
            if h.done:
                continue
            h._parts = None                  # the result comes again, whole
            if h._image is not None:
                self._send_submit(h)
            elif h.job_id is not None:
                self._send_request(h, M.job_request("fetch_result", h.job_id, self.session))

    def close(self) -> None:
        """Say bye (best effort), close the socket, and the context if this client made it."""
        if self.state == "closed":
            return
        if self._chan is not None:
            try:
                self._chan.send(Message("bye", {}, session=self.session))
            except zmq.ZMQError:
                pass
        self._close_socket()
        self.state = "closed"
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._own_ctx:
            self._ctx.term()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- sending ---------------------------------------------------------------------------
    def _offered_digests(self) -> tuple:
        if self.config.digests is None:
            return supported_digests()
        return tuple(d for d in self.config.digests if d in supported_digests()) or (SHA256,)

    def _hello(self) -> Message:
        return M.hello(self.config.client_name, self.config.heartbeat_s, self.session,
                       result_parts=self.config.result_parts, digests=self._offered_digests())

    def _send(self, msg: Message) -> None:
        if msg.session is None:
            msg.session = self.session
        self._outbox.append(msg)
        self._flush()

    def _flush(self) -> None:
        while self._outbox and self._chan is not None:
            msg = self._outbox[0]
            if msg.buffers:     # (1.4) the digest the server's capabilities accepted, else SHA-256
                msg.digest, msg.digests = self._send_digest, None
            if not self._chan.send(msg):
                return          # send queue full: retried on the next poll()
            self._outbox.popleft()

    def _send_request(self, h: JobHandle, msg: Message) -> None:
        self._by_request[msg.msg_id] = h
        self._send(msg)

    def _send_submit(self, h: JobHandle) -> None:
        self._send_request(h, M.submit(h._image, h._media_type, h.idempotency_key,
                                       h._options, h._rig, h._name, self.session))

    # ---- non-blocking API ------------------------------------------------------------------
    def submit(self, image: bytes, rig: Rig | dict | None = None, options: dict | None = None,
               idempotency_key: str | None = None, name: str = "") -> JobHandle:
        """Queue a job; returns at once. The photo is checked here first (format, declared
        pixels, size against the server's limits): ProtocolError BAD_IMAGE / TOO_LARGE /
        BAD_REQUEST before anything is sent. A known idempotency_key returns its handle."""
        if self.state == "closed":
            raise ProtocolError("BAD_REQUEST", "the client is closed")
        key = idempotency_key or uuid.uuid4().hex
        if not M.KEY_RE.match(key):
            raise ProtocolError("BAD_REQUEST", "idempotency_key must be 1-128 characters of "
                                "[A-Za-z0-9._:-]")
        image = bytes(image)
        rig_d = rig.to_dict() if isinstance(rig, Rig) else rig
        request = _request_digest(image, rig_d, options)
        if key in self.jobs:
            known = self.jobs[key]
            if known._request not in (None, request):
                raise ProtocolError("IDEMPOTENCY_CONFLICT", f"idempotency_key {key!r} already "
                                    "names a job of this client made from another photo, rig "
                                    "or options; use a new key for a new job")
            return known
        info = check_image(image, self.config.max_image_pixels)
        lim = self.config.server_limits
        if len(image) > lim.max_part_bytes:
            raise ProtocolError("TOO_LARGE", f"the photo is {len(image)} bytes; the server "
                                f"accepts at most {lim.max_part_bytes}")
        if rig_d is not None:
            Rig.from_dict(rig_d)    # CameraError (a ValueError) for a bad rig, before sending
        h = JobHandle(key, image, info.media_type, dict(options or {}), rig_d, name)
        h._request = request
        self.jobs[key] = h
        if self._chan is not None:
            self._send_submit(h)    # else: sent by _resubmit_all once reconnected
        return h

    def fetch_result(self, job_id: str) -> JobHandle:
        """Attach to an existing job by id (e.g. after the client restarted)."""
        for h in self.jobs.values():
            if h.job_id == job_id:
                return h
        h = JobHandle(f"fetch-{job_id}"[:128], None, None, {}, None, "")
        h.job_id = job_id
        self.jobs[h.idempotency_key] = h
        self._by_job_id[job_id] = h
        if self._chan is not None:
            self._send_request(h, M.job_request("fetch_result", job_id, self.session))
        return h

    def cancel(self, job: JobHandle | str) -> None:
        """Ask the server to cancel; the job then ends with a `cancelled` event. A job not yet
        accepted is cancelled as soon as its job id is known."""
        h = job if isinstance(job, JobHandle) else self._by_job_id.get(job)
        if h is None:
            self._send(M.job_request("cancel", str(job), self.session))
            return
        if h.done:
            return
        h.cancel_requested = True
        if h.job_id is not None:
            self._send(M.job_request("cancel", h.job_id, self.session))

    def request_status(self, job_id: str | None = None) -> str:
        """Send `status`; the answer comes back as a `status` event. Returns the msg_id."""
        msg = M.job_request("status", job_id, self.session)
        self._send(msg)
        return msg.msg_id

    def forget(self, job: JobHandle) -> None:
        """Drop a finished job's handle (and its GLB bytes) from the client."""
        self.jobs.pop(job.idempotency_key, None)
        if job.job_id:
            self._by_job_id.pop(job.job_id, None)
        for k in [k for k, v in self._by_request.items() if v is job]:
            del self._by_request[k]

    def poll(self, timeout_s: float = 0.0) -> list[Event]:
        """Handle heartbeats/reconnection and drain arrived messages; return the new events.
        With timeout_s == 0 it never waits; otherwise it waits at most timeout_s for a first
        event."""
        if self.state == "closed":
            return []
        end = time.monotonic() + max(0.0, timeout_s)
        self._reply_ready = False
        while True:
            now = time.monotonic()
            self._housekeeping(now)
            self._drain()
            # a reply that a blocking request() waits for ends the wait too, even one that
            # makes no event (pong): request(ping) took the whole poll timeout (250 ms) before
            if self._events or self._reply_ready or now >= end:
                break
            wait = min(end - now, max(0.0, self._next_ping - now), 0.25)
            if self._chan is not None:
                self._chan.readable(wait)
            else:
                time.sleep(min(wait, max(0.0, self._next_reconnect - now)) or 0.001)
        out = list(self._events)
        self._events.clear()
        return out

    # ---- internals -------------------------------------------------------------------------
    def _housekeeping(self, now: float) -> None:
        if self._chan is None:
            if now >= self._next_reconnect:
                self._open_socket()
                self._resubmit_all()
            return
        self._flush()
        self._check_handshake()
        if now >= self._next_ping:
            self._chan.send(M.ping(self.config.heartbeat_s, self.session))
            self._next_ping = now + self.config.heartbeat_s
        if now - self._last_seen > self.config.liveness_beats * self._heartbeat:
            self._lost(now)
            return
        if self.state != "connected":
            return
        for h in self.jobs.values():   # probe jobs that went silent (lost event?)
            if (not h.done and h.job_id is not None
                    and now - h.last_event > self.config.job_silence_s
                    and now - h._probe_sent > self.config.job_silence_s):
                h._probe_sent = now
                self._send(M.job_request("status", h.job_id, self.session))

    def _drain(self) -> None:
        """Receive and handle what has arrived. A message with large buffers (result_part)
        is hashed on a worker thread (hashlib releases the GIL) while the next ones are
        received and hashed, then decoded and handled here, in arrival order. While the
        oldest is still being hashed, new arrivals are taken up every HASH_WAIT_S."""
        pending: collections.deque = collections.deque()    # (frames, digests future)
        received = 0
        while True:
            chan = self._chan
            frames = None
            if chan is not None and received < self.config.max_messages_per_poll:
                frames = chan.recv_frames()
            if frames is not None:
                received += 1
                pending.append((frames, self._hash_later(frames)))
            elif not pending:
                return
            else:
                oldest = pending[0][1]
                if oldest is not None and not oldest.done():
                    wait_futures([oldest], None if chan is None or received >=
                                 self.config.max_messages_per_poll else HASH_WAIT_S)
            while pending and (pending[0][1] is None or pending[0][1].done()):
                self._handle(*pending.popleft())

    def _hash_later(self, frames):
        """A future of the frames' buffer digests, or None: hashed by decode on this thread
        (small, nothing to verify, or not a result_part). Only result_part pieces overlap
        with each other and with the next arrivals; one whole message (a GLB sent whole)
        hashes faster here than handed to a worker and waited for (fetch_result of 6.1 MB
        on the 2-core dev machine, medians of 41 and 61 interleaved fetches: 8.1 vs 9.0 ms,
        8.9 vs 11.0 ms). The header is only peeked at to choose the thread: decode()
        verifies everything either way."""
        if self._codec.signer.insecure or len(frames) <= 4 or \
                sum(len(f) for f in frames[4:]) < PARALLEL_HASH_BYTES:
            return None
        header = frames[2]
        if RESULT_PART_MARK not in bytes(getattr(header, "buffer", header)):
            return None
        return self._worker_pool().submit(self._codec.buffer_digests, frames)

    def _worker_pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(HASH_THREADS, thread_name_prefix="gen3dface-hash")
        return self._pool

    def _handle(self, frames, digests) -> None:
        if self._chan is None:
            return                          # the socket was dropped meanwhile
        try:
            msg = self._chan.decode(frames, digests.result() if digests is not None else None)
            content = M.validate(msg, "to_client")
        except ProtocolError as e:
            self._on_bad_message(e)
            return
        self._on_message(msg, content)

    def _on_bad_message(self, e: ProtocolError) -> None:
        if e.code == "AUTH":
            msg = (f"a message from the server failed verification ({e.message}); the client "
                   "and the server probably use different keys")
        else:
            msg = f"the server sent an invalid message: {e.message}"
        ev = {"code": e.code, "message": msg}
        parent = (e.header or {}).get("parent_id")
        h = self._by_request.get(parent) if isinstance(parent, str) else None
        if h is not None and e.code == "AUTH" and h.job_id is None:
            self._fail(h, e.code, msg)      # our submit was probably refused for its signature
            return
        if h is not None and not h.done and (e.header or {}).get("msg_type") == "result_part":
            self._refetch(h, f"a result part could not be read: {e.message}")
            return
        if (h is not None and not h.done and e.code != "AUTH"
                and (e.header or {}).get("msg_type") in ("result", "error")):
            # the job's terminal event cannot be read: end the job now (SPEC 11) instead of
            # waiting for one that will never be readable
            self._over_limit(h, BAD_RESULT, f"the backend's {e.header['msg_type']} message "
                             f"for this job could not be read: {e.message}")
            return
        self._events.append(Event("error", None, ev))

    def _check_instance(self, instance) -> None:
        """A server that answers with another `instance` id was restarted while we stayed
        connected (ZeroMQ reconnects by itself): it has forgotten our jobs, so resubmit."""
        if not isinstance(instance, str) or not instance:
            return
        if self._server_instance is not None and instance != self._server_instance:
            self._events.append(Event("reconnected", None, {"restarted": True,
                                                            "capabilities": self.capabilities}))
            if self._chan is not None:
                self._send_digest = SHA256
                self._send(self._hello())
            self._resubmit_all()
        self._server_instance = instance

    def _alive(self, mark_connected: bool = True) -> None:
        self._last_seen = time.monotonic()
        self._backoff = self.config.backoff_initial_s
        if self.state != "connected" and mark_connected:
            # (unfinished jobs were already resubmitted when the new socket was opened)
            kind = "reconnected" if self._ever_connected else "connected"
            self.state = "connected"
            self._ever_connected = True
            self._events.append(Event(kind, None, {"capabilities": self.capabilities}))

    def _on_message(self, msg: Message, c: dict) -> None:
        t = msg.msg_type
        if t == "capabilities":
            self.capabilities = c
            self._send_digest = choose_digest(c.get("digests"), self._offered_digests())
            self._update_server_limits(c.get("limits") or {})
        if t in ("capabilities", "pong", "ping"):
            self._check_instance(c.get("instance"))
        refused = t == "error" and c["code"] in ("AUTH", "UNSUPPORTED_VERSION")
        self._alive(mark_connected=not refused)
        if msg.parent_id in self._waiting:
            self._replies[msg.parent_id] = msg
            self._reply_ready = True
        if t == "ping":
            self._send(msg.reply("pong", {"heartbeat_s": self.config.heartbeat_s},
                                 session=self.session))
            return
        if t in ("pong", "capabilities"):
            return
        if t == "status_reply":
            h = self._by_job_id.get(c.get("job_id") or "")
            if h is not None and not h.done and c.get("result_available"):
                self._send_request(h, M.job_request("fetch_result", h.job_id, self.session))
            if h is not None and c.get("state") == "unknown" and not h.done and h._image:
                self._send_submit(h)          # server forgot the job (restart): run it again
            self._events.append(Event("status", h, c))
            return
        if t == "cancel_reply":
            self._events.append(Event("cancel_reply", self._by_job_id.get(c["job_id"]), c))
            return
        h = self._job_for(msg, c)
        if h is None:
            if t == "error":
                self._events.append(Event("error", None, c))
            return          # an event for a job we no longer track: ignore
        h.last_event = time.monotonic()
        if h.done:
            return          # duplicate terminal event after a re-attach
        if t == "accepted":
            self._on_accepted(h, c)
        elif t in ("progress", "preview") and not self._receive_ok(h, t, msg, c):
            return
        elif t == "progress":
            h.state = "running"
            h.stage, h.fraction, h.message = c["stage"], float(c["fraction"]), c["message"]
            h.overall = c.get("overall")
            self._events.append(Event("progress", h, c))
        elif t == "preview":
            h.previews[c["name"]] = (c["media_type"], msg.buffers[0])
            self._events.append(Event("preview", h, dict(c, image=msg.buffers[0])))
        elif t == "result":
            self._on_result(h, msg, c)
        elif t == "result_part":
            self._on_result_part(h, msg, c)
        elif t == "error":
            self._fail(h, c["code"], c["message"], c)

    def _job_for(self, msg: Message, c: dict) -> JobHandle | None:
        job_id = c.get("job_id")
        if isinstance(job_id, str) and job_id in self._by_job_id:
            return self._by_job_id[job_id]
        h = self._by_request.get(msg.parent_id or "")
        if h is not None and isinstance(job_id, str):
            h.job_id = job_id
            self._by_job_id[job_id] = h
        return h

    def _on_accepted(self, h: JobHandle, c: dict) -> None:
        h.state = c["state"] if c["state"] in ("queued", "running") else h.state
        h.queue_position = c.get("queue_position")
        if h.state == "submitting":
            h.state = "queued"
        self._events.append(Event("accepted", h, c))
        if h.cancel_requested:
            self._send(M.job_request("cancel", h.job_id, self.session))

    def _receive_ok(self, h: JobHandle, t: str, msg: Message, c: dict) -> bool:
        """SPEC 11 for progress and preview messages; False (the job failed) on violation."""
        lim = self.config.receive_limits
        if h._rate is None:
            h._rate = RateLimit(lim.progress_per_s, lim.progress_burst)
        if not h._rate.take():
            self._over_limit(h, RECEIVE_LIMIT, f"the backend sent progress and preview "
                             f"messages faster than the client accepts ({lim.progress_burst} "
                             f"at once, then {lim.progress_per_s:g} a second)")
            return False
        if t == "preview":
            try:
                check_preview(c["name"], c["media_type"], msg.buffers[0], lim)
            except LimitError as e:
                self._over_limit(h, e.code, e.message)
                return False
        return True

    def _over_limit(self, h: JobHandle, code: str, message: str) -> None:
        """End job h here with a client-side code (SPEC 11) and cancel it on the server."""
        if h.job_id is not None and not h.done:
            self._send(M.job_request("cancel", h.job_id, self.session))
        self._fail(h, code, message)

    def _on_result(self, h: JobHandle, msg: Message, c: dict) -> None:
        if c.get("parts") is not None:          # (1.3) the GLB follows in result_part messages
            h._parts = None
            if c["size"] > self.config.receive_limits.max_result_bytes:
                self._fail(h, RECEIVE_LIMIT, f"the result GLB is {c['size']} bytes; the client "
                           f"accepts at most {self.config.receive_limits.max_result_bytes}")
                return
            h._parts = _Parts(msg, c, self.config.zero_copy, self._codec.signer.insecure,
                              self._worker_pool(), self._spare)
            return
        glb = msg.buffers[0]
        want = c.get("sha256")
        if want and (msg.digest == SHA256 or not msg.digests):
            # signed with another digest (1.4), the signature already covers every byte:
            # the GLB is not hashed a second time for `sha256` (SPEC 5.7)
            got = (msg.digests[0] if msg.digests else hashlib.sha256(glb).digest()).hex()
            if got != want.lower():
                self._fail(h, BAD_RESULT, "the result GLB failed its SHA-256 check "
                           "(corrupted in transit)")
                return
        self._deliver(h, glb, c)

    def _on_result_part(self, h: JobHandle, msg: Message, c: dict) -> None:
        p = h._parts
        if p is None or c["sha256"] != p.sha256 or msg.parent_id != p.parent:
            return                  # not of the result being received (a stale stream): ignore
        data = msg.buffers[0]
        end = c["offset"] + len(data)
        last = c["index"] == p.count - 1
        if (c["index"] != p.next or c["offset"] != p.offset or c["parts"] != p.count
                or c["size"] != p.size or (end == p.size) != last):
            self._refetch(h, f"result part {c['index']} of {c['parts']} arrived out of place")
            return
        if not p.add(data):
            return
        h._parts = None
        glb = p.glb()
        if p.hasher is not None and p.hasher.hexdigest() != p.sha256:
            self._fail(h, BAD_RESULT, "the result GLB failed its SHA-256 check "
                       "(corrupted in transit)")
            return
        self._deliver(h, glb, p.content)

    def _refetch(self, h: JobHandle, why: str) -> None:
        """A result_part stream that cannot complete (a part lost to a full queue, or one
        that failed verification): fetch the result again, a few times, then BAD_RESULT."""
        h._parts = None
        h._refetches += 1
        if h._refetches > MAX_REFETCHES or h.job_id is None:
            self._fail(h, BAD_RESULT, f"the result could not be received whole ({why}; "
                       f"fetched {h._refetches} times)")
            return
        self._send_request(h, M.job_request("fetch_result", h.job_id, self.session))

    def _deliver(self, h: JobHandle, glb, c: dict) -> None:
        try:
            check_result(glb, c["sidecar"], self.config.receive_limits)
        except LimitError as e:
            self._fail(h, e.code, e.message)
            return
        h.glb, h.sidecar = glb, c["sidecar"]
        h.state, h.fraction = "done", 1.0
        h._image = None
        self._events.append(Event("result", h, c))

    def _fail(self, h: JobHandle, code: str, message: str, c: dict | None = None) -> None:
        code = code if code in ERROR_CODES or code in CLIENT_CODES else "INTERNAL"
        h.error = JobError(code, message, job_id=h.job_id)
        h.state = "cancelled" if code == "CANCELLED" else "failed"
        h._image = None
        data = dict(c or {}, code=code, message=message)
        self._events.append(Event("cancelled" if code == "CANCELLED" else "error", h, data))

    def _update_server_limits(self, lim: dict) -> None:
        cur = self.config.server_limits.to_dict()
        for k in cur:
            v = lim.get(k)
            if isinstance(v, int) and not isinstance(v, bool) and v > 0:
                cur[k] = v
        self.config.server_limits = Limits(**cur)
        px = lim.get("max_image_pixels")
        if isinstance(px, int) and not isinstance(px, bool) and px > 0:
            self.config.max_image_pixels = px


__all__ = ["Client", "ClientConfig", "JobHandle", "JobResult", "JobError", "JobInterrupted", "Event",
           "PROTOCOL_VERSION"]
