"""Bake photos into a head model's skin UV atlas.

Array layouts: images HxWx3 uint8 RGB, rows top-to-bottom; masks HxW float32 in [0, 1]; the
atlas is (size, n_tiles * size, 3) uint8, rows top-to-bottom (see raster.py for how UVs map
to texels). Cameras: OpenCV world-to-camera 4x4 `w2c` whose world is the head frame (metres),
pixel intrinsics fx, fy, cx, cy (pixel (i, j) centred at (i + 0.5, j + 0.5)).

The baker takes N views, so the same code bakes the offline path (one photo) and multi-view
results (the photo plus generated or captured views): pass a list of `camera.View`s. For each
texel of the atlas it finds the surface point and normal on the posed mesh, and for each view
 - projects the point into the image and samples the colour (bilinear),
 - tests visibility by casting a ray from the point toward the camera (trimesh + embreex),
 - weights the sample by the viewing angle (cos^p of normal vs. direction to the camera), the
   view's foreground mask and the view's own weight.
Each texel is composed of three layers, top to bottom, each blended by its confidence (a
smoothstep of its accumulated weight): the views' own colour; the colour of its mirror twin
(the point mirrored across x = 0 in the head frame, which ICT-FaceKit's topology maps vertex to
vertex), only under what the views saw too little of, shifted by a smooth offset so that it
meets the views' own colour at their border (gradient-domain blending: a screened Poisson solve
on the skin's vertex graph keeps the twin's detail and takes the seen side's level, so a cheek
lit differently from its twin shows no step); and a smooth fill solved on the mesh
(observed colours diffused over the vertex graph, so that its level meets the projected colour
at the border of what was seen, and pulled toward the median skin tone far from it). Every
blend is smooth, so there are no holes, hard seams or tone breaks; the view's foreground mask
is shrunk a little first, so no texel takes colour from a pixel beside the background. The ray
test is yes or no, so below the jaw, where the jaw's occlusion contour and the photo's edge
cut the neck, the photo's and the twin's confidence fade in from the texels they do not see
(TextureConfig.neck_rim, soften_rims); the face above keeps its edges.

Hair on the unseen head (TextureConfig.hair_fill): when the seen scalp reads as hair, the
scalp's outline (hairline.py: the crown, temples and a sideburn, the back of the skull down to
a U-shaped nape line, the ears and a margin round them left bare) takes the seen hair's colour
and streaks (hair.py). Behind the ears the edge is crisp and ragged per strand: the texels
there blend two fills solved in one factorisation (a skin-toned scalp, hair over the outline's
band) by the outline's density. In front, where the outline only guesses the photo's hairline,
the fill's own soft blend stays.

Nothing leaks onto what the views did not see: a texel gets a view's colour only where the
ray from its point to the camera is free and its normal faces the camera (its mirror twin the
same); the fill spreads seen colour only a few centimetres (TextureConfig.leak_distance, along
the skin's edges) before it has relaxed to the skin tone and the region priors, so a tie or a
collar seen on the front of the neck is not carried round to its back or into the shoulders.

De-lighting (TextureConfig.delight or `bake(..., delight=True)`; off by default, the job option
`delit_texture`): the photo's lighting is estimated once per bake as per-channel 2nd-order SH of
the normal (delight.py) from the direct samples of the photo view (the view of the largest
weight), and every direct, mirrored and per-vertex sample is divided by the shading at the
normal it was sampled at. A mirrored sample is de-lit at its twin's normal, where the photo
saw it, so a shadow on one side is not copied onto the other; the fill then spreads albedo.
It is off by default because the likeness judge sees the head rendered under flat ambient
light, where the photo's own shading is what looks like the photo: de-lit, the 18 shared photos
judged 0.300 / 0.349 / 0.443 at photo camera / yaw 0 / yaw 30 against 0.231 / 0.305 / 0.410 lit
(README, "De-lighting"). De-lit is the texture to light a head in a scene with.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import numpy as np

from ..camera import View
from ..contracts import CancelToken
from ..geometry import vertex_normals
from ..headmodel.model import HeadModel
from .fill import edge_laplacian, mesh_fill_colors, nearest_fill_outside
from .layout import SkinLayout, eye_groups
from .raster import UVRaster, rasterize_uv
from .sampling import bilinear as _bilinear


CHUNK_TEXELS = 1 << 16          # texels per step between cancel checks and progress reports
ROWS_PER_STEP = 256             # atlas rows per step of whole-image passes
NECK_RIM_RAMP_M = 0.01          # the neck's rim fade is phased in over this height below
                                # TextureConfig.neck_rim_y (metres, template)


def _no_check() -> None:
    pass


@dataclass
class TextureConfig:
    size: int = 1024                  # texels per UV tile side (1024 default, 2048 for "high")
    mirror_fill: bool = True          # fill unseen texels from the mirrored side of the face
    mirror_weight: float = 0.6        # trust in a mirrored sample relative to a direct one
    min_cos: float = 0.05             # surfaces seen more obliquely than this get no colour
    angle_power: float = 2.0          # weight = cos(angle) ** angle_power
    full_confidence: float = 0.1      # accumulated weight at which the photo replaces the fill
                                      # (0.1: surfaces up to ~70 degrees from the camera keep the
                                      # photo; 0.3 blended the nose sides and cheeks with the fill)
    fill_data_weight: float = 20.0    # how firmly seen vertices keep their colour in the fill
    fill_prior_weight: float = 0.02   # how fast unseen colour relaxes to the skin tone
    ray_offset: float = 5e-4          # metres: ray start offset off the surface
    hair_fill: bool = True            # unseen scalp takes the colour of the seen hair (if any)
    hair_strands: bool = True         # ... with streaks running down from the crown (hair.py)
    neck_rim: float = 0.012           # below the jaw (template height under neck_rim_y), the
    neck_rim_y: float = -0.095        # photo's and the twin's confidence fade in over this
                                      # share of the tile's size (texels) from the nearest
                                      # texel they do not see: the jaw's occlusion contour
                                      # and the photo's edge leave hard rims on the neck
                                      # otherwise (0: off); the face above keeps its edges
    mask_margin_px: int = 2           # the foreground mask is shrunk by this many pixels: at a
                                      # silhouette, bilinear samples mix in the background
    leak_distance: float = 0.06       # metres along the skin: this far from what the views
                                      # saw, the fill has forgotten the seen colours (relaxed
                                      # to the skin tone and region priors; the ramp starts
                                      # at half of it), so no colour seen on the front of the
                                      # neck or shoulders reaches their back; 0: no limit
    leak_prior_weight: float = 4.0    # the fill's pull to the prior from that distance on (1.0
                                      # let 0.07 of a green suit's colour reach the back of the
                                      # neck, 4.0: 0.009; test_texture_delight)
    delight: bool = False             # divide the photo's SH lighting out (delight.py): the
                                      # texture is an albedo; False keeps the photo's shading
    mirror_tone_match: bool = True    # gradient-domain blend of the mirrored layer: a smooth
                                      # offset (a screened Poisson solve on the skin) makes the
                                      # mirror twin's colour meet the views' own at their
                                      # border, so one side's light or tone does not step in
    mirror_tone_decay: float = 0.025  # metres along the skin over which that offset fades
    mirror_tone_chroma: float = 0.03  # chromaticity difference at which a border vertex and
                                      # its twin count as different stuff (hair beside skin)
    mirror_tone_max: float = 0.2      # the largest offset taken from one border vertex
    occlusion: bool = True            # take the head's own ambient occlusion out of the
                                      # photo's colours (occlusion.py): a renderer adds it
                                      # again, so crevices are not darkened twice
    occlusion_rays: int = 32          # hemisphere directions per skin vertex (16: 0.003
                                      # further from the person at every view, R32)
    occlusion_floor: float = 0.45     # visibility below which no more is divided out

    def __post_init__(self):
        if self.size not in (256, 512, 1024, 2048, 4096):
            raise ValueError(f"texture size must be 256, 512, 1024, 2048 or 4096, got {self.size}")


@dataclass
class BakeResult:
    texture: np.ndarray               # (size, n_tiles*size, 3) uint8
    confidence: np.ndarray            # (size, n_tiles*size) float32 in [0, 1]: 1 = seen directly
    layout: SkinLayout
    seen_fraction: float              # share of atlas texels with any direct or mirrored colour
    skin_rgb: tuple[float, float, float]
    timings_s: dict = field(default_factory=dict)
    lighting: Any = None              # delight.Lighting divided out of the samples, or None
    hair_rgb: tuple[float, float, float] | None = None   # the seen scalp's hair colour that
                                      # the unseen scalp took; None: read as bald (skin)
    sources: np.ndarray | None = None  # (size, n_tiles*size, 3) uint8, asked for with
    #   bake(sources=True): where each texel's colour came from, as shares of 255 in the
    #   atlas's layout: red the views' own colour, green the mirror twin, blue the hairline's
    #   hair; what the three leave is the smooth fill; black outside the UV islands


def mirror_vertex_map(vertices: np.ndarray, candidates: np.ndarray | None = None,
                      tolerance: float = 2e-3) -> np.ndarray | None:
    """For a template symmetric about x = 0: index of each vertex's mirror twin (N,) among
    `candidates` (default all), or None when the template is not symmetric within tolerance."""
    from scipy.spatial import cKDTree

    v = np.asarray(vertices, np.float64)
    cand = np.arange(len(v)) if candidates is None else np.asarray(candidates)
    tree = cKDTree(v[cand])
    d, j = tree.query(v * np.array([-1.0, 1.0, 1.0]))
    if np.median(d[cand]) > tolerance:
        return None
    return cand[j]


def _smooth_confidence(weight: np.ndarray, full: float) -> np.ndarray:
    """Accumulated view weight -> confidence in [0, 1] (smoothstep of weight / full)."""
    c = np.clip(np.asarray(weight, np.float64) / full, 0.0, 1.0).astype(np.float32)
    return c * c * (3 - 2 * c)


def soften_rims(conf: np.ndarray, sources: np.ndarray, where: np.ndarray, rc, shape,
                radius_px: float) -> np.ndarray:
    """`conf` (M,) per texel faded in from `sources` (M,) bool, the texels a layer does not
    see: times smoothstep(distance / radius_px) in atlas texels, by `where` (M,) in [0, 1]
    (how much of the fade a texel takes). `rc` (rows, cols) of the texels in the atlas of
    `shape`; texels outside the UV islands are neither seen nor sources."""
    import cv2

    fading = np.flatnonzero(where > 0)
    if radius_px <= 0 or not sources.any() or not len(fading):
        return conf
    # only the window round the fading texels: a source further out than radius_px leaves
    # them at full confidence either way
    pad = int(np.ceil(radius_px)) + 1
    r0, c0 = max(int(rc[0][fading].min()) - pad, 0), max(int(rc[1][fading].min()) - pad, 0)
    r1 = min(int(rc[0][fading].max()) + pad + 1, shape[0])
    c1 = min(int(rc[1][fading].max()) + pad + 1, shape[1])
    free = np.ones((r1 - r0, c1 - c0), np.uint8)
    src = sources & (rc[0] >= r0) & (rc[0] < r1) & (rc[1] >= c0) & (rc[1] < c1)
    free[rc[0][src] - r0, rc[1][src] - c0] = 0
    dist = cv2.distanceTransform(free, cv2.DIST_L2, 5)[rc[0][fading] - r0, rc[1][fading] - c0]
    t = np.clip(dist / radius_px, 0.0, 1.0)
    out = conf.copy()
    fade = t * t * (3.0 - 2.0 * t)
    out[fading] = (conf[fading] * (1.0 - where[fading] * (1.0 - fade))).astype(conf.dtype)
    return out


def _skin_edges(skin_vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(E, 2) the skin triangles' edges as rows into `skin_vertices` (sorted, unique)."""
    t = np.searchsorted(skin_vertices, triangles)
    e = np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]])
    return np.unique(np.sort(e, 1), axis=0)


def _scalp_outline(model: HeadModel, skin_vertices: np.ndarray, edges: np.ndarray):
    """(scalp depth per skin vertex (S,) metres, the ears' template points (K, 3)) from the
    template's rest shape (hairline.py), or None for models without ICT's back of the head."""
    if "M_BackHead" not in model.group_names:
        return None
    from .hairline import scalp_outline

    return scalp_outline(np.asarray(model.vertices, np.float64)[skin_vertices], edges)


def scalp_vertices(model: HeadModel, skin_vertices: np.ndarray) -> np.ndarray | None:
    """Skin vertices where hair grows on most heads (top, upper sides and back of the skull,
    down to a nape line, less the ears and a margin around them: hairline.py), from the
    template's rest shape; None for models without ICT's back of the head."""
    sv = np.asarray(skin_vertices)
    outline = _scalp_outline(model, sv, _skin_edges(sv, SkinLayout.of(model).tri_vertices))
    return None if outline is None else sv[outline[0] > 0]


def _hair_like(c: np.ndarray, skin: np.ndarray) -> np.ndarray:
    """(n,) bool: which colours (n, 3) read as hair beside this skin tone (3,): much darker
    (under 0.6 of its luminance); much greyer and not brighter (saturation 0.18 below: grey
    hair; a bald scalp's highlight is greyer too, but brighter than the face: alfw2); or
    yellower and darker (blue chromaticity 0.025 below, luminance under 0.85: light brown
    and blond; a bald scalp is as blue as the skin or greyer). White hair brighter than the
    face reads as skin: a bald-looking head is the safer mistake."""
    weights = np.array([0.299, 0.587, 0.114])
    c = np.atleast_2d(np.asarray(c, np.float64))
    lum, lum_s = c @ weights, float(skin @ weights)
    sat = (c.max(1) - c.min(1)) / np.maximum(c.max(1), 1e-6)
    sat_s = float((skin.max() - skin.min()) / max(skin.max(), 1e-6))
    blue = c[:, 2] / np.maximum(c.sum(1), 1e-6)
    blue_s = float(skin[2] / max(skin.sum(), 1e-6))
    return ((lum < 0.6 * lum_s) | ((sat < sat_s - 0.18) & (lum < lum_s))
            | ((blue < blue_s - 0.025) & (lum < 0.85 * lum_s)))


def hair_colour(colours: np.ndarray, confidence: np.ndarray, scalp_rows: np.ndarray,
                min_share: float = 0.3, min_hair: int = 20):
    """The hair colour (3,) seen on the scalp, or None when the seen scalp looks like skin
    (bald or shaved heads) or too little of it was seen. `colours`/`confidence` per skin
    vertex, `scalp_rows` the scalp's rows in them.

    Each seen scalp vertex is judged on its own against the face's skin tone (`_hair_like`):
    a photo cropped at the hairline sees half forehead and half hair (id04657), and the
    median of both is skin. The scalp has hair when at least `min_share` of what was seen of
    it reads as hair and the median of those vertices does too (a bald scalp's few odd
    vertices, at its silhouette or in a highlight, are no colour of their own: alfw2), and at
    least `min_hair` of them read as hair: a photo cropped at the top of the head sees only a
    strip of the scalp (IMG_0392: 25 vertices, all dark hair)."""
    from .fill import robust_skin_tone

    seen = scalp_rows[confidence[scalp_rows] > 0.7]
    if len(seen) < min_hair:
        return None
    c = np.asarray(colours[seen], np.float64)
    skin = np.asarray(robust_skin_tone(colours, confidence), np.float64)
    is_hair = _hair_like(c, skin)
    if is_hair.sum() < min_hair or is_hair.mean() < min_share:
        return None
    hair = np.median(c[is_hair], axis=0)
    return hair.astype(colours.dtype) if _hair_like(hair, skin)[0] else None


def edge_safe(view: View, margin_px: int) -> View:
    """The view with its foreground mask shrunk by `margin_px` (a min filter), so no texel
    takes colour from a pixel next to the background; views without a mask are unchanged."""
    if view.mask is None or margin_px <= 0:
        return view
    import cv2

    k = np.ones((2 * margin_px + 1, 2 * margin_px + 1), np.uint8)
    return replace(view, mask=cv2.erode(view.mask, k))


def _interpolate(values: np.ndarray, tri_vertices: np.ndarray, bary: np.ndarray) -> np.ndarray:
    """Barycentric interpolation of per-vertex values (N, C) over (M, 3) corners -> (M, C)."""
    out = values[tri_vertices[:, 0]] * bary[:, 0:1]
    out += values[tri_vertices[:, 1]] * bary[:, 1:2]
    out += values[tri_vertices[:, 2]] * bary[:, 2:3]
    return out


def _dot3(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise dot products of (M, 3) arrays: the same additions in the same order as
    (a * b).sum(1), about ten times faster (numpy's reduction over a 3-wide axis is slow)."""
    return a[:, 0] * b[:, 0] + a[:, 1] * b[:, 1] + a[:, 2] * b[:, 2]


def _normalize(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.sqrt(_dot3(v, v))[:, None], 1e-12)


class _Occluder:
    """Ray-cast visibility against a triangle mesh (embree through trimesh when available)."""

    def __init__(self, vertices: np.ndarray, triangles: np.ndarray):
        import trimesh

        self.mesh = trimesh.Trimesh(np.asarray(vertices, np.float64), np.asarray(triangles),
                                    process=False)
        ray = self.mesh.ray                     # embree's scene, or None: trimesh's own
        self._embree = ray if type(ray).__module__.endswith("ray_pyembree") else None

    def blocked(self, origins: np.ndarray, directions: np.ndarray) -> np.ndarray:
        if not len(origins):
            return np.zeros(0, bool)
        if self._embree is None:               # trimesh's pure-Python intersector
            return np.asarray(self.mesh.ray.intersects_any(origins, directions), bool)
        # embree's occlusion query (any hit) instead of intersects_any's closest hit: the same
        # answer (all 912,545 rays of one bake alike), about a quarter less time. The arrays
        # are prepared exactly as trimesh's intersects_first prepares them.
        from trimesh import util
        from trimesh.ray.ray_pyembree import _embree_dtype

        scene = self._embree._scene              # built on first use, then cached by trimesh
        o = np.array(origins, dtype=_embree_dtype)
        d = util.unitize(np.array(directions, dtype=_embree_dtype))
        if o.shape != d.shape:
            raise ValueError("ray origins and directions differ in shape")
        return np.asarray(scene.run(o, d, query="OCCLUDED")) != -1


def sample_views(views: Sequence[View], points: np.ndarray, normals: np.ndarray,
                 occluder: _Occluder, cfg: TextureConfig,
                 check: Callable[[], None] = _no_check) -> tuple[np.ndarray, np.ndarray]:
    """Weighted average colour (M, 3) float32 in [0, 1] and total weight (M,) of surface
    samples over the views (weight 0: seen by no view). `check()` runs before each view (it
    raises to stop)."""
    m = len(points)
    acc = np.zeros((m, 3), np.float64)
    wsum = np.zeros(m, np.float64)
    for view in views:
        check()
        r, t = view.camera.w2c[:3, :3], view.camera.w2c[:3, 3]
        k = view.camera
        h, w = view.image.shape[:2]
        centre = -r.T @ t
        pc = points @ r.T.astype(np.float32) + t.astype(np.float32)
        z = pc[:, 2]
        to_cam = _normalize(centre.astype(np.float32) - points)
        cos = _dot3(normals, to_cam)
        ok = (z > 1e-6) & (cos > cfg.min_cos)
        zz = np.where(ok, z, 1.0)
        u = float(k.fx) * pc[:, 0] / zz + float(k.cx)
        v = float(k.fy) * pc[:, 1] / zz + float(k.cy)
        ok &= (u >= 0) & (u < w) & (v >= 0) & (v < h)
        idx = np.flatnonzero(ok)
        if not len(idx):
            continue
        weight = ((cos[idx] - cfg.min_cos) / (1 - cfg.min_cos)) ** cfg.angle_power
        if view.mask is not None:
            weight = weight * _bilinear(view.mask, u[idx], v[idx])
        keep = weight > 1e-4
        idx, weight = idx[keep], weight[keep]
        blocked = occluder.blocked(points[idx] + to_cam[idx] * cfg.ray_offset, to_cam[idx])
        idx, weight = idx[~blocked], weight[~blocked] * float(view.weight)
        if not len(idx):
            continue
        col = _bilinear(view.image, u[idx], v[idx]) / 255.0
        acc[idx] += col * weight[:, None]
        wsum[idx] += weight
    colors = np.divide(acc, wsum[:, None], out=np.zeros_like(acc), where=wsum[:, None] > 0)
    return colors.astype(np.float32), wsum


class TextureBaker:
    """Bakes views into one head model's skin atlas. Build once per model and texture size
    (the UV rasterisation is cached); call `bake` per result."""

    def __init__(self, model: HeadModel, config: TextureConfig | None = None):
        self.model = model
        self.config = config or TextureConfig()
        self.layout = SkinLayout.of(model)
        t0 = time.perf_counter()
        self.raster: UVRaster = rasterize_uv(self.layout.tri_uvs, self.config.size,
                                             self.layout.n_tiles)
        self.raster_s = time.perf_counter() - t0
        cov = self.raster.covered
        self.texel_rc = np.nonzero(cov)
        self.texel_tri = self.raster.tri[cov].astype(np.int64)
        self.texel_bary = self.raster.bary[cov]                    # (M, 3) float32
        self.skin_vertices = np.unique(self.layout.tri_vertices)
        self._neck_share = None         # (M,) how much each texel is below the jaw (neck_rim)
        # the skin's edges (rows into skin_vertices), for the fill's leak distance
        self.skin_edges = _skin_edges(self.skin_vertices, self.layout.tri_vertices)
        # Occluders: skin plus eyeballs (so eyelid texels behind an eyeball are not painted).
        eye_mask = model.polygon_mask(*eye_groups(model))
        eye_tris = model.triangles(eye_mask)[0] if eye_mask.any() else np.zeros((0, 3), int)
        self.occluder_tris = np.concatenate([self.layout.tri_vertices, eye_tris]).astype(np.int64)
        self.mirror = (mirror_vertex_map(model.vertices, self.skin_vertices)
                       if self.config.mirror_fill else None)
        self.vertex_region_priors = model.extras.get("vertex_region_colors", {})
        self.scalp = self.hairline = None
        if self.config.hair_fill:
            self._init_hairline(model)
        import trimesh  # noqa: F401  (its ~0.5 s first import belongs here, not in a bake)

    def _init_hairline(self, model: HeadModel) -> None:
        """The scalp (hairline.py) on the template, once per baker: its skin vertices, and
        for its texels and those within HairlineConfig.band outside its outline behind the
        ears how much hair covers them (a soft, strand-ragged edge), how crisp the edge is
        there, and the strand pattern (hair.py)."""
        sv = self.skin_vertices
        outline = _scalp_outline(model, sv, self.skin_edges)
        if outline is None:
            return
        depth, ears = outline
        self.scalp = sv[depth > 0]
        if not len(self.scalp):
            return
        from .hair import strand_pattern
        from .hairline import HairlineConfig, crispness, hair_density, strand_ends

        line_cfg = HairlineConfig()
        rest = np.asarray(model.vertices, np.float64)
        near = np.zeros(len(model.vertices), bool)      # the scalp, and its edge's band
        band = (depth > -line_cfg.band) & (rest[sv, 2] < line_cfg.soft_z)
        near[sv[(depth > 0) | band]] = True
        tris = self.layout.tri_vertices
        band_tris = near[tris].any(1)
        texels = np.flatnonzero(band_tris[self.texel_tri])
        pts = _interpolate(rest, tris[self.texel_tri[texels]], self.texel_bary[texels])
        crown = rest[self.scalp[np.argmax(rest[self.scalp, 1])]]
        pattern = strand_pattern(pts, crown) if self.config.hair_strands else None
        slot = np.full(len(self.texel_tri), -1, np.int64)
        slot[texels] = np.arange(len(texels))
        ends = None if pattern is None else strand_ends(pts, crown, pattern, line_cfg)
        self.hairline = _Hairline(np.unique(tris[band_tris]), texels, slot,
                                  hair_density(pts, ears, ends, line_cfg), pattern,
                                  crispness(pts, line_cfg))

    def _surface(self, vertices: np.ndarray, normals: np.ndarray, vmap: np.ndarray | None,
                 texels: np.ndarray):
        tv = self.layout.tri_vertices[self.texel_tri[texels]]
        if vmap is not None:
            tv = vmap[tv]
        b = self.texel_bary[texels]
        return _interpolate(vertices, tv, b), _normalize(_interpolate(normals, tv, b))

    def _facing(self, vertices, normals, views, vmap=None) -> np.ndarray:
        """(T,) bool: skin triangles that some view may see (front-facing, in front of the
        camera, inside the image, with margins); texels of other triangles are skipped."""
        tv = self.layout.tri_vertices if vmap is None else vmap[self.layout.tri_vertices]
        c = vertices[tv].mean(1)
        n = normals[tv[:, 0]] + normals[tv[:, 1]] + normals[tv[:, 2]]
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
        out = np.zeros(len(tv), bool)
        for view in views:
            r, t = view.camera.w2c[:3, :3], view.camera.w2c[:3, 3]
            centre = -r.T @ t
            d = centre - c
            d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
            pc = c @ r.T + t
            z = np.maximum(pc[:, 2], 1e-6)
            k = view.camera
            h, w = view.image.shape[:2]
            u = float(k.fx) * pc[:, 0] / z + float(k.cx)
            v = float(k.fy) * pc[:, 1] / z + float(k.cy)
            m = 0.1 * max(w, h)
            out |= ((np.einsum("ij,ij->i", n, d) > self.config.min_cos - 0.35) & (pc[:, 2] > 0)
                    & (u > -m) & (u < w + m) & (v > -m) & (v < h + m))
        return out

    def _sample_texels(self, verts, normals, views, occ, texels: np.ndarray, vmap,
                       check: Callable[[], None], report: Callable[[float], None],
                       store: Callable[..., None]) -> None:
        """sample_views over the surface points of `texels` (through the vertex map `vmap`),
        CHUNK_TEXELS at a time; each chunk's (texel indices, colours (m, 3) float32,
        weights (m,), surface normals (m, 3) where sampled) go to `store`."""
        n = len(texels)
        for s in range(0, n, CHUNK_TEXELS):
            check()
            part = texels[s:s + CHUNK_TEXELS]
            pts, nrm = self._surface(verts, normals, vmap, part)
            c, w = sample_views(views, pts, nrm, occ, self.config, check)
            store(part, c, w, nrm)
            report((s + len(part)) / n)

    def _prior_weights(self, verts: np.ndarray, vconf: np.ndarray):
        """The fill's pull to the prior per skin vertex: `fill_prior_weight` near what the
        views saw, rising smoothly to `leak_prior_weight` at `leak_distance` (geodesic along
        the skin's edges) from it, so seen colour never spreads far into the unseen head."""
        cfg = self.config
        if cfg.leak_distance <= 0:
            return cfg.fill_prior_weight
        import scipy.sparse as sp
        from scipy.sparse.csgraph import dijkstra

        sv, e = self.skin_vertices, self.skin_edges
        p = np.asarray(verts, np.float64)[sv]
        length = np.linalg.norm(p[e[:, 0]] - p[e[:, 1]], axis=1) + 1e-9
        g = sp.coo_matrix((length, (e[:, 0], e[:, 1])), shape=(len(sv), len(sv))).tocsr()
        seen = np.flatnonzero(vconf > 0.5)
        if not len(seen):
            return cfg.fill_prior_weight
        d = dijkstra(g, directed=False, indices=seen, min_only=True,
                     limit=1.01 * cfg.leak_distance)
        # the ramp starts half way: near the border the fill meets the seen colour unhurried
        t = np.clip(2.0 * np.nan_to_num(d, posinf=cfg.leak_distance) / cfg.leak_distance - 1.0,
                    0.0, 1.0)
        return cfg.fill_prior_weight + (cfg.leak_prior_weight - cfg.fill_prior_weight) * \
            t * t * (3.0 - 2.0 * t)

    def _estimate_light(self, scene: "_Scene", cand, col, w, nrm_c):
        """The photo's lighting (delight.Lighting or None) from the direct samples of the
        photo view (the head's own occlusion already out of them): the view of the largest
        weight (the photo; generated views weigh less)."""
        from .delight import estimate_lighting

        verts, normals, views, occ, check = (scene.verts, scene.normals, scene.views,
                                             scene.occ, scene.check)
        if len(views) == 1:
            return estimate_lighting(col[cand], nrm_c, w[cand])
        photo = max(range(len(views)), key=lambda i: float(views[i].weight))
        seen = cand[w[cand] > 0]
        seen = seen[np.linspace(0, len(seen) - 1, min(len(seen), 60000)).astype(np.int64)] \
            if len(seen) else seen
        pts, nrm = self._surface(verts, normals, None, seen)
        c, ww = sample_views([views[photo]], pts, nrm, occ, self.config, check)
        c = scene.without_occlusion(c, self._texel_vertices(seen), seen, self.texel_bary)
        return estimate_lighting(c, nrm, ww)

    def bake(self, vertices: np.ndarray, views: Sequence[View],
             cancel: CancelToken | None = None,
             progress: Callable[[float, str], None] | None = None,
             delight: bool | None = None, sources: bool = False) -> BakeResult:
        """Bake `views` onto the model posed as `vertices` (N, 3) metres, head frame.
        `cancel` is checked between chunks of texels, views and fill passes (JobCancelled);
        `progress(fraction, message)` reports the share of the bake done. `delight` (default
        TextureConfig.delight) divides the photo's lighting out of the samples. `sources`:
        also the map of where each texel's colour came from (BakeResult.sources)."""
        cfg = self.config
        delight = cfg.delight if delight is None else bool(delight)
        check = cancel.raise_if_cancelled if cancel is not None else _no_check
        report = progress or (lambda fraction, message: None)
        times = {}
        t0 = time.perf_counter()
        verts = np.asarray(vertices, np.float64)
        if verts.shape != self.model.vertices.shape:
            raise ValueError(f"vertices {verts.shape} do not match the model "
                             f"{self.model.vertices.shape}")
        if not len(views):
            raise ValueError("bake needs at least one view")
        views = [edge_safe(v, cfg.mask_margin_px) for v in views]
        check()
        normals = vertex_normals(verts, self.layout.tri_vertices).astype(np.float32)
        occ = _Occluder(verts, self.occluder_tris)
        verts = verts.astype(np.float32)
        check()
        scene = _Scene(verts, normals, views, occ, check)
        times["setup"] = time.perf_counter() - t0
        if cfg.occlusion:
            t_occ = time.perf_counter()
            scene.gain = self.skin_occlusion_gain(scene)
            times["occlusion"] = time.perf_counter() - t_occ
        check()

        t0 = time.perf_counter()
        direct, t_light = self._project_direct(scene, delight, report)
        per_vertex = self._project_vertices(scene, direct.light)
        mirrored = self._project_mirrored(scene, direct, per_vertex, report)
        times["project"] = time.perf_counter() - t0
        times["delight"] = t_light          # the estimate and the division of the direct layer

        t0 = time.perf_counter()
        check()
        report(0.75, "filling unseen texels")
        fill, skin, hair, hair_layers = self._fill(verts, per_vertex)
        check()
        tex, conf_img, seen_w = self._compose(direct, mirrored, fill, hair_layers, check)
        source_map = self._sources(direct, mirrored, hair_layers) if sources else None
        if hair_layers is not None and self.hairline.strands is not None:  # streaks, unseen
            self._streak_hair(tex, seen_w, hair, skin)
        report(0.9, "padding the UV islands")
        texture = self._finish(tex, check)
        times["fill"] = time.perf_counter() - t0
        check()
        return BakeResult(
            texture=texture, confidence=conf_img, layout=self.layout,
            seen_fraction=float((seen_w > 0).mean()) if len(direct.weight) else 0.0,
            skin_rgb=tuple(float(c) for c in skin), timings_s=times, lighting=direct.light,
            hair_rgb=None if hair is None else tuple(float(c) for c in hair),
            sources=source_map)

    # --- the bake's steps -------------------------------------------------------------------

    def _project_direct(self, scene: "_Scene", delight: bool, report):
        """The views' own colour per texel (the top layer), de-lit when asked; returns the
        layer and the seconds the lighting took."""
        cfg = self.config
        n_tex = len(self.texel_tri)
        col = np.zeros((n_tex, 3), np.float32)
        w = np.zeros(n_tex, np.float64)
        cand = np.flatnonzero(self._facing(scene.verts, scene.normals, scene.views)[self.texel_tri])
        nrm_c = np.zeros((len(cand), 3), np.float32) if delight else None

        def store_direct(idx, c, ww, nrm):
            col[idx], w[idx] = scene.without_occlusion(c, self._texel_vertices(idx), idx,
                                                       self.texel_bary), ww
            if nrm_c is not None:
                nrm_c[np.searchsorted(cand, idx)] = nrm

        self._sample_texels(scene.verts, scene.normals, scene.views, scene.occ, cand, None,
                            scene.check, lambda f: report(0.5 * f, "projecting the views"),
                            store_direct)
        conf = self._soften_neck_rims(_smooth_confidence(w, cfg.full_confidence), w <= 0)
        light, t_light = None, time.perf_counter()
        if delight:
            scene.check()
            light = self._estimate_light(scene, cand, col, w, nrm_c)
            if light is not None:
                col[cand] = light.albedo(col[cand], nrm_c)
        return _DirectLayer(col, w, conf, light), time.perf_counter() - t_light

    def _project_vertices(self, scene: "_Scene", light) -> "_VertexSamples":
        """The views' colour at each skin vertex (what the fill keeps where seen)."""
        sv = self.skin_vertices
        vcol, vw = sample_views(scene.views, scene.verts[sv], scene.normals[sv], scene.occ,
                                self.config, scene.check)
        vcol = scene.without_occlusion(vcol, sv)
        if light is not None:
            vcol = light.albedo(vcol, scene.normals[sv])
        return _VertexSamples(vcol, vw)

    def _project_mirrored(self, scene: "_Scene", direct: "_DirectLayer",
                          per_vertex: "_VertexSamples", report) -> "_MirrorLayer | None":
        """The mirror twin's colour, for what the views saw too little of: a separate layer
        under the direct one (blended by the direct confidence), never mixed into a texel the
        views saw well. The vertices the views saw too little of take their twin's colour
        into `per_vertex` as well (for the fill). None without a mirror map."""
        if self.mirror is None:
            return None
        cfg, check, light = self.config, scene.check, direct.light
        verts, normals = scene.verts, scene.normals
        n_tex = len(self.texel_tri)
        check()
        facing_m = self._facing(verts, normals, scene.views, self.mirror)[self.texel_tri]
        need = np.flatnonzero((direct.conf < 1.0) & facing_m)
        mcol = np.zeros((len(need), 3), np.float32)
        mw = np.zeros(len(need), np.float64)
        slot = np.full(n_tex, -1, np.int64)
        slot[need] = np.arange(len(need))
        check()

        def store_mirrored(idx, mc, ww, nrm):
            # the twin's occlusion out, and de-lit at the twin's normal, where the photo saw
            # it: no mirrored shadow
            mc = scene.without_occlusion(mc, self.mirror[self._texel_vertices(idx)], idx,
                                         self.texel_bary)
            if light is not None:
                mc = light.albedo(mc, nrm)
            mcol[slot[idx]], mw[slot[idx]] = mc, ww * cfg.mirror_weight

        self._sample_texels(verts, normals, scene.views, scene.occ, need, self.mirror, check,
                            lambda f: report(0.5 + 0.25 * f, "mirroring the unseen side"),
                            store_mirrored)
        mconf = _smooth_confidence(mw, cfg.full_confidence)
        if cfg.neck_rim > 0:                    # the twin's rims too, where it is needed
            full = np.zeros(n_tex, np.float32)
            full[need] = mconf
            unseen = np.zeros(n_tex, bool)
            unseen[need] = mw <= 0
            mconf = self._soften_neck_rims(full, unseen)[need]
        sv = self.skin_vertices
        vcol, vw = per_vertex.colour, per_vertex.weight
        mv = self.mirror[sv]            # every vertex's twin: the offset needs the border too
        mvc, mvw = sample_views(scene.views, verts[mv], normals[mv], scene.occ, cfg, check)
        mvc = scene.without_occlusion(mvc, mv)
        if light is not None:
            mvc = light.albedo(mvc, normals[mv])
        if cfg.mirror_tone_match:
            offset = self._mirror_offset(verts, vcol, vw, mvc, mvw)
            mvc += offset
            tv = self.layout.tri_vertices[self.texel_tri[need]]
            full = np.zeros((len(verts), 3), np.float32)
            full[sv] = offset
            mcol += _interpolate(full, tv, self.texel_bary[need])
        vneed = vw < cfg.full_confidence
        mvc, mvw = mvc[vneed], mvw[vneed] * cfg.mirror_weight
        tot = vw[vneed] + mvw
        vcol[vneed] = np.divide(vcol[vneed] * vw[vneed][:, None] + mvc * mvw[:, None],
                                tot[:, None], out=vcol[vneed], where=tot[:, None] > 0)
        vw[vneed] = tot
        return _MirrorLayer(need, slot, mcol, mconf)

    def _soften_neck_rims(self, conf: np.ndarray, unseen: np.ndarray) -> np.ndarray:
        """`conf` (M,) with its rims below the jaw faded in (soften_rims, TextureConfig
        .neck_rim); `unseen` (M,) the texels that layer does not see."""
        cfg = self.config
        if cfg.neck_rim <= 0:
            return conf
        if self._neck_share is None:       # once per baker: the template height per texel
            rest_y = np.asarray(self.model.vertices, np.float64)[:, 1:2]
            y = _interpolate(rest_y, self.layout.tri_vertices[self.texel_tri],
                             self.texel_bary)[:, 0]
            t = np.clip((cfg.neck_rim_y - y) / NECK_RIM_RAMP_M, 0.0, 1.0)
            self._neck_share = (t * t * (3.0 - 2.0 * t)).astype(np.float32)
        return soften_rims(conf, unseen, self._neck_share, self.texel_rc, self.raster.shape,
                           cfg.neck_rim * cfg.size)

    def _mirror_offset(self, verts, vcol, vw, mvc, mvw) -> np.ndarray:
        """The gradient-domain blend of the mirrored layer, per skin vertex (S, 3): a smooth
        offset that equals (the views' colour - the twin's) on the border ring where the
        views saw a vertex fully and its twin too, and is harmonic (screened, fading over
        `mirror_tone_decay`) over the vertices the mirror fills. Added to the twin's colour,
        it keeps the mirrored detail (its gradients) and meets the seen level at the border:
        Poisson image editing on the skin's vertex graph."""
        import scipy.sparse as sp
        from scipy.sparse.linalg import spsolve

        cfg, e = self.config, self.skin_edges
        n = len(self.skin_vertices)
        full = cfg.full_confidence
        filled = (vw < full) & (mvw * cfg.mirror_weight >= 0.5 * full)
        seen = (vw >= full) & (mvw > 0)
        # the border ring: seen vertices next to filled ones
        touch = np.zeros(n, bool)
        for a, b in ((0, 1), (1, 0)):
            touch[e[filled[e[:, a]], b]] = True
        border = seen & touch
        if not border.any() or not filled.any():
            return np.zeros((n, 3), np.float32)
        p = np.asarray(verts, np.float64)[self.skin_vertices]
        edge_len = float(np.linalg.norm(p[e[:, 0]] - p[e[:, 1]], axis=1).mean())
        screen = (edge_len / max(cfg.mirror_tone_decay, 1e-6)) ** 2
        # A border vertex pins the offset as far as it and its twin show the same stuff in
        # different light (alike in chromaticity: skin beside skin); where one is hair, a
        # brow or an eyelash and the other skin, the difference is content, not tone, and
        # pins little. Soft pins let the Laplacian average the border's noise. The solve
        # covers the filled vertices and their border only.
        nodes = np.flatnonzero(filled | border)
        local = np.full(n, -1, np.int64)
        local[nodes] = np.arange(len(nodes))
        le = local[e]
        le = le[(le >= 0).all(1)]
        m = len(nodes)
        lap = edge_laplacian(m, le)
        chroma = lambda c: c / np.maximum(c.sum(1, keepdims=True), 1e-3)      # noqa: E731
        b = border[nodes]
        alike = np.exp(-(np.linalg.norm(chroma(vcol[nodes]) - chroma(mvc[nodes]), axis=1)
                         / cfg.mirror_tone_chroma) ** 2)
        anchor = np.where(b, 4.0 * alike, 0.0) + screen
        target = np.zeros((m, 3))
        target[b] = np.clip(vcol[nodes][b] - mvc[nodes][b], -cfg.mirror_tone_max,
                            cfg.mirror_tone_max)
        x = spsolve((lap + sp.diags(anchor)).tocsc(), anchor[:, None] * target)
        out = np.zeros((n, 3), np.float32)
        out[nodes] = x.reshape(m, 3)
        return out

    def _fill(self, verts: np.ndarray, per_vertex: "_VertexSamples"):
        """The smooth fill solved on the skin's vertices (fill.mesh_fill_colors), with the
        scalp's prior the seen hair colour when there is hair; returns (per-vertex fill
        colours, the skin tone, the hair colour or None, the hairline's layers or None).
        The layers (2, N, 3), solved in the same factorisation, are the fill with a skin-toned
        scalp and the fill with hair all over the hairline's band: the texels near the
        scalp's outline blend the two by its density (_compose)."""
        cfg, sv = self.config, self.skin_vertices
        vcol = per_vertex.colour
        vconf = np.clip(per_vertex.weight / cfg.full_confidence, 0.0, 1.0)
        priors = dict(self.vertex_region_priors)
        hair = None
        if self.scalp is not None:
            hair = hair_colour(vcol, vconf, np.searchsorted(sv, self.scalp))
        args = (sv, self.layout.tri_vertices, vcol, vconf, len(verts), cfg.fill_data_weight,
                self._prior_weights(verts, vconf))
        if hair is None or self.hairline is None:
            fill, skin = mesh_fill_colors(*args, priors)
            return fill.astype(np.float32), skin, hair, None
        priors["scalp"] = (self.scalp, None)
        bare, skin, (fill, hair_fill) = mesh_fill_colors(*args, priors, variants=(
            {"scalp": (self.scalp, tuple(hair))},                  # the fill: hair on the scalp
            {"hair": (self.hairline.vertices, tuple(hair))}))     # hair all over the band
        return (fill.astype(np.float32), skin, hair,
                np.stack([bare, hair_fill]).astype(np.float32))

    def _compose(self, direct: "_DirectLayer", mirrored: "_MirrorLayer | None",
                 fill: np.ndarray, hair_layers: np.ndarray | None, check):
        """The atlas (h, w, 3) float32 from the layers, top to bottom: direct (its
        confidence), mirrored (its confidence), the mesh fill (near the scalp's outline,
        behind the ears, the hairline's layers blended by its density: a crisp, ragged edge);
        also the direct confidence as an image and seen_w, how much of each texel the two
        photo layers decide."""
        conf, col = direct.conf, direct.colour
        seen_w = conf.copy()
        if mirrored is not None:
            seen_w[mirrored.need] = 1.0 - (1.0 - conf[mirrored.need]) * (1.0 - mirrored.conf)
        h, wid = self.raster.shape
        tex = np.zeros((h, wid, 3), np.float32)
        conf_img = np.zeros((h, wid), np.float32)
        rows, cols = self.texel_rc
        n_tex = len(self.texel_tri)
        step = 4 * CHUNK_TEXELS
        for s in range(0, n_tex, step):
            check()
            sl = slice(s, s + step)
            tv = self.layout.tri_vertices[self.texel_tri[sl]]
            o = _interpolate(fill, tv, self.texel_bary[sl])
            if hair_layers is not None:
                line = self.hairline
                k = line.slot[sl]
                at = np.flatnonzero(k >= 0)
                b = self.texel_bary[sl][at]
                bare = _interpolate(hair_layers[0], tv[at], b)
                crisp = bare + line.density[k[at], None] * (
                    _interpolate(hair_layers[1], tv[at], b) - bare)
                o[at] += line.crisp[k[at], None] * (crisp - o[at])
            top = conf[sl, None]
            if mirrored is not None:
                k = mirrored.slot[sl]
                has = k >= 0
                under = o.copy()
                mc = mirrored.conf[k[has], None]
                under[has] = mc * mirrored.colour[k[has]] + (1 - mc) * o[has]
                o = under + top * (col[sl] - under)
            else:
                o = o + top * (col[sl] - o)
            tex[rows[sl], cols[sl]] = o
            conf_img[rows[sl], cols[sl]] = conf[sl]
        return tex, conf_img, seen_w

    def _sources(self, direct: "_DirectLayer", mirrored: "_MirrorLayer | None",
                 hair_layers: np.ndarray | None) -> np.ndarray:
        """The texture-sources map (BakeResult.sources): each layer's share of each texel as
        _compose blends them: the views' colour over the mirror twin's over the fill, and of
        the fill the part that is hair (on a haired head: the unseen scalp, whose fill takes
        the hair colour, and the hairline's hair-coloured edge)."""
        top = direct.conf.astype(np.float32)
        mc = np.zeros_like(top)
        if mirrored is not None:
            mc[mirrored.need] = mirrored.conf
        hair = np.zeros_like(top)
        if hair_layers is not None:
            on_scalp = np.zeros((len(self.model.vertices), 1), np.float32)
            on_scalp[self.scalp] = 1.0
            hair = _interpolate(on_scalp, self.layout.tri_vertices[self.texel_tri],
                                self.texel_bary)[:, 0]
            line = self.hairline
            at = np.flatnonzero(line.slot >= 0)
            k = line.slot[at]
            hair[at] = np.maximum(hair[at], line.crisp[k] * line.density[k])
        shares = np.stack([top, (1.0 - top) * mc, (1.0 - top) * (1.0 - mc) * hair], 1)
        out = np.zeros(self.raster.shape + (3,), np.uint8)
        out[self.texel_rc] = np.clip(np.rint(shares * 255.0), 0, 255).astype(np.uint8)
        return out

    def _streak_hair(self, tex: np.ndarray, seen_w: np.ndarray, hair, skin) -> None:
        """Streaks (hair.py) on the hair texels of `tex`, in place: as strong as the texel is
        unseen, covered by hair (the hairline's density) and hair-coloured (where seen skin
        spread into the fill, no streaks)."""
        from .hair import HairPatternConfig, shade_hair

        line = self.hairline
        st = line.texels
        rows, cols = self.texel_rc
        r_, c_ = rows[st], cols[st]
        o = tex[r_, c_]
        span = max(float(np.linalg.norm(np.asarray(skin) - hair)), 1e-3)
        hairness = np.clip(1.0 - np.linalg.norm(o - hair, axis=1) / span, 0.0, 1.0)
        cover = 1.0 + line.crisp * (line.density - 1.0)     # the density where it decides
        tex[r_, c_] = shade_hair(o, line.strands, (1.0 - seen_w[st]) * hairness * cover,
                                 HairPatternConfig().amount)

    def _texel_vertices(self, texels: np.ndarray) -> np.ndarray:
        """(m, 3) the model vertices of each texel's skin triangle."""
        return self.layout.tri_vertices[self.texel_tri[texels]]

    def skin_occlusion_gain(self, scene: "_Scene") -> np.ndarray:
        """(N,) float32 >= 1 per model vertex (1 off the skin): 1 / the skin vertex's
        visibility (occlusion.py, against the skin and eyeballs), smoothed over one ring of
        neighbours, floored at `occlusion_floor`."""
        from .occlusion import OcclusionConfig, gain_from_visibility, vertex_visibility

        cfg = self.config
        sv = self.skin_vertices
        vis = vertex_visibility(scene.verts[sv], scene.normals[sv], scene.occ.blocked,
                                OcclusionConfig(rays=cfg.occlusion_rays), scene.check)
        e = self.skin_edges
        acc = vis.astype(np.float64).copy()
        deg = np.ones(len(sv))
        np.add.at(acc, e[:, 0], vis[e[:, 1]])
        np.add.at(acc, e[:, 1], vis[e[:, 0]])
        np.add.at(deg, e[:, 0], 1.0)
        np.add.at(deg, e[:, 1], 1.0)
        gain = np.ones(len(scene.verts), np.float32)
        gain[sv] = gain_from_visibility(acc / deg, cfg.occlusion_floor)
        return gain

    def _finish(self, tex: np.ndarray, check) -> np.ndarray:
        """Pad the UV islands and quantise: the (h, w, 3) uint8 texture."""
        h, wid = self.raster.shape
        tex = nearest_fill_outside(tex, self.raster.covered, check=check)
        texture = np.empty((h, wid, 3), np.uint8)
        for r in range(0, h, ROWS_PER_STEP):
            check()
            texture[r:r + ROWS_PER_STEP] = np.clip(tex[r:r + ROWS_PER_STEP] * 255.0 + 0.5, 0, 255)
        return texture


@dataclass
class _Hairline:
    """The scalp's outline on one baker's texels (TextureBaker._init_hairline)."""
    vertices: np.ndarray              # skin vertices of the triangles near the scalp: the hair
    #                                   fill's prior is the hair colour there
    texels: np.ndarray                # (H,) the texels of those triangles
    slot: np.ndarray                  # (M,) each texel's row in `texels`, -1 elsewhere
    density: np.ndarray               # (H,) float32 in [0, 1]: hair cover (hairline.py)
    strands: np.ndarray | None        # (H,) float32 in [-1, 1]: the strand pattern (hair.py)
    crisp: np.ndarray                 # (H,) float32 in [0, 1]: 1 where the density decides,
    #                                   0 where the fill's own soft blend does (the front)


@dataclass
class _Scene:
    """What every step of one bake samples: the posed mesh, its normals, the views, the
    occluder and the cancel check."""
    verts: np.ndarray                 # (N, 3) float32, head frame
    normals: np.ndarray               # (N, 3) float32
    views: Sequence[View]
    occ: _Occluder
    check: Callable[[], None]
    gain: np.ndarray | None = None    # (N,) per vertex: 1 / visibility (TextureConfig.occlusion)

    def without_occlusion(self, colours: np.ndarray, vertices: np.ndarray,
                          texels: np.ndarray | None = None, bary: np.ndarray | None = None
                          ) -> np.ndarray:
        """Samples (m, 3) sRGB with the head's own occlusion at them divided out (linear
        light, hue kept: a colour that would pass white is scaled to fit). `vertices` are the
        sample's vertex (m,) or its triangle's (m, 3), weighted by `bary[texels]`."""
        if self.gain is None or not len(colours):
            return colours
        g = self.gain[vertices]
        if g.ndim == 2:
            g = _dot3(g, bary[texels])
        from .occlusion import brighten

        return brighten(colours, g)


@dataclass
class _DirectLayer:
    colour: np.ndarray                # (M, 3) float32 per texel
    weight: np.ndarray                # (M,) accumulated view weight
    conf: np.ndarray                  # (M,) smoothstep confidence
    light: Any = None                 # delight.Lighting divided out, or None


@dataclass
class _VertexSamples:
    colour: np.ndarray                # (S, 3) per skin vertex (mirror twin where unseen)
    weight: np.ndarray                # (S,)


@dataclass
class _MirrorLayer:
    need: np.ndarray                  # texels the layer covers
    slot: np.ndarray                  # (M,) texel -> row in colour/conf, -1 if not covered
    colour: np.ndarray                # (len(need), 3)
    conf: np.ndarray                  # (len(need),)
