"""The stdlib image header sniffer: format and declared size without decoding, bombs refused."""
from __future__ import annotations

import io
import struct
import time
import zlib

import pytest

from gen3dface.protocol.errors import ProtocolError
from gen3dface.protocol.images import check_image, sniff_image

PIL = pytest.importorskip("PIL.Image")


def encode(fmt, size, mode="RGB", **kw):
    buf = io.BytesIO()
    PIL.new(mode, size, (200, 120, 80)[: len(mode)] if mode != "L" else 128).save(
        buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("fmt,kw", [
    ("PNG", {}), ("JPEG", {}), ("JPEG", {"progressive": True}),
    ("JPEG", {"exif": b"Exif\x00\x00" + b"\x00" * 2000}),
    ("WEBP", {"lossless": False}), ("WEBP", {"lossless": True}),
])
@pytest.mark.parametrize("size", [(17, 33), (640, 480), (1001, 77)])
def test_sizes_agree_with_pillow(fmt, kw, size):
    data = encode(fmt, size, **kw)
    info = sniff_image(data)
    assert (info.format, info.width, info.height) == (fmt, *size)
    assert info.media_type == {"PNG": "image/png", "JPEG": "image/jpeg",
                               "WEBP": "image/webp"}[fmt]


def test_webp_extended_header():
    buf = io.BytesIO()
    PIL.new("RGBA", (300, 200), (10, 20, 30, 100)).save(buf, format="WEBP", lossless=False)
    data = buf.getvalue()                     # translucent alpha -> extended (VP8X) header
    assert data[12:16] == b"VP8X"
    info = sniff_image(data)
    assert (info.width, info.height) == (300, 200)


def png_declaring(w, h, pad_to=48 * 1024):
    """A real-looking PNG header that declares w x h pixels, padded to ~pad_to bytes."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    chunk = lambda t, d: (struct.pack(">I", len(d)) + t + d
                          + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF))
    idat = zlib.compress(b"\x00" * 1000)
    body = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
    return body + chunk(b"tEXt", b"c\x00" + b"x" * max(0, pad_to - len(body) - 14))


def test_decompression_bomb_refused_quickly():
    bomb = png_declaring(20000, 20000)                  # 400 MP in a 48 KB file
    assert 40_000 < len(bomb) < 60_000
    t = time.perf_counter()
    with pytest.raises(ProtocolError, match="400 MP") as e:
        check_image(bomb)
    elapsed = time.perf_counter() - t
    assert e.value.code == "BAD_IMAGE"
    print(f"400 MP PNG refused in {elapsed * 1e3:.2f} ms")


def test_limits_and_media_type_mismatch():
    png = encode("PNG", (64, 64))
    assert check_image(png, media_type="image/png").pixels == 64 * 64
    with pytest.raises(ProtocolError, match="declared as image/jpeg"):
        check_image(png, media_type="image/jpeg")
    with pytest.raises(ProtocolError, match="only 8x64"):
        check_image(encode("PNG", (8, 64)))
    with pytest.raises(ProtocolError, match="limit is 0 MP"):
        check_image(png, max_pixels=4000)


@pytest.mark.parametrize("data,match", [
    (b"", "empty"),
    (b"GIF89a" + b"\x00" * 100, "not a PNG, JPEG or WebP"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 4, "IHDR"),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF", "no frame header"),
    (b"\xff\xd8\xff\xda\x00\x08", "before the frame header"),
    (b"\xff\xd8\xff\xe0\x00\x01", "segment length"),
    (b"RIFF\x00\x00\x00\x00WEBPVP8Z" + b"\x00" * 30, "unsupported WebP"),
    (b"RIFF\x00\x00\x00\x00WEBP", "truncated"),
])
def test_damaged_headers(data, match):
    with pytest.raises(ProtocolError, match=match) as e:
        sniff_image(data)
    assert e.value.code == "BAD_IMAGE"


def test_truncated_real_files_never_crash():
    for fmt in ("PNG", "JPEG", "WEBP"):
        data = encode(fmt, (50, 40))
        for n in range(0, min(len(data), 400)):
            try:
                info = sniff_image(data[:n])
            except ProtocolError as e:
                assert e.code == "BAD_IMAGE"
            else:
                assert (info.width, info.height) == (50, 40)
