"""Read an image's format and declared size from its first bytes, without decoding it.

Standard library only: the Blender add-on refuses a bad photo before sending it, and the server
refuses decompression bombs (a small file that declares a huge image) before any pixel is
decoded. Formats: PNG, JPEG (baseline, progressive, lossless SOF markers), WebP (VP8, VP8L,
VP8X). Nothing here trusts the file: every offset is bounds-checked, and the scan of a JPEG
stops after MAX_JPEG_SCAN bytes.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from .errors import ProtocolError

MAX_PIXELS = 40_000_000          # about 40 MP (same as the backend's decoder)
MIN_SIDE = 16
MAX_JPEG_SCAN = 4 * 1024 * 1024  # SOF must come within the first 4 MiB (EXIF/ICC come first)

MEDIA_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


@dataclass(frozen=True)
class ImageInfo:
    format: str        # "PNG" | "JPEG" | "WEBP"
    width: int
    height: int

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.format]

    @property
    def pixels(self) -> int:
        return self.width * self.height


def _bad(msg: str) -> ProtocolError:
    return ProtocolError("BAD_IMAGE", msg)


def _png(data: bytes) -> ImageInfo:
    # 8-byte signature, then the IHDR chunk: length(4) "IHDR" width(4) height(4)
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise _bad("damaged PNG: no IHDR chunk at the start")
    w, h = struct.unpack(">II", data[16:24])
    return ImageInfo("PNG", w, h)


def _jpeg(data: bytes) -> ImageInfo:
    i, n = 2, min(len(data), MAX_JPEG_SCAN)
    while i < n:
        if data[i] != 0xFF:
            raise _bad("damaged JPEG: bad marker structure before the frame header")
        while i < n and data[i] == 0xFF:        # fill bytes
            i += 1
        if i >= n:
            break
        marker = data[i]
        i += 1
        if marker == 0xD8 or marker == 0x01 or 0xD0 <= marker <= 0xD7:
            continue                            # stand-alone markers
        if marker in (0xD9, 0xDA):
            raise _bad("damaged JPEG: image data starts before the frame header")
        if i + 2 > n:
            break
        (seg_len,) = struct.unpack(">H", data[i:i + 2])
        if seg_len < 2:
            raise _bad("damaged JPEG: bad segment length")
        if marker in _JPEG_SOF:
            if i + 7 > len(data):
                break
            h, w = struct.unpack(">HH", data[i + 3:i + 7])
            if h == 0:
                raise _bad("JPEG without a declared height (DNL) is not supported")
            return ImageInfo("JPEG", w, h)
        i += seg_len
    raise _bad("damaged or truncated JPEG: no frame header found")


def _webp(data: bytes) -> ImageInfo:
    if len(data) < 30:
        raise _bad("truncated WebP")
    chunk = data[12:16]
    if chunk == b"VP8 ":
        # frame tag (3), start code 9d 01 2a, then 14-bit width/height (+2 scale bits)
        if data[23:26] != b"\x9d\x01\x2a":
            raise _bad("damaged WebP (VP8): bad start code")
        w, h = struct.unpack("<HH", data[26:30])
        return ImageInfo("WEBP", w & 0x3FFF, h & 0x3FFF)
    if chunk == b"VP8L":
        if data[20] != 0x2F:
            raise _bad("damaged WebP (VP8L): bad signature")
        (bits,) = struct.unpack("<I", data[21:25])
        return ImageInfo("WEBP", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8X":
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return ImageInfo("WEBP", w, h)
    raise _bad(f"unsupported WebP chunk {chunk!r}")


def sniff_image(data) -> ImageInfo:
    """Format and declared size from the header; ProtocolError(BAD_IMAGE) for anything that is
    not a readable PNG/JPEG/WebP header. Does NOT apply the size limits (see check_image)."""
    data = bytes(memoryview(data)[:MAX_JPEG_SCAN])
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return _png(data)
    if data.startswith(b"\xff\xd8\xff"):
        return _jpeg(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp(data)
    if not data:
        raise _bad("the photo is empty")
    raise _bad("the file is not a PNG, JPEG or WebP image; save the photo as PNG or JPEG")


def check_image(data, max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE,
                media_type: str | None = None) -> ImageInfo:
    """sniff_image plus the limits: at most `max_pixels`, at least `min_side` per side, and
    (when given) the declared media type must match the bytes. ProtocolError(BAD_IMAGE)."""
    info = sniff_image(data)
    if info.pixels > max_pixels:
        raise _bad(f"the photo declares {info.width}x{info.height} pixels "
                   f"({info.pixels / 1e6:.0f} MP); the limit is {max_pixels / 1e6:.0f} MP. "
                   "Scale it down and try again.")
    if min(info.width, info.height) < min_side:
        raise _bad(f"the photo is only {info.width}x{info.height} pixels (at least "
                   f"{min_side} per side)")
    if media_type is not None and media_type != info.media_type:
        raise _bad(f"the photo is declared as {media_type} but its bytes are "
                   f"{info.media_type}")
    return info
