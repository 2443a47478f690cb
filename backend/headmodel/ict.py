"""ICT-FaceKit in the project's converted layout (`ict_facekit_v1.npz`, described in
shared/data/ict_facekit/FORMAT.md): centimetres on disk, converted to metres at load."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .model import HeadModel, arkit_name

CM_TO_M = 0.01
NPZ_NAME = "ict_facekit_v1.npz"
# Vertex index ranges [start, stop) of ICT-FaceKit v1's sub-meshes (from its README); valid only
# for the 26719-vertex topology, checked at load.
ICT_N_VERTICES = 26719
ICT_VERTEX_RANGES = {
    "face": (0, 9409), "head_and_neck": (9409, 11248), "mouth_socket": (11248, 13294),
    "eye_socket_left": (13294, 13678), "eye_socket_right": (13678, 14062),
    "gums_and_tongue": (14062, 17039), "teeth": (17039, 21451),
    "eyeball_left": (21451, 23021), "eyeball_right": (23021, 24591),
    "lacrimal_fluid": (24591, 24999), "eye_blend": (24999, 25047),
    "eye_occlusion": (25047, 25351), "eyelashes": (25351, 26719),
}
# Colours (linear-ish sRGB in [0, 1]) that the texture fill uses for hidden interiors.
ICT_INTERIOR_COLORS = {
    "mouth_socket": (ICT_VERTEX_RANGES["mouth_socket"], (0.36, 0.13, 0.12)),
    "eye_sockets": ((13294, 14062), (0.30, 0.16, 0.14)),
}

REQUIRED_KEYS = ("neutral", "faces", "uvs", "face_uvs", "face_material", "material_names",
                 "identity_modes", "expression_modes", "expression_names")


def load_ict_npz(path: str | Path, n_identity: int | None = None) -> HeadModel:
    """Load the converted ICT-FaceKit archive. `n_identity` keeps the first K identity modes."""
    path = Path(path)
    with np.load(path, allow_pickle=False) as d:
        missing = [k for k in REQUIRED_KEYS if k not in d.files]
        if missing:
            raise ValueError(f"{path} is not an ICT-FaceKit archive: missing {missing}")
        ident = d["identity_modes"]
        if n_identity is not None:
            ident = ident[:n_identity]
        n = len(d["neutral"])
        extras = ({"vertex_ranges": dict(ICT_VERTEX_RANGES),
                   "vertex_region_colors": dict(ICT_INTERIOR_COLORS)}
                  if n == ICT_N_VERTICES else {})
        opt = lambda k: d[k].astype(np.int32) if k in d.files else None  # noqa: E731
        return HeadModel(
            name="ict_facekit",
            vertices=(d["neutral"] * CM_TO_M).astype(np.float32),
            polygons=d["faces"].astype(np.int32),
            uvs=d["uvs"].astype(np.float32),
            polygon_uvs=d["face_uvs"].astype(np.int32),
            polygon_groups=d["face_material"].astype(np.int16),
            group_names=[str(s) for s in d["material_names"]],
            identity_basis=(ident * CM_TO_M).astype(np.float32),
            expression_basis=(d["expression_modes"] * CM_TO_M).astype(np.float32),
            expression_names=[arkit_name(str(s)) for s in d["expression_names"]],
            landmarks68=opt("landmarks_multipie68"),
            fitting_vertices=opt("fitting_vertices"),
            rigid_vertices=opt("rigid_vertices"),
            source=str(path),
            extras=extras,
        )
