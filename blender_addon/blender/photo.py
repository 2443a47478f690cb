"""The panel's photo as bytes for the wire (main thread; reading one file)."""
from __future__ import annotations

from pathlib import Path

import bpy

from ..core.photo import png_from_blender_pixels, sniff_media_type

MAX_PHOTO_BYTES = 64 * 1024 * 1024


def photo_bytes(props) -> tuple[bytes, str, str]:
    """(bytes, media type, name) of the panel's photo; ValueError with what to do."""
    if props.photo_source == "FILE":
        if not props.photo_path:
            raise ValueError("no photo chosen: pick a photo file in the panel")
        path = Path(bpy.path.abspath(props.photo_path))
        if not path.is_file():
            raise ValueError(f"photo file {path} does not exist")
        if path.stat().st_size > MAX_PHOTO_BYTES:
            raise ValueError(f"photo file {path} is over 64 MB; use a smaller photo")
        data = path.read_bytes()
        return data, sniff_media_type(data), path.name
    img = props.photo_image
    if img is None:
        raise ValueError("no image chosen: pick an image in the panel's Photo field")
    data = image_bytes(img)
    return data, sniff_media_type(data), img.name


def _file_bytes(img) -> bytes | None:
    """The image's original file bytes when it has them (packed or on disk, unmodified)."""
    if img.is_dirty:
        return None
    if img.packed_file is not None:
        data = bytes(img.packed_file.data)
    elif img.source == "FILE" and img.filepath:
        p = Path(bpy.path.abspath(img.filepath))
        data = p.read_bytes() if p.is_file() else None
    else:
        data = None
    if data is None:
        return None
    try:
        sniff_media_type(data)
    except ValueError:
        return None            # e.g. an EXR or TIFF: send its pixels as PNG instead
    return data


def image_bytes(img) -> bytes:
    data = _file_bytes(img)
    if data is not None:
        return data
    w, h = img.size
    if w == 0 or h == 0:
        raise ValueError(f"image '{img.name}' has no pixels (is its file missing?)")
    import numpy as np
    buf = np.empty(w * h * 4, dtype=np.float32)
    img.pixels.foreach_get(buf)
    return png_from_blender_pixels(buf, w, h)
