"""Message signing (HMAC-SHA256 over the JSON frames AND a digest of every binary frame),
replay protection (timestamp window + nonce cache), and shared-key files.

Signed bytes (SPEC.md, "Signature"), with u64/u32 big-endian lengths:

    b"G3F1" | u64(len(header)) | header | u64(len(content)) | content
            | u32(n_buffers) | D(buffer_0) | ... | D(buffer_n-1)

D is the 32-byte digest the header's `digest` field names (protocol 1.4): SHA-256 when it is
absent (every 1.0-1.3 message), or BLAKE3 (unkeyed, 32-byte output) when it says "blake3"
and both sides have the `blake3` package (negotiated in hello/capabilities). The header is
signed, so the name cannot be changed in transit. The signature frame is the lowercase hex
HMAC-SHA256 of those bytes under the shared key (64 ASCII bytes), or empty in insecure mode.
"""
from __future__ import annotations

import hashlib
import heapq
import hmac
import os
import secrets
import stat
import struct
import sys
import time
from pathlib import Path
from typing import Sequence

from .errors import AuthError, ProtocolError

MAGIC = b"G3F1"
KEY_MIN_CHARS = 32
KEY_MAX_CHARS = 4096
DEFAULT_WINDOW_S = 300.0
DEFAULT_MAX_NONCES = 200_000     # replay cache entries in all (about 40 MB)
DEFAULT_MAX_SENDERS = 4096       # senders with an account of their own in the replay cache


SHA256 = "sha256"
BLAKE3 = "blake3"
try:                                 # optional: a faster digest for large buffers (1.4)
    import blake3 as _blake3
except ImportError:                  # pragma: no cover - depends on the install
    _blake3 = None


def _sha256(buf) -> bytes:
    return hashlib.sha256(buf).digest()


BLAKE3_THREADS_FROM = 4 << 20   # bytes: a larger buffer is hashed on all cores; result_part
#                                  pieces (2 MiB) stay on one: the client hashes two at a time


def _blake3_digest(buf) -> bytes:
    # releases the GIL while it hashes. A large buffer is split over the cores (a 6.1 MB
    # frame just received: 1.32 ms on one thread, 0.86 ms on both of the dev machine's two)
    if len(buf) >= BLAKE3_THREADS_FROM:
        return _blake3.blake3(buf, max_threads=_blake3.blake3.AUTO).digest()
    return _blake3.blake3(buf).digest()


_DIGESTS = {SHA256: _sha256, **({BLAKE3: _blake3_digest} if _blake3 is not None else {})}


def supported_digests() -> tuple[str, ...]:
    """The buffer digests this side can compute, fastest first: ("blake3", "sha256") when
    the blake3 package is installed, else ("sha256",)."""
    return tuple(n for n in (BLAKE3, SHA256) if n in _DIGESTS)


def choose_digest(offered, supported: Sequence[str] | None = None) -> str:
    """The first of the peer's `offered` names (its preference order) that this side
    supports; SHA-256 when nothing offered is known (every pre-1.4 peer)."""
    supported = supported_digests() if supported is None else supported
    if isinstance(offered, (list, tuple)):
        for name in offered:
            if isinstance(name, str) and name in supported and name in _DIGESTS:
                return name
    return SHA256


def buffer_digest(buf, algorithm: str = SHA256) -> bytes:
    """The 32-byte digest of one binary frame (bytes, bytearray, memoryview or zmq.Frame
    buffer): SHA-256, or BLAKE3 where installed. ValueError for a name not supported here."""
    try:
        fn = _DIGESTS[algorithm]
    except (KeyError, TypeError):
        raise ValueError(f"buffer digest {algorithm!r} is not supported here (supported: "
                         f"{', '.join(supported_digests())})") from None
    return fn(buf)


def signing_input(header: bytes, content: bytes, digests: Sequence[bytes]) -> bytes:
    """The exact bytes the HMAC covers (see module docstring)."""
    parts = [MAGIC, struct.pack(">Q", len(header)), header, struct.pack(">Q", len(content)),
             content, struct.pack(">I", len(digests))]
    for d in digests:
        if len(d) != 32:
            raise ValueError("each buffer digest must be 32 bytes (SHA-256 or BLAKE3)")
        parts.append(bytes(d))
    return b"".join(parts)


class Signer:
    """Signs and verifies messages with one shared key; key None = insecure mode (messages
    carry an empty signature and nothing is checked: loopback development only)."""

    def __init__(self, key: bytes | None):
        if key is not None:
            if not isinstance(key, (bytes, bytearray)) or len(key) < KEY_MIN_CHARS:
                raise ValueError(f"the key must be at least {KEY_MIN_CHARS} bytes")
            key = bytes(key)
        self.key = key

    @property
    def insecure(self) -> bool:
        return self.key is None

    def sign(self, header: bytes, content: bytes, digests: Sequence[bytes]) -> bytes:
        if self.key is None:
            return b""
        return hmac.new(self.key, signing_input(header, content, digests),
                        hashlib.sha256).hexdigest().encode("ascii")

    def verify(self, signature: bytes, header: bytes, content: bytes,
               digests: Sequence[bytes]) -> None:
        """AuthError unless `signature` is right (constant-time compare). Insecure: no check."""
        if self.key is None:
            return
        if not signature:
            raise AuthError("the message is unsigned, but this side requires signed messages "
                            "(is the other side running with --insecure, or without a key?)")
        expected = self.sign(header, content, digests)
        if not hmac.compare_digest(bytes(signature), expected):
            raise AuthError("bad signature: the message was signed with a different key, or a "
                            "frame (JSON or binary) was altered in transit")


class ReplayGuard:
    """Replay protection for signed messages (SPEC.md section 4, "Replay cache"): refuses a
    timestamp outside +-window_s of this host's clock, and a nonce it has already accepted.

    Accepted nonces are remembered by TIMESTAMP, not by arrival: each sender's entries sit in
    a min-heap on their timestamp, and an entry is dropped once its timestamp falls below
    now - window_s (from then on the window itself refuses that timestamp, so forgetting it
    cannot open a replay). A future-dated message therefore costs one entry until its own
    time has passed, and never holds anyone else's entries in memory.

    Memory is bounded by `max_nonces` entries in all. When a new entry would exceed it, the
    sender holding the MOST entries loses its entry with the smallest timestamp, and that
    sender's floor rises to that timestamp: from then on that sender's messages dated at or
    before its floor are refused. Other senders are untouched, so one client flooding the
    cache (with fresh or future-dated messages) only ever refuses its own old messages.

    `sender` names who sent the message in a way a replay cannot change: the CURVE public
    key of the connection on a CURVE server (SPEC section 12), else the signed header's
    `session` (a replay carries the original's session, so it meets the original's floor).
    A nonce is looked up across all senders. At most `max_senders` senders have an
    account; the senders that arrive while all are taken share one overflow account, and a
    new account starts at the overflow account's floor (so moving out of the overflow never
    lowers the floor a remembered message met)."""

    OVERFLOW = "\x00overflow"

    def __init__(self, window_s: float = DEFAULT_WINDOW_S, max_nonces: int = DEFAULT_MAX_NONCES,
                 clock=time.time, max_senders: int = DEFAULT_MAX_SENDERS):
        self.window_s = float(window_s)
        self.max_nonces = int(max_nonces)
        self.max_senders = int(max_senders)
        if self.max_nonces < 1 or self.max_senders < 1:
            raise ValueError("max_nonces and max_senders must be at least 1")
        self.clock = clock
        self._seen: dict[str, str] = {}                  # nonce -> sender
        self._senders: dict[str, _SenderCache] = {}
        self._next_expiry = -float("inf")

    def check(self, timestamp: float, nonce: str, sender: str = "") -> None:
        """AuthError unless the message is fresh and new; records it when it is."""
        now = self.clock()
        ts = float(timestamp)
        if not (now - self.window_s <= ts <= now + self.window_s):
            raise AuthError(f"stale or future timestamp ({ts - now:+.1f} s from this "
                            f"host's clock; the window is +-{self.window_s:.0f} s): a replay, or "
                            "the two hosts' clocks disagree (run NTP)")
        if now >= self._next_expiry:
            self._expire(now)
        if nonce in self._seen:
            raise AuthError("replayed message (this nonce was already used)")
        cache = self._senders.get(sender)
        if cache is None:
            overflow = self._senders.get(self.OVERFLOW)
            if len(self._senders) >= self.max_senders + (overflow is not None):
                sender = self.OVERFLOW
                cache = overflow if overflow is not None else self._senders.setdefault(
                    sender, _SenderCache())
            else:
                cache = self._senders[sender] = _SenderCache()
                if overflow is not None:
                    cache.floor = overflow.floor
        if ts <= cache.floor:
            raise AuthError("timestamp too old for the replay cache: this client sent more "
                            "messages within the replay window than the cache holds, and it "
                            "can no longer tell whether this one is a replay; send a fresh "
                            "message")
        heapq.heappush(cache.heap, (ts, nonce))
        self._seen[nonce] = sender
        if len(self._seen) > self.max_nonces:
            self._expire(now)
            while len(self._seen) > self.max_nonces:
                self._evict()

    def _evict(self) -> None:
        """Drop the oldest entry of the sender holding the most, and raise its floor."""
        cache = max(self._senders.values(), key=lambda c: len(c.heap))
        ts, nonce = heapq.heappop(cache.heap)
        del self._seen[nonce]
        cache.floor = max(cache.floor, ts)

    def _expire(self, now: float) -> None:
        """Forget entries (and floors) dated before now - window: the window refuses them."""
        limit = now - self.window_s
        for sender, cache in list(self._senders.items()):
            heap = cache.heap
            while heap and heap[0][0] < limit:
                del self._seen[heapq.heappop(heap)[1]]
            if cache.floor < limit:
                cache.floor = -float("inf")
                if not heap:
                    del self._senders[sender]
        self._next_expiry = now + 1.0        # at most once a second (and whenever full)

    def __len__(self) -> int:
        return len(self._seen)

    def senders(self) -> dict[str, int]:
        """Entries held per sender (for tests and diagnostics)."""
        return {s: len(c.heap) for s, c in self._senders.items()}


class _SenderCache:
    __slots__ = ("heap", "floor")

    def __init__(self):
        self.heap: list[tuple[float, str]] = []          # (timestamp, nonce), min-heap
        self.floor = -float("inf")


# --------------------------------------------------------------------------------------------
# Key files
# --------------------------------------------------------------------------------------------

def check_key_file_permissions(path: Path) -> None:
    """ProtocolError(AUTH) unless the key file is a regular file owned by this user and
    readable by nobody else (mode 0600 or stricter). Skipped on Windows (NTFS ACLs)."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise ProtocolError("AUTH", f"key file {path} is not a regular file")
    if sys.platform == "win32":
        return
    if st.st_mode & 0o077:
        raise ProtocolError(
            "AUTH", f"key file {path} is readable or writable by other users (mode "
            f"{stat.S_IMODE(st.st_mode):04o}); run `chmod 600 {path}` and try again")
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise ProtocolError("AUTH", f"key file {path} belongs to another user (uid {st.st_uid})")


def load_key(path: str | os.PathLike) -> bytes:
    """The shared key from a key file: its text with surrounding whitespace stripped, UTF-8,
    at least KEY_MIN_CHARS characters. Refuses group/world-accessible files."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ProtocolError("AUTH", f"key file {p} does not exist; create one with "
                            "`gen3dface serve --new-key-file PATH` (or "
                            "gen3dface.protocol.signing.generate_key_file)")
    check_key_file_permissions(p)
    raw = p.read_bytes()[: KEY_MAX_CHARS + 64]
    key = raw.strip()
    if len(key) < KEY_MIN_CHARS:
        raise ProtocolError("AUTH", f"key file {p} holds {len(key)} characters; at least "
                            f"{KEY_MIN_CHARS} are needed (generate_key_file makes 64 hex)")
    if len(key) > KEY_MAX_CHARS:
        raise ProtocolError("AUTH", f"key file {p} is too long (over {KEY_MAX_CHARS} chars)")
    return key


def generate_key_file(path: str | os.PathLike, overwrite: bool = False) -> bytes:
    """Write a new random key (64 hex characters = 256 bits) to `path` with mode 0600 and
    return it. Refuses to overwrite an existing file unless `overwrite`."""
    p = Path(path).expanduser()
    key = secrets.token_hex(32).encode("ascii")
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(p, flags, 0o600)
    except FileExistsError:
        raise ProtocolError("AUTH", f"key file {p} already exists; not overwriting it") from None
    with os.fdopen(fd, "wb") as f:
        if sys.platform != "win32":
            os.fchmod(f.fileno(), 0o600)
        f.write(key + b"\n")
    return key


def new_nonce() -> str:
    return secrets.token_hex(16)

