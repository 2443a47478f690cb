"""Synthetic multi-view heads: random ICT-FaceKit heads rendered from a PanoHead-like camera
distribution into the gen3dface-multiview format (backend/data/format.py).

Per identity (all seeded from (config.seed, identity index)):
- a random head from the reconstruction engineer's generator
  (`gen3dface.backend.render.synthetic.make_synthetic_head`: identity and expression
  coefficients, procedural skin, eyes, teeth; a fraction of heads "detailed", with hair and
  displacement), plus a lip tint of our own around the mouth landmarks;
- lighting drawn per identity (ambient level, one to three head-frame directional lights):
  fixed across that identity's views, so the views stay photo-consistent;
- `n_views` cameras on a sphere looking at the head: azimuth in [-180, 180), elevation in
  [-40, 40] degrees as the paper's PanoHead set ("random": uniform draws; "grid": evenly
  spaced azimuths x elevation rings), rendered by the CPU ray caster (backend/render);
- prior meshes estimated from input views (synth/prior_fit.py: the head model fitted to the
  view's noisy 2D landmarks; "ground_truth" and "neutral" exist for ablations): the default
  prior from the most frontal view, and one per input-candidate view up to
  `prior_views_per_identity`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.format import DatasetWriter, PriorMesh, ViewData, ViewIntrinsics, orbit_w2c
from ..headmodel.model import HeadModel
from .prior_fit import LandmarkFitConfig, fit_to_landmarks, project_points

PRIOR_KINDS = ("landmark_fit", "ground_truth", "neutral")
PRIOR_GROUPS = ("M_Face", "M_BackHead", "M_ScleraLeft", "M_ScleraRight", "M_IrisLeft",
                "M_IrisRight")
HEAD_TARGET = (0.0, -0.01, 0.02)     # roughly the centre of an ICT head (head frame, metres)


@dataclass
class SynthConfig:
    n_identities: int = 8
    seed: int = 0
    resolution: int = 256
    fov_deg: float = 25.0
    radius_m: float = 0.9            # camera distance: a 0.4 m wide field at 25 degrees
    target: tuple = HEAD_TARGET
    n_views: int = 48
    layout: str = "random"           # "random" | "grid"
    azimuth_range: tuple = (-180.0, 180.0)
    elevation_range: tuple = (-40.0, 40.0)
    grid_elevations: tuple = (-30.0, 0.0, 30.0)
    input_max_azimuth_deg: float = 45.0
    supersample: int = 2
    detailed_fraction: float = 0.5   # share of heads with hair and displacement
    lip_tint: bool = True
    prior: str = "landmark_fit"      # "landmark_fit" | "ground_truth" | "neutral"
    prior_views_per_identity: int = 4
    landmark_fit: LandmarkFitConfig = field(default_factory=LandmarkFitConfig)

    def validate(self) -> "SynthConfig":
        if self.layout not in ("random", "grid"):
            raise ValueError("synth.layout must be 'random' or 'grid'")
        if self.prior not in PRIOR_KINDS:
            raise ValueError(f"synth.prior must be one of {PRIOR_KINDS}")
        if self.n_views < 2 or self.n_identities < 1 or self.resolution < 8:
            raise ValueError("synth: n_views >= 2, n_identities >= 1, resolution >= 8")
        return self


def camera_angles(cfg: SynthConfig, rng: np.random.Generator) -> list[tuple[float, float]]:
    """(azimuth, elevation) per view, degrees. There is always a view within 15 degrees of
    the front (a candidate input)."""
    if cfg.layout == "grid":
        rings = list(cfg.grid_elevations)
        per = math.ceil(cfg.n_views / len(rings))
        offset = rng.uniform(-1, 1) * min(15.0, 180.0 / per)   # a view near the front
        out = [((offset + 360.0 * i / per + 180.0) % 360.0 - 180.0, el)
               for el in rings for i in range(per)]
        return out[:cfg.n_views]
    a0, a1 = cfg.azimuth_range
    e0, e1 = cfg.elevation_range
    out = [(float(rng.uniform(-15, 15)), float(rng.uniform(-10, 10)))]
    out += [(float(rng.uniform(a0, a1)), float(rng.uniform(e0, e1)))
            for _ in range(cfg.n_views - 1)]
    return out


def random_lighting(rng: np.random.Generator):
    lights = []
    for _ in range(int(rng.integers(1, 4))):
        d = rng.normal(size=3)
        d[2] = abs(d[2]) + 0.3           # mostly from the front hemisphere
        d[1] = abs(d[1]) * 0.8           # and from above
        lights.append((*(d / np.linalg.norm(d)), float(rng.uniform(0.15, 0.5))))
    return dict(shading="lambert", ambient=float(rng.uniform(0.3, 0.6)), lights=tuple(lights))


class LipTint:
    """Wraps a solid texture: blends a lip colour into an ellipsoid around the mouth."""

    def __init__(self, base, mouth_points: np.ndarray, rgb, strength: float = 0.7):
        self.base, self.rgb, self.strength = base, np.asarray(rgb, np.float64), strength
        self.center = mouth_points.mean(axis=0)
        half = (mouth_points.max(axis=0) - mouth_points.min(axis=0)) / 2
        self.radii = np.maximum(half * np.array([1.0, 1.1, 1.0]), [0.01, 0.006, 0.01])

    def __call__(self, points: np.ndarray) -> np.ndarray:
        col = np.asarray(self.base(points), np.float64)
        d = np.linalg.norm((points - self.center) / self.radii, axis=1)
        w = self.strength * np.clip((1.15 - d) / 0.35, 0, 1)[:, None]
        return col * (1 - w) + self.rgb * w


def _prior_topology(model: HeadModel):
    from ..render.synthetic import template_triangles
    faces = template_triangles(model, PRIOR_GROUPS)
    used = np.unique(faces)
    remap = np.full(model.n_vertices, -1, np.int64)
    remap[used] = np.arange(len(used))
    return used, remap[faces].astype(np.int32)


def synthesize_identity(model: HeadModel, cfg: SynthConfig, index: int, topology=None):
    """(views: list[ViewData], default prior, per-view priors, extras) for one identity."""
    from ..camera import PinholeCamera
    from ..render.raycast import RayCaster, RenderConfig
    from ..render.synthetic import SyntheticHeadConfig, make_synthetic_head
    rng = np.random.default_rng([cfg.seed, index])
    detailed = bool(rng.random() < cfg.detailed_fraction)
    head = make_synthetic_head(model, seed=int(rng.integers(1 << 30)),
                               config=SyntheticHeadConfig(detailed=detailed))
    lm = np.asarray(model.landmarks68) if model.landmarks68 is not None else None
    if cfg.lip_tint and lm is not None and head.meshes[0].solid_texture is not None:
        skin = head.meshes[0]
        ref = model.posed(head.identity, head.expression)
        lip_rgb = np.array([0.62, 0.3, 0.3]) * rng.uniform(0.75, 1.1) + rng.normal(0, 0.03, 3)
        skin.solid_texture = LipTint(skin.solid_texture, ref[lm[48:60]], np.clip(lip_rgb, 0, 1),
                                     strength=float(rng.uniform(0.45, 0.8)))
    render_cfg = RenderConfig(supersample=cfg.supersample, **random_lighting(rng))
    caster = RayCaster(head.meshes)
    f = 0.5 * cfg.resolution / math.tan(math.radians(cfg.fov_deg) / 2)
    intr = ViewIntrinsics(cfg.resolution, cfg.resolution, f, f, cfg.resolution / 2,
                          cfg.resolution / 2)
    k = np.array([[f, 0, intr.cx], [0, f, intr.cy], [0, 0, 1.0]])
    views, angles = [], camera_angles(cfg, rng)
    for i, (az, el) in enumerate(angles):
        w2c = orbit_w2c(az, el, cfg.radius_m, cfg.target)
        cam = PinholeCamera(w2c, f, f, intr.cx, intr.cy, cfg.resolution, cfg.resolution)
        rgba = caster.render(cam, render_cfg).rgba
        views.append(ViewData(f"v{i:03d}", rgba, w2c, intr,
                              input_candidate=abs(az) <= cfg.input_max_azimuth_deg))
    used, faces = topology if topology is not None else _prior_topology(model)

    def prior_from(view: ViewData) -> PriorMesh:
        if cfg.prior == "ground_truth":
            return PriorMesh(head.template_vertices[used], faces, "ict_facekit",
                             head.identity, head.expression)
        if cfg.prior == "neutral" or lm is None:
            return PriorMesh(model.vertices[used], faces, "ict_facekit")
        uv = project_points(head.template_vertices[lm], view.w2c, k)
        noise = cfg.landmark_fit.noise_px_at_256 * cfg.resolution / 256.0
        uv = uv + rng.normal(0, noise, uv.shape)
        ident, expr, verts = fit_to_landmarks(model, uv, lm, view.w2c, k, cfg.landmark_fit)
        return PriorMesh(verts[used], faces, "ict_facekit", ident, expr)

    cands = [v for v, (az, _) in zip(views, angles) if v.input_candidate]
    frontal = min(zip(views, angles), key=lambda va: abs(va[1][0]) + abs(va[1][1]))[0]
    default = prior_from(frontal)
    per_view: dict[str, PriorMesh] = {}     # the frontal view uses the default prior
    for v in cands:
        if len(per_view) + 1 >= cfg.prior_views_per_identity:
            break
        if v.name != frontal.name:
            per_view[v.name] = prior_from(v)
    extras = {"head_seed": int(head.seed), "detailed": detailed,
              "identity_coefficients": np.round(head.identity, 5).tolist(),
              "expression_weights": {n: round(float(w), 4)
                                     for n, w in zip(model.expression_names, head.expression)
                                     if w > 0},
              "lighting": {"ambient": render_cfg.ambient, "lights": render_cfg.lights},
              "prior": cfg.prior}
    return views, default, per_view, extras


def synthesize_dataset(model: HeadModel, out_root: str | Path, cfg: SynthConfig,
                       overwrite: bool = False, progress=None) -> Path:
    """Writes `cfg.n_identities` identities ("ict_00000", ...) to `out_root`."""
    cfg.validate()
    topology = _prior_topology(model)
    with DatasetWriter(out_root, name="synthetic_ict", source="gen3dface synth (ICT-FaceKit)",
                       extras={"generator": "gen3dface.backend.synth", "seed": cfg.seed,
                               "resolution": cfg.resolution, "prior": cfg.prior},
                       overwrite=overwrite) as writer:
        for i in range(cfg.n_identities):
            views, prior, per_view, extras = synthesize_identity(model, cfg, i, topology)
            writer.add_identity(f"ict_{i:05d}", views, prior=prior, per_view_priors=per_view,
                                source="synthetic ICT head", extras=extras)
            if progress:
                progress(i + 1, cfg.n_identities)
    return Path(out_root) / "dataset.json"
