"""Decoding photos that arrive as bytes (from the wire or from disk), safely.

Layout of every array returned here: HxWx3 uint8 RGB, rows top-to-bottom (EXIF orientation
applied). Only PNG, JPEG and WebP are accepted; the pixel count is checked from the header,
before any pixel is decoded, so a small file that declares a huge image is refused at once.
"""
from __future__ import annotations

import io
import warnings

import numpy as np

from .contracts import PipelineError

ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP")
MAX_PIXELS = 40_000_000       # about 40 MP
MIN_SIDE = 16


def _too_many_pixels(w: int, h: int, max_pixels: int) -> PipelineError:
    return PipelineError("BAD_IMAGE", f"The photo is {w}x{h} ({w * h / 1e6:.0f} MP); the limit is "
                         f"{max_pixels / 1e6:.0f} MP. Scale it down and try again.")


def _declared_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) as the header declares it, read by the protocol's stdlib sniffer (no
    Pillow, no decoding); None when the sniffer cannot read the header."""
    from ..protocol.images import sniff_image

    try:
        info = sniff_image(data)
    except Exception:
        return None
    return int(info.width), int(info.height)


def check_image_header(data: bytes, max_pixels: int = MAX_PIXELS) -> tuple[str, int, int]:
    """(format, width, height) read from the header only; PipelineError(BAD_IMAGE) otherwise."""
    from PIL import Image

    if not data:
        raise PipelineError("BAD_IMAGE", "The photo is empty.")
    declared = _declared_size(data)
    if declared is not None and declared[0] * declared[1] > max_pixels:
        raise _too_many_pixels(*declared, max_pixels)      # before Pillow sees it
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = Image.open(io.BytesIO(data), formats=list(ALLOWED_FORMATS))
            fmt, (w, h) = im.format, im.size
    except Image.DecompressionBombError:  # PIL's own guard (declared size far too large)
        if declared is not None:
            raise _too_many_pixels(*declared, max_pixels) from None
        raise PipelineError("BAD_IMAGE", "The photo declares far too many pixels; the limit is "
                            f"{max_pixels / 1e6:.0f} MP. Scale it down and try again.") from None
    except Exception:
        raise PipelineError("BAD_IMAGE", "The file is not a PNG, JPEG or WebP image "
                            "(or it is damaged). Save the photo as PNG or JPEG and try again.") from None
    if w * h > max_pixels:
        raise _too_many_pixels(w, h, max_pixels)
    if min(w, h) < MIN_SIDE:
        raise PipelineError("BAD_IMAGE", f"The photo is only {w}x{h} pixels.")
    return fmt, w, h


def decode_image(data: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Bytes of a PNG/JPEG/WebP photo -> HxWx3 uint8 RGB (EXIF orientation applied)."""
    from PIL import Image, ImageOps

    check_image_header(data, max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = Image.open(io.BytesIO(data), formats=list(ALLOWED_FORMATS))
            im.load()
            im = ImageOps.exif_transpose(im)
            if im.mode.startswith("I"):          # 16-bit greyscale PNG (I;16, or I): Pillow's
                # convert() would clip its 0-65535 values at 255, a white photo (NO_FACE)
                grey = np.asarray(im, dtype=np.float64) / 257.0
                im = Image.fromarray(np.clip(np.rint(grey), 0, 255).astype(np.uint8), "L")
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                rgba = im.convert("RGBA")
                bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                im = Image.alpha_composite(bg, rgba)
            im = im.convert("RGB")
    except PipelineError:
        raise
    except Exception as e:
        raise PipelineError("BAD_IMAGE", f"The photo could not be decoded ({type(e).__name__}); "
                            "it may be truncated or damaged.") from None
    return np.asarray(im, dtype=np.uint8).copy()


def encode_png(rgb: np.ndarray) -> bytes:
    """HxWx3 or HxWx4 uint8 -> PNG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG")
    return buf.getvalue()


def encode_jpeg(rgb: np.ndarray, quality: int = 85) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb[..., :3])).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
