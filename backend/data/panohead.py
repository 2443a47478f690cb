"""Reader: PanoHead-style generated sets -> gen3dface-multiview.

The paper generates 25,000 identities with PanoHead, 48 views each (azimuth -180..180 deg,
elevation -40..40 deg). PanoHead (like EG3D, whose dataset tooling it uses) labels images in a
`dataset.json`:

    <root>/dataset.json        {"labels": [["<seed>/<image>.png", [25 floats]], ...]}
    <root>/<seed>/<image>.png  RGB or RGBA; an optional "<image>_mask.png" beside it (grey,
                               white = head) becomes the alpha (PanoHead renders masks too)

The 25 numbers: the 4x4 camera-to-world matrix, row-major (16), then the 3x3 intrinsics
normalised by the image size (9: fx/W, 0, cx/W, 0, fy/H, cy/H, 0, 0, 1). EG3D/PanoHead
cameras use OpenCV axes (x right, y down, z forward) in a world with +Y up and the face
toward +Z, +X the subject's left: the head frame's axes, so only the units differ. That world
has no metric scale (cameras orbit at radius 2.7): `units_to_m` sets it (default 0.3 m per unit,
which makes a PanoHead head about the size of an ICT head; the fitted prior meshes carry the
real size, so set this to match your fitter's scale if it differs). Identities are the
first path component (one folder per seed); every view whose |azimuth| is within
`input_max_azimuth_deg` is an input candidate. There are no prior meshes: run data/priors.py.
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from .format import DatasetWriter, ViewData, ViewIntrinsics, azimuth_elevation, check_name


@dataclass
class PanoHeadReaderConfig:
    units_to_m: float = 0.3
    input_max_azimuth_deg: float = 60.0
    max_size: int = 512


def label_to_camera(label, width: int, height: int, units_to_m: float):
    """(w2c (4, 4) OpenCV in the head frame, metres; ViewIntrinsics in pixels)."""
    a = np.asarray(label, np.float64)
    if a.shape != (25,) or not np.isfinite(a).all():
        raise ValueError(f"a PanoHead/EG3D label has 25 finite numbers, got shape {a.shape}")
    c2w = a[:16].reshape(4, 4).copy()
    c2w[:3, 3] *= units_to_m
    r = c2w[:3, :3]
    if not np.allclose(r @ r.T, np.eye(3), atol=1e-3):
        raise ValueError("camera-to-world rotation is not orthonormal")
    w2c = np.eye(4)
    w2c[:3, :3] = r.T
    w2c[:3, 3] = -r.T @ c2w[:3, 3]
    k = a[16:].reshape(3, 3)
    intr = ViewIntrinsics(width, height, k[0, 0] * width, k[1, 1] * height,
                          k[0, 2] * width, k[1, 2] * height)
    return w2c, intr


def _load_rgba(path: Path, max_size: int) -> np.ndarray:
    from PIL import Image
    with Image.open(path) as im:
        rgba = im.convert("RGBA")
    mask_path = path.with_name(path.stem + "_mask.png")
    if mask_path.is_file():
        with Image.open(mask_path) as m:
            rgba.putalpha(m.convert("L").resize(rgba.size, Image.BILINEAR))
    if max(rgba.size) > max_size:
        s = max_size / max(rgba.size)
        rgba = rgba.resize((round(rgba.size[0] * s), round(rgba.size[1] * s)), Image.LANCZOS)
    return np.asarray(rgba)


def convert_panohead(root: str | Path, out_root: str | Path,
                     cfg: PanoHeadReaderConfig | None = None, overwrite: bool = False,
                     limit: int | None = None) -> Path:
    cfg = cfg or PanoHeadReaderConfig()
    root = Path(root)
    labels_path = root / "dataset.json"
    if not labels_path.is_file():
        raise FileNotFoundError(f"{labels_path} not found (PanoHead/EG3D labels file)")
    labels = json.loads(labels_path.read_text()).get("labels")
    if not labels:
        raise ValueError(f"{labels_path} has no 'labels'")
    by_identity: dict[str, list] = defaultdict(list)
    for rel, label in labels:
        p = PurePosixPath(rel)
        if p.is_absolute() or ".." in p.parts or len(p.parts) < 2:
            raise ValueError(f"label path {rel!r}: expected <seed folder>/<image>")
        by_identity[p.parts[0]].append((p, label))
    with DatasetWriter(out_root, name="panohead", source=f"PanoHead-style set: {root}",
                       extras={"reader": "panohead", "units_to_m": cfg.units_to_m},
                       overwrite=overwrite) as writer:
        for n, (seed, items) in enumerate(sorted(by_identity.items())):
            if limit is not None and n >= limit:
                break
            views = []
            for p, label in items:
                rgba = _load_rgba(root / p, cfg.max_size)
                h, w = rgba.shape[:2]
                w2c, intr = label_to_camera(label, w, h, cfg.units_to_m)
                center = -w2c[:3, :3].T @ w2c[:3, 3]
                az, _ = azimuth_elevation(center)
                name = check_name(PurePosixPath(p.name).stem, "view name")
                views.append(ViewData(name, rgba, w2c, intr,
                                      input_candidate=abs(az) <= cfg.input_max_azimuth_deg + 1e-6))
            writer.add_identity(check_name(f"ph_{seed}", "identity"), views, source=seed)
    return Path(out_root) / "dataset.json"
