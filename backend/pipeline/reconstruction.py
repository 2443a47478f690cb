"""The "reconstruct" stage hook, between "generate" and "texture": the generated views + the
fitted template -> the template registered onto the views (same topology, UVs and 53 ARKit
blendshapes) and optionally a free-form surface.

It calls the reconstruction package's entry point (`RECON_MODULE.reconstruct(views,
head_model, fitted, ReconConfig(...), sink, cancel)`, backend/recon/stage.py) when that module
is installed; otherwise, and whenever reconstruction does not apply (no generated views, no
rigged head model), the stage is skipped, the generated views are only baked onto the fitted
template, and the sidecar's "reconstruction" entry says why.

Arrays: vertices (N, 3) metres, head frame; views as BakeView (RGB HxWx3 uint8, mask HxW
float32, OpenCV w2c in the head frame, pixel intrinsics).
"""
from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .events import CancelToken, PipelineError, ProgressSink

RECON_MODULE = "gen3dface.backend.recon.stage"
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

    def sidecar(self) -> dict:
        out = {"status": self.status, **self.info}
        if self.reason:
            out["reason"] = self.reason
        if self.surface is not None:
            out["surface"] = {"n_vertices": int(len(self.surface.vertices)),
                              "n_faces": int(len(self.surface.faces)),
                              "exported": False}
        return out


def reconstruction_entry():
    """(reconstruct, ReconConfig) from the reconstruction package, or (None, why not)."""
    try:
        mod = importlib.import_module(RECON_MODULE)
    except ImportError as e:
        return None, f"the reconstruction module is not installed ({e})"
    fn, cfg = getattr(mod, "reconstruct", None), getattr(mod, "ReconConfig", None)
    if fn is None or cfg is None:
        return None, f"{RECON_MODULE} has no reconstruct/ReconConfig"
    return (fn, cfg), ""


def _skip(reason: str) -> Reconstructed:
    return Reconstructed("skipped", reason)


def reconstruct_views(head, views: list, device: str, sink: ProgressSink,
                      cancel: CancelToken) -> Reconstructed:
    """head: generators.HeadEstimate; views: the generated BakeViews (not the photo: its mask
    covers the whole person, the generated views show the head alone)."""
    if len(views) < MIN_VIEWS:
        return _skip("no generated views" if not views else
                     f"{len(views)} generated view; reconstruction needs {MIN_VIEWS}")
    if head.fit is None or not getattr(head.model, "n_expressions", 0):
        return _skip(f"the {head.model.name} head model has no rig to register")
    entry, why = reconstruction_entry()
    if entry is None:
        return _skip(why + "; the generated views were baked onto the fitted template")
    reconstruct, ReconConfig = entry
    t0 = time.perf_counter()
    tuples = [(v.image, v.mask, v.w2c, v.intrinsics) for v in views]
    try:
        # the free-form surface is not exported to the GLB yet: register the template only
        res = reconstruct(tuples, head.model, head.fit, ReconConfig(output_kind="rigged",
                                                                    device=str(device)),
                          sink, cancel)
    except PipelineError as e:
        if e.code in ("OUT_OF_MEMORY", "CANCELLED"):
            raise
        return Reconstructed("failed", f"{e.code}: {e.message}; the generated views were "
                             "baked onto the fitted template")
    vertices = np.asarray(res.vertices, np.float32)
    if vertices.shape != np.asarray(head.vertices).shape or not np.isfinite(vertices).all():
        return Reconstructed("failed", f"the registered template has shape {vertices.shape}, "
                             f"expected {np.asarray(head.vertices).shape}; the generated views "
                             "were baked onto the fitted template")
    moved = np.linalg.norm(vertices - np.asarray(head.vertices, np.float32), axis=1)
    info = {"n_views": len(views), "seconds": round(time.perf_counter() - t0, 3),
            "timings_s": {k: round(float(v), 4) for k, v in dict(res.timings_s).items()},
            "mean_vertex_shift_mm": round(float(moved.mean() * 1000.0), 3)}
    return Reconstructed("done", "", vertices,
                         np.asarray(res.neutral_vertices, np.float32),
                         np.asarray(res.identity, np.float64),
                         np.asarray(res.expression, np.float64),
                         res.surface, res.surface_texture, info)
