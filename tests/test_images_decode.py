"""Photos in the colour modes cameras and editors write decode to the same 8-bit RGB
(backend/images.py decode_image): 16-bit greyscale included, which Pillow's convert() would
clip to white."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from gen3dface.backend.images import decode_image


def _gradient(h=96, w=128) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), (x + y) * 255 // (w + h - 2)],
                    -1).astype(np.uint8)


def _save(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_16_bit_greyscale_png_keeps_its_tones():
    grey8 = _gradient()[..., 0]
    grey16 = grey8.astype(np.uint16) * 257
    data = _save(Image.fromarray(grey16), "PNG")       # mode I;16
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    rgb = decode_image(data)
    assert rgb.shape == grey8.shape + (3,) and rgb.dtype == np.uint8
    assert np.abs(rgb.astype(int) - grey8[..., None]).max() <= 1   # not clipped to white


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P", "CMYK"])
def test_other_modes_decode_to_rgb(mode):
    src = _gradient()
    im = Image.fromarray(src)
    im = im.convert(mode) if mode != "RGBA" else Image.fromarray(
        np.dstack([src, np.full(src.shape[:2], 255, np.uint8)]), "RGBA")
    data = _save(im, "JPEG" if mode == "CMYK" else "PNG")
    rgb = decode_image(data)
    assert rgb.shape == src.shape and rgb.dtype == np.uint8
    want = np.asarray(im.convert("RGB"), np.int64) if mode in ("L", "P") else src
    assert np.abs(rgb.astype(np.int64) - want).mean() < (8 if mode == "CMYK" else 1)
