"""The stages of one job, whichever generator fills "generate" (offline or learned): decode ->
face -> fit -> generate -> reconstruct -> texture -> export (`run_stages`; pipeline.py holds
the API, HeadPipeline, whose loaded resources the stages use through `StageResources`).

Where each stage's work lives: decode backend/images.py; face backend/face/; fit
backend/fitting/ (the head model: backend/headmodel/); generate the registered generators
(pipeline/generators.py: "offline", and "gen3dface" in backend/mvdiff/learned.py);
reconstruct backend/recon/ (adapter.py is this side of it); texture backend/texture/;
export backend/export/. Their shared contract (progress, cancel, errors, the generator's
in/out types) is backend/contracts.py.

Arrays: photo HxWx3 uint8 RGB rows top-to-bottom; mask HxW float32 [0, 1]; landmarks (478, 2)
photo pixels (corner origin); vertices (N, 3) metres in the head frame.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np

from ..contracts import CancelToken, HeadEstimate, PipelineError, ProgressSink

SIDECAR_FORMAT = "gen3dface.sidecar/1"


@dataclass
class PipelineResult:
    glb: bytes
    sidecar: dict
    texture_sources: Any = None        # (H, W, 3) uint8 in the skin atlas's layout, when the
    #                                    job asked for it: where each texel's colour came from
    #                                    (texture/bake.py BakeResult.sources)


class StageResources(Protocol):
    """What the stages use of the pipeline that runs them (HeadPipeline): its configuration
    and the resources it loads once and keeps. Loads and opaque native calls run on its
    runner thread, so that a cancel never waits for them."""

    config: Any                        # PipelineConfig: device, reconstruction_settings, ...

    def resolve_generator(self, options, cancel: CancelToken) -> tuple[str, list[str]]: ...

    def decode(self, image: bytes, cancel: CancelToken): ...

    def analyze_face(self, rgb, cancel: CancelToken, neck_skin: bool = False): ...

    def head_model(self, cancel: CancelToken): ...            # (HeadModel | None, FoundAsset | None)

    def fitter(self, model, quality: str, cancel: CancelToken): ...

    def baker(self, model, size: int, cancel: CancelToken): ...

    def make_generator(self, name: str, cancel: CancelToken): ...

    def call_on_runner(self, fn: Callable[[], Any], cancel: CancelToken): ...


QUALITY_FIT = {"draft": dict(n_identity=40, iterations=15),
               "standard": dict(),
               "high": dict(n_identity=100, iterations=45)}


def load_head_model(assets_dir=None):
    """(HeadModel or None, FoundAsset or None): the installed head model that the offline path
    can fit. ICT-FaceKit is preferred; FLAME loads but is fitted only when a landmark mapping
    for it exists (none is shipped yet)."""
    from ..assets import find_head_model_file
    from ..headmodel.ict import load_ict_npz

    found = find_head_model_file(assets_dir)
    if found is None:
        return None, None
    if found.kind == "ict_facekit":
        try:
            return load_ict_npz(found.path), found
        except Exception as e:
            raise PipelineError("INTERNAL", f"the installed ICT-FaceKit model at {found.path} "
                                f"could not be read ({e}); reinstall it with "
                                "`gen3dface assets fetch`") from None
    return None, found


def make_fitter(model, quality: str):
    from ..fitting.fitter import FitConfig, HeadFitter

    return HeadFitter(model, FitConfig(**QUALITY_FIT.get(quality, {})))


class _StageProgress:
    """Progress of a long step inside a stage, mapped to [lo, hi] of the stage and sent at
    most every `min_interval_s` (a 2048 bake has a hundred chunks; the wire needs a few)."""

    def __init__(self, sink: ProgressSink, stage: str, lo: float, hi: float,
                 min_interval_s: float = 0.2):
        self.sink, self.stage, self.lo, self.hi = sink, stage, lo, hi
        self.min_interval_s = min_interval_s
        self._last = 0.0

    def __call__(self, fraction: float, message: str = "") -> None:
        now = time.perf_counter()
        if now - self._last < self.min_interval_s and fraction < 1.0:
            return
        self._last = now
        f = self.lo + (self.hi - self.lo) * min(1.0, max(0.0, float(fraction)))
        self.sink.progress(self.stage, f, message)


@contextmanager
def _stage(timings: dict, name: str, sink: ProgressSink, cancel: CancelToken, message=""):
    cancel.raise_if_cancelled()
    sink.progress(name, 0.0, message)
    t0 = time.perf_counter()
    yield
    timings[name] = round(time.perf_counter() - t0, 4)
    sink.progress(name, 1.0, "")
    cancel.raise_if_cancelled()


def landmark_overlay(rgb: np.ndarray, landmarks: np.ndarray, projected=None,
                     max_side: int = 512) -> np.ndarray:
    """Preview: the photo (downscaled) with detected landmarks (green) and, if given, the fitted
    model's projected landmarks (red)."""
    import cv2

    h, w = rgb.shape[:2]
    s = min(1.0, max_side / max(h, w))
    img = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))),
                     interpolation=cv2.INTER_AREA) if s < 1 else rgb.copy()
    for pts, col in ((landmarks, (0, 220, 0)), (projected, (230, 30, 30))):
        if pts is None:
            continue
        for u, v in np.asarray(pts)[:, :2] * s:
            cv2.circle(img, (int(u), int(v)), 1, col, -1, lineType=cv2.LINE_AA)
    return img


def _preview_png(rgb: np.ndarray, max_side: int = 512) -> bytes:
    import io

    import cv2
    from PIL import Image

    h, w = rgb.shape[:2]
    s = min(1.0, max_side / max(h, w))
    if s < 1:
        rgb = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))),
                         interpolation=cv2.INTER_AREA)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def bake_resolution(face_px: float, size: int) -> int:
    """Texels per tile worth baking for a face `face_px` photo pixels across: about two texels
    per photo pixel over the face tile (more would only interpolate the photo), at least 256,
    at most the requested size; the result is upsampled to `size`."""
    need = 2.0 * max(float(face_px), 1.0)
    work = 256
    while work < need and work < size:
        work *= 2
    return min(work, size)


def _camera_record(camera, rig) -> dict:
    """The photo's camera (a PinholeCamera) in the backend convention and in the wire
    convention."""
    from ...protocol import cameras

    rec = {"convention": "OpenCV w2c, world = head frame (metres)",
           "w2c": camera.w2c.round(7).tolist(),
           "intrinsics": camera.intrinsics_dict()}
    try:
        r = rig if rig is not None else cameras.Rig(cameras=(), head_to_world=cameras.HEAD_TO_BLENDER)
        cam = cameras.camera_from_opencv_w2c_in_head(camera.w2c.tolist(), camera.intrinsics, r,
                                                     name="photo")
        rec["blender_cam_to_world"] = [list(map(float, row)) for row in cam.cam_to_world]
    except Exception as e:   # the wire form is a convenience; never fail a job over it
        rec["blender_cam_to_world_error"] = str(e)
    return rec


def output_plan(requested: str, generator: str, recon) -> dict:
    """What the GLB will hold: {"requested", "written", "reason"} (reason "" when written ==
    requested). The free-form surface exists only when the reconstruction made it from
    generated views; otherwise the rigged head is written."""
    if requested == "rigged" or recon.has_surface:
        return {"requested": requested, "written": requested, "reason": ""}
    if generator == "offline":
        why = ("no generated views (the offline generator makes none; the free-form surface "
               "is reconstructed from the learned generator's views)")
    elif recon.status == "skipped" and recon.reason.startswith("no generated views"):
        why = "no generated views"
    elif recon.status != "done":
        why = f"reconstruction {recon.status} ({recon.reason})"
    else:
        why = recon.surface_error or "the reconstruction made no free-form surface"
    return {"requested": requested, "written": "rigged",
            "reason": f"{requested} requested but {why}: rigged head written"}


@dataclass
class _Fitted:
    """The fit stage's head: the fitted head model, or mediapipe's face mesh of the photo."""
    model: Any
    fit: Any                           # FitResult, or None on the face-mesh fallback
    vertices: Any
    camera: Any                        # the photo's camera.PinholeCamera
    identity: np.ndarray
    expression: np.ndarray
    lm_err: float | None = None
    lm_err_med: float | None = None


@dataclass
class _Textures:
    baker: Any
    baked: Any                         # BakeResult, upsampled to the job's texture size
    eyes: dict
    colours: Any                       # measured part colours
    iris: Any
    parts_seen: dict
    base: Any                          # the neutral vertices the GLB is built on


@dataclass
class _Exported:
    glb: bytes
    head_asset: Any
    surface_asset: Any
    config: Any                        # ExportConfig


def run_stages(pipe: StageResources, image: bytes, rig, options, sink: ProgressSink,
               cancel: CancelToken, texture_sources: bool = False) -> PipelineResult:
    """One job, every stage, for whichever generator the options resolve to; `options` is a
    JobOptions (pipeline.py). `texture_sources`: the result carries the skin atlas's
    sources map too."""
    from ..recon.adapter import Reconstructed

    t_job = time.perf_counter()
    timings: dict = {}
    fallbacks: list[str] = []
    warnings: list[str] = []
    gen_name, gen_fallbacks = pipe.resolve_generator(options, cancel)
    fallbacks += gen_fallbacks

    with _stage(timings, "decode", sink, cancel):
        if not isinstance(image, (bytes, bytearray, memoryview)):
            raise PipelineError("BAD_REQUEST", "the image must be bytes (PNG, JPEG or WebP)")
        rgb = pipe.decode(image, cancel)

    with _stage(timings, "face", sink, cancel, "finding the face"):
        analysis = pipe.analyze_face(rgb, cancel, neck_skin=options.neck_skin)
        warnings += list(analysis.warnings)
        sink.preview("landmarks", _preview_png(landmark_overlay(rgb, analysis.landmarks)))

    with _stage(timings, "fit", sink, cancel, "fitting the head model"):
        fitted = fit_head(pipe, rgb, analysis, options.quality, sink, cancel, fallbacks,
                          warnings)
    vertices, identity, expression = fitted.vertices, fitted.identity, fitted.expression

    head = HeadEstimate(fitted.model, vertices, fitted.camera, fitted.fit)
    with _stage(timings, "generate", sink, cancel):
        generated = pipe.make_generator(gen_name, cancel).generate(rgb, analysis, head, rig,
                                                                   options, sink, cancel)
        if generated.vertices is not None:
            vertices = np.asarray(generated.vertices, np.float32)

    base = None
    if generated.views:
        with _stage(timings, "reconstruct", sink, cancel, "registering the head onto the views"):
            recon = reconstruct_generated(pipe, head, generated.views, options, sink, cancel)
        if recon.status == "done":
            vertices, base = recon.vertices, recon.neutral_vertices
            identity, expression = recon.identity, recon.expression
        else:       # the generated views are baked onto the fitted template
            fallbacks.append(f"reconstruction {recon.status}: {recon.reason}")
    else:
        recon = Reconstructed("skipped", "no generated views (offline generator)",
                              output_kind=options.output_kind)
    output = output_plan(options.output_kind, gen_name, recon)

    with _stage(timings, "texture", sink, cancel, "baking the photo into the texture"):
        tex = bake_textures(pipe, rgb, analysis, fitted, vertices, base, identity, expression,
                            generated.views, options.texture_size, sink, cancel,
                            delight=options.delit_texture, sources=texture_sources)

    with _stage(timings, "export", sink, cancel, "writing the GLB"):
        if output["reason"]:
            warnings.append(output["reason"])
        exported = export_glb(pipe, fitted.model, tex, expression, recon, output, gen_name,
                              options, cancel)

    timings["total"] = round(time.perf_counter() - t_job, 4)
    sidecar = job_sidecar(gen_name, fitted, analysis, rig, options, identity, expression,
                          tex, exported, output, generated, recon, fallbacks, warnings,
                          timings)
    return PipelineResult(glb=exported.glb, sidecar=_jsonable(sidecar),
                          texture_sources=tex.baked.sources)


def fit_head(pipe: StageResources, rgb, analysis, quality: str, sink: ProgressSink,
             cancel: CancelToken, fallbacks: list, warnings: list) -> _Fitted:
    """The "fit" stage: the installed head model fitted to the photo's landmarks, or (none
    installed, or one without a landmark mapping) mediapipe's face mesh of the photo, said in
    `fallbacks` and `warnings`."""
    model, found = pipe.head_model(cancel)
    if model is None:
        from ..headmodel.mediapipe_mesh import face_mesh_model

        why = ("no head model installed" if found is None else
               f"the installed {found.kind} model has no landmark mapping yet")
        fallbacks.append(f"head_model: mediapipe face mesh ({why}; run `gen3dface assets "
                         "fetch` for a full head with blendshapes)")
        warnings.append("front of the face only, no blendshapes: " + why)
        pm = face_mesh_model(analysis.landmarks, analysis.landmarks_z, analysis.image_size)
        return _Fitted(pm.model, None, pm.model.vertices, pm.camera,
                       np.zeros(0), np.zeros(0))
    fit = pipe.fitter(model, quality, cancel).fit(analysis, sink, cancel)
    sink.preview("fit", _preview_png(landmark_overlay(rgb, analysis.landmarks, fit.projected)))
    return _Fitted(model, fit, fit.vertices, fit.camera,
                   np.asarray(fit.identity, np.float64), np.asarray(fit.expression, np.float64),
                   float(fit.landmark_error_px), float(fit.landmark_error_median_px))


def reconstruct_generated(pipe: StageResources, head: HeadEstimate, views, options,
                          sink: ProgressSink, cancel: CancelToken):
    """The "reconstruct" stage (backend/recon/adapter.py): the template registered onto the
    generated views, and the free-form surface when the output kind asks for it."""
    from ..recon.adapter import reconstruct_views

    recon = reconstruct_views(head, list(views), pipe.config.device, sink, cancel,
                              options.output_kind, options.texture_size,
                              pipe.config.reconstruction_settings)
    if recon.has_surface:
        sink.preview("surface_texture", _preview_png(recon.surface_texture))
    return recon


def bake_textures(pipe: StageResources, rgb, analysis, fitted: _Fitted, vertices, base,
                  identity, expression, generated_views, texture_size: int,
                  sink: ProgressSink, cancel: CancelToken, delight: bool = False,
                  sources: bool = False) -> _Textures:
    """The "texture" stage: the photo (and the generated views) baked into the skin atlas at
    `texture_size` per tile, then the eyes, teeth and mouth (from the photo when only the
    photo was seen). `delight` (the job's `delit_texture`) divides the photo's lighting
    out of the skin (texture/delight.py). `sources`: the bake's sources map as well, at the
    job's texture size."""
    from ..export.head_glb import posed_as_exported
    from ..camera import View
    from ..texture.bake import TextureBaker, TextureConfig
    from ..texture.eyes import bake_eye_textures
    from ..texture.photo_parts import bake_photo_parts, measure_part_colours

    model = fitted.model
    check = cancel.raise_if_cancelled
    face_px = float(max(analysis.face_box[2] - analysis.face_box[0],
                        analysis.face_box[3] - analysis.face_box[1]))
    work = texture_size if generated_views else bake_resolution(face_px, texture_size)
    if model.name == "mediapipe_face":
        baker = pipe.call_on_runner(
            lambda: TextureBaker(model, TextureConfig(size=work, mirror_fill=False)), cancel)
    else:
        baker = pipe.baker(model, work, cancel)
    # foreground x usable skin: hands, occluders over the face and clothes below the jaw
    # do not paint the skin (the mirror twin and the fill take their place)
    photo_mask = getattr(analysis, "view_mask", analysis.mask)
    views = [View(rgb, fitted.camera, photo_mask, 1.0)]
    views += list(generated_views)
    baked = baker.bake(vertices, views, cancel, _StageProgress(sink, "texture", 0.0, 0.75),
                       delight=delight, sources=sources)
    check()
    if baked.texture.shape[0] != texture_size:
        import cv2

        n = baked.layout.n_tiles
        baked.texture = cv2.resize(baked.texture, (n * texture_size, texture_size),
                                   interpolation=cv2.INTER_CUBIC)
        if baked.sources is not None:
            baked.sources = cv2.resize(baked.sources, (n * texture_size, texture_size),
                                       interpolation=cv2.INTER_LINEAR)
    sink.progress("texture", 0.8, "eyes")
    check()
    if base is None:
        base = (model.posed(identity, None) if len(identity) else
                np.asarray(vertices, np.float32))
    colours = measure_part_colours(rgb, analysis.landmarks)
    iris = colours.iris if colours.measured.get("iris") else None
    parts_seen: dict = {}
    if model.name == "mediapipe_face":
        eyes = {}
    elif fitted.fit is not None and not generated_views:
        # the photo on the eyes, teeth and mouth, in the pose the GLB shows
        posed = posed_as_exported(model, base, expression)
        eyes, parts_seen = bake_photo_parts(model, base, posed, views[0], colours,
                                            check=check, face_px=face_px)
    else:
        eyes = bake_eye_textures(model, base, iris_rgb=colours.iris, check=check)
    check()
    sink.preview("texture", _preview_png(baked.texture))
    return _Textures(baker, baked, eyes, colours, iris, parts_seen, base)


def export_glb(pipe: StageResources, model, tex: _Textures, expression, recon, output: dict,
               gen_name: str, options, cancel: CancelToken) -> _Exported:
    """The "export" stage: the GLB of what `output` says is written (rigged head, free-form
    surface or both)."""
    from ..export.head_glb import ExportConfig, HeadAsset
    from ..export.result_glb import write_result_glb
    from ..export.surface_glb import SurfaceAsset

    extras = {"generator": gen_name, "head_model": model.name}
    # neutral: the GLB at rest (weights 0); the fitted weights stay in the sidecar
    glb_weights = np.zeros_like(expression) if options.neutral else expression
    asset = HeadAsset(model=model, base_vertices=tex.base, expression_weights=glb_weights,
                      skin_texture=tex.baked.texture, skin_layout=tex.baked.layout,
                      eye_textures=tex.eyes, extras=extras)
    head_asset = asset if output["written"] in ("rigged", "both") else None
    surface_asset = (SurfaceAsset.from_mesh(recon.surface, recon.surface_texture)
                     if output["written"] in ("surface", "both") else None)
    cfg = ExportConfig(skin_image_format="png" if options.quality == "high" else "jpeg")
    # On the runner thread: the skin image's PNG/JPEG encoding (up to seconds for a 2048
    # atlas) has no place to check the token; the export itself stops at its next check.
    glb = pipe.call_on_runner(lambda: write_result_glb(head_asset, surface_asset, cfg,
                                                       check=cancel.raise_if_cancelled,
                                                       extras=extras), cancel)
    return _Exported(glb, head_asset, surface_asset, cfg)


def job_sidecar(gen_name: str, fitted: _Fitted, analysis, rig, options, identity,
                expression, tex: _Textures, exported: _Exported, output: dict, generated,
                recon, fallbacks: list, warnings: list, timings: dict) -> dict:
    """The sidecar JSON: what was made, from what, how well and how fast."""
    from ..export.head_glb import HEAD_FRAME_DOC, morph_target_weights
    from ..export.result_glb import glb_mesh_names

    model, fit = fitted.model, fitted.fit
    names = list(model.expression_names)
    head_asset, surface_asset, cfg = exported.head_asset, exported.surface_asset, exported.config
    baked = tex.baked
    # the GLB's morph targets (ARKit's 52 + ICT's split extras) and their fitted weights
    morph_weights = morph_target_weights(head_asset, cfg) if head_asset is not None else {}
    return {
        "format": SIDECAR_FORMAT,
        "generator": gen_name,
        "head_model": {"name": model.name, "source": model.source,
                       "n_vertices": int(model.n_vertices),
                       "limitations": model.extras.get("limitations")},
        "fallbacks": fallbacks,
        "warnings": warnings,
        "options": options.to_dict(),
        "n_faces": int(analysis.n_faces),
        "face_box": [float(x) for x in analysis.face_box],
        "camera": _camera_record(fitted.camera, rig),
        "coefficients": {"identity": [round(float(x), 5) for x in identity],
                         "expression": {n: round(float(x), 5) for n, x in zip(names, expression)}},
        "landmark_error_px": fitted.lm_err,
        "landmark_error_median_px": fitted.lm_err_med,
        "fit": dict(fit.info) if fit is not None and isinstance(fit.info, dict) else {},
        "texture": {"tile_size": int(options.texture_size), "n_tiles": baked.layout.n_tiles,
                    "baked_tile_size": int(tex.baker.config.size),
                    "seen_fraction": round(baked.seen_fraction, 4),
                    "skin_rgb": [round(c, 4) for c in baked.skin_rgb],
                    "hair_rgb": ([round(c, 4) for c in baked.hair_rgb]
                                 if baked.hair_rgb is not None else None),
                    "delit": bool(options.delit_texture),
                    "delight": baked.lighting.info() if baked.lighting is not None else None,
                    "bake_s": {k: round(float(v), 4) for k, v in baked.timings_s.items()},
                    "iris_rgb": [round(c, 4) for c in tex.iris] if tex.iris else None,
                    "skin_mask": dict(getattr(analysis, "skin_info", {}) or {}),
                    "parts": {**tex.colours.info(),
                              "photo_seen": {g: round(v, 4)
                                             for g, v in tex.parts_seen.items()}}},
        "output": output,
        "glb": {"bytes": len(exported.glb), "frame": HEAD_FRAME_DOC,
                "output_kind": output["written"],
                "meshes": glb_mesh_names(head_asset, surface_asset, cfg),
                "morph_targets": list(morph_weights),
                "morph_weights": {n: round(w, 5) for n, w in morph_weights.items()}},
        "generated": generated.info,
        "reconstruction": recon.sidecar(surface_exported=surface_asset is not None),
        "timings_s": timings,
    }


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x
