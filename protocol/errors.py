"""Error codes carried by `error` messages, and the exception the protocol code raises.

Every code is documented in SPEC.md ("Error codes"). The pipeline's PipelineError uses the same
codes; the service turns either into an `error` message.
"""
from __future__ import annotations

# code -> one-line meaning (SPEC.md has the full table; keep both in step)
ERROR_CODES: dict[str, str] = {
    "BAD_REQUEST": "the message is malformed: bad framing, bad JSON, unknown msg_type, "
                   "a missing or wrongly typed field, or a request the server cannot accept",
    "BAD_IMAGE": "the photo is not a PNG/JPEG/WebP, is damaged, too small, or declares too "
                 "many pixels",
    "NO_FACE": "no face was found in the photo",
    "FACE_TOO_SMALL": "the face in the photo is too small to reconstruct",
    "QUEUE_FULL": "the server's job queue is full; retry later",
    "CANCELLED": "the job was cancelled",
    "INTERRUPTED": "the server stopped (shut down, crashed or restarted) before the job "
                   "finished; submit it again with the same idempotency_key to run it",
    "OUT_OF_MEMORY": "the job ran out of GPU or host memory; the server keeps running",
    "AUTH": "signature missing or wrong, stale timestamp or replayed nonce",
    "INTERNAL": "an unexpected server error; the server keeps running",
    "NOT_AVAILABLE": "the requested generator/feature is not available on this server",
    "NOT_FOUND": "unknown job id, or its result has expired",
    "IDEMPOTENCY_CONFLICT": "this idempotency_key already names a job made from another photo, "
                            "rig or options; use a new key for a new job (1.2)",
    "TOO_LARGE": "a frame, the number of frames or the total size exceeds a limit",
    "UNSUPPORTED_VERSION": "the message's protocol major version is not supported",
    # client-side only (never on the wire from a server):
    "TIMEOUT": "the client's deadline passed before the job finished",
    "DISCONNECTED": "the client lost the server (three missed heartbeats) and gave up",
}


class ProtocolError(Exception):
    """A message that cannot be accepted, with its error code (see ERROR_CODES).

    `header` is the parsed header of the offending message when it could be read (so a
    server can answer with parent_id = header["msg_id"]); None otherwise. `job_id` is set
    when the error concerns one job."""

    def __init__(self, code: str, message: str, header: dict | None = None,
                 job_id: str | None = None, **details):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.header = header
        self.job_id = job_id
        self.details = details
        self.routing: list = []      # ROUTER identity frames of the offending message, if any


class AuthError(ProtocolError):
    """Signature, timestamp or nonce check failed (code AUTH)."""

    def __init__(self, message: str, header: dict | None = None):
        super().__init__("AUTH", message, header)
