"""Convert ICT-FaceKit's original `FaceXModel/` OBJ folder (github.com/ICT-VGL/ICT-FaceKit)
into the project's archive layout (shared/data/ict_facekit/FORMAT.md), which
`ict.load_ict_npz` reads.

The folder holds `generic_neutral_mesh.obj` (vertices, UVs, polygons with `usemtl`
materials), one OBJ per expression blendshape (`browDown_L.obj`, ...) and per identity mode
(`identity000.obj`, ...) with the same vertex order, and `vertex_indices.json` (expression
order, landmark and fitting vertex lists). Units stay centimetres in the archive (the
loader converts to metres).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .ict import NPZ_NAME

# The 53 expression blendshapes of ICT-FaceKit v1, in the archive's order (used when the folder
# has no vertex_indices.json).
ICT_EXPRESSIONS = (
    "browDown_L", "browDown_R", "browInnerUp_L", "browInnerUp_R", "browOuterUp_L",
    "browOuterUp_R", "cheekPuff_L", "cheekPuff_R", "cheekSquint_L", "cheekSquint_R",
    "eyeBlink_L", "eyeBlink_R", "eyeLookDown_L", "eyeLookDown_R", "eyeLookIn_L", "eyeLookIn_R",
    "eyeLookOut_L", "eyeLookOut_R", "eyeLookUp_L", "eyeLookUp_R", "eyeSquint_L", "eyeSquint_R",
    "eyeWide_L", "eyeWide_R", "jawForward", "jawLeft", "jawOpen", "jawRight", "mouthClose",
    "mouthDimple_L", "mouthDimple_R", "mouthFrown_L", "mouthFrown_R", "mouthFunnel", "mouthLeft",
    "mouthLowerDown_L", "mouthLowerDown_R", "mouthPress_L", "mouthPress_R", "mouthPucker",
    "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthSmile_L", "mouthSmile_R", "mouthStretch_L", "mouthStretch_R", "mouthUpperUp_L",
    "mouthUpperUp_R", "noseSneer_L", "noseSneer_R")
NEUTRAL_OBJ = "generic_neutral_mesh.obj"


def read_obj_vertices(path: Path) -> np.ndarray:
    """(N, 3) float32 of an OBJ's `v` lines (fast path for the blendshape files)."""
    rows = [ln.split()[1:4] for ln in path.read_text(errors="replace").splitlines()
            if ln.startswith("v ")]
    if not rows:
        raise ValueError(f"{path}: no vertices")
    return np.asarray(rows, np.float32)


def read_obj_mesh(path: Path):
    """(vertices (N, 3), uvs (T, 2), polygons (F, 4), polygon uvs (F, 4), polygon material
    (F,), material names) of an OBJ with triangles and quads (padded with -1)."""
    verts, uvs, polys, puvs, pmat, mats = [], [], [], [], [], []
    current = -1
    for ln in path.read_text(errors="replace").splitlines():
        if ln.startswith("v "):
            verts.append(ln.split()[1:4])
        elif ln.startswith("vt "):
            uvs.append(ln.split()[1:3])
        elif ln.startswith("usemtl"):
            name = ln.split(maxsplit=1)[1].strip() if len(ln.split()) > 1 else "default"
            if name not in mats:
                mats.append(name)
            current = mats.index(name)
        elif ln.startswith("f "):
            corners = ln.split()[1:]
            if not 3 <= len(corners) <= 4:
                raise ValueError(f"{path}: only triangles and quads are supported, got a "
                                 f"{len(corners)}-gon")
            vi, ti = [], []
            for c in corners:
                parts = c.split("/")
                vi.append(int(parts[0]))
                ti.append(int(parts[1]) if len(parts) > 1 and parts[1] else 0)
            pad = 4 - len(vi)
            polys.append([x - 1 if x > 0 else len(verts) + x for x in vi] + [-1] * pad)
            puvs.append([x - 1 if x > 0 else (len(uvs) + x if x < 0 else -1) for x in ti]
                        + [-1] * pad)
            if current < 0:
                mats.append("default")
                current = len(mats) - 1
            pmat.append(current)
    if not verts or not polys:
        raise ValueError(f"{path}: no mesh (vertices and faces) found")
    return (np.asarray(verts, np.float32), np.asarray(uvs, np.float32).reshape(-1, 2),
            np.asarray(polys, np.int32), np.asarray(puvs, np.int32),
            np.asarray(pmat, np.int16), mats)


def convert_ict_folder(folder: str | Path, out_path: str | Path | None = None,
                       progress=None) -> Path:
    """Convert a FaceXModel folder into `out_path` (default: <folder>/../ict_facekit_v1.npz).
    `progress(done, total)` is called while the blendshape files are read."""
    folder = Path(folder)
    if (folder / "FaceXModel").is_dir():
        folder = folder / "FaceXModel"
    neutral_path = folder / NEUTRAL_OBJ
    if not neutral_path.is_file():
        raise FileNotFoundError(f"{folder} is not ICT-FaceKit's FaceXModel folder "
                                f"({NEUTRAL_OBJ} is missing)")
    config = {}
    if (folder / "vertex_indices.json").is_file():
        config = json.loads((folder / "vertex_indices.json").read_text())
    names = list(config.get("expressions") or ICT_EXPRESSIONS)
    missing = [n for n in names if not (folder / f"{n}.obj").is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: expression files missing: {', '.join(missing[:5])}"
                                + (" ..." if len(missing) > 5 else ""))
    ids = []
    while (folder / f"identity{len(ids):03d}.obj").is_file():
        ids.append(folder / f"identity{len(ids):03d}.obj")
    if not ids:
        raise FileNotFoundError(f"{folder}: no identity000.obj ... files")
    verts, uvs, polys, puvs, pmat, mats = read_obj_mesh(neutral_path)
    n = len(verts)
    total = len(names) + len(ids)

    def deltas(paths):
        out = np.empty((len(paths), n, 3), np.float32)
        for i, p in enumerate(paths):
            v = read_obj_vertices(p)
            if v.shape != (n, 3):
                raise ValueError(f"{p}: {len(v)} vertices, the neutral mesh has {n}")
            out[i] = v - verts
            if progress:
                progress(deltas.done + i + 1, total)
        deltas.done += len(paths)
        return out

    deltas.done = 0
    expr = deltas([folder / f"{nm}.obj" for nm in names])
    ident = deltas(ids)
    arrays = dict(neutral=verts, faces=polys, uvs=uvs, face_uvs=puvs, face_material=pmat,
                  material_names=np.array(mats), identity_modes=ident, expression_modes=expr,
                  expression_names=np.array(names))
    lm = config.get("idx_to_landmark_verts")
    if lm is not None and len(lm) == 68:
        arrays["landmarks_multipie68"] = np.asarray(lm, np.int32)
    if config.get("idx_to_fitting_verts"):
        arrays["fitting_vertices"] = np.asarray(config["idx_to_fitting_verts"], np.int32)
    rigid = [k for k in config if "rigid" in k and "vert" in k and "landmark" not in k]
    if rigid:
        arrays["rigid_vertices"] = np.asarray(config[rigid[0]], np.int32)
    out = Path(out_path) if out_path else folder.parent / NPZ_NAME
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(out)
    return out
