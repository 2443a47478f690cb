"""Generic eye materials: textures painted procedurally in 3D (by the angle from the eye's
gaze axis: pupil, iris, limbus, sclera) and baked into each eye group's own UVs, so they fit
any UV layout. Also the eyeball geometry (centre, radius, gaze axis) that the exporter uses
for the eyeLook* rotations.

Layouts: textures (size, size, 3) uint8, rows top-to-bottom; colours float RGB in [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..headmodel.model import HeadModel
from .raster import rasterize_uv

DEFAULT_IRIS_RGB = (0.33, 0.22, 0.13)       # a mid brown
SCLERA_RGB = np.array([0.90, 0.88, 0.84])
SCLERA_BACK_RGB = np.array([0.84, 0.66, 0.62])
PUPIL_DEG, IRIS_DEG, LIMBUS_DEG = 11.0, 29.0, 33.0


@dataclass
class Eyeball:
    centre: np.ndarray     # (3,) metres, head frame
    radius: float          # metres
    axis: np.ndarray       # (3,) unit gaze direction at rest


def fit_sphere(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares sphere through points (M, 3) -> (centre, radius)."""
    p = np.asarray(points, np.float64)
    a = np.c_[2 * p, np.ones(len(p))]
    b = (p * p).sum(1)
    x, *_ = np.linalg.lstsq(a, b, rcond=None)
    c = x[:3]
    return c, float(np.sqrt(max(x[3] + c @ c, 0.0)))


def eyeball(vertices: np.ndarray, model: HeadModel, side: str) -> Eyeball | None:
    """Eyeball of the subject's `side` ("Left" or "Right") from its sclera vertices."""
    groups = [g for g in model.group_names if g.startswith("M_Sclera") and g.endswith(side)]
    if not groups:
        return None
    ids = model.vertices_of_groups(*groups)
    p = np.asarray(vertices, np.float64)[ids]
    c, r = fit_sphere(p)
    apex = p[np.argmax(p[:, 2])]
    axis = apex - c
    axis /= max(np.linalg.norm(axis), 1e-12)
    return Eyeball(c, r, axis)


def eye_color(points: np.ndarray, eye: Eyeball, iris_rgb=DEFAULT_IRIS_RGB,
              sclera_rgb=SCLERA_RGB) -> np.ndarray:
    """Procedural eye colour (M, 3) at surface points (M, 3)."""
    d = points - eye.centre
    d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    theta = np.degrees(np.arccos(np.clip(d @ eye.axis, -1, 1)))
    # angle around the axis for the iris streaks
    ref = np.array([0.0, 1.0, 0.0]) - eye.axis * eye.axis[1]
    ref /= max(np.linalg.norm(ref), 1e-12)
    other = np.cross(eye.axis, ref)
    phi = np.arctan2(d @ other, d @ ref)
    iris = np.asarray(iris_rgb, np.float64)
    t = np.clip((theta - PUPIL_DEG) / (IRIS_DEG - PUPIL_DEG), 0, 1)[:, None]
    iris_col = iris * (1.35 - 0.75 * t ** 2) * (1 + 0.10 * np.sin(phi * 37)[:, None])
    back = np.clip((theta - 75) / 60, 0, 1)[:, None]
    front = np.asarray(sclera_rgb, np.float64)
    sclera = front * (1 - back) + SCLERA_BACK_RGB * back
    col = np.where((theta < IRIS_DEG)[:, None], iris_col, sclera)
    limb = ((theta >= IRIS_DEG) & (theta < LIMBUS_DEG))
    s = ((theta[limb] - IRIS_DEG) / (LIMBUS_DEG - IRIS_DEG))[:, None]
    col[limb] = iris * 0.45 * (1 - s) + front * s
    col[theta < PUPIL_DEG] = 0.02
    return np.clip(col, 0, 1)


_RASTER_CACHE: dict = {}


def part_raster(model: HeadModel, group: str, size: int):
    """(triangle vertices, covered mask, texel triangle, texel barycentrics) of one group's
    own UV tile (eyes, teeth, mouth); depends only on the model, so cached."""
    key = (id(model), group, size)
    hit = _RASTER_CACHE.get(key)
    if hit is not None and hit[0] is model:
        return hit[1]
    tv, tu, _ = model.triangles(model.polygon_mask(group))
    uv = model.uvs[tu].astype(np.float64)
    uv[..., 0] -= np.floor(uv[..., 0].mean(1, keepdims=True) + 1e-6)
    r = rasterize_uv(uv, size, 1)
    cov = r.covered
    val = (tv, cov, r.tri[cov], r.bary[cov].astype(np.float64))
    if len(_RASTER_CACHE) > 16:
        _RASTER_CACHE.clear()
    _RASTER_CACHE[key] = (model, val)
    return val


def bake_eye_textures(model: HeadModel, vertices: np.ndarray, size: int = 256,
                      iris_rgb=DEFAULT_IRIS_RGB, check=None) -> dict[str, np.ndarray]:
    """One texture per eye group (M_ScleraLeft, M_IrisLeft, ...): group name -> (size, size,
    3) uint8 in that group's UVs (the integer part of u is dropped). `check()`, if given,
    runs before each group (it raises to stop, e.g. a CancelToken's raise_if_cancelled)."""
    from .fill import nearest_fill_outside

    out = {}
    v = np.asarray(vertices, np.float64)
    for side in ("Left", "Right"):
        eye = eyeball(v, model, side)
        if eye is None:
            continue
        for g in model.group_names:
            if not (g.startswith(("M_Sclera", "M_Iris")) and g.endswith(side)):
                continue
            if check is not None:
                check()
            tv, cov, t, b = part_raster(model, g, size)
            pts = (v[tv[t]] * b[..., None]).sum(1)
            img = np.zeros((size, size, 3), np.float32)
            img[cov] = eye_color(pts, eye, iris_rgb)
            img = nearest_fill_outside(img, cov, check=check)
            out[g] = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    return out


def iris_color_from_photo(image: np.ndarray, landmarks: np.ndarray) -> tuple | None:
    """Median colour inside both irises of a photo from mediapipe's 478 landmarks (iris
    centre 468/473, rim 469-472/474-477); None when the irises are not available."""
    lm = np.asarray(landmarks, np.float64)
    if lm.shape[0] < 478:
        return None
    h, w = image.shape[:2]
    samples = []
    for c, rim in ((468, range(469, 473)), (473, range(474, 478))):
        ctr = lm[c, :2]
        rad = np.median(np.linalg.norm(lm[list(rim), :2] - ctr, axis=1))
        if not np.isfinite(rad) or rad < 1.5:
            continue
        yy, xx = np.mgrid[int(ctr[1] - rad):int(ctr[1] + rad) + 1,
                          int(ctr[0] - rad):int(ctr[0] + rad) + 1]
        rr = np.hypot(xx + 0.5 - ctr[0], yy + 0.5 - ctr[1]) / rad
        ok = (rr > 0.45) & (rr < 0.85) & (xx >= 0) & (yy >= 0) & (xx < w) & (yy < h)
        samples.append(image[yy[ok], xx[ok]].reshape(-1, 3))
    if not samples or sum(len(s) for s in samples) < 5:
        return None
    col = np.median(np.concatenate(samples), axis=0) / 255.0
    # photos darken irises (shadow of the lids): lift a little, keep the hue
    return tuple(float(c) for c in np.clip(col * 1.3, 0.03, 0.8))
