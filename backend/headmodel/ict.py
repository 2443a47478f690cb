"""ICT-FaceKit in the project's converted layout (`ict_facekit_v1.npz`, described in
shared/data/ict_facekit/FORMAT.md): centimetres on disk, converted to metres at load."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .model import HeadModel, arkit_name

CM_TO_M = 0.01
NPZ_NAME = "ict_facekit_v1.npz"
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
        )
