"""The learned generator as the backend pipeline registers it (backend/pipeline/generators.py
imports `make_generator(config)` from this module): the photo, its face analysis and the fitted
head -> generated views of the head for the user's rig (or a default ring), as `camera.View`s for
the multi-view texture baker and the reconstruction.

    gen = make_generator(PipelineConfig(checkpoint="runs/x/model", device="cuda"))
    out = gen.generate(photo, analysis, head, rig, options, sink, cancel)   # -> Generated

Quality -> sampler: "draft" = DPM-Solver++ 20 steps, "standard" / "high" = DDIM 50 steps (the
paper's setting). Target cameras: the wire Rig's cameras when the job has a rig with cameras;
otherwise `default_ring`: 16 cameras, 22.5 deg apart in azimuth, elevations alternating 0 and
15 deg, 0.9 m from the head origin with a 25 deg field of view (the distance and field of view
the synthetic training views use).

Arrays: photo HxWx3 uint8 RGB; generated views RxRx4 uint8 RGBA (R = the model's resolution);
cameras OpenCV w2c in the head frame + pixel intrinsics (protocol Intrinsics) of the RxR image.
A bad or missing checkpoint raises PipelineError("NOT_AVAILABLE") from `make_generator`.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, fields

import numpy as np

from ..contracts import PipelineError
from .generator import GeneratedView, MultiViewGenerator, TargetCamera, targets_from_rig

NAME = "gen3dface"
QUALITY_SAMPLING = {"draft": ("dpmsolver++", 20), "standard": ("ddim", 50),
                    "high": ("ddim", 50)}
# the prior mesh the model is trained with (backend/synth: the ICT head's skin and eyes);
# head models without these groups give all their polygons
PRIOR_GROUPS = ("M_Face", "M_BackHead", "M_ScleraLeft", "M_ScleraRight", "M_IrisLeft",
                "M_IrisRight")
WEIGHTS_HELP = ("train a checkpoint with `gen3dface train` (docs/TRAINING.md) and start the "
                "backend with --checkpoint DIR (a checkpoint folder or a Hugging Face hub id)")


@dataclass
class LearnedGeneratorConfig:
    checkpoint: str = ""
    device: str = "cpu"
    guidance: float = 3.0               # classifier-free guidance on the input image
    steps: int | None = None            # None: from the job's quality (QUALITY_SAMPLING)
    sampler: str | None = None          # None: from the job's quality
    ring_views: int = 16                # default cameras when the job has no rig
    ring_elevations_deg: tuple = (0.0, 15.0)
    ring_radius_m: float = 0.9
    ring_fov_deg: float = 25.0
    step_previews: int = 4              # per-step previews per job (0: none)
    view_weight: float = 0.5            # baker trust in a generated view (the photo has 1)
    compile: bool = False               # torch.compile the UNet (CUDA hosts)

    @classmethod
    def from_pipeline(cls, config) -> "LearnedGeneratorConfig":
        """From a PipelineConfig: checkpoint and device, plus its `generator_settings` dict
        (keys of this dataclass; unknown keys are an error)."""
        settings = dict(getattr(config, "generator_settings", None) or {})
        names = {f.name for f in fields(cls)} - {"checkpoint", "device"}
        unknown = set(settings) - names
        if unknown:
            raise PipelineError("BAD_REQUEST", f"unknown learned-generator settings: "
                                f"{', '.join(sorted(unknown))} (known: {', '.join(sorted(names))})")
        if "ring_elevations_deg" in settings:
            settings["ring_elevations_deg"] = tuple(settings["ring_elevations_deg"])
        return cls(checkpoint=str(config.checkpoint or ""), device=str(config.device),
                   **settings)

    def sampling(self, quality: str) -> tuple[str, int]:
        sampler, steps = QUALITY_SAMPLING.get(quality, QUALITY_SAMPLING["standard"])
        return self.sampler or sampler, int(self.steps or steps)


def default_ring(resolution: int, n_views: int = 16, elevations_deg=(0.0, 15.0),
                 radius_m: float = 0.9, fov_deg: float = 25.0):
    """The wire Rig used when a job brings no cameras: camera i at azimuth 360 i / n (camera 0
    in front of the face) and elevation elevations_deg[i % len(elevations_deg)]."""
    from gen3dface.protocol.cameras import Rig, ring_rig

    rings = [ring_rig(n_views, float(el), radius_m, resolution, fov_deg)
             for el in elevations_deg]
    cams = tuple(rings[i % len(rings)].cameras[i] for i in range(n_views))
    return Rig(cams, rings[0].head_to_world)


def prior_mesh(model, vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(vertices (N, 3) float32, triangles (T, 3) int64) of the head prior the model sees."""
    mask = None
    if model is not None and any(g in model.group_names for g in PRIOR_GROUPS):
        mask = model.polygon_mask(*PRIOR_GROUPS)
    tris = model.triangles(mask)[0] if model is not None else None
    if tris is None or len(tris) == 0:
        raise PipelineError("INTERNAL", "the head model has no polygons to condition on")
    return np.asarray(vertices, np.float32), np.asarray(tris, np.int64)


def contact_sheet(views: list[GeneratedView], min_tile: int = 128) -> np.ndarray:
    """The generated views tiled in a grid over a light checkerboard (so alpha shows), tiles
    upscaled (nearest) to at least `min_tile` px: HxWx3 uint8 RGB."""
    n = len(views)
    cols = int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    r = views[0].rgba.shape[0]
    up = max(1, int(math.ceil(min_tile / r)))
    t = r * up
    yy, xx = np.mgrid[0:t, 0:t]
    checker = np.where(((yy // 8) + (xx // 8)) % 2 == 0, 235, 200).astype(np.float32)[..., None]
    sheet = np.full((rows * t, cols * t, 3), 255, np.uint8)
    for i, v in enumerate(views):
        tile = np.repeat(np.repeat(v.rgba, up, 0), up, 1).astype(np.float32)
        a = tile[..., 3:4] / 255.0
        rgb = tile[..., :3] * a + checker * (1.0 - a)
        y, x = divmod(i, cols)
        sheet[y * t:(y + 1) * t, x * t:(x + 1) * t] = np.clip(rgb.round(), 0, 255).astype(np.uint8)
    return sheet


@dataclass
class LearnedGenerator:
    """What the pipeline's registry builds once per HeadPipeline (the model stays loaded)."""
    config: LearnedGeneratorConfig
    generator: MultiViewGenerator
    load_time_s: float = 0.0
    name: str = field(default=NAME, init=False)

    @property
    def resolution(self) -> int:
        return self.generator.resolution

    def targets(self, rig) -> tuple[list[TargetCamera], str]:
        if rig is not None and len(getattr(rig, "cameras", ()) or ()) > 0:
            return targets_from_rig(rig), "rig"
        c = self.config
        ring = default_ring(self.resolution, c.ring_views, c.ring_elevations_deg,
                            c.ring_radius_m, c.ring_fov_deg)
        return targets_from_rig(ring), "default_ring"

    def generate(self, photo, analysis, head, rig, options, sink, cancel):
        """photo HxWx3 uint8; analysis: FaceAnalysis (its mask); head: the pipeline's
        HeadEstimate (model, vertices, camera); rig: wire Rig or None ->
        Generated(views=[View...], info=...)."""
        from ..contracts import Generated
        from ..camera import View
        from .generator import _png

        c = self.config
        sampler, steps = c.sampling(options.quality)
        targets, source = self.targets(rig)
        verts, tris = prior_mesh(head.model, head.vertices)
        every = max(1, steps // c.step_previews) if c.step_previews > 0 else 0
        t0 = time.perf_counter()
        views = self.generator.generate(
            photo, getattr(analysis, "mask", None), head.camera.w2c,
            head.camera.intrinsics, verts, tris, targets, seed=int(options.seed),
            steps=steps, sampler=sampler, guidance=c.guidance, sink=sink, cancel=cancel,
            preview_every=every)
        seconds = time.perf_counter() - t0
        cancel.raise_if_cancelled()
        sink.preview("generated_views", _png(contact_sheet(views)))
        bake = [View.posed(v.rgba[..., :3], v.w2c, v.intrinsics,
                           v.rgba[..., 3].astype(np.float32) / 255.0, c.view_weight)
                for v in views]
        info = {"checkpoint": c.checkpoint, "sampler": sampler, "steps": steps,
                "guidance": c.guidance, "seed": int(options.seed), "cameras": source,
                "n_views": len(views), "resolution": self.resolution,
                "dtype": str(self.generator.dtype).replace("torch.", ""),
                "device": str(self.generator.device), "seconds": round(seconds, 3),
                "view_names": [v.name for v in views],
                "coverage": [round(float((v.rgba[..., 3] > 127).mean()), 4) for v in views]}
        return Generated(views=bake, vertices=None, info=info)


def make_generator(config) -> LearnedGenerator:
    """The pipeline registry's factory: loads the checkpoint named by `config.checkpoint`
    (PipelineConfig) on `config.device`. PipelineError("NOT_AVAILABLE") when none is configured
    or it does not load."""
    c = LearnedGeneratorConfig.from_pipeline(config)
    if not c.checkpoint:
        raise PipelineError("NOT_AVAILABLE", "the Gen3D-Face generator needs trained weights "
                            "and no checkpoint is configured: " + WEIGHTS_HELP)
    t0 = time.perf_counter()
    try:
        gen = MultiViewGenerator.from_checkpoint(c.checkpoint, device=c.device,
                                                 compile=c.compile)
    except PipelineError as e:
        raise PipelineError("NOT_AVAILABLE", f"{e.message}. To get weights: {WEIGHTS_HELP}") \
            from e
    except (RuntimeError, KeyError, TypeError) as e:   # a checkpoint of another shape/version
        raise PipelineError("NOT_AVAILABLE", f"cannot load the Gen3D-Face checkpoint "
                            f"'{c.checkpoint}': {e}. To get weights: {WEIGHTS_HELP}") from e
    return LearnedGenerator(c, gen, round(time.perf_counter() - t0, 3))
