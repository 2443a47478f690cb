"""Reader: FaceScape's multi-view release -> gen3dface-multiview.

FaceScape's documented layout (github.com/zhuhao-nju/facescape, doc/doc_mview_model.md):

    IMGS_ROOT/<id>/<exp>/<view>.jpg          e.g. 1/1_neutral/0.jpg ... N.jpg
    IMGS_ROOT/<id>/<exp>/params.json         per view <v>: "<v>_K" intrinsics (3x3; the doc says
                                              4x4: the top-left 3x3 is used), "<v>_Rt" 3x4
                                              world-to-camera (OpenCV camera axes),
                                              "<v>_distortion" (k1 k2 p1 p2 k3), "<v>_width",
                                              "<v>_height", "<v>_valid", ...
    MESH_ROOT/<id>/<exp>.ply                 the reconstructed mesh, in the cameras' world
                                              (millimetres)

Conversion:
- units: FaceScape's world is in millimetres (`units_to_m` = 0.001);
- head frame: FaceScape's world axes are the capture rig's, so the frame is derived from the
  cameras, which all stand in front of the subject: +Z = the mean direction from the head
  centre (mesh centroid) to the cameras, +Y = the cameras' mean "up" made orthogonal to it,
  +X = Y x Z (the subject's left); origin at the mesh centroid;
- images are undistorted with the given coefficients (OpenCV), downscaled to at most
  `max_size` pixels on the long side, and get the mesh silhouette as alpha (FaceScape has no
  masks; its meshes cover face and scalp, not hair, so the alpha crops hair and shoulders);
- views with "<v>_valid" false are skipped (their cameras are unreliable, says the doc);
- identities are named fs<id>_<exp> (one per subject and expression);
- the ground-truth mesh is kept as `reference.npz` (extras["reference_mesh"]); it becomes the
  prior only with `gt_mesh_as_prior=True` (Morphable Diffusion's setting, which the paper argues
  against); otherwise run data/priors.py to fit the head model to each input view.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .format import DatasetWriter, PriorMesh, ViewData, ViewIntrinsics, check_name
from .silhouette import mesh_silhouette

_VIEW_KEY = re.compile(r"^(\d+)_K$")


@dataclass
class FaceScapeReaderConfig:
    units_to_m: float = 0.001
    max_size: int = 1024            # long side after conversion (FaceScape images are 4-12 MP)
    undistort: bool = True
    mask: str = "mesh"              # "mesh" (silhouette as alpha) | "none" (opaque)
    gt_mesh_as_prior: bool = False
    input_max_azimuth_deg: float = 60.0   # views this close to the front are input candidates


def parse_params(params: dict) -> list[dict]:
    """Per-view camera dicts from a params.json mapping (sorted by view index)."""
    views = []
    for key in params:
        m = _VIEW_KEY.match(key)
        if not m:
            continue
        i = int(m.group(1))
        k = np.asarray(params[f"{i}_K"], np.float64)
        rt = np.asarray(params[f"{i}_Rt"], np.float64)
        if k.shape == (4, 4):
            k = k[:3, :3]
        if k.shape != (3, 3) or rt.shape not in ((3, 4), (4, 4)):
            raise ValueError(f"view {i}: K must be 3x3 (or 4x4) and Rt 3x4, "
                             f"got {k.shape} {rt.shape}")
        w2c = np.eye(4)
        w2c[:3] = rt[:3]
        views.append({"index": i, "K": k, "w2c": w2c,
                      "dist": np.asarray(params.get(f"{i}_distortion", [0] * 5), np.float64),
                      "width": int(params[f"{i}_width"]), "height": int(params[f"{i}_height"]),
                      "valid": bool(params.get(f"{i}_valid", True))})
    return sorted(views, key=lambda v: v["index"])


def head_frame_from_cameras(w2cs: list[np.ndarray], center: np.ndarray) -> np.ndarray:
    """(3, 3) rotation whose rows are the head frame's X, Y, Z axes in the source world."""
    centers = np.stack([-w[:3, :3].T @ w[:3, 3] for w in w2cs])
    z = (centers - center).mean(axis=0)
    z /= np.linalg.norm(z)
    up = np.stack([-w[1, :3] for w in w2cs]).mean(axis=0)   # OpenCV camera y points down
    y = up - (up @ z) * z
    y /= np.linalg.norm(y)
    x = np.cross(y, z)
    return np.stack([x, y, z])


def to_head_frame(w2c: np.ndarray, rot: np.ndarray, center: np.ndarray, scale: float) -> np.ndarray:
    """The source w2c re-expressed for the head frame p_head = scale * rot @ (p_src - center)."""
    out = np.eye(4)
    out[:3, :3] = w2c[:3, :3] @ rot.T
    out[:3, 3] = scale * (w2c[:3, :3] @ center + w2c[:3, 3])
    return out


def _load_ply(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import trimesh
    mesh = trimesh.load(path, process=False, force="mesh")
    return np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces, np.int32)


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def convert_expression(folder: Path, mesh_path: Path | None, cfg: FaceScapeReaderConfig):
    """(views: list[ViewData], prior/reference PriorMesh or None) for one <id>/<exp> folder."""
    import cv2
    from PIL import Image
    params = json.loads((folder / "params.json").read_text())
    cams = [c for c in parse_params(params) if c["valid"]]
    if not cams:
        return [], None
    verts = faces = None
    if mesh_path is not None and mesh_path.is_file():
        verts, faces = _load_ply(mesh_path)
        center = verts.mean(axis=0)
    else:   # no mesh: the point nearest to every optical axis
        a, b = np.zeros((3, 3)), np.zeros(3)
        for c in cams:
            o = -c["w2c"][:3, :3].T @ c["w2c"][:3, 3]
            d = c["w2c"][2, :3]
            p = np.eye(3) - np.outer(d, d)
            a += p
            b += p @ o
        center = np.linalg.solve(a, b)
    rot = head_frame_from_cameras([c["w2c"] for c in cams], center)
    s = cfg.units_to_m
    head_verts = None if verts is None else (s * (verts - center) @ rot.T).astype(np.float32)
    views = []
    for c in cams:
        img_path = folder / f"{c['index']}.jpg"
        if not img_path.is_file():
            continue
        rgb = _read_image(img_path)
        h, w = rgb.shape[:2]
        k = c["K"].copy()
        if (w, h) != (c["width"], c["height"]):   # params describe another resolution: rescale
            k[0] *= w / c["width"]
            k[1] *= h / c["height"]
        if cfg.undistort and np.any(c["dist"] != 0):
            rgb = cv2.undistort(rgb, k, c["dist"])
        scale = min(1.0, cfg.max_size / max(h, w))
        if scale < 1.0:
            nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
            rgb = np.asarray(Image.fromarray(rgb).resize((nw, nh), Image.LANCZOS))
            k[0] *= nw / w
            k[1] *= nh / h
            w, h = nw, nh
        w2c = to_head_frame(c["w2c"], rot, center, s)
        if cfg.mask == "mesh" and head_verts is not None:
            alpha = mesh_silhouette(head_verts, faces, w2c, k, w, h)
        else:
            alpha = np.ones((h, w), np.float32)
        rgba = np.dstack([rgb, np.round(alpha * 255).astype(np.uint8)])
        intr = ViewIntrinsics(w, h, float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2]))
        cz = -(w2c[:3, :3].T @ w2c[:3, 3])
        az = np.degrees(np.arctan2(cz[0], cz[2]))
        views.append(ViewData(f"view_{c['index']:03d}", rgba, w2c, intr,
                              input_candidate=bool(abs(az) <= cfg.input_max_azimuth_deg
                                                   + 1e-6)))
    ref = None if head_verts is None else PriorMesh(head_verts, faces, "facescape_gt")
    return views, ref


def convert_facescape(images_root: str | Path, out_root: str | Path,
                      meshes_root: str | Path | None = None,
                      cfg: FaceScapeReaderConfig | None = None,
                      subjects: list[int] | None = None, expressions: list[str] | None = None,
                      overwrite: bool = False) -> Path:
    """Converts a FaceScape multi-view tree; returns the dataset.json path."""
    cfg = cfg or FaceScapeReaderConfig()
    images_root = Path(images_root)
    mroot = Path(meshes_root) if meshes_root else None
    if not images_root.is_dir():
        raise FileNotFoundError(f"FaceScape images folder not found: {images_root}")
    with DatasetWriter(out_root, name="facescape", source=f"FaceScape multi-view: {images_root}",
                       extras={"reader": "facescape", "units_to_m": cfg.units_to_m},
                       overwrite=overwrite) as writer:
        subject_dirs = sorted((d for d in images_root.iterdir() if d.is_dir() and d.name.isdigit()),
                              key=lambda d: int(d.name))
        for sd in subject_dirs:
            if subjects is not None and int(sd.name) not in subjects:
                continue
            for ed in sorted(d for d in sd.iterdir() if (d / "params.json").is_file()):
                if expressions is not None and ed.name not in expressions \
                        and ed.name.split("_", 1)[-1] not in expressions:
                    continue
                mesh = mroot / sd.name / f"{ed.name}.ply" if mroot else None
                views, ref = convert_expression(ed, mesh, cfg)
                if len(views) < 2:
                    continue
                ident = check_name(f"fs{int(sd.name):03d}_{ed.name}", "identity")
                writer.add_identity(ident, views, prior=ref if cfg.gt_mesh_as_prior else None,
                                    source=str(ed),
                                    extras={"subject": int(sd.name), "expression": ed.name})
                if ref is not None:
                    ref.save(writer.root / ident / "reference.npz")
                    _set_extra(writer.root / ident, "reference_mesh", "reference.npz")
    return Path(out_root) / "dataset.json"


def _set_extra(folder: Path, key: str, value) -> None:
    p = folder / "identity.json"
    doc = json.loads(p.read_text())
    doc.setdefault("extras", {})[key] = value
    p.write_text(json.dumps(doc, indent=1))
