"""The add-on's GLB structure check (blender_addon/core/glb_check.py; pure, no bpy): what it
refuses before Blender's importer sees a file, and what it lets through."""
from __future__ import annotations

import json
import os
import struct

import pytest

from fake_backend import GLTF_ERROR_GLB, GOOD_GLB, tiny_glb

from gen3dface.blender_addon.core.glb_check import GlbError, check_glb, check_glb_file

JSON, BIN = 0x4E4F534A, 0x004E4942


def split(glb: bytes) -> tuple[dict, bytes]:
    n = struct.unpack("<I", glb[12:16])[0]
    return json.loads(glb[20:20 + n]), glb[20 + n + 8:]


def build(gltf, bin_: bytes | None = b"", chunks=None, version=2, pad=True) -> bytes:
    js = gltf if isinstance(gltf, bytes) else json.dumps(gltf).encode("utf-8")
    if pad:
        js += b" " * (-len(js) % 4)
    if chunks is None:
        chunks = [(JSON, js)] + ([(BIN, bin_)] if bin_ is not None else [])
    body = b"".join(struct.pack("<II", len(d), t) + d for t, d in chunks)
    return b"glTF" + struct.pack("<II", version, 12 + len(body)) + body


def refused(data, *words):
    with pytest.raises(GlbError) as e:
        check_glb(data)
    for w in words:
        assert w in str(e.value), str(e.value)
    return str(e.value)


def test_a_valid_glb_passes_bytes_memoryview_and_file(tmp_path):
    info = check_glb(GOOD_GLB)
    assert info.length == len(GOOD_GLB) and info.chunks == 2 and info.nodes == 2
    assert info.generator == "fake_backend" and info.bin_bytes > 0
    assert check_glb(memoryview(GOOD_GLB).toreadonly()) == info
    path = tmp_path / "h.glb"
    path.write_bytes(GOOD_GLB)
    assert check_glb_file(path) == info
    # structure is fine, the importer's own problem (a bad componentType) is not ours
    assert check_glb(GLTF_ERROR_GLB).meshes == 2


def test_not_a_glb():
    refused(b"", "empty")
    refused(os.urandom(4096), "not a GLB file", "instead of 'glTF'")
    refused(b'{"asset": {"version": "2.0"}}', "not a GLB file", "'{\"asset\"'")
    refused(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32, "not a GLB file")
    refused(b"glTF\x02\x00", "truncated", "12-byte")
    refused(build({"asset": {"version": "2.0"}}, None, version=1), "version 1")


def test_truncated_or_padded_files():
    refused(GOOD_GLB[:len(GOOD_GLB) // 2], "truncated", f"declares {len(GOOD_GLB)} bytes",
            f"{len(GOOD_GLB) // 2} arrived")
    refused(GOOD_GLB[:-4], "truncated")
    refused(GOOD_GLB + b"\x00" * 8, "8 unexpected bytes after its declared end")
    # a declared length that stops inside the chunk layout
    cut = bytearray(GOOD_GLB)
    cut[8:12] = struct.pack("<I", len(GOOD_GLB) - 4)
    refused(bytes(cut[:-4]), "chunk 1 (BIN)", "remain")


def test_chunk_layout():
    gltf, bin_ = split(GOOD_GLB)
    js = json.dumps(gltf).encode()
    js += b" " * (-len(js) % 4)
    refused(build(gltf, chunks=[(BIN, bin_), (JSON, js)]), "first chunk is BIN")
    refused(build(gltf, chunks=[(JSON, js), (JSON, js)]), "second JSON chunk")
    refused(build(gltf, chunks=[(JSON, js), (0x12345678, b"abcd"), (BIN, bin_)]),
            "BIN chunk must come second")
    refused(build(b'{"asset":{"version":"2.0"}}', None, pad=False), "not a multiple of 4")
    refused(build(gltf, chunks=[]), "no chunks")
    stray = build(gltf, bin_) + b"\x00\x00\x00\x00"
    stray = stray[:8] + struct.pack("<I", len(stray)) + stray[12:]
    refused(stray, "stray bytes")
    # an unknown chunk after BIN is allowed (glTF: clients ignore unknown chunks)
    assert check_glb(build(gltf, chunks=[(JSON, js), (BIN, bin_), (0x5858_5858, b"xxxx")]))


def test_json_chunk():
    refused(build(b"\xff\xfe{}  "), "not UTF-8")
    refused(build(b"{not json}  "), "does not parse")
    refused(build(b"[1, 2, 3]   "), "a list, not a glTF object")
    refused(build(("[" * 100_000 + "]" * 100_000).encode()), "nested too deeply")
    refused(build({"asset": {"version": "1.0"}}, None), "asset.version is '1.0'")
    refused(build({"nodes": []}, None), "asset.version is None")


def test_buffers_bin_chunk_and_outside_files():
    gltf, bin_ = split(GOOD_GLB)
    refused(build(gltf, None), "buffer 0 is the GLB's BIN chunk, but the file has none")
    refused(build(gltf, bin_[:-8]), "BIN chunk is", f"declares {gltf['buffers'][0]['byteLength']}")
    g = json.loads(json.dumps(gltf))
    g["buffers"][0]["uri"] = "../../../home/user/.ssh/id_rsa"
    refused(build(g, bin_), "buffer 0 refers to an outside file", "self-contained")
    g = json.loads(json.dumps(gltf))
    g["images"] = [{"uri": "/etc/passwd"}]
    refused(build(g, bin_), "image 0 refers to an outside file")
    g["images"] = [{"uri": "data:image/png;base64,iVBORw0KGgo="}]
    assert check_glb(build(g, bin_))
    g = json.loads(json.dumps(gltf))
    g["bufferViews"][0]["byteOffset"] = 10 ** 9
    refused(build(g, bin_), "bufferView 0 ends at byte", "past the end of buffer 0")
    g["bufferViews"][0] = {"buffer": 7, "byteLength": 4}
    refused(build(g, bin_), "bufferView 0 has a bad buffer")
    g = json.loads(json.dumps(gltf))
    g["buffers"].append({"byteLength": 4})
    refused(build(g, bin_), "buffer 1 has no uri")
    g["buffers"] = "nope"
    refused(build(g, bin_), "'buffers' is not a list")


class CountingFile:
    """A binary file that counts the bytes read from it."""

    def __init__(self, path):
        self.f, self.read_bytes = open(path, "rb"), 0

    def fileno(self):
        return self.f.fileno()

    def seek(self, offset):
        self.f.seek(offset)

    def read(self, n):
        data = self.f.read(n)
        self.read_bytes += len(data)
        return data


def test_file_check_reads_only_the_headers(tmp_path):
    """A 64 MiB BIN chunk is never read: only the header, chunk headers and JSON chunk."""
    from gen3dface.blender_addon.core import glb_check

    big = os.urandom(1024) * (64 * 1024)
    gltf = {"asset": {"version": "2.0"}, "buffers": [{"byteLength": len(big)}]}
    path = tmp_path / "big.glb"
    path.write_bytes(build(gltf, big))
    f = CountingFile(path)
    try:
        info = glb_check._check(glb_check._File(f))
    finally:
        f.f.close()
    assert info.bin_bytes == len(big)
    assert f.read_bytes == 12 + 8 + info.json_bytes + 8
    assert check_glb_file(path) == info
    with pytest.raises(GlbError, match="cannot read"):
        check_glb_file(tmp_path / "missing.glb")


def test_names_tiny_glb_writes_are_valid():
    for names in (("Head",), ("Head", "EyeLeft", "EyeRight", "Teeth")):
        assert check_glb(tiny_glb(names)).nodes == len(names)
