"""The pipeline's side of the "reconstruct" stage (between "generate" and "texture",
backend/pipeline/stages.py): the generated views + the fitted template -> the template
registered onto the views (same topology, UVs and 53 ARKit blendshapes) and optionally a
free-form surface.

It calls this package's entry point (`reconstruct(views, head_model, fitted,
ReconConfig(...), sink, cancel)`, stage.py) when it imports (its native dependencies may be
missing); otherwise, and whenever reconstruction does not apply (no generated views, no
rigged head model), the stage is skipped, the generated views are only baked onto the fitted
template, and the sidecar's "reconstruction" entry says why.

The job's output kind is passed on: "surface" and "both" also make the free-form surface
(SDF -> marching cubes -> xatlas UVs -> texture baked from the views); if that part fails the
registered template is still returned and `surface_error` says why. `settings`
(PipelineConfig.reconstruction_settings) overrides ReconConfig fields for tests and
benchmarks: "init_grid", "surface_texture_size", "registration" (dict of RegistrationConfig
fields; "hull": dict of HullConfig fields) and "sdf" (dict of SDFConfig fields;
{"preset": "tiny", ...} starts from SDFConfig.tiny()).

Arrays: vertices (N, 3) metres, head frame; views as `gen3dface.backend.camera.View` (RGB HxWx3 uint8, mask HxW
float32, OpenCV w2c in the head frame, pixel intrinsics).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config_loader import ConfigError, build
from ..config_loader import kwargs as config_kwargs
from ..contracts import CancelToken, PipelineError, ProgressSink

try:
    from .stage import ReconConfig, reconstruct
    RECON_MISSING = ""
except ImportError as _e:             # a native dependency of the reconstruction is missing
    ReconConfig = reconstruct = None
    RECON_MISSING = f"the reconstruction module is not installed ({_e})"

STAGE = "reconstruct"
MIN_VIEWS = 2


@dataclass
class Reconstructed:
    status: str                                  # "done" | "skipped" | "failed"
    reason: str = ""
    vertices: np.ndarray | None = None           # (N, 3) registered template, posed as the views
    neutral_vertices: np.ndarray | None = None   # (N, 3) the same without the expression
    identity: np.ndarray | None = None
    expression: np.ndarray | None = None
    surface: Any = None                          # free-form SurfaceMesh (xatlas UVs) or None
    surface_texture: np.ndarray | None = None
    info: dict = field(default_factory=dict)
    output_kind: str = "rigged"                  # what was asked of the reconstruction
    surface_error: str = ""                      # why an asked-for surface is missing

    def sidecar(self, surface_exported: bool = False) -> dict:
        out = {"status": self.status, **self.info}
        if self.reason:
            out["reason"] = self.reason
        if self.surface_error:
            out["surface_error"] = self.surface_error
        if self.surface is not None:
            out["surface"] = {"n_vertices": int(len(self.surface.vertices)),
                              "n_faces": int(len(self.surface.faces)),
                              "texture_size": (None if self.surface_texture is None else
                                               int(self.surface_texture.shape[0])),
                              "exported": bool(surface_exported)}
        return out

    @property
    def has_surface(self) -> bool:
        return (self.status == "done" and self.surface is not None
                and self.surface_texture is not None)


def reconstruction_entry():
    """(reconstruct, ReconConfig) from stage.py, or (None, why not)."""
    if reconstruct is None or ReconConfig is None:
        return None, RECON_MISSING or "the reconstruction module is not installed"
    return (reconstruct, ReconConfig), ""


def recon_config(ReconConfig, output_kind: str, device: str, texture_size: int | None = None,
                 settings: dict | None = None):
    """A ReconConfig for the job: output kind and device, the surface atlas at the job's
    texture size, plus `settings` overrides (see the module docstring), read by the strict
    config loader (backend/config_loader.py). Unknown keys, named in the message:
    PipelineError(BAD_REQUEST)."""
    where = "reconstruction_settings"
    kw: dict = {"output_kind": output_kind, "device": str(device)}
    if texture_size:
        kw["surface_texture_size"] = int(texture_size)
    try:
        settings = dict(_check(settings, where))
        for key in ("output_kind", "device"):       # the job's, not a setting
            if key in settings:
                raise ConfigError(f"[{where}] unknown keys: {key} (the job sets it)", where,
                                  (key,))
        for key in ("init_grid", "surface_texture_size"):
            if key in settings:
                settings[key] = int(settings[key])
        if "sdf" in settings:
            from .sdf import SDFConfig

            sdf = dict(_check(settings.pop("sdf"), f"{where}.sdf"))
            preset = sdf.pop("preset", None)
            if preset not in (None, "tiny"):
                raise ConfigError(f"[{where}.sdf] unknown preset {preset!r} (known: tiny)",
                                  f"{where}.sdf", ("preset",))
            sdf_kw = config_kwargs(SDFConfig, {"device": str(device), **sdf}, f"{where}.sdf")
            kw["sdf"] = SDFConfig.tiny(**sdf_kw) if preset == "tiny" else SDFConfig(**sdf_kw)
        return build(ReconConfig, {**kw, **settings}, where)
    except (TypeError, ValueError) as e:        # ConfigError is a ValueError
        raise PipelineError("BAD_REQUEST", f"bad reconstruction settings: {e}") from None


def _check(values, where: str) -> dict:
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"[{where}] must be a table (an object of keys), not "
                          f"{type(values).__name__}", where)
    return values


def _skip(reason: str, output_kind: str = "rigged") -> Reconstructed:
    return Reconstructed("skipped", reason, output_kind=output_kind)


def reconstruct_views(head, views: list, device: str, sink: ProgressSink,
                      cancel: CancelToken, output_kind: str = "rigged",
                      texture_size: int | None = None,
                      settings: dict | None = None) -> Reconstructed:
    """head: contracts.HeadEstimate; views: the generated Views (not the photo: its mask
    covers the whole person, the generated views show the head alone). `output_kind`
    "surface" or "both" also asks for the free-form surface, its atlas `texture_size`
    texels square."""
    if len(views) < MIN_VIEWS:
        return _skip("no generated views" if not views else
                     f"{len(views)} generated view; reconstruction needs {MIN_VIEWS}",
                     output_kind)
    if head.fit is None or not getattr(head.model, "n_expressions", 0):
        return _skip(f"the {head.model.name} head model has no rig to register", output_kind)
    entry, why = reconstruction_entry()
    if entry is None:
        return _skip(why + "; the generated views were baked onto the fitted template",
                     output_kind)
    reconstruct, ReconConfig = entry
    config = recon_config(ReconConfig, output_kind, device, texture_size, settings)
    t0 = time.perf_counter()
    try:
        res = reconstruct(list(views), head.model, head.fit, config, sink, cancel)
    except PipelineError as e:
        if e.code in ("OUT_OF_MEMORY", "CANCELLED"):
            raise
        return Reconstructed("failed", f"{e.code}: {e.message}; the generated views were "
                             "baked onto the fitted template", output_kind=output_kind)
    vertices = np.asarray(res.vertices, np.float32)
    if vertices.shape != np.asarray(head.vertices).shape or not np.isfinite(vertices).all():
        return Reconstructed("failed", f"the registered template has shape {vertices.shape}, "
                             f"expected {np.asarray(head.vertices).shape}; the generated views "
                             "were baked onto the fitted template", output_kind=output_kind)
    moved = np.linalg.norm(vertices - np.asarray(head.vertices, np.float32), axis=1)
    info = {"n_views": len(views), "seconds": round(time.perf_counter() - t0, 3),
            "timings_s": {k: round(float(v), 4) for k, v in dict(res.timings_s).items()},
            "mean_vertex_shift_mm": round(float(moved.mean() * 1000.0), 3)}
    surface, surface_tex = getattr(res, "surface", None), getattr(res, "surface_texture", None)
    surface_error = str(getattr(res, "surface_error", "") or "")
    if output_kind != "rigged" and surface is None and not surface_error:
        surface_error = "the reconstruction returned no free-form surface"
    if surface is not None and "surface" in info["timings_s"]:
        info["surface_seconds"] = info["timings_s"]["surface"]
    return Reconstructed("done", "", vertices,
                         np.asarray(res.neutral_vertices, np.float32),
                         np.asarray(res.identity, np.float64),
                         np.asarray(res.expression, np.float64),
                         surface, surface_tex, info, output_kind=output_kind,
                         surface_error=surface_error)
