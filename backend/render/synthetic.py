"""Synthetic ground-truth heads for the reconstruction benchmark and for training-data
synthesis: random ICT-FaceKit heads (identity and expression coefficients, procedural
skin/hair/eye/teeth materials) and "detailed" heads carrying what the template cannot express
(a smooth random displacement of the scalp and cheeks of a few millimetres, a hair volume).

Everything in metres, head frame. Use:
    head = make_synthetic_head(model, seed=3, config=SyntheticHeadConfig(detailed=True))
    views = render_views(head.meshes, ring_cameras(16, 30.0, ...))
`head.meshes` are `TexturedMesh`es (skin, eyes, teeth, ..., hair) for the renderer;
`head.template_vertices` are the template's vertices as they sit in this head (N, 3), the
ground truth for template registration; `head.surface()` is the whole visible surface as one
(vertices, faces) pair for metrics.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..headmodel.model import HeadModel
from ..geometry import vertex_normals
from .mesh import TexturedMesh
from .procedural import (FlatTexture, HairTexture, SkinTexture, SolidNoise, random_skin_rgb,
                         smoothstep)

SKIN_GROUPS = ("M_Face", "M_BackHead")
# ICT's transparent overlay meshes (eye blend, occlusion, tear film) are not drawn.
DRAWN_GROUPS = {
    "skin": SKIN_GROUPS,
    "eyes": ("M_ScleraLeft", "M_ScleraRight", "M_IrisLeft", "M_IrisRight"),
    "mouth": ("M_Teeth", "M_GumsTongue"),
    "eyelashes": ("M_EyeLashes",),
}
# Expressions drawn for random heads (others stay 0): a plausible, mostly closed-mouth mix.
EXPRESSION_POOL = ("browInnerUpLeft", "browInnerUpRight", "browDownLeft", "browDownRight",
                   "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeSquintLeft",
                   "eyeSquintRight", "jawOpen", "mouthSmileLeft", "mouthSmileRight",
                   "mouthFrownLeft", "mouthFrownRight", "mouthPucker", "mouthLeft",
                   "mouthRight", "noseSneerLeft", "noseSneerRight", "mouthPressLeft",
                   "mouthPressRight", "jawLeft", "jawRight")


@dataclass
class SyntheticHeadConfig:
    identity_scale: float = 0.8          # identity coefficients ~ N(0, scale^2)
    n_identity: int = 100
    n_expressions: tuple = (2, 5)        # how many expressions are active (min, max)
    max_expression: float = 0.5          # active weights ~ U(0.1, max)
    max_jaw_open: float = 0.25
    detailed: bool = False               # add displacement and hair
    displacement_mm: float = 3.0         # peak smooth displacement of scalp and cheeks
    hair: bool = True                    # (detailed only) add a hair volume
    hair_thickness_mm: tuple = (8.0, 16.0)
    eyelashes: bool = True


@dataclass
class SyntheticHead:
    meshes: list[TexturedMesh]
    template_vertices: np.ndarray        # (N, 3) template vertices as placed in this head
    identity: np.ndarray                 # (K,)
    expression: np.ndarray               # (E,)
    skin_vertices: np.ndarray            # template vertex ids of the skin (Face + BackHead)
    seed: int = 0
    info: dict = field(default_factory=dict)

    def surface(self) -> tuple[np.ndarray, np.ndarray]:
        """All drawn meshes as one (vertices (V, 3), faces (F, 3))."""
        return concat_meshes(self.meshes)


def concat_meshes(meshes) -> tuple[np.ndarray, np.ndarray]:
    vs, fs, off = [], [], 0
    for m in meshes:
        vs.append(np.asarray(m.vertices, np.float64))
        fs.append(np.asarray(m.faces, np.int64) + off)
        off += len(m.vertices)
    return np.concatenate(vs), np.concatenate(fs)


def template_triangles(model: HeadModel, groups) -> np.ndarray:
    tri, _, _ = model.triangles(model.polygon_mask(*groups))
    return tri.astype(np.int64)


def random_coefficients(model: HeadModel, rng: np.random.Generator,
                        config: SyntheticHeadConfig) -> tuple[np.ndarray, np.ndarray]:
    k = min(config.n_identity, model.n_identity)
    identity = rng.standard_normal(k) * config.identity_scale
    expression = np.zeros(model.n_expressions)
    pool = [model.expression_names.index(n) for n in EXPRESSION_POOL
            if n in model.expression_names]
    lo, hi = config.n_expressions
    n_active = int(rng.integers(lo, hi + 1)) if pool else 0
    for e in rng.choice(pool, size=min(n_active, len(pool)), replace=False):
        cap = config.max_jaw_open if model.expression_names[e] == "jawOpen" \
            else config.max_expression
        expression[e] = rng.uniform(0.1, max(cap, 0.1))
    return identity, expression


def _region_weights(v: np.ndarray, model: HeadModel) -> tuple[np.ndarray, np.ndarray]:
    """Smooth weights in [0, 1] on posed vertices (N, 3): scalp (above a hairline that drops
    from the forehead to the nape) and cheeks (around the cheekbones)."""
    lm = v[model.landmarks68] if model.landmarks68 is not None else None
    brow_y = lm[[19, 24], 1].mean() if lm is not None else 0.063
    z_front = lm[27, 2] if lm is not None else 0.107
    # hairline height: brow + 3.5 cm at the front, 5 cm below the brow at the back
    t = smoothstep((z_front - v[:, 2]) / 0.12)
    line = brow_y + 0.035 * (1 - t) - 0.05 * t
    scalp = smoothstep((v[:, 1] - line) / 0.025)
    cheeks = np.zeros(len(v))
    if lm is not None:
        for side in ((2, 31, 36), (14, 35, 45)):
            c = lm[list(side)].mean(axis=0)
            c[2] -= 0.005
            d = np.linalg.norm(v - c, axis=1)
            cheeks = np.maximum(cheeks, smoothstep(1 - d / 0.035))
    return scalp, cheeks


def _hair_shell(v: np.ndarray, faces: np.ndarray, scalp: np.ndarray, rng, config):
    """A hair volume: the scalp patch offset along the normals by a smooth thickness that
    tapers to zero at the hairline, so it closes onto the scalp (no visible gap)."""
    n = vertex_normals(v, faces)
    lo, hi = config.hair_thickness_mm
    field_ = SolidNoise(int(rng.integers(1 << 30)), (0.05, 0.02), (1.0, 0.4))
    thick = 1e-3 * (lo + (hi - lo) * smoothstep(0.5 + 0.35 * field_(v)))
    w = smoothstep((scalp - 0.05) / 0.6)
    keep_face = w[faces].min(axis=1) > 0.0
    hf = faces[keep_face]
    used = np.unique(hf)
    remap = -np.ones(len(v), np.int64)
    remap[used] = np.arange(len(used))
    # sink the hair edge 1 mm into the scalp so no crack shows at the hairline
    off = (thick * w - 1e-3 * (1 - w))[used, None] * n[used]
    return v[used] + off, remap[hf], v[used]


def make_synthetic_head(model: HeadModel, seed: int = 0,
                        config: SyntheticHeadConfig | None = None) -> SyntheticHead:
    """A random head (seeded): posed template, procedural materials and, if
    `config.detailed`, displacement of scalp and cheeks and a hair volume."""
    config = config or SyntheticHeadConfig()
    rng = np.random.default_rng(seed)
    identity, expression = random_coefficients(model, rng, config)
    v = model.posed(identity, expression).astype(np.float64)
    ref = v.copy()                        # where the solid textures are read (moves with skin)
    skin_faces = template_triangles(model, SKIN_GROUPS)
    skin_ids = np.unique(skin_faces)
    info: dict = {"detailed": bool(config.detailed)}
    scalp = np.zeros(len(v))
    if config.detailed:
        scalp, cheeks = _region_weights(v, model)
        disp_field = SolidNoise(int(rng.integers(1 << 30)), (0.04, 0.018), (1.0, 0.5))
        amp = 1e-3 * config.displacement_mm
        region = np.maximum(scalp, cheeks)
        disp = np.zeros(len(v))
        disp[skin_ids] = amp * np.clip(disp_field(v[skin_ids]) * 0.8, -1.0, 1.0) * region[skin_ids]
        n = vertex_normals(v, skin_faces)
        v = v + disp[:, None] * n
        info["displacement_max_mm"] = float(np.abs(disp).max() * 1e3)
    skin_rgb = random_skin_rgb(rng)
    s = int(rng.integers(1 << 30))
    meshes = [TexturedMesh(v, skin_faces, solid_texture=SkinTexture(s, skin_rgb),
                           reference_vertices=ref, name="skin")]
    iris_rgb = tuple(rng.choice([(0.25, 0.15, 0.08), (0.2, 0.35, 0.55), (0.3, 0.4, 0.25)]))
    materials = {
        "M_ScleraLeft": (0.92, 0.9, 0.88), "M_ScleraRight": (0.92, 0.9, 0.88),
        "M_IrisLeft": iris_rgb, "M_IrisRight": iris_rgb, "M_Teeth": (0.93, 0.9, 0.8),
        "M_GumsTongue": (0.75, 0.35, 0.35), "M_EyeLashes": (0.12, 0.09, 0.07)}
    groups = list(DRAWN_GROUPS["eyes"]) + list(DRAWN_GROUPS["mouth"])
    if config.eyelashes:
        groups += list(DRAWN_GROUPS["eyelashes"])
    for g in groups:
        if g not in model.group_names:
            continue
        f = template_triangles(model, (g,))
        meshes.append(TexturedMesh(v, f, solid_texture=FlatTexture(s + 7, materials[g]),
                                   reference_vertices=ref, name=g))
    if config.detailed and config.hair:
        hv, hf, href = _hair_shell(v, skin_faces, scalp, rng, config)
        if len(hf):
            meshes.append(TexturedMesh(hv, hf, solid_texture=HairTexture(s + 11),
                                       reference_vertices=href, name="hair"))
            info["hair_faces"] = int(len(hf))
    # Compact each mesh to the vertices it uses (the renderer builds normals per mesh).
    meshes = [_compact(m) for m in meshes]
    return SyntheticHead(meshes=meshes, template_vertices=v.astype(np.float64),
                         identity=identity, expression=expression, skin_vertices=skin_ids,
                         seed=seed, info=info)


def _compact(m: TexturedMesh) -> TexturedMesh:
    used = np.unique(m.faces)
    if len(used) == len(m.vertices):
        return m
    remap = -np.ones(len(m.vertices), np.int64)
    remap[used] = np.arange(len(used))
    ref = None if m.reference_vertices is None else m.reference_vertices[used]
    vc = None if m.vertex_colors is None else m.vertex_colors[used]
    return TexturedMesh(m.vertices[used], remap[m.faces], vertex_colors=vc,
                        corner_uvs=m.corner_uvs, texture=m.texture,
                        solid_texture=m.solid_texture, reference_vertices=ref, name=m.name)
