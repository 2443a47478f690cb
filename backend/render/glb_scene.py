"""A GLB as the renderer's meshes: every primitive of every mesh, posed at the file's default
morph-target weights (what Blender's importer shows), with its base-colour texture or factor.
The tests and scripts/render_readme_picture.py look at our GLBs through this and raycast.py.

Layouts: positions metres in the file's frame (our GLBs: the head frame); textures HxWx3 uint8
rows top-to-bottom; UVs returned OBJ/GL style (v up), as TexturedMesh expects.
"""
from __future__ import annotations

import io

import numpy as np


def glb_parts(glb: bytes):
    """TexturedMeshes of every mesh in a GLB, with its default morph weights applied."""
    from PIL import Image

    from ..export.gltf import read_accessor, read_glb
    from .mesh import TexturedMesh

    doc, binary = read_glb(glb)
    images = {}
    parts = []
    for mesh in doc["meshes"]:
        weights = mesh.get("weights", [])
        for prim in mesh["primitives"]:
            pos = read_accessor(doc, binary, prim["attributes"]["POSITION"]).astype(np.float64)
            for w, t in zip(weights, prim.get("targets", [])):
                if w:
                    pos = pos + w * read_accessor(doc, binary, t["POSITION"])
            tri = read_accessor(doc, binary, prim["indices"]).reshape(-1, 3)
            uv = read_accessor(doc, binary, prim["attributes"]["TEXCOORD_0"]).astype(np.float64)
            uv[:, 1] = 1.0 - uv[:, 1]                       # glTF (top-left) -> OBJ/GL
            mat = doc["materials"][prim["material"]]["pbrMetallicRoughness"]
            tex = None
            if "baseColorTexture" in mat:
                src = doc["textures"][mat["baseColorTexture"]["index"]]["source"]
                if src not in images:
                    view = doc["bufferViews"][doc["images"][src]["bufferView"]]
                    data = binary[view.get("byteOffset", 0): view.get("byteOffset", 0) +
                                  view["byteLength"]]
                    images[src] = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
                tex = images[src]
            if tex is not None:
                parts.append(TexturedMesh(pos, tri, corner_uvs=uv[tri], texture=tex))
            else:
                colour = np.tile(np.asarray(mat["baseColorFactor"][:3], np.float64), (len(pos), 1))
                parts.append(TexturedMesh(pos, tri, vertex_colors=colour))
    return parts
