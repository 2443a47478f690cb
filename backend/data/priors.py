"""Prior meshes for real (or PanoHead) datasets: run a single-image head fit on each input
view and store the fitted mesh, placed in the dataset's head frame, as that view's prior
(format.py: priors/<view>.npz). The paper estimates the mesh from the input image in training
as in inference; this is that step, done once offline.

A fitter is any callable rgb (HxWx3 uint8) -> FittedHead (vertices in the fitter's own head
frame, the fitter's OpenCV w2c and focal length for that photo). `backend_fitter()` wraps the
project's face analysis + HeadFitter (backend/face, backend/fitting).

Placement: the fitted head seen by the fitted camera is carried into the dataset camera:
world = c2w_dataset . w2c_fit . p. When the fitter's focal length differs from the dataset's
(the fitter estimates it), the head is moved along the optical axis so its mean depth scales
by the focal ratio, which keeps its projection (exact at the centre depth, first-order
elsewhere).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .format import (PriorMesh, ViewRecord, add_view_prior, load_rgba, read_dataset)


@dataclass
class FittedHead:
    vertices: np.ndarray        # (N, 3) metres, the fitter's head frame
    faces: np.ndarray           # (F, 3) int
    w2c: np.ndarray             # (4, 4) OpenCV, fitter's head frame -> the photo's camera
    focal_px: float             # the fitter's focal length for the photo (pixels)
    head_model: str = ""
    identity: np.ndarray | None = None
    expression: np.ndarray | None = None


def place_in_view(fit: FittedHead, view: ViewRecord) -> np.ndarray:
    """(N, 3) fitted vertices in the dataset's head frame (see module doc)."""
    p = np.asarray(fit.vertices, np.float64) @ fit.w2c[:3, :3].T + fit.w2c[:3, 3]   # camera
    ratio = 0.5 * (view.intrinsics.fx + view.intrinsics.fy) / float(fit.focal_px)
    p[:, 2] += p[:, 2].mean() * (ratio - 1.0)      # depth scaled by the focal ratio
    w2c = view.w2c_array
    return ((p - w2c[:3, 3]) @ w2c[:3, :3]).astype(np.float32)   # R^T (p - t)


def estimate_priors(root: str | Path, fitter: Callable[[np.ndarray], FittedHead | None],
                    max_per_identity: int | None = None, background: int = 255,
                    progress=None) -> int:
    """Fits every input-candidate view (up to `max_per_identity` per identity, most frontal
    first) and stores the priors; returns how many were written. Views the fitter rejects
    (returns None or raises the pipeline's PipelineError, e.g. NO_FACE) are skipped."""
    from ..contracts import PipelineError
    index = read_dataset(root)
    written = 0
    for n, ident in enumerate(index.identities):
        views = sorted((v for v in ident.views if v.input_candidate),
                       key=lambda v: abs(v.azimuth_deg) + abs(v.elevation_deg))
        for v in views[:max_per_identity]:
            rgba = load_rgba(ident, v)
            a = rgba[..., 3:4].astype(np.float32) / 255.0
            rgb = np.round(rgba[..., :3] * a + background * (1 - a)).astype(np.uint8)
            try:
                fit = fitter(rgb)
            except PipelineError:
                fit = None
            if fit is None:
                continue
            add_view_prior(ident.folder, v.name,
                           PriorMesh(place_in_view(fit, v), np.asarray(fit.faces, np.int32),
                                     fit.head_model, fit.identity, fit.expression))
            written += 1
        if progress:
            progress(n + 1, len(index.identities))
    return written


def backend_fitter(assets_dir=None, groups=("M_Face", "M_BackHead", "M_ScleraLeft",
                                            "M_ScleraRight", "M_IrisLeft", "M_IrisRight")):
    """The project's own single-image fit (mediapipe landmarks -> ICT-FaceKit) as a fitter."""
    from ..assets import find_head_model_file
    from ..face.analysis import FaceAnalyzer
    from ..fitting import HeadFitter
    from ..headmodel.ict import load_ict_npz
    from ..render.synthetic import template_triangles
    found = find_head_model_file(assets_dir, prefer="ict_facekit")
    if found is None or found.kind != "ict_facekit":
        raise FileNotFoundError("ICT-FaceKit not found: `gen3dface assets fetch` or --assets")
    model = load_ict_npz(found.path)
    analyzer, fitter = FaceAnalyzer(), HeadFitter(model)
    faces = template_triangles(model, groups)
    used = np.unique(faces)
    remap = np.full(model.n_vertices, -1, np.int64)
    remap[used] = np.arange(len(used))

    def fit(rgb: np.ndarray) -> FittedHead:
        r = fitter.fit(analyzer.analyze(rgb))
        return FittedHead(r.vertices[used], remap[faces], r.camera.w2c,
                          0.5 * (r.camera.fx + r.camera.fy), "ict_facekit",
                          r.identity, r.expression)
    return fit
