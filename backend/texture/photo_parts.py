"""The photo on the parts that carry textures of their own: eyeballs (sclera, iris), teeth and
the mouth interior (gums and tongue).

Seen from the photo's camera, a head textured only on its skin shows modelled eyes and teeth
where the photo has the person's own: the strongest identity cue stops matching. Here each
part's texels are projected into the photo exactly as the skin's are (visibility by ray
casting against the whole posed head, lids and lips included), and the photo's colour
replaces a base colour where the camera saw the texel; the base colour (procedural eye with
the photo's iris and sclera colours, teeth and mouth tones measured in the photo or plausible
defaults) covers what the camera did not see.

Layouts: images HxWx3 uint8 RGB rows top-to-bottom; part textures (size, size, 3) uint8 in the
group's own UV tile (the integer part of u dropped); colours float RGB in [0, 1]. Vertices are
metres in the head frame. `rest_vertices` is the mesh without expression (what the GLB's base
holds, where procedural patterns are painted); `posed_vertices` is the mesh as the GLB shows
it at its fitted weights (eyeballs turned to the gaze, jaw as fitted), where the photo is
projected.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..face.landmarks import (LEFT_EYE_OPENING, LEFT_IRIS, MOUTH_OPENING, RIGHT_EYE_OPENING,
                              RIGHT_IRIS)
from ..headmodel.model import HeadModel
from ..camera import View
from ..geometry import vertex_normals
from .bake import TextureConfig, _interpolate, _Occluder, _smooth_confidence, sample_views
from .eyes import DEFAULT_IRIS_RGB, SCLERA_RGB, eye_color, eyeball, part_raster
from .fill import nearest_fill_outside

TEETH_RGB = (0.86, 0.82, 0.72)
MOUTH_RGB = (0.36, 0.14, 0.13)        # gums and tongue where the photo shows none: dark
EYE_GROUPS = ("M_ScleraLeft", "M_IrisLeft", "M_ScleraRight", "M_IrisRight")
MOUTH_GROUPS = ("M_Teeth", "M_GumsTongue")
OCCLUDER_GROUPS = ("M_Face", "M_BackHead") + EYE_GROUPS + MOUTH_GROUPS


@dataclass
class PartTextureConfig:
    eye_size: int | None = None       # texels per side of each eye group's texture (None:
    mouth_size: int | None = None     # part_resolution of the face's size in the photo)
    texels_per_face_px: float = 0.75  # tile side per photo pixel of the face: the eye opening
                                      # then gets >= 2 texels per photo pixel
    min_size: int = 256
    max_size: int = 512                # 1024 would cost ~5 s more on 2 cores
    min_cos: float = 0.05
    angle_power: float = 1.0          # parts are small and curved: trust oblique views more
    full_confidence: float = 0.25     # weight at which the photo replaces the base colour
    ray_offset: float = 2e-4          # metres off the surface for the visibility ray
    occlusion: bool = True            # take the head's ambient occlusion out of the photo's
                                      # colours (occlusion.py; as TextureConfig.occlusion)
    occlusion_rays: int = 32
    occlusion_floor: float = 0.45


@dataclass
class PartColours:
    """Base colours of the parts, measured in the photo where it shows them."""
    iris: tuple = DEFAULT_IRIS_RGB
    sclera: tuple = tuple(SCLERA_RGB)
    teeth: tuple = TEETH_RGB
    mouth: tuple = MOUTH_RGB
    measured: dict = field(default_factory=dict)   # name -> True when taken from the photo

    def info(self) -> dict:
        r = lambda c: [round(float(x), 4) for x in c]   # noqa: E731
        return {"iris_rgb": r(self.iris), "sclera_rgb": r(self.sclera), "teeth_rgb": r(self.teeth),
                "mouth_rgb": r(self.mouth), "from_photo": sorted(k for k, v in self.measured.items()
                                                                 if v)}


def _polygon_pixels(image: np.ndarray, poly: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(colours (M, 3) uint8, pixel centres (M, 2)) of the photo inside a landmark polygon."""
    import cv2

    h, w = image.shape[:2]
    x0, y0 = np.floor(poly.min(0)).astype(int)
    x1, y1 = np.ceil(poly.max(0)).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 <= x0 or y1 <= y0:
        return np.zeros((0, 3), np.uint8), np.zeros((0, 2))
    m = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(m, [np.round((poly - [x0, y0] - 0.5) * 16).astype(np.int32)], 1, shift=4)
    yy, xx = np.nonzero(m)
    return image[yy + y0, xx + x0], np.c_[xx + x0 + 0.5, yy + y0 + 0.5]


def measure_part_colours(image: np.ndarray, landmarks: np.ndarray) -> PartColours:
    """Iris, sclera, teeth and mouth-interior colours from the photo's eye and mouth openings
    (mediapipe's 478 landmarks); defaults for what the photo does not show."""
    from .eyes import iris_color_from_photo

    lm = np.asarray(landmarks, np.float64)
    out = PartColours()
    if lm.shape[0] < 478:
        return out
    iris = iris_color_from_photo(image, lm)
    if iris is not None:
        out.iris, out.measured["iris"] = iris, True
    # Sclera: inside the lid opening, outside the iris disc, the brighter half (lashes and
    # the lids' shadow are darker), lifted a little as the iris is.
    scl = []
    for opening, iris_ids in ((RIGHT_EYE_OPENING, RIGHT_IRIS), (LEFT_EYE_OPENING, LEFT_IRIS)):
        col, pix = _polygon_pixels(image, lm[opening])
        ctr = lm[iris_ids[0]]
        rad = np.median(np.linalg.norm(lm[iris_ids[1:]] - ctr, axis=1))
        keep = np.linalg.norm(pix - ctr, axis=1) > 1.2 * rad
        scl.append(col[keep])
    scl = np.concatenate(scl).astype(np.float64) if scl else np.zeros((0, 3))
    if len(scl) >= 12:
        # the whitest part: bright and unsaturated (skin at the corners is saturated, lashes
        # and the lids' shadow are dark)
        white = scl.mean(1) - 1.5 * (scl.max(1) - scl.min(1))
        c = np.median(scl[white >= np.percentile(white, 80)], axis=0) / 255.0
        out.sclera = tuple(np.clip(c * 1.1, 0.35, 0.95))
        out.measured["sclera"] = True
    # Mouth: open enough to show its inside? bright pixels are teeth, dark ones the interior.
    col, _ = _polygon_pixels(image, lm[MOUTH_OPENING])
    mouth_w = np.linalg.norm(lm[78] - lm[308])
    gap = np.linalg.norm(lm[13] - lm[14])            # inner lips, upper and lower centre
    if gap > 0.08 * mouth_w and len(col) >= max(20, 0.02 * mouth_w ** 2):
        c = col.astype(np.float64) / 255.0
        lum = c @ np.array([0.299, 0.587, 0.114])
        sat = c.max(1) - c.min(1)
        teeth = c[(lum > np.percentile(lum, 60)) & (sat < 0.35)]
        if len(teeth) >= 10:
            out.teeth = tuple(np.clip(np.median(teeth, axis=0), 0.4, 0.95))
            out.measured["teeth"] = True
        dark = c[lum < np.percentile(lum, 30)]
        if len(dark) >= 10:
            out.mouth = tuple(np.clip(np.median(dark, axis=0), 0.05, 0.5))
            out.measured["mouth"] = True
    return out


def _base_colour_fn(model: HeadModel, rest: np.ndarray, group: str,
                    colours: PartColours) -> Callable[[np.ndarray], np.ndarray]:
    if group.startswith(("M_Sclera", "M_Iris")):
        side = "Left" if group.endswith("Left") else "Right"
        eye = eyeball(rest, model, side)
        return lambda p: eye_color(p, eye, colours.iris, colours.sclera)
    rgb = np.asarray(colours.teeth if group == "M_Teeth" else colours.mouth, np.float32)
    return lambda p: np.broadcast_to(rgb, (len(p), 3)).copy()


def part_resolution(face_px: float | None, cfg: "PartTextureConfig") -> int:
    """Tile side of a part texture for a face `face_px` photo pixels across: the power of two
    at or above texels_per_face_px * face_px, within [min_size, max_size] (max_size when the
    face size is unknown). More texels would only interpolate the photo's few eye pixels."""
    if face_px is None or not np.isfinite(face_px) or face_px <= 0:
        return cfg.max_size
    size = cfg.min_size
    while size < cfg.texels_per_face_px * face_px and size < cfg.max_size:
        size *= 2
    return min(size, cfg.max_size)


def _without_occlusion(photo, seen, posed, normals, tv, t, b, occluder, cfg, check):
    """The photo's colours of a part's seen texels with the head's ambient occlusion at
    them divided out (linear light; per vertex, interpolated): an eyeball's corners under
    the lids are as dark in the photo as they will be again in a render."""
    from .occlusion import OcclusionConfig, brighten, gain_from_visibility, vertex_visibility

    used = np.unique(tv[t[seen]])
    vis = np.ones(len(posed), np.float32)
    vis[used] = vertex_visibility(posed[used], normals[used], occluder.blocked,
                                  OcclusionConfig(rays=cfg.occlusion_rays), check)
    gain = gain_from_visibility(vis, cfg.occlusion_floor)
    g = _interpolate(gain[:, None], tv[t[seen]], b[seen])[:, 0]
    out = np.array(photo, np.float32, copy=True)
    out[seen] = brighten(out[seen], g)
    return out


def bake_photo_parts(model: HeadModel, rest_vertices: np.ndarray, posed_vertices: np.ndarray,
                     view: View, colours: PartColours,
                     config: PartTextureConfig | None = None,
                     check: Callable[[], None] | None = None,
                     face_px: float | None = None) -> tuple[dict, dict]:
    """Textures {group: (size, size, 3) uint8} for the eye and mouth groups the model has, and
    {group: share of the group's texels the photo coloured}. `face_px`: the face's size in
    the photo (pixels), which sets the textures' size (part_resolution)."""
    cfg = config or PartTextureConfig()
    check = check or (lambda: None)
    rest = np.asarray(rest_vertices, np.float64)
    posed = np.asarray(posed_vertices, np.float64)
    groups = [g for g in EYE_GROUPS + MOUTH_GROUPS if g in model.group_names]
    occ_mask = model.polygon_mask(*[g for g in OCCLUDER_GROUPS if g in model.group_names])
    occ_tris = model.triangles(occ_mask)[0]
    occluder = _Occluder(posed, occ_tris)
    sample_cfg = TextureConfig(size=256, min_cos=cfg.min_cos, angle_power=cfg.angle_power,
                               ray_offset=cfg.ray_offset)
    textures, seen = {}, {}
    auto_size = part_resolution(face_px, cfg)
    for g in groups:
        check()
        size = (cfg.eye_size if g in EYE_GROUPS else cfg.mouth_size) or auto_size
        tv, cov, t, b = part_raster(model, g, size)
        normals = vertex_normals(posed, tv).astype(np.float32)
        pts_posed = _interpolate(posed, tv[t], b).astype(np.float32)
        nrm = _interpolate(normals, tv[t], b)
        nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-12)
        photo, w = sample_views([view], pts_posed, nrm.astype(np.float32), occluder, sample_cfg,
                                check)
        base = _base_colour_fn(model, rest, g, colours)(_interpolate(rest, tv[t], b))
        conf = _smooth_confidence(w, cfg.full_confidence)[:, None]
        if cfg.occlusion and (w > 0).any():
            photo = _without_occlusion(photo, w > 0, posed, normals, tv, t, b, occluder, cfg,
                                       check)
        img = np.zeros((size, size, 3), np.float32)
        img[cov] = base + conf * (photo - base)
        img = nearest_fill_outside(img, cov, check=check)
        textures[g] = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
        seen[g] = float((w > 0).mean()) if len(w) else 0.0
    return textures, seen
