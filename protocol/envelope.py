"""The one envelope every message travels in, and its checked encoding to/from ZeroMQ frames.

Frame layout (SPEC.md, "Framing"):

    [routing id frames (ROUTER side only)]
    0  b"G3F1"                      magic + wire-format version; also the routing delimiter
    1  signature                    64 ASCII hex chars (HMAC-SHA256) or b"" (insecure mode)
    2  header  JSON object (UTF-8)  protocol, version, msg_id, msg_type, parent_id, session,
                                     timestamp, nonce; (1.4) digest, with buffers only
    3  content JSON object (UTF-8)  per msg_type (see messages.py / SPEC.md)
    4… binary buffers               raw bytes (photos, previews, GLB): never base64/pickle

Decoding checks the cheap things first (frame count, every frame's size, total size, JSON
frame sizes) before hashing or parsing anything, then the signature (over the raw bytes),
then parses the header, the version, the replay window, and finally the content.
"""
from __future__ import annotations

import json
import math
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Sequence

from .errors import AuthError, ProtocolError
from .signing import (MAGIC, SHA256, ReplayGuard, Signer, buffer_digest, new_nonce,
                      supported_digests)

PROTOCOL_NAME = "gen3dface"
PROTOCOL_VERSION = "1.4"          # major.minor: majors are incompatible, minors only add
PROTOCOL_MAJOR = 1
N_FIXED_FRAMES = 4                # magic, signature, header, content
MAX_ROUTING_FRAMES = 4
SIGNATURE_CHARS = 64

MiB = 1024 * 1024
MAX_JSON_DEPTH = 32               # nesting levels of a header/content JSON object (SPEC 6)
# fullmatch with ASCII classes only: "１.１" (fullwidth digits) or "1.1\n" are not versions
_ID_RE = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_VERSION_RE = re.compile(r"([0-9]{1,4})\.([0-9]{1,4})")


def valid_id(value) -> bool:
    """True for a protocol id (msg_id, job_id, idempotency_key): 1-128 chars of
    [A-Za-z0-9._:-]. Only such a string is ever echoed back (e.g. as an error's parent_id)."""
    return isinstance(value, str) and _ID_RE.fullmatch(value) is not None


def reply_parent(header) -> str | None:
    """The parent_id for an answer to a message with this (parsed, maybe hostile) header: its
    msg_id when that is a valid id, else None (SPEC 5.0)."""
    if isinstance(header, dict):
        msg_id = header.get("msg_id")
        if valid_id(msg_id):
            return msg_id
    return None


def brief(value, limit: int = 64) -> str:
    """A short, always-encodable description of a received value for an error message:
    strings are shown (cut, escaped by repr), anything else by its type."""
    if isinstance(value, str):
        return repr(value[:limit])
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, (int, float)):
        text = repr(value) if not isinstance(value, int) or abs(value) < 10 ** 18 else \
            f"an integer of {len(str(abs(value)))} digits"
        return text[:limit]
    return type(value).__name__


@dataclass(frozen=True)
class Limits:
    """Receive limits. `max_part_bytes` is also set as the socket's ZMQ MAXMSGSIZE, so libzmq
    drops an oversized frame (and the connection that sent it) before buffering it."""

    max_part_bytes: int = 64 * MiB       # any single frame
    max_parts: int = 12                  # frames after the routing ids (4 fixed + buffers)
    max_total_bytes: int = 96 * MiB      # all frames together
    max_header_bytes: int = 16 * 1024    # header JSON frame
    max_content_bytes: int = 4 * MiB     # content JSON frame

    @classmethod
    def for_server(cls) -> "Limits":
        """What a server accepts from clients: one photo (<= 64 MiB) per message."""
        return cls()

    @classmethod
    def for_client(cls) -> "Limits":
        """What a client accepts from a server: results (GLB) up to 1 GiB."""
        return cls(max_part_bytes=1024 * MiB, max_parts=12, max_total_bytes=1100 * MiB)

    def to_dict(self) -> dict:
        return {"max_part_bytes": self.max_part_bytes, "max_parts": self.max_parts,
                "max_total_bytes": self.max_total_bytes,
                "max_header_bytes": self.max_header_bytes,
                "max_content_bytes": self.max_content_bytes}


def new_id() -> str:
    return uuid.uuid4().hex


@dataclass
class Message:
    """One protocol message. `timestamp` and `nonce` are (re)set each time it is encoded."""

    msg_type: str
    content: dict = field(default_factory=dict)
    buffers: list = field(default_factory=list)       # bytes-like binary frames (see decode)
    msg_id: str = field(default_factory=new_id)
    parent_id: str | None = None
    session: str | None = None
    timestamp: float = 0.0
    nonce: str = ""
    version: str = PROTOCOL_VERSION
    extra_header: dict = field(default_factory=dict)  # unknown header fields (tolerated)
    routing: list = field(default_factory=list)       # ROUTER identity frames
    digests: list | None = None                       # digests of the buffers, when known
    identity: str | None = None                       # receiver side: the sender's CURVE key
    digest: str = SHA256                              # (1.4) the algorithm of `digests`

    def header_dict(self) -> dict:
        h = dict(self.extra_header)
        h.update({"protocol": PROTOCOL_NAME, "version": self.version, "msg_id": self.msg_id,
                  "msg_type": self.msg_type, "parent_id": self.parent_id,
                  "session": self.session, "timestamp": self.timestamp, "nonce": self.nonce})
        if self.buffers and self.digest != SHA256:
            h["digest"] = self.digest       # (1.4) absent means SHA-256, as before 1.4
        else:
            h.pop("digest", None)
        return h

    def reply(self, msg_type: str, content: dict | None = None, buffers: Sequence = (),
              session: str | None = None) -> "Message":
        """A message answering this one: parent_id = this msg_id, same routing ids."""
        return Message(msg_type, dict(content or {}), list(buffers), parent_id=self.msg_id,
                       session=session, routing=list(self.routing))


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON; NaN/Infinity are refused (they are not JSON). Total over str: a
    string holding a lone surrogate (a peer may send "\\ud800", which JSON allows) cannot be
    UTF-8, so such an object is written with every non-ASCII character escaped instead."""
    try:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=True,
                          allow_nan=False).encode("ascii")


def _depth_exceeds(obj, limit: int) -> bool:
    """True when containers nest deeper than `limit` levels (iterative: no recursion)."""
    stack = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if d > limit:
            return True
        children = o.values() if isinstance(o, dict) else o
        for c in children:
            if isinstance(c, (dict, list)):
                stack.append((c, d + 1))
    return False


def _bad_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def loads_object(data, what: str) -> dict:
    """Parse a JSON object frame; ProtocolError(BAD_REQUEST) on anything else."""
    try:
        text = bytes(data).decode("utf-8")
        obj = json.loads(text, parse_constant=_bad_constant)
    except UnicodeDecodeError:
        raise ProtocolError("BAD_REQUEST", f"the {what} frame is not UTF-8") from None
    except RecursionError:
        raise ProtocolError("BAD_REQUEST", f"the {what} JSON is nested too deeply") from None
    except ValueError as e:   # JSONDecodeError, too many int digits, NaN/Infinity
        raise ProtocolError("BAD_REQUEST", f"the {what} frame is not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise ProtocolError("BAD_REQUEST", f"the {what} JSON must be an object, got "
                            f"{type(obj).__name__}")
    if _depth_exceeds(obj, MAX_JSON_DEPTH):
        raise ProtocolError("BAD_REQUEST", f"the {what} JSON is nested more than "
                            f"{MAX_JSON_DEPTH} levels deep")
    return obj


def _as_buffer(frame):
    """bytes-like view of a frame: bytes, bytearray, memoryview, or a zmq.Frame."""
    if isinstance(frame, (bytes, bytearray, memoryview)):
        return frame
    buf = getattr(frame, "buffer", None)   # zmq.Frame (copy=False receive)
    if buf is not None:
        return buf
    raise ProtocolError("BAD_REQUEST", f"a frame is not bytes ({type(frame).__name__})")


def _as_bytes(buf) -> bytes:
    return buf if isinstance(buf, bytes) else bytes(buf)


def _keep(buf, zero_copy: bool):
    """A received buffer as handed to the application: bytes by default; with zero_copy, a
    frame that is not already bytes (a zmq.Frame received with copy=False) stays a read-only
    memoryview, so a 64 MB GLB is not copied once more (len, ==, slicing, hashing, file.write
    and io.BytesIO work on it; bytes methods such as .startswith do not)."""
    if isinstance(buf, bytes):
        return buf
    return memoryview(buf).toreadonly() if zero_copy else bytes(buf)


def _digest_field(header: dict) -> str:
    """A header's (1.4) `digest`: absent = SHA-256; a name this side does not support is
    BAD_REQUEST (a sender only uses one its peer offered, signing.choose_digest)."""
    name = header.get("digest", SHA256)
    if not isinstance(name, str) or name not in supported_digests():
        raise ProtocolError("BAD_REQUEST", f"header: digest {brief(name)} is not supported "
                            f"here; this side computes {', '.join(supported_digests())}",
                            header)
    return name


def split_routing(frames: Sequence, router: bool) -> tuple[list, list]:
    """(routing id frames, protocol frames). On a ROUTER socket the ids are every frame before
    the first b"G3F1" frame (at most MAX_ROUTING_FRAMES; without one, the first frame is taken
    as the id so that an error can still be sent back). A DEALER receives no ids."""
    frames = list(frames)
    if not router or not frames:
        return [], frames
    for i in range(1, min(len(frames), MAX_ROUTING_FRAMES + 1)):
        buf = _as_buffer(frames[i])
        if len(buf) == len(MAGIC) and bytes(buf) == MAGIC:
            return [_as_bytes(_as_buffer(f)) for f in frames[:i]], frames[i:]
    return [_as_bytes(_as_buffer(frames[0]))], frames[1:]


class Codec:
    """Encodes and decodes messages for one side of a connection.

    signer: Signer(key) or Signer(None) for insecure mode. replay: a ReplayGuard (created if
    None; ignored in insecure mode). limits: what this side accepts when decoding.
    zero_copy: decoded buffers of zmq.Frame input stay memoryviews instead of bytes."""

    def __init__(self, signer: Signer, limits: Limits | None = None,
                 replay: ReplayGuard | None = None, clock=time.time, zero_copy: bool = False):
        self.signer = signer
        self.zero_copy = zero_copy
        # message types whose buffers stay memoryviews even without zero_copy (the client
        # assembles result_part pieces itself: no bytes copy of each piece)
        self.zero_copy_types: frozenset = frozenset()
        self.limits = limits or Limits()
        self.replay = replay if replay is not None else ReplayGuard(clock=clock)
        self.clock = clock

    # ---- sending --------------------------------------------------------------------------
    def encode(self, msg: Message) -> list:
        """Frames for `msg` (routing ids first when msg.routing is set). Fresh timestamp and
        nonce each call. Reuses msg.digests when given (e.g. a cached result's digest; they
        must be msg.digest's, SHA-256 unless the peer offered another, signing.choose_digest)."""
        if not isinstance(msg.content, dict):
            raise TypeError("message content must be a dict")
        msg.timestamp = self.clock()
        msg.nonce = new_nonce()
        header = dumps(msg.header_dict())
        content = dumps(msg.content)
        buffers = [_as_buffer(b) for b in msg.buffers]
        if self.signer.insecure:
            sig = b""
        else:
            if msg.digests is None or len(msg.digests) != len(buffers):
                msg.digests = [buffer_digest(b, msg.digest) for b in buffers]
            sig = self.signer.sign(header, content, msg.digests)
        return [*msg.routing, MAGIC, sig, header, content, *buffers]

    # ---- receiving ------------------------------------------------------------------------
    def check_sizes(self, frames: Sequence) -> None:
        """Frame count and sizes (cheap; nothing parsed). ProtocolError on violation."""
        lim = self.limits
        n = len(frames)
        if n < N_FIXED_FRAMES:
            raise ProtocolError("BAD_REQUEST", f"a message has at least {N_FIXED_FRAMES} frames "
                                f"(G3F1, signature, header, content); got {n}")
        if n > lim.max_parts:
            raise ProtocolError("TOO_LARGE", f"{n} frames; at most {lim.max_parts} are accepted")
        total = 0
        for i, f in enumerate(frames):
            size = len(_as_buffer(f))
            if size > lim.max_part_bytes:
                raise ProtocolError("TOO_LARGE", f"frame {i} is {size} bytes; at most "
                                    f"{lim.max_part_bytes} are accepted")
            total += size
        if total > lim.max_total_bytes:
            raise ProtocolError("TOO_LARGE", f"the message is {total} bytes; at most "
                                f"{lim.max_total_bytes} are accepted")
        if len(_as_buffer(frames[2])) > lim.max_header_bytes:
            raise ProtocolError("TOO_LARGE", f"the header JSON is over {lim.max_header_bytes} "
                                "bytes")
        if len(_as_buffer(frames[3])) > lim.max_content_bytes:
            raise ProtocolError("TOO_LARGE", f"the content JSON is over "
                                f"{lim.max_content_bytes} bytes")

    def buffer_digests(self, frames: Sequence) -> list[bytes] | None:
        """The digest of each binary frame of a (DEALER-side) message, as decode() would
        compute them (by the header's `digest`), or None when this side verifies nothing or
        the frames fail the size checks or name no digest it knows (decode refuses those
        before hashing anything). Thread-safe: the client
        hashes large messages on worker threads (hashlib releases the GIL) and passes the
        result to decode(..., digests=) so the next message is hashed meanwhile."""
        if self.signer.insecure:
            return None
        try:
            self.check_sizes(frames)
            algorithm = self._header_digest(_as_buffer(frames[2]))
        except ProtocolError:
            return None
        return [buffer_digest(_as_buffer(b), algorithm) for b in frames[N_FIXED_FRAMES:]]

    def decode(self, frames: Sequence, router: bool = False, sender: str = "",
               digests: Sequence[bytes] | None = None) -> Message:
        """Frames -> Message, or ProtocolError (code BAD_REQUEST, TOO_LARGE, AUTH,
        UNSUPPORTED_VERSION) carrying .routing and, when readable, .header.

        `frames` may be bytes or zmq.Frame (recv_multipart(copy=False)). Buffers come back as
        bytes, or (Codec(zero_copy=True) and zmq.Frame input) as read-only memoryviews over
        the received frames, saving one copy of large results. `sender`: who sent it as far
        as the transport can tell (a CURVE public key, "" when unknown), for the replay
        cache's per-sender accounting (signing.ReplayGuard). `digests`: buffer_digests() of
        these same frames, computed beforehand (never anything the peer sent)."""
        routing: list = []
        try:
            routing, frames = split_routing(frames, router)
            return self._decode(frames, routing, sender, digests)
        except ProtocolError as e:
            e.routing = routing
            raise

    def _decode(self, frames: Sequence, routing: list, sender: str = "",
                known_digests: Sequence[bytes] | None = None) -> Message:
        self.check_sizes(frames)
        views = [_as_buffer(f) for f in frames]
        magic = bytes(views[0])
        if magic != MAGIC:
            if len(magic) == 4 and magic[:3] == MAGIC[:3]:
                raise ProtocolError("UNSUPPORTED_VERSION", f"wire format {magic!r} is not "
                                    f"supported; this side speaks {MAGIC!r}")
            raise ProtocolError("BAD_REQUEST", "the first frame must be b'G3F1': not a "
                                "Gen3D-Face protocol message")
        sig, header_b, content_b, buffers = views[1], views[2], views[3], views[4:]
        if len(sig) not in (0, SIGNATURE_CHARS):
            raise AuthError(f"the signature frame must be {SIGNATURE_CHARS} hex characters or "
                            f"empty; got {len(sig)} bytes", self._peek_header(header_b))
        digests = None
        if not self.signer.insecure:
            algorithm = self._header_digest(header_b) if buffers else SHA256
            if known_digests is not None and len(known_digests) == len(buffers):
                digests = list(known_digests)
            else:
                digests = [buffer_digest(b, algorithm) for b in buffers]
            try:
                self.signer.verify(bytes(sig), bytes(header_b), bytes(content_b), digests)
            except AuthError as e:
                e.header = self._peek_header(header_b)
                raise
        header = loads_object(header_b, "header")
        h = self._check_header(header)
        if not self.signer.insecure:
            try:
                # the transport's identity when there is one, else the signed session
                self.replay.check(h["timestamp"], h["nonce"],
                                  sender or "session:" + (h["session"] or ""))
            except AuthError as e:
                e.header = header
                raise
        try:
            content = loads_object(content_b, "content")
        except ProtocolError as e:
            e.header = header
            raise
        known = {"protocol", "version", "msg_id", "msg_type", "parent_id", "session",
                 "timestamp", "nonce", "digest"}
        zero_copy = self.zero_copy or h["msg_type"] in self.zero_copy_types
        return Message(h["msg_type"], content, [_keep(b, zero_copy) for b in buffers],
                       h["msg_id"],
                       h["parent_id"], h["session"], h["timestamp"], h["nonce"], h["version"],
                       {k: v for k, v in header.items() if k not in known}, routing, digests,
                       sender or None, h["digest"])

    @staticmethod
    def _header_digest(header_b) -> str:
        """The buffer digest a header names (1.4 `digest`), read before the signature is
        checked because the signature covers the buffers through it; the header itself is
        signed, so a changed name fails the check. SHA-256 when absent or when the header
        cannot be read (the check then fails, or decoding refuses the header after it);
        BAD_REQUEST for a name this side does not support."""
        raw = bytes(header_b)
        if b'"digest"' not in raw:
            return SHA256
        try:
            header = loads_object(raw, "header")
        except ProtocolError:
            return SHA256
        return _digest_field(header)

    @staticmethod
    def _peek_header(header_b) -> dict | None:
        try:
            h = loads_object(header_b, "header")
        except ProtocolError:
            return None
        return h if valid_id(h.get("msg_id")) else None

    def _check_header(self, header: dict) -> dict:
        def bad(msg):
            return ProtocolError("BAD_REQUEST", f"header: {msg}", header)

        protocol = header.get("protocol", PROTOCOL_NAME)
        if protocol != PROTOCOL_NAME:
            raise bad(f"protocol must be '{PROTOCOL_NAME}', got {brief(protocol)}")
        version = header.get("version")
        m = _VERSION_RE.fullmatch(version) if isinstance(version, str) else None
        if not m:
            raise bad(f"version must be a 'major.minor' string of ASCII digits, got "
                      f"{brief(version)}")
        if int(m.group(1)) != PROTOCOL_MAJOR:
            raise ProtocolError("UNSUPPORTED_VERSION", f"protocol version {version} is not "
                                f"supported; this side speaks {PROTOCOL_VERSION}", header)
        msg_id = header.get("msg_id")
        if not valid_id(msg_id):
            raise bad("msg_id must be 1-128 characters of [A-Za-z0-9._:-]")
        msg_type = header.get("msg_type")
        if not isinstance(msg_type, str) or not 1 <= len(msg_type) <= 64:
            raise bad("msg_type must be a string of 1-64 characters")
        parent_id = header.get("parent_id")
        if parent_id is not None and (not isinstance(parent_id, str) or len(parent_id) > 128):
            raise bad("parent_id must be null or a string of at most 128 characters")
        session = header.get("session")
        if session is not None and (not isinstance(session, str) or len(session) > 128):
            raise bad("session must be null or a string of at most 128 characters")
        ts = header.get("timestamp")
        if isinstance(ts, bool) or not isinstance(ts, (int, float)):
            raise bad("timestamp must be a number (seconds since the Unix epoch, UTC)")
        try:
            ts = float(ts)                      # 10**400 (valid JSON) overflows a float
        except OverflowError:
            ts = math.inf
        if not math.isfinite(ts):
            raise bad("timestamp must be a finite number of seconds since the Unix epoch "
                      f"(UTC), got {brief(header.get('timestamp'))}")
        nonce = header.get("nonce")
        if not isinstance(nonce, str) or not (0 if self.signer.insecure else 16) <= len(nonce) <= 128:
            raise bad("nonce must be a string of 16-128 characters")
        return {"version": version, "msg_id": msg_id, "msg_type": msg_type,
                "parent_id": parent_id, "session": session, "timestamp": ts,
                "nonce": nonce, "digest": _digest_field(header)}
