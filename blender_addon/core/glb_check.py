"""Is this a GLB that Blender's glTF importer can be given? A structure check (no bpy).

A backend can send anything as a `result`: random bytes (with a matching SHA-256), a GLB cut
short, a GLB whose JSON does not parse, one that points at files on this machine. The
importer turns the common ones into a bare RuntimeError ("Bad glTF: json error"), sometimes
after it has half-built the scene. This check reads only the 12-byte header, the chunk
headers and the JSON chunk (never the whole binary chunk), so it costs microseconds on a
50 MB result, and says in plain words what is wrong:

- magic `glTF`, container version 2, declared length == the bytes that arrived;
- chunks: each 8-byte chunk header, a length that is a multiple of 4 and stays inside the
  file; the JSON chunk first, at most one BIN chunk and only second (unknown chunk types
  after them are allowed, as glTF says);
- the JSON chunk is UTF-8 JSON, an object, `asset.version` "2.x";
- buffers: buffer 0 without a `uri` is the BIN chunk, whose length must cover its
  `byteLength` (with at most 3 bytes of padding); any other `uri` (buffers and images) must
  be a `data:` URI: a result never refers to files on this machine;
- bufferViews point at an existing buffer and stay inside it.

Anything it passes can still fail in the importer (a bad accessor, say); callers catch that
too (blender/importer.py). Raises GlbError (a ValueError) with the message for the person.
"""
from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

GLB_MAGIC = b"glTF"
GLB_VERSION = 2
CHUNK_JSON = 0x4E4F534A          # "JSON"
CHUNK_BIN = 0x004E4942           # "BIN\0"
HEADER_BYTES = 12
CHUNK_HEADER_BYTES = 8
MAX_JSON_BYTES = 64 * 1024 * 1024


class GlbError(ValueError):
    """The bytes are not a GLB the importer should be given."""


@dataclass(frozen=True)
class GlbInfo:
    length: int
    json_bytes: int
    bin_bytes: int                 # 0 without a BIN chunk
    chunks: int
    generator: str
    nodes: int
    meshes: int


def _first_bytes(head: bytes) -> str:
    text = head[:8]
    if text and all(32 <= c < 127 for c in text):
        return repr(text.decode("ascii"))
    return text.hex(" ") or "nothing"


class _Bytes:
    def __init__(self, data):
        self.view = memoryview(data).cast("B") if not isinstance(data, bytes) else data
        self.size = len(self.view)

    def read(self, offset: int, n: int) -> bytes:
        return bytes(self.view[offset:offset + n])


class _File:
    def __init__(self, f):
        self.f = f
        self.size = os.fstat(f.fileno()).st_size

    def read(self, offset: int, n: int) -> bytes:
        self.f.seek(offset)
        return self.f.read(n)


def check_glb(data) -> GlbInfo:
    """Check a GLB held in memory (bytes, bytearray or memoryview)."""
    return _check(_Bytes(data))


def check_glb_file(path) -> GlbInfo:
    """Check a GLB file, reading only its headers and JSON chunk."""
    try:
        with open(Path(path), "rb") as f:
            return _check(_File(f))
    except OSError as e:
        raise GlbError(f"cannot read the result file {path}: {e.strerror or e}") from None


def _check(src) -> GlbInfo:
    size = src.size
    head = src.read(0, HEADER_BYTES)
    if size == 0:
        raise GlbError("the result is empty (0 bytes), not a GLB file")
    if head[:4] != GLB_MAGIC:
        raise GlbError(f"the result is not a GLB file: it starts with {_first_bytes(head)} "
                       "instead of 'glTF'")
    if size < HEADER_BYTES:
        raise GlbError(f"the result GLB is truncated: {size} bytes, shorter than the 12-byte "
                       "GLB header")
    _, version, declared = struct.unpack("<4sII", head)
    if version != GLB_VERSION:
        raise GlbError(f"the result is a version {version} GLB; only version 2 (glTF 2.0) "
                       "can be imported")
    if declared > size:
        raise GlbError(f"the result GLB is truncated: its header declares {declared} bytes, "
                       f"{size} arrived")
    if declared < size:
        raise GlbError(f"the result GLB has {size - declared} unexpected bytes after its "
                       f"declared end ({declared} bytes)")

    json_len = bin_len = 0
    has_bin = False
    gltf = None
    offset, index = HEADER_BYTES, 0
    while offset < declared:
        if declared - offset < CHUNK_HEADER_BYTES:
            raise GlbError(f"the result GLB is damaged: {declared - offset} stray bytes where "
                           f"chunk {index}'s header should be (at byte {offset})")
        length, kind = struct.unpack("<II", src.read(offset, CHUNK_HEADER_BYTES))
        name = {CHUNK_JSON: "JSON", CHUNK_BIN: "BIN"}.get(kind, f"0x{kind:08x}")
        start = offset + CHUNK_HEADER_BYTES
        if length > declared - start:
            raise GlbError(f"the result GLB is damaged: chunk {index} ({name}) declares "
                           f"{length} bytes but only {declared - start} remain in the file")
        if length % 4:
            raise GlbError(f"the result GLB is damaged: chunk {index} ({name}) is {length} "
                           "bytes, not a multiple of 4")
        if index == 0:
            if kind != CHUNK_JSON:
                raise GlbError(f"the result GLB is damaged: its first chunk is {name}, not the "
                               "JSON chunk")
            if length > MAX_JSON_BYTES:
                raise GlbError(f"the result GLB's JSON chunk is {length} bytes; at most "
                               f"{MAX_JSON_BYTES} are accepted")
            json_len = length
            gltf = _parse_json(src.read(start, length))
        elif kind == CHUNK_JSON:
            raise GlbError(f"the result GLB is damaged: a second JSON chunk (chunk {index})")
        elif kind == CHUNK_BIN:
            if index != 1:
                raise GlbError(f"the result GLB is damaged: the BIN chunk must come second, "
                               f"it is chunk {index}")
            bin_len, has_bin = length, True
        offset, index = start + length, index + 1
    if gltf is None:
        raise GlbError("the result GLB has no chunks (no JSON chunk)")
    _check_gltf(gltf, bin_len, has_bin)
    asset = gltf["asset"]
    return GlbInfo(length=declared, json_bytes=json_len, bin_bytes=bin_len, chunks=index,
                   generator=str(asset.get("generator", ""))[:256],
                   nodes=len(gltf.get("nodes") or []), meshes=len(gltf.get("meshes") or []))


def _parse_json(raw: bytes) -> dict:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise GlbError(f"the result GLB's JSON chunk is not UTF-8 text (byte {e.start})") \
            from None
    try:
        obj = json.loads(text)
    except RecursionError:
        raise GlbError("the result GLB's JSON chunk is nested too deeply") from None
    except ValueError as e:
        raise GlbError(f"the result GLB's JSON chunk does not parse: {e}") from None
    if not isinstance(obj, dict):
        raise GlbError(f"the result GLB's JSON chunk is a {type(obj).__name__}, not a glTF "
                       "object")
    return obj


def _is_index(v, n: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < n


def _is_count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _list(gltf: dict, key: str) -> list:
    v = gltf.get(key, [])
    if not isinstance(v, list) or not all(isinstance(i, dict) for i in v):
        raise GlbError(f"the result's glTF '{key}' is not a list of objects")
    return v


def _external(uri) -> bool:
    return not (isinstance(uri, str) and uri.startswith("data:"))


def _check_gltf(gltf: dict, bin_len: int, has_bin: bool) -> None:
    asset = gltf.get("asset")
    version = asset.get("version") if isinstance(asset, dict) else None
    if not isinstance(version, str) or not version.startswith("2."):
        raise GlbError(f"the result's glTF asset.version is {version!r}; Blender imports "
                       "glTF 2.x")
    buffers = _list(gltf, "buffers")
    for i, b in enumerate(buffers):
        if not _is_count(b.get("byteLength")):
            raise GlbError(f"the result's glTF buffer {i} has no valid byteLength")
        if "uri" in b:
            if _external(b["uri"]):
                raise GlbError(f"the result's glTF buffer {i} refers to an outside file "
                               f"({str(b['uri'])[:80]!r}); a result must be self-contained")
        elif i != 0:
            raise GlbError(f"the result's glTF buffer {i} has no uri (only buffer 0 may be "
                           "the BIN chunk)")
        else:
            if not has_bin:
                raise GlbError("the result's glTF buffer 0 is the GLB's BIN chunk, but the "
                               "file has none")
            need = b["byteLength"]
            if not need <= bin_len <= need + 3:
                raise GlbError(f"the result GLB's BIN chunk is {bin_len} bytes but buffer 0 "
                               f"declares {need}")
    for i, img in enumerate(_list(gltf, "images")):
        if "uri" in img and _external(img["uri"]):
            raise GlbError(f"the result's glTF image {i} refers to an outside file "
                           f"({str(img['uri'])[:80]!r}); a result must be self-contained")
    for i, bv in enumerate(_list(gltf, "bufferViews")):
        buf, off, n = bv.get("buffer"), bv.get("byteOffset", 0), bv.get("byteLength")
        if not _is_index(buf, len(buffers)) or not _is_count(off) or not _is_count(n):
            raise GlbError(f"the result's glTF bufferView {i} has a bad buffer, byteOffset or "
                           "byteLength")
        if off + n > buffers[buf]["byteLength"]:
            raise GlbError(f"the result's glTF bufferView {i} ends at byte {off + n}, past the "
                           f"end of buffer {buf} ({buffers[buf]['byteLength']} bytes)")
