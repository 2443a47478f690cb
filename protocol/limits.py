"""What a client accepts from a backend, beyond the framing limits (SPEC.md section 11).

A backend can be broken or hostile: a preview whose header declares a 60000 x 60000 image, a
preview "name" that looks like a path, a sidecar nested thousands of levels deep, or ten
thousand progress messages a second. Each is a clear, local failure of that one job
(`RECEIVE_LIMIT`), never a hang, a crash or a file written where the backend chose.

Pure Python, relative imports only (bundled into the Blender extension with the rest of
protocol/). client.py calls these checks; they can be used by any client.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass

from .errors import ProtocolError
from .images import MEDIA_TYPES, sniff_image

MiB = 1024 * 1024

# Client-side codes (SPEC 11): reported by a client, never sent on the wire.
RECEIVE_LIMIT = "RECEIVE_LIMIT"     # a message of the job broke one of the limits below
BAD_RESULT = "BAD_RESULT"           # the result arrived but is unusable (SHA-256 mismatch,
                                    # an undecodable result message, not a GLB, ...)
CLIENT_CODES = {
    RECEIVE_LIMIT: "a message of the job broke a client receive limit (SPEC 11); the job was "
                   "cancelled on the server",
    BAD_RESULT: "the job's result arrived but cannot be used (SHA-256 mismatch, an "
                "unreadable result message, or a file that is not a valid GLB)",
}

# A preview's name is a label (SPEC 5.6), shown to the person and never used as a path.
# Path-like names (a '/', '\\' or ':', a leading '.' or '~', control characters) are refused.
PREVIEW_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.,+()\-]{0,127}")     # ASCII, fullmatch


@dataclass(frozen=True)
class ReceiveLimits:
    """SPEC 11's table. The framing limits (bytes per frame and per message, JSON frame
    sizes) are envelope.Limits.for_client(); these apply to what the messages carry."""

    max_result_bytes: int = 1024 * MiB        # the GLB of one `result`
    max_preview_bytes: int = 16 * MiB         # the encoded image of one `preview`
    max_preview_pixels: int = 4096 * 4096     # declared in the preview's header
    max_sidecar_bytes: int = 1 * MiB          # the `result`'s sidecar, as compact JSON
    max_sidecar_depth: int = 32               # nesting of objects/arrays in the sidecar
    progress_per_s: float = 50.0              # progress + preview messages of one job:
    progress_burst: int = 500                 # a token bucket of this size, refilled at that rate

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class LimitError(ProtocolError):
    """A message broke a receive limit (code RECEIVE_LIMIT)."""

    def __init__(self, message: str):
        super().__init__(RECEIVE_LIMIT, message)


def json_depth(obj) -> int:
    """Nesting depth of parsed JSON (a scalar is 0, [] or {} is 1), without recursion."""
    depth, stack = 0, [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if isinstance(o, dict):
            depth = max(depth, d)
            stack.extend((v, d + 1) for v in o.values())
        elif isinstance(o, (list, tuple)):
            depth = max(depth, d)
            stack.extend((v, d + 1) for v in o)
    return depth


def check_sidecar(sidecar, limits: ReceiveLimits) -> None:
    depth = json_depth(sidecar)
    if depth > limits.max_sidecar_depth:
        raise LimitError(f"the result's sidecar is nested {depth} levels deep; the client "
                         f"accepts at most {limits.max_sidecar_depth}")
    size = len(json.dumps(sidecar, separators=(",", ":"), ensure_ascii=False,
                          default=str).encode("utf-8"))
    if size > limits.max_sidecar_bytes:
        raise LimitError(f"the result's sidecar is {size} bytes of JSON; the client accepts "
                         f"at most {limits.max_sidecar_bytes}")


def check_result(glb, sidecar, limits: ReceiveLimits) -> None:
    """The result's GLB size and its sidecar (size, depth). LimitError on violation."""
    if len(glb) > limits.max_result_bytes:
        raise LimitError(f"the result GLB is {len(glb)} bytes; the client accepts at most "
                         f"{limits.max_result_bytes}")
    check_sidecar(sidecar, limits)


def check_preview(name, media_type, data, limits: ReceiveLimits) -> None:
    """A preview's name (a label, not a path), size, format and declared pixel count, read
    from its header bytes without decoding it. LimitError on violation."""
    shown = repr(name[:64]) if isinstance(name, str) else "(not a string)"
    if not isinstance(name, str) or not PREVIEW_NAME_RE.fullmatch(name):
        raise LimitError(f"the backend sent a preview named {shown}: a preview name is a "
                         "label of ASCII letters, digits, spaces and _.,+()- (no path)")
    if len(data) > limits.max_preview_bytes:
        raise LimitError(f"preview {shown} is {len(data)} bytes; the client accepts at most "
                         f"{limits.max_preview_bytes}")
    try:
        info = sniff_image(data)
    except ProtocolError as e:
        raise LimitError(f"preview {shown} is not a readable image ({e.message})") from None
    if MEDIA_TYPES[info.format] != (media_type or "image/png"):
        raise LimitError(f"preview {shown} is declared as {media_type} but its bytes are "
                         f"{MEDIA_TYPES[info.format]}")
    if info.pixels > limits.max_preview_pixels:
        raise LimitError(f"preview {shown} declares {info.width} x {info.height} pixels; the "
                         f"client accepts at most {limits.max_preview_pixels} pixels")


class RateLimit:
    """Token bucket: `burst` messages at once, then `per_s` a second. take() is False when a
    message comes over the limit."""

    def __init__(self, per_s: float, burst: int, clock=time.monotonic):
        self.per_s, self.burst, self.clock = float(per_s), float(burst), clock
        self.tokens, self.last = float(burst), clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.per_s)
        self.last = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


__all__ = ["ReceiveLimits", "LimitError", "RateLimit", "RECEIVE_LIMIT", "BAD_RESULT",
           "CLIENT_CODES", "check_result", "check_preview", "check_sidecar", "json_depth"]
