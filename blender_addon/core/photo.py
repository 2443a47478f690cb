"""Photo bytes for the wire: media type from the file's magic bytes, and a PNG from Blender's
pixel buffer.

Array layouts: Blender's `Image.pixels` is a flat float RGBA buffer (4 floats per pixel, values
in [0, 1]) with rows BOTTOM-to-top; the PNG written here is 8-bit RGB(A) rows TOP-to-bottom,
which is what the backend decodes (HxWx3 uint8 RGB, rows top-to-bottom).
"""
from __future__ import annotations

import struct
import zlib

import numpy as np

MEDIA_TYPES = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg"}


def sniff_media_type(data: bytes) -> str:
    """image/png, image/jpeg or image/webp; ValueError for anything else (the backend only
    accepts these three)."""
    head = bytes(data[:16])
    for magic, media in MEDIA_TYPES.items():
        if head.startswith(magic):
            return media
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    raise ValueError("the photo is not a PNG, JPEG or WebP file; save it in one of these "
                     "formats")


def png_from_blender_pixels(pixels, width: int, height: int, alpha: bool = False) -> bytes:
    """PNG bytes from a flat float RGBA bottom-to-top buffer (Image.pixels / foreach_get)."""
    a = np.asarray(pixels, dtype=np.float32)
    if a.size != width * height * 4:
        raise ValueError(f"expected {width}x{height}x4 floats, got {a.size}")
    img = a.reshape(height, width, 4)[::-1]                      # rows top-to-bottom
    img = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    if not alpha:
        img = img[:, :, :3]
    return encode_png(img)


def encode_png(img: np.ndarray) -> bytes:
    """Minimal PNG encoder for HxWx3 / HxWx4 uint8 (rows top-to-bottom)."""
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] not in (3, 4):
        raise ValueError("encode_png needs an HxWx3 or HxWx4 uint8 array")
    h, w, c = img.shape
    raw = np.concatenate([np.zeros((h, 1), np.uint8), img.reshape(h, w * c)], axis=1)

    def chunk(tag: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + tag + body
                + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 6 if c == 4 else 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)) + chunk(b"IEND", b""))
