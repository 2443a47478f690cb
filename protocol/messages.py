"""Message types, their content schemas and validators, and builders for each.

`validate(msg, direction)` checks a decoded message's content against its type and returns a
normalised copy of the content (defaults filled in); anything wrong raises
ProtocolError("BAD_REQUEST", "<msg_type>.<field>: what is wrong") carrying the header, so the
receiver can answer with an `error` whose parent_id is the bad message's msg_id. Unknown
content fields are tolerated (kept in the returned dict). SPEC.md documents every field.
"""
from __future__ import annotations

import hashlib
import math
import re
from typing import Any, Callable, Sequence

from .cameras import CameraError, Rig
from .envelope import Message, brief, reply_parent
from .errors import ERROR_CODES, ProtocolError

IMAGE_MEDIA_TYPES = ("image/png", "image/jpeg", "image/webp")
GLB_MEDIA_TYPE = "model/gltf-binary"
JOB_STATES = ("queued", "running", "done", "failed", "cancelled", "unknown")
TERMINAL_STATES = ("done", "failed", "cancelled")
# `error.details.reason` values that come with code INTERRUPTED (SPEC 5.8)
INTERRUPTED_REASONS = ("server_shutdown", "server_restart", "result_lost")
STAGES = ("queue", "decode", "face", "fit", "generate", "reconstruct", "texture", "export")

MAX_OPTIONS_KEYS = 64
MAX_MESSAGE_CHARS = 4000
KEY_RE = re.compile(r"\A[A-Za-z0-9._:\-]{1,128}\Z")   # \Z: "abc\n" is not a key

# Who sends what. A server answers a client-only type arriving from... a client? fine; a
# client sending a server type gets BAD_REQUEST.
CLIENT_TYPES = ("hello", "submit", "cancel", "status", "fetch_result", "ping", "pong", "bye")
SERVER_TYPES = ("capabilities", "accepted", "progress", "preview", "result", "result_part",
                "error", "cancel_reply", "status_reply", "ping", "pong")
# (1.3) a result GLB sent as `result` + `result_part` messages (SPEC 5.7): at most this many
MAX_RESULT_PARTS = 4096
MAX_RESULT_BYTES = 1 << 40                 # a bound for the `size` field; ReceiveLimits decides
SHA256_RE = re.compile(r"\A[0-9a-f]{64}\Z")
ALL_TYPES = tuple(dict.fromkeys(CLIENT_TYPES + SERVER_TYPES))


# --------------------------------------------------------------------------------------------
# Field checks
# --------------------------------------------------------------------------------------------

class _Checker:
    def __init__(self, msg: Message):
        self.msg = msg
        self.c = msg.content
        self.out = dict(msg.content)

    def fail(self, name: str, what: str):
        raise ProtocolError("BAD_REQUEST", f"{self.msg.msg_type}.{name}: {what}",
                            self.msg.header_dict())

    def get(self, name, required):
        if name not in self.c or self.c[name] is None:
            if required:
                self.fail(name, "is required")
            return None
        return self.c[name]

    def string(self, name, required=True, max_len=256, pattern=None, choices=None,
               default=None):
        v = self.get(name, required)
        if v is None:
            self.out[name] = default
            return default
        if not isinstance(v, str):
            self.fail(name, f"must be a string, got {type(v).__name__}")
        if len(v) > max_len:
            self.fail(name, f"must be at most {max_len} characters")
        if pattern is not None and not pattern.match(v):
            self.fail(name, "must be 1-128 characters of [A-Za-z0-9._:-]")
        if choices is not None and v not in choices:
            self.fail(name, f"must be one of {', '.join(choices)}; got {v[:64]!r}")
        self.out[name] = v
        return v

    def number(self, name, required=True, lo=-math.inf, hi=math.inf, default=None,
               integer=False):
        v = self.get(name, required)
        if v is None:
            self.out[name] = default
            return default
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (
                integer and not isinstance(v, int)):
            self.fail(name, f"must be {'an integer' if integer else 'a number'}, got "
                            f"{type(v).__name__}")
        # ints compare exactly (math.isfinite(10**400) would raise OverflowError)
        if (isinstance(v, float) and not math.isfinite(v)) or not lo <= v <= hi:
            self.fail(name, f"must be between {lo} and {hi}, got {brief(v)}")
        self.out[name] = v
        return v

    def boolean(self, name, required=True, default=False):
        v = self.get(name, required)
        if v is None:
            self.out[name] = default
            return default
        if not isinstance(v, bool):
            self.fail(name, f"must be true or false, got {type(v).__name__}")
        return v

    def obj(self, name, required=True, default=None, max_keys=None):
        v = self.get(name, required)
        if v is None:
            self.out[name] = default
            return default
        if not isinstance(v, dict):
            self.fail(name, f"must be an object, got {type(v).__name__}")
        if max_keys is not None and len(v) > max_keys:
            self.fail(name, f"must have at most {max_keys} keys")
        return v

    def names(self, name, required=False, max_items=8, max_len=32, default=()):
        """A list of short strings (e.g. digest names, 1.4): unknown names are kept (the
        receiver ignores what it does not know), wrong types refused."""
        v = self.get(name, required)
        if v is None:
            self.out[name] = list(default)
            return self.out[name]
        if not isinstance(v, list) or len(v) > max_items:
            self.fail(name, f"must be a list of at most {max_items} strings")
        for x in v:
            if not isinstance(x, str) or not 1 <= len(x) <= max_len:
                self.fail(name, f"each item must be a string of 1-{max_len} characters")
        return v

    def buffers(self, n: int):
        if len(self.msg.buffers) != n:
            self.fail("buffers", f"a {self.msg.msg_type} message carries exactly {n} binary "
                                 f"frame(s); got {len(self.msg.buffers)}")


def _job_id(k: _Checker, required=True):
    return k.string("job_id", required, max_len=128, pattern=KEY_RE)


# --------------------------------------------------------------------------------------------
# Per-type validators
# --------------------------------------------------------------------------------------------

def _hello(k):
    k.string("client", False, default="")
    k.number("heartbeat_s", False, 0.05, 60.0, default=None)
    k.boolean("result_parts", False, default=False)
    k.names("digests")
    k.buffers(0)


def _capabilities(k):
    k.string("server", False, default="")
    k.string("protocol_version", False, max_len=16, default="")
    k.number("heartbeat_s", False, 0.05, 60.0, default=1.0)
    k.obj("pipeline", False, default={})
    k.obj("limits", False, default={})
    k.obj("queue", False, default={})
    k.string("instance", False, max_len=128, default=None)
    k.number("keep_results_s", False, 0.0, 1e9, default=None)
    k.boolean("insecure", False, default=False)
    k.string("on_client_lost", False, max_len=32, default=None)
    k.names("digests", default=("sha256",))


def _submit(k):
    k.string("idempotency_key", True, max_len=128, pattern=KEY_RE)
    k.obj("options", False, default={}, max_keys=MAX_OPTIONS_KEYS)
    rig = k.obj("rig", False, default=None)
    if rig is not None:
        try:
            Rig.from_dict(rig)
        except CameraError as e:
            k.fail("rig", str(e))
        except (ArithmeticError, TypeError, ValueError):   # e.g. 10**400: no float holds it
            k.fail("rig", "every number must be a finite float (within +-1.8e308)")
    image = k.obj("image", True)
    mt = image.get("media_type")
    if mt not in IMAGE_MEDIA_TYPES:
        k.fail("image.media_type", f"must be one of {', '.join(IMAGE_MEDIA_TYPES)}; got "
                                   f"{str(mt)[:64]!r}")
    name = image.get("name", "")
    if name is not None and (not isinstance(name, str) or len(name) > 256):
        k.fail("image.name", "must be a string of at most 256 characters (display only)")
    k.buffers(1)
    if len(k.msg.buffers[0]) == 0:
        k.fail("buffers", "the photo frame is empty")


def _accepted(k):
    _job_id(k)
    k.string("idempotency_key", False, max_len=128, default=None)
    k.string("state", False, choices=JOB_STATES, default="queued")
    k.number("queue_position", False, 0, 1e9, default=None, integer=True)
    k.boolean("duplicate", False, default=False)
    k.boolean("rerun", False, default=False)


def _progress(k):
    _job_id(k)
    k.string("stage", True, max_len=64)
    k.number("fraction", True, 0.0, 1.0)
    k.string("message", False, max_len=MAX_MESSAGE_CHARS, default="")
    k.number("overall", False, 0.0, 1.0, default=None)


def _preview(k):
    _job_id(k)
    k.string("name", True, max_len=128)
    k.string("media_type", False, choices=IMAGE_MEDIA_TYPES, default="image/png")
    k.string("stage", False, max_len=64, default=None)
    k.buffers(1)


def _result(k):
    _job_id(k)
    k.string("media_type", False, choices=(GLB_MEDIA_TYPE,), default=GLB_MEDIA_TYPE)
    k.obj("sidecar", True)
    parts = k.number("parts", False, 1, MAX_RESULT_PARTS, default=None, integer=True)
    if parts is None:
        k.string("sha256", False, max_len=64, default=None)
        k.buffers(1)
        return
    # (1.3) the GLB follows in `parts` result_part messages: size and sha256 are required
    _sha256(k)
    k.number("size", True, parts, MAX_RESULT_BYTES, integer=True)
    k.buffers(0)


def _sha256(k):
    v = k.string("sha256", True, max_len=64)
    if not SHA256_RE.match(v):
        k.fail("sha256", "must be 64 lowercase hex digits")


def _result_part(k):
    """(1.3) One piece of a result announced by a `result` with `parts` (SPEC 5.7)."""
    _job_id(k)
    _sha256(k)
    parts = k.number("parts", True, 1, MAX_RESULT_PARTS, integer=True)
    k.number("index", True, 0, parts - 1, integer=True)
    size = k.number("size", True, parts, MAX_RESULT_BYTES, integer=True)
    offset = k.number("offset", True, 0, size - 1, integer=True)
    k.buffers(1)
    n = len(k.msg.buffers[0])
    if n == 0 or offset + n > size:
        k.fail("buffers", f"a result_part carries 1 to {size - offset} bytes at offset "
                          f"{offset} of {size}; got {n}")


def _error(k):
    k.string("code", True, max_len=64)
    k.string("message", True, max_len=MAX_MESSAGE_CHARS)
    _job_id(k, required=False)
    k.obj("details", False, default={})
    k.number("retry_after_s", False, 0.0, 86400.0, default=None)


def _job_request(k):
    _job_id(k)
    k.buffers(0)


def _cancel_reply(k):
    _job_id(k)
    k.string("state", True, choices=JOB_STATES)
    k.boolean("known", False, default=True)
    k.boolean("cancelling", False, default=False)


def _status(k):
    _job_id(k, required=False)
    k.buffers(0)


def _status_reply(k):
    _job_id(k, required=False)
    k.string("state", False, choices=JOB_STATES, default=None)
    k.string("stage", False, max_len=64, default=None)
    k.number("fraction", False, 0.0, 1.0, default=None)
    k.number("queue_position", False, 0, 1e9, default=None, integer=True)
    k.obj("error", False, default=None)
    k.boolean("result_available", False, default=False)
    k.number("expires_in_s", False, 0.0, 1e9, default=None)
    k.obj("server", False, default={})
    k.string("sha256", False, max_len=64, default=None)
    k.number("runs", False, 0, 1e9, default=0, integer=True)


def _ping(k):
    k.number("heartbeat_s", False, 0.05, 60.0, default=None)
    k.string("instance", False, max_len=128, default=None)


def _nothing(k):
    pass


VALIDATORS: dict[str, Callable[[_Checker], None]] = {
    "hello": _hello, "capabilities": _capabilities, "submit": _submit, "accepted": _accepted,
    "progress": _progress, "preview": _preview, "result": _result,
    "result_part": _result_part, "error": _error,
    "cancel": _job_request, "cancel_reply": _cancel_reply, "status": _status,
    "status_reply": _status_reply, "fetch_result": _job_request, "ping": _ping,
    "pong": _ping, "bye": _nothing,
}


def validate(msg: Message, direction: str | None = None) -> dict:
    """Check `msg` (direction "to_server", "to_client" or None for either) and return its
    content with defaults filled. ProtocolError(BAD_REQUEST) on an unknown type, a type that
    does not travel in that direction, or a bad field."""
    allowed = {"to_server": CLIENT_TYPES, "to_client": SERVER_TYPES}.get(direction, ALL_TYPES)
    if msg.msg_type not in VALIDATORS:
        raise ProtocolError("BAD_REQUEST", f"unknown message type {msg.msg_type[:64]!r}; "
                            f"known types: {', '.join(allowed)}", msg.header_dict())
    if msg.msg_type not in allowed:
        raise ProtocolError("BAD_REQUEST", f"a {msg.msg_type!r} message is not sent "
                            f"{direction.replace('_', ' ')}", msg.header_dict())
    k = _Checker(msg)
    VALIDATORS[msg.msg_type](k)
    return k.out


# --------------------------------------------------------------------------------------------
# Builders (content dicts follow SPEC.md)
# --------------------------------------------------------------------------------------------

def hello(client: str = "", heartbeat_s: float | None = None, session: str | None = None,
          result_parts: bool = False, digests: Sequence[str] = ()) -> Message:
    c: dict[str, Any] = {"client": client}
    if result_parts:
        c["result_parts"] = True
    if digests:
        c["digests"] = list(digests)      # (1.4) the buffer digests it verifies, best first
    if heartbeat_s is not None:
        c["heartbeat_s"] = float(heartbeat_s)
    return Message("hello", c, session=session)


def submit(image: bytes, media_type: str, idempotency_key: str, options: dict | None = None,
           rig: Rig | dict | None = None, name: str = "", session: str | None = None
           ) -> Message:
    rig_d = rig.to_dict() if isinstance(rig, Rig) else rig
    return Message("submit", {"idempotency_key": idempotency_key, "options": dict(options or {}),
                              "rig": rig_d, "image": {"media_type": media_type, "name": name}},
                   [image], session=session)


def job_request(msg_type: str, job_id: str | None, session: str | None = None) -> Message:
    """cancel / status / fetch_result."""
    return Message(msg_type, {"job_id": job_id}, session=session)


def ping(heartbeat_s: float | None = None, session: str | None = None) -> Message:
    return Message("ping", {} if heartbeat_s is None else {"heartbeat_s": float(heartbeat_s)},
                   session=session)


# Server-side builders. The caller sets parent_id (the submit/fetch_result that attached the
# client) and routing (the client's routing id) before sending.

def accepted(job_id: str, idempotency_key: str | None, state: str,
             queue_position: int | None = None, duplicate: bool = False) -> Message:
    return Message("accepted", {"job_id": job_id, "idempotency_key": idempotency_key,
                                "state": state, "queue_position": queue_position,
                                "duplicate": bool(duplicate)})


def progress(job_id: str, stage: str, fraction: float, message: str = "",
             overall: float | None = None) -> Message:
    f = min(1.0, max(0.0, float(fraction)))
    c: dict[str, Any] = {"job_id": job_id, "stage": stage, "fraction": f,
                         "message": message[:MAX_MESSAGE_CHARS]}
    if overall is not None:
        c["overall"] = min(1.0, max(0.0, float(overall)))
    return Message("progress", c)


def preview(job_id: str, name: str, image, media_type: str = "image/png",
            stage: str | None = None) -> Message:
    return Message("preview", {"job_id": job_id, "name": name, "media_type": media_type,
                               "stage": stage}, [image])


def result(job_id: str, glb, sidecar: dict, digest: bytes | None = None) -> Message:
    """The `result` event. `digest` = SHA-256 of `glb` if already known (e.g. computed once
    when the job finished and kept with the result): it fills both the content's `sha256` and
    the signature's buffer digest, so a 64 MB GLB is not hashed again on every send."""
    if digest is None:
        digest = hashlib.sha256(glb).digest()
    return Message("result", {"job_id": job_id, "media_type": GLB_MEDIA_TYPE,
                              "sidecar": sidecar, "sha256": digest.hex()}, [glb],
                   digests=[digest])


def error_reply(parent: Message | dict | None, code: str, message: str,
                job_id: str | None = None, routing: Sequence = (), **details) -> Message:
    """An `error` answering `parent` (a Message, a header dict, or None when unreadable)."""
    if code not in ERROR_CODES:
        code = "INTERNAL"
    if isinstance(parent, Message):
        parent_id, routing = parent.msg_id, (routing or parent.routing)
    elif isinstance(parent, dict):
        parent_id = reply_parent(parent)         # only a valid msg_id is echoed (SPEC 5.0)
    else:
        parent_id = None
    content: dict[str, Any] = {"code": code, "message": message[:MAX_MESSAGE_CHARS],
                               "job_id": job_id}
    if details:
        content["details"] = details
    return Message("error", content, parent_id=parent_id, routing=list(routing))


def error_from_exception(err: ProtocolError, job_id: str | None = None) -> Message:
    """The `error` reply for a ProtocolError raised while decoding/validating a message."""
    return error_reply(err.header, err.code, err.message, job_id or err.job_id, err.routing)
