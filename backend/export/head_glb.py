"""Write a fitted head as a GLB that Blender imports as a rigged, textured head.

Frame and units: glTF's frame IS the head frame (+Y up, +Z out of the face, +X the subject's
left), metres. Blender's glTF importer turns it Z-up ((x, y, z) -> (x, -z, y)), so the head
imports upright, facing Blender's -Y (the default front view).

Layout of the file:
  nodes/meshes "Head" (skin: face + back of head, material "HeadSkin" with the baked texture;
  the bust's open bottom closed by a flat cap, bust_cap.py, on vertices after the template's),
  "EyeLeft"/"EyeRight" (the subject's left/right eyeball: sclera and iris primitives with
  generic painted textures), "Teeth" (teeth and gums/tongue primitives), and optionally
  "Eyelashes". Morph targets carry their names in mesh.extras.targetNames (Blender makes shape
  keys of them). For ICT-FaceKit heads the set is headmodel/arkit.py's: Apple ARKit's 52
  blendshapes under their exact names in ARKit's order (browInnerUp and cheekPuff the sums of
  ICT's split shapes, tongueOut derived), then ICT's split shapes browInnerUp_L/_R and
  cheekPuff_L/_R as extras: 56 targets. "Head" carries all of them, the other meshes the
  targets that move them (jawOpen and tongueOut move the lower teeth and the tongue; the
  eyeLook* targets rotate the eyeballs about their fitted centres). mesh.weights holds the
  fitted expression (arkit.ShapeSet.weights_from: exact), so the head imports with the photo's
  expression and the neutral is one click away. Texture coordinates follow glTF (origin
  top-left): v_gltf = 1 - v_obj.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np

from ..headmodel.arkit import ArkitConfig, export_shapes
from ..fitting.gaze import EYE_LOOK_DEG, eye_look_rotation, eye_turn_offset
from ..headmodel.model import HeadModel
from ..geometry import vertex_normals
from ..texture.eyes import eyeball
from ..texture.layout import SkinLayout, skin_groups
from .bust_cap import bust_cap, cap_normal, cap_vertices
from .gltf import ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER, GltfBuilder

HEAD_FRAME_DOC = ("head frame = glTF frame: +Y up, +Z out of the face, +X the subject's left; "
                  "metres")


@dataclass
class ExportConfig:
    include_eyelashes: bool = False      # ICT's lash cards need an alpha texture we do not have
    skin_image_format: str = "jpeg"      # "jpeg" (small) or "png" (lossless)
    jpeg_quality: int = 92
    morph_epsilon: float = 2e-5          # metres: per-vertex offsets below this are written as 0
    min_target_motion: float = 5e-4      # metres: a target goes on a non-Head mesh if it moves it
    eye_look_deg: dict = field(default_factory=lambda: dict(EYE_LOOK_DEG))
    # PBR roughness: matte by default. The base colours are photo pixels, which already hold
    # the photo's shading and highlights (the eyes' catchlights too): a glossy material adds a
    # second sheen on top, and under even light it greys the skin and turns a dark iris into
    # a grey reflection. Measured with scripts/bench_likeness.py (dlib distance, photo camera,
    # 8 photos): skin/eyes 0.55/0.08 -> 0.312, 0.75/0.7 -> 0.273, 1.0/1.0 -> 0.249 (README).
    skin_roughness: float = 1.0
    eye_roughness: float = 1.0
    mouth_roughness: float = 1.0
    # close the bust's open bottom (bust_cap.py): from behind and above, and in engines that
    # cull back faces, an open bottom shows the inside of the chest or a hole
    cap_bust: bool = True
    arkit: ArkitConfig = field(default_factory=ArkitConfig)   # the exported shape set

    def __post_init__(self):
        if self.skin_image_format not in ("jpeg", "png"):
            raise ValueError("skin_image_format must be 'jpeg' or 'png'")


@dataclass
class HeadAsset:
    """Everything the exporter writes."""
    model: HeadModel
    base_vertices: np.ndarray             # (N, 3) metres: neutral + identity, no expression
    expression_weights: np.ndarray        # (E,) fitted expression (mesh.weights)
    skin_texture: np.ndarray              # (H, W, 3) uint8 atlas from the texture baker
    skin_layout: SkinLayout
    eye_textures: dict = field(default_factory=dict)   # group name -> (h, w, 3) uint8
    extras: dict = field(default_factory=dict)         # written to asset.extras


@dataclass
class _Part:
    name: str
    groups: list[str]
    materials: list[str]


def _encode_image(img: np.ndarray, fmt: str, quality: int = 92) -> tuple[bytes, str]:
    from PIL import Image

    buf = io.BytesIO()
    if fmt == "jpeg":
        Image.fromarray(np.ascontiguousarray(img)).save(buf, format="JPEG", quality=quality)
        return buf.getvalue(), "image/jpeg"
    Image.fromarray(np.ascontiguousarray(img)).save(buf, format="PNG", compress_level=3)
    return buf.getvalue(), "image/png"


def _parts(model: HeadModel, config: ExportConfig) -> list[_Part]:
    has = set(model.group_names)
    parts = [_Part("Head", skin_groups(model), ["HeadSkin"] * len(skin_groups(model)))]
    for side in ("Left", "Right"):
        g = [x for x in (f"M_Sclera{side}", f"M_Iris{side}") if x in has]
        if g:
            parts.append(_Part(f"Eye{side}", g, [f"Eye{side}_{x[2:-len(side)]}" for x in g]))
    g = [x for x in ("M_Teeth", "M_GumsTongue") if x in has]
    if g:
        parts.append(_Part("Teeth", g, [{"M_Teeth": "Teeth", "M_GumsTongue": "Mouth"}[x]
                                        for x in g]))
    if config.include_eyelashes and "M_EyeLashes" in has:
        parts.append(_Part("Eyelashes", ["M_EyeLashes"], ["Eyelashes"]))
    return parts


def _material_for(b: GltfBuilder, name: str, asset: HeadAsset, config: ExportConfig,
                  group: str, cache: dict) -> int:
    if name in cache:
        return cache[name]
    if name == "HeadSkin":
        data, mime = _encode_image(asset.skin_texture, config.skin_image_format,
                                   config.jpeg_quality)
        tex = b.texture(b.image(data, mime, "HeadSkin_baseColor"))
        idx = b.material(name, texture=tex, roughness=config.skin_roughness)
    elif group in asset.eye_textures:
        data, mime = _encode_image(asset.eye_textures[group], "png")
        tex = b.texture(b.image(data, mime, f"{name}_baseColor"))
        idx = b.material(name, texture=tex, roughness=config.eye_roughness
                         if group.startswith(("M_Sclera", "M_Iris")) else config.mouth_roughness)
    elif name == "Teeth":
        idx = b.material(name, base_color=(0.92, 0.88, 0.78, 1.0),
                         roughness=config.mouth_roughness)
    elif name == "Mouth":
        idx = b.material(name, base_color=(0.62, 0.26, 0.26, 1.0),
                         roughness=config.mouth_roughness)
    elif name == "Eyelashes":
        idx = b.material(name, base_color=(0.05, 0.04, 0.035, 1.0), roughness=0.6)
    else:
        idx = b.material(name, base_color=(0.8, 0.8, 0.8, 1.0))
    cache[name] = idx
    return idx


_TOPOLOGY_CACHE: dict = {}


def _topology(model: HeadModel, layout: SkinLayout, config: ExportConfig) -> list[dict]:
    """Per part: vertices split where UVs differ (glTF needs one UV per vertex), their glTF
    UVs, triangles in the split numbering. Depends only on the model; cached."""
    key = (id(model), layout.tile_offset, layout.n_tiles, config.include_eyelashes,
           config.cap_bust)
    hit = _TOPOLOGY_CACHE.get(key)
    if hit is not None and hit[0] is model:
        return hit[1]
    out = []
    for part in _parts(model, config):
        mask = model.polygon_mask(*part.groups)
        tv, tu, tp = model.triangles(mask)
        if not len(tv):
            continue
        # UVs: the skin atlas for Head, each group's own tile elsewhere; then glTF's v flip.
        uv = model.uvs[tu].astype(np.float64)                       # (T, 3, 2)
        if part.name == "Head":
            uv = layout.atlas_uv(uv)
        else:
            uv[..., 0] -= np.floor(uv[..., 0].mean(1, keepdims=True) + 1e-6)
        corner_key = tv.ravel().astype(np.int64) * (len(model.uvs) + 1) + tu.ravel()
        _, first, inverse = np.unique(corner_key, return_index=True, return_inverse=True)
        vid = tv.ravel()[first].astype(np.int64)
        vuv = uv.reshape(-1, 2)[first].copy()
        vuv[:, 1] = 1.0 - vuv[:, 1]
        faces = inverse.reshape(-1, 3)
        cap = cap_uv = None
        if part.name == "Head" and config.cap_bust:
            cap = bust_cap(tv, model.vertices)
            if cap is not None:          # one skin texel for the whole cap: inside the
                cap_uv = vuv[faces[cap.edge_triangle]].mean(0)   # triangle at the cut's back
        out.append({"part": part, "vid": vid, "vuv": vuv, "faces": faces,
                    "tv": tv, "tp": tp, "cap": cap, "cap_uv": cap_uv})
    if len(_TOPOLOGY_CACHE) > 4:
        _TOPOLOGY_CACHE.clear()
    _TOPOLOGY_CACHE[key] = (model, out)
    return out


def morph_target_weights(asset: HeadAsset, config: ExportConfig | None = None) -> dict:
    """{target name: weight} of the "Head" mesh, in the file's order (for the sidecar)."""
    config = config or ExportConfig()
    shapes = export_shapes(asset.model, np.asarray(asset.base_vertices, np.float64),
                           config.arkit)
    return shapes.weights_by_name(_model_weights(asset))


def _model_weights(asset: HeadAsset) -> np.ndarray:
    """The fitted expression as (E,) weights of the model's basis, clipped to 0..1."""
    n = asset.model.n_expressions
    weights = np.clip(np.asarray(asset.expression_weights, np.float64), 0.0, 1.0)
    if weights.shape != (n,):
        weights = np.zeros(n) if weights.size == 0 else np.resize(weights, n)
    return weights


def write_head_glb(asset: HeadAsset, config: ExportConfig | None = None, check=None) -> bytes:
    """The GLB bytes of `asset` (see the module docstring for the layout). `check()`, if
    given, runs between meshes and morph targets (it raises to stop, e.g. a CancelToken's
    raise_if_cancelled). A GLB with the free-form surface too: result_glb.write_result_glb."""
    config = config or ExportConfig()
    b = GltfBuilder(extras={"frame": HEAD_FRAME_DOC, **asset.extras})
    add_head(b, asset, config, check)
    (check or (lambda: None))()
    return b.to_glb()


def add_head(b: GltfBuilder, asset: HeadAsset, config: ExportConfig | None = None,
             check=None) -> list[int]:
    """Add the rigged head's meshes and root nodes ("Head", "EyeLeft", ...) to `b`; returns
    the node indices."""
    config = config or ExportConfig()
    check = check or (lambda: None)
    model = asset.model
    base = np.asarray(asset.base_vertices, np.float64)
    if base.shape != model.vertices.shape:
        raise ValueError(f"base_vertices {base.shape} do not match the model")
    shapes = export_shapes(model, base, config.arkit)
    weights = shapes.weights_from(_model_weights(asset))
    mats: dict = {}
    nodes: list[int] = []
    for topo in _topology(model, asset.skin_layout, config):
        part, vid, vuv, faces, tv, tp, cap = (topo[k] for k in ("part", "vid", "vuv", "faces",
                                                                "tv", "tp", "cap"))
        check()
        pos = base[vid]
        nrm = vertex_normals(base, tv)[vid]
        bad = np.linalg.norm(nrm, axis=1) < 0.5
        nrm[bad] = (0.0, 0.0, 1.0)
        if cap is not None:              # the bust's cap: appended vertices (bust_cap.py)
            n_cap = len(cap.loop) + 1
            cap_faces = cap.faces + len(pos)
            pos = np.concatenate([pos, cap_vertices(cap, base)])
            nrm = np.concatenate([nrm, np.tile(cap_normal(cap, base), (n_cap, 1))])
            vuv = np.concatenate([vuv, np.tile(topo["cap_uv"], (n_cap, 1))])
            cap_group = model.polygon_groups[tp[cap.edge_triangle]]
        idx_t = np.uint16 if len(pos) <= 65535 else np.uint32
        a_pos = b.accessor(pos.astype(np.float32), ARRAY_BUFFER, minmax=True)
        a_nrm = b.accessor(nrm.astype(np.float32), ARRAY_BUFFER)
        a_uv = b.accessor(vuv.astype(np.float32), ARRAY_BUFFER)

        # Morph targets
        names, target_acc, tweights = [], [], []
        eye = eyeball(base, model, part.name[3:]) if part.name.startswith("Eye") else None
        for e, ename in enumerate(shapes.names):
            if e % 8 == 0:
                check()
            full = shapes.delta(e)
            d = full[vid].astype(np.float64)
            if cap is not None:          # the cap follows its rim (the centroid: the mean)
                d = np.concatenate([d, cap_vertices(cap, full)])
            if eye is not None:
                rot = eye_look_rotation(ename, part.name[3:], config.eye_look_deg)
                if rot is not None:
                    d = d + eye_turn_offset(pos, eye.centre, rot)
            moving = np.abs(d).max(1) > config.morph_epsilon
            if part.name != "Head" and (not moving.any()
                                        or np.abs(d).max() < config.min_target_motion):
                continue
            d[~moving] = 0.0
            nz = np.flatnonzero(moving)
            if len(nz) < 0.6 * len(pos):
                acc = b.sparse_vec3_accessor(len(pos), nz, d[nz])
            else:
                acc = b.accessor(d.astype(np.float32), ARRAY_BUFFER, minmax=True)
            names.append(ename)
            target_acc.append({"POSITION": acc})
            tweights.append(float(weights[e]))

        prims = []
        for g, mname in zip(part.groups, part.materials):
            sel = model.polygon_groups[tp] == model.group_index(g)
            if not sel.any():
                continue
            check()
            tri = faces[sel]
            if cap is not None and model.group_index(g) == cap_group:
                tri = np.concatenate([tri, cap_faces])
            ind = b.accessor(tri.ravel().astype(idx_t), ELEMENT_ARRAY_BUFFER)
            prim = {"attributes": {"POSITION": a_pos, "NORMAL": a_nrm, "TEXCOORD_0": a_uv},
                    "indices": ind, "material": _material_for(b, mname, asset, config, g, mats),
                    "mode": 4}
            if target_acc:
                prim["targets"] = target_acc
            prims.append(prim)
        mesh = b.mesh(part.name, prims, names, tweights)
        nodes.append(b.node(part.name, mesh))
    return nodes


def posed_as_exported(model: HeadModel, base_vertices: np.ndarray, weights: np.ndarray,
                      eye_look_deg: dict | None = None) -> np.ndarray:
    """(N, 3) float64: the head as the GLB shows it at `weights` (base plus every morph
    target times its weight; the eyeLook* targets also turn the eyeballs about their centres,
    as `add_head` writes them). The photo is projected onto the eyes and teeth in this pose."""
    from ..fitting.gaze import eye_rotation_offsets

    base = np.asarray(base_vertices, np.float64)
    w = np.clip(np.asarray(weights, np.float64), 0.0, 1.0)
    out = base.copy()
    if w.size:
        out += np.tensordot(w, model.expression_basis[:len(w)], axes=1)
    for e, (ids, d) in eye_rotation_offsets(model, base, eye_look_deg).items():
        if e < len(w) and w[e] > 0:
            out[ids] += w[e] * d
    return out
