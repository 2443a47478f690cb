"""Thumbnails in the panel: the chosen photo and the backend's streamed previews, held in a
bpy.utils.previews collection (UI icons; nothing is added to the .blend)."""
from __future__ import annotations

from pathlib import Path

import bpy
import bpy.utils.previews

_pcoll = None
_job_names: list[str] = []


def collection():
    global _pcoll
    if _pcoll is None:
        _pcoll = bpy.utils.previews.new()
    return _pcoll


def release() -> None:
    global _pcoll
    if _pcoll is not None:
        bpy.utils.previews.remove(_pcoll)
        _pcoll = None
    _job_names.clear()


def load_photo_thumbnail(props) -> None:
    path = Path(bpy.path.abspath(props.photo_path)) if props.photo_path else None
    pc = collection()
    if "photo" in pc:
        del pc["photo"]
    if path is not None and path.is_file():
        pc.load("photo", str(path), "IMAGE")


def photo_icon(props) -> int:
    if props.photo_source == "IMAGE":
        img = props.photo_image
        if img is None:
            return 0
        img.preview_ensure()
        return img.preview.icon_id
    pc = collection()
    if "photo" not in pc and props.photo_path:
        load_photo_thumbnail(props)
    return pc["photo"].icon_id if "photo" in pc else 0


def add_job_preview(name: str, png: bytes, folder) -> None:
    """A streamed preview (PNG bytes) as an icon; the file is written to `folder` (the
    add-on's temp folder, runtime.tmp_dir()) because previews load from files."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:64] or "preview"
    path = Path(folder) / f"preview_{safe}.png"
    path.write_bytes(png)
    pc = collection()
    key = "job_" + safe
    if key in pc:
        del pc[key]
    pc.load(key, str(path), "IMAGE")
    if key not in _job_names:
        _job_names.append(key)


def job_preview_icons() -> list[int]:
    pc = collection()
    return [pc[k].icon_id for k in _job_names if k in pc]


def clear_job_previews() -> None:
    pc = collection()
    for k in _job_names:
        if k in pc:
            del pc[k]
    _job_names.clear()
