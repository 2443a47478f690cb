"""A minimal glTF 2.0 / GLB writer: buffers, accessors (dense and sparse), images, materials,
meshes with morph targets, nodes. Written by hand because trimesh cannot write morph targets.

Arrays are little-endian numpy arrays; every buffer view starts on a 4-byte boundary; POSITION
accessors (base and morph targets) carry min/max as the spec requires.
"""
from __future__ import annotations

import json
import struct

import numpy as np

FLOAT, UBYTE, USHORT, UINT = 5126, 5121, 5123, 5125
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
TYPES = {1: "SCALAR", 2: "VEC2", 3: "VEC3", 4: "VEC4"}
COMPONENT = {np.dtype(np.float32): FLOAT, np.dtype(np.uint8): UBYTE,
             np.dtype(np.uint16): USHORT, np.dtype(np.uint32): UINT}
GLB_MAGIC, GLB_VERSION, CHUNK_JSON, CHUNK_BIN = 0x46546C67, 2, 0x4E4F534A, 0x004E4942
LINEAR, LINEAR_MIPMAP_LINEAR, CLAMP_TO_EDGE, REPEAT = 9729, 9987, 33071, 10497


def _pad4(n: int) -> int:
    return (4 - n % 4) % 4


class GltfBuilder:
    def __init__(self, generator: str = "gen3dface", extras: dict | None = None):
        self.doc: dict = {"asset": {"version": "2.0", "generator": generator},
                          "scene": 0, "scenes": [{"nodes": []}], "nodes": [], "meshes": [],
                          "accessors": [], "bufferViews": [], "buffers": [],
                          "materials": [], "textures": [], "images": [], "samplers": []}
        if extras:
            self.doc["asset"]["extras"] = extras
        self.bin = bytearray()

    # -- binary data -----------------------------------------------------------------------
    def buffer_view(self, data: bytes, target: int | None = None) -> int:
        self.bin += b"\0" * _pad4(len(self.bin))
        view = {"buffer": 0, "byteOffset": len(self.bin), "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        self.bin += data
        self.doc["bufferViews"].append(view)
        return len(self.doc["bufferViews"]) - 1

    def accessor(self, array: np.ndarray, target: int | None = None, minmax: bool = False,
                 normalized: bool = False) -> int:
        a = np.ascontiguousarray(array)
        if a.dtype == np.float64:
            a = a.astype(np.float32)
        comps = 1 if a.ndim == 1 else a.shape[1]
        acc = {"bufferView": self.buffer_view(a.astype(a.dtype.newbyteorder("<")).tobytes(),
                                              target),
               "componentType": COMPONENT[a.dtype], "count": int(len(a)),
               "type": TYPES[comps]}
        if normalized:
            acc["normalized"] = True
        if minmax:
            acc["min"] = np.atleast_1d(a.min(0)).astype(float).tolist()
            acc["max"] = np.atleast_1d(a.max(0)).astype(float).tolist()
        self.doc["accessors"].append(acc)
        return len(self.doc["accessors"]) - 1

    def sparse_vec3_accessor(self, count: int, indices: np.ndarray, values: np.ndarray) -> int:
        """A VEC3 float accessor of `count` elements, zero except at `indices` (sorted)."""
        idx = np.asarray(indices)
        vals = np.asarray(values, np.float32).reshape(-1, 3)
        idx_t = np.uint16 if count <= 65535 else np.uint32
        full_min = np.minimum(vals.min(0), 0.0) if len(vals) else np.zeros(3)
        full_max = np.maximum(vals.max(0), 0.0) if len(vals) else np.zeros(3)
        acc = {"componentType": FLOAT, "count": int(count), "type": "VEC3",
               "min": full_min.astype(float).tolist(), "max": full_max.astype(float).tolist()}
        if len(idx):
            acc["sparse"] = {
                "count": int(len(idx)),
                "indices": {"bufferView": self.buffer_view(idx.astype(idx_t).tobytes()),
                            "componentType": COMPONENT[np.dtype(idx_t)]},
                "values": {"bufferView": self.buffer_view(vals.astype("<f4").tobytes())}}
        else:   # a target that moves nothing: a small dense zero accessor keeps importers happy
            return self.accessor(np.zeros((count, 3), np.float32), minmax=True)
        self.doc["accessors"].append(acc)
        return len(self.doc["accessors"]) - 1

    # -- materials -------------------------------------------------------------------------
    def image(self, data: bytes, mime: str, name: str) -> int:
        self.doc["images"].append({"bufferView": self.buffer_view(data), "mimeType": mime,
                                   "name": name})
        return len(self.doc["images"]) - 1

    def texture(self, image: int, wrap: int = CLAMP_TO_EDGE) -> int:
        self.doc["samplers"].append({"magFilter": LINEAR, "minFilter": LINEAR_MIPMAP_LINEAR,
                                     "wrapS": wrap, "wrapT": wrap})
        self.doc["textures"].append({"sampler": len(self.doc["samplers"]) - 1, "source": image})
        return len(self.doc["textures"]) - 1

    def material(self, name: str, base_color=(1.0, 1.0, 1.0, 1.0), texture: int | None = None,
                 metallic: float = 0.0, roughness: float = 0.5) -> int:
        pbr = {"baseColorFactor": [float(c) for c in base_color],
               "metallicFactor": float(metallic), "roughnessFactor": float(roughness)}
        if texture is not None:
            pbr["baseColorTexture"] = {"index": texture}
        self.doc["materials"].append({"name": name, "pbrMetallicRoughness": pbr})
        return len(self.doc["materials"]) - 1

    # -- meshes, nodes ---------------------------------------------------------------------
    def mesh(self, name: str, primitives: list[dict], target_names: list[str] | None = None,
             weights: list[float] | None = None) -> int:
        m = {"name": name, "primitives": primitives}
        if target_names:
            m["extras"] = {"targetNames": list(target_names)}
            m["weights"] = [float(w) for w in (weights or [0.0] * len(target_names))]
        self.doc["meshes"].append(m)
        return len(self.doc["meshes"]) - 1

    def node(self, name: str, mesh: int | None = None, in_scene: bool = True, **extra) -> int:
        n = {"name": name, **extra}
        if mesh is not None:
            n["mesh"] = mesh
        self.doc["nodes"].append(n)
        idx = len(self.doc["nodes"]) - 1
        if in_scene:
            self.doc["scenes"][0]["nodes"].append(idx)
        return idx

    # -- output ----------------------------------------------------------------------------
    def to_glb(self) -> bytes:
        doc = {k: v for k, v in self.doc.items() if v != []}
        self.bin += b"\0" * _pad4(len(self.bin))
        doc["buffers"] = [{"byteLength": len(self.bin)}]
        js = json.dumps(doc, separators=(",", ":")).encode("utf-8")
        js += b" " * _pad4(len(js))
        total = 12 + 8 + len(js) + 8 + len(self.bin)
        return b"".join([struct.pack("<III", GLB_MAGIC, GLB_VERSION, total),
                         struct.pack("<II", len(js), CHUNK_JSON), js,
                         struct.pack("<II", len(self.bin), CHUNK_BIN), bytes(self.bin)])


def read_glb(data: bytes) -> tuple[dict, bytes]:
    """Split a GLB into (JSON document, binary chunk); checks the header."""
    magic, version, total = struct.unpack_from("<III", data, 0)
    if magic != GLB_MAGIC or version != 2 or total != len(data):
        raise ValueError("not a glTF 2.0 binary (bad GLB header)")
    jlen, jtype = struct.unpack_from("<II", data, 12)
    if jtype != CHUNK_JSON:
        raise ValueError("GLB: first chunk is not JSON")
    doc = json.loads(data[20:20 + jlen])
    off = 20 + jlen
    binary = b""
    if off < len(data):
        blen, btype = struct.unpack_from("<II", data, off)
        if btype != CHUNK_BIN:
            raise ValueError("GLB: second chunk is not BIN")
        binary = data[off + 8: off + 8 + blen]
    return doc, binary


def read_accessor(doc: dict, binary: bytes, index: int) -> np.ndarray:
    """Decode an accessor (dense or sparse) into a numpy array (for tests and tools)."""
    acc = doc["accessors"][index]
    comps = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}[acc["type"]]
    dt = {FLOAT: "<f4", UBYTE: "u1", USHORT: "<u2", UINT: "<u4"}[acc["componentType"]]

    def view_array(view_idx, dtype, count, ncomp, extra_offset=0):
        v = doc["bufferViews"][view_idx]
        start = v.get("byteOffset", 0) + extra_offset
        return np.frombuffer(binary, dtype, count * ncomp, start).reshape(count, ncomp)

    if "bufferView" in acc:
        out = view_array(acc["bufferView"], dt, acc["count"], comps,
                         acc.get("byteOffset", 0)).copy()
    else:
        out = np.zeros((acc["count"], comps), dt)
    sp = acc.get("sparse")
    if sp:
        it = {UBYTE: "u1", USHORT: "<u2", UINT: "<u4"}[sp["indices"]["componentType"]]
        idx = view_array(sp["indices"]["bufferView"], it, sp["count"], 1,
                         sp["indices"].get("byteOffset", 0)).ravel()
        out[idx] = view_array(sp["values"]["bufferView"], dt, sp["count"], comps,
                              sp["values"].get("byteOffset", 0))
    return out[:, 0] if comps == 1 else out
