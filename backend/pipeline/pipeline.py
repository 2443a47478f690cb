"""The pipeline the service (and `gen3dface run`) runs: photo bytes -> GLB + sidecar.

Stages (progress events carry these names): decode -> face -> fit -> generate -> texture ->
export. The offline default (no learned weights) is: mediapipe face analysis, head-model fit
(ICT-FaceKit), the photo baked into the template's UVs, GLB export. Without any installed head
model it falls back to mediapipe's face mesh of the photo (front of the face only, no
blendshapes) and says so in the sidecar's "fallbacks".

Arrays: the photo is HxWx3 uint8 RGB, rows top-to-bottom; cameras are OpenCV w2c in the head
frame plus pixel intrinsics (see protocol/cameras.py for the wire conversion).
"""
from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .events import CancelToken, NullSink, PipelineError, ProgressSink
from .generators import GENERATORS, available_generators

GENERATOR_CHOICES = ("auto", "offline", "gen3dface")
QUALITY_CHOICES = ("draft", "standard", "high")
OUTPUT_KINDS = ("rigged", "surface", "both")
TEXTURE_SIZES = (512, 1024, 2048)
SIDECAR_FORMAT = "gen3dface.sidecar/1"


@dataclass
class JobOptions:
    generator: str = "auto"          # "auto" | "offline" | "gen3dface"
    seed: int = 0
    quality: str = "standard"        # "draft" | "standard" | "high"
    texture_size: int = 1024         # texels per UV tile side: 512, 1024 or 2048
    output_kind: str = "rigged"      # "rigged" | "surface" | "both"

    @classmethod
    def from_dict(cls, d: dict | None) -> "JobOptions":
        """Validated options; unknown keys are ignored; PipelineError(BAD_REQUEST) on bad
        values."""
        d = dict(d or {})
        if not isinstance(d, dict):
            raise PipelineError("BAD_REQUEST", "options must be an object")
        out = cls()

        def pick(key, choices):
            if key in d and d[key] is not None:
                v = d[key]
                if v not in choices:
                    raise PipelineError("BAD_REQUEST", f"option {key}={v!r} is not one of "
                                        f"{', '.join(map(str, choices))}")
                setattr(out, key, v)

        pick("generator", GENERATOR_CHOICES)
        pick("quality", QUALITY_CHOICES)
        pick("output_kind", OUTPUT_KINDS)
        if d.get("texture_size") is not None:
            ts = d["texture_size"]
            if isinstance(ts, bool) or not isinstance(ts, (int, float)) or int(ts) != ts \
                    or int(ts) not in TEXTURE_SIZES:
                raise PipelineError("BAD_REQUEST", f"option texture_size={ts!r} is not one of "
                                    f"{', '.join(map(str, TEXTURE_SIZES))}")
            out.texture_size = int(ts)
        if d.get("seed") is not None:
            s = d["seed"]
            if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < 2 ** 32:
                raise PipelineError("BAD_REQUEST", f"option seed={s!r} must be an integer in "
                                    "[0, 2^32)")
            out.seed = s
        return out

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PipelineConfig:
    assets_dir: Any = None           # folder laid out like shared/data (see backend/assets.py)
    device: str = "cpu"
    checkpoint: Any = None           # learned generator weights (enables "gen3dface")


@dataclass
class PipelineResult:
    glb: bytes
    sidecar: dict


def _gpu_name(device: str) -> str | None:
    if not str(device).startswith("cuda"):
        return None
    try:
        import torch

        return torch.cuda.get_device_name(torch.device(device)) if torch.cuda.is_available() \
            else None
    except Exception:
        return None


class HeadPipeline:
    """Build once, run many jobs (the head model, fitter, texture baker and face analyzer are
    loaded on first use and kept). `run` is meant for one worker thread at a time."""

    def __init__(self, config: PipelineConfig | None = None):
        self.config = config or PipelineConfig()
        self._lock = threading.Lock()
        self._model = None
        self._model_found = None
        self._model_loaded = False
        self._fitters: dict = {}
        self._bakers: dict = {}
        self._analyzer = None

    # -- resources -------------------------------------------------------------------------
    def head_model_info(self) -> dict:
        from ..assets import find_head_model_file

        found = find_head_model_file(self.config.assets_dir)
        if found is None:
            return {"name": "mediapipe_face", "path": None, "origin": None, "fallback": True}
        return {"name": found.kind, "path": str(found.path), "origin": found.origin,
                "fallback": False}

    def _head_model(self):
        """(HeadModel or None, why-not message)."""
        if not self._model_loaded:
            from .offline import load_head_model

            self._model, self._model_found = load_head_model(self.config.assets_dir)
            self._model_loaded = True
        return self._model, self._model_found

    def _face_analyzer(self):
        if self._analyzer is None:
            from ..face.analysis import FaceAnalyzer

            self._analyzer = FaceAnalyzer()
        return self._analyzer

    def _fitter(self, model, quality: str):
        if quality not in self._fitters:
            from .offline import make_fitter

            self._fitters[quality] = make_fitter(model, quality)
        return self._fitters[quality]

    def _baker(self, model, size: int):
        if size not in self._bakers:
            from ..texture.bake import TextureBaker, TextureConfig

            if len(self._bakers) >= 3:          # keep a few sizes (rasters are cached inside)
                self._bakers.pop(next(iter(self._bakers)))
            self._bakers[size] = TextureBaker(model, TextureConfig(size=size))
        return self._bakers[size]

    def capabilities(self) -> dict:
        gens = available_generators(self.config)
        return {"device": str(self.config.device), "gpu_name": _gpu_name(self.config.device),
                "generators": gens, "head_model": self.head_model_info(),
                "output_kinds": list(OUTPUT_KINDS) if "gen3dface" in gens else ["rigged"],
                "texture_sizes": list(TEXTURE_SIZES)}

    # -- the job ---------------------------------------------------------------------------
    def run(self, image: bytes, rig=None, options: JobOptions | None = None,
            sink: ProgressSink | None = None, cancel: CancelToken | None = None) -> PipelineResult:
        from . import offline

        options = options if isinstance(options, JobOptions) else JobOptions.from_dict(options)
        sink = sink or NullSink()
        cancel = cancel or CancelToken()
        with self._lock:
            return offline.run_job(self, image, rig, options, sink, cancel)

    def resolve_generator(self, options: JobOptions) -> tuple[str, list[str]]:
        """(generator name, fallbacks) for the options."""
        gens = available_generators(self.config)
        if options.generator == "auto":
            if "gen3dface" in gens:
                return "gen3dface", []
            return "offline", []
        if options.generator not in gens:
            raise PipelineError("NOT_AVAILABLE", f"the {options.generator!r} generator is not "
                                "available on this backend" + (
                                    ": start it with --checkpoint pointing at the Gen3D-Face "
                                    "weights" if options.generator == "gen3dface" else ""))
        return options.generator, []

    def make_generator(self, name: str):
        return GENERATORS[name].factory(self.config)


__all__ = ["JobOptions", "PipelineConfig", "PipelineResult", "HeadPipeline"]
