"""Input checks done by the socket loop when a SUBMIT arrives, before a job is queued:
cheap (headers only, no pixel is decoded), so a bad request costs the server almost nothing.

- the photo: PNG / JPEG / WebP only, declared size read from the header, at most ~40 MP,
  bytes matching the declared media type (a decompression bomb is refused here);
- the rig: `Rig.from_dict` (finite numbers, at most MAX_CAMERAS cameras, sane sizes);
- the options: the workload's `parse_options` (BAD_REQUEST on bad values);
- the idempotency key: a short printable string, used only as a dictionary key.
Every refusal is a PipelineError with a protocol error code.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

from ..images import MAX_PIXELS, check_image_header
from ..contracts import PipelineError
from .jobs import MAX_IDEMPOTENCY_KEY


def check_image(image: Any, media_type: str | None = None,
                max_pixels: int = MAX_PIXELS) -> tuple[str, int, int]:
    """(format, width, height) from the header; BAD_IMAGE unless an allowed format within the
    pixel limit whose bytes match `media_type`. Two readers: the protocol's stdlib sniffer
    (also what clients run before sending) and PIL's header parser (stricter about
    structure); neither decodes a pixel."""
    from ...protocol import images as wire_images
    from ...protocol.errors import ProtocolError

    if not isinstance(image, (bytes, bytearray, memoryview)):
        raise PipelineError("BAD_REQUEST", "submit needs exactly one binary frame: the photo")
    try:
        wire_images.check_image(image, max_pixels=max_pixels, media_type=media_type)
    except ProtocolError as e:
        raise PipelineError("BAD_IMAGE", e.message) from None
    return check_image_header(bytes(image), max_pixels)


MAX_CAMERAS = 64                       # protocol/cameras.py MAX_CAMERAS; SPEC.md section 6


def warm_up() -> None:
    """Import what the checks use, so the first submit is as fast as the others."""
    from PIL import Image, PngImagePlugin, JpegImagePlugin, WebPImagePlugin  # noqa: F401

    from ...protocol import cameras, images  # noqa: F401

    global MAX_CAMERAS
    MAX_CAMERAS = cameras.MAX_CAMERAS


def check_rig(rig: Any):
    """None or a dict in the wire convention -> protocol Rig (or None)."""
    if rig is None:
        return None
    from ...protocol.cameras import Rig   # noqa: WPS433 - the protocol owns the validation

    if not isinstance(rig, dict):
        raise PipelineError("BAD_REQUEST", "rig must be an object (see SPEC.md, 'Rig')")
    try:
        return Rig.from_dict(rig)
    except Exception as e:                 # ValueError/TypeError/KeyError from validation
        raise PipelineError("BAD_REQUEST", f"bad rig: {e}") from None


def check_idempotency_key(key: Any) -> str | None:
    if key is None:
        return None
    if not isinstance(key, str) or not (1 <= len(key) <= MAX_IDEMPOTENCY_KEY) or not key.isprintable():
        raise PipelineError("BAD_REQUEST", f"idempotency_key must be a printable string of 1 to "
                            f"{MAX_IDEMPOTENCY_KEY} characters")
    return key


def request_digest(image: bytes, rig: Any, options: Any) -> str:
    """SHA-256 that identifies a request, so a reused idempotency key with other data is caught."""
    h = hashlib.sha256()
    h.update(hashlib.sha256(image).digest())
    h.update(json.dumps(rig, sort_keys=True, default=str).encode())
    h.update(json.dumps(options, sort_keys=True, default=str).encode())
    return h.hexdigest()
