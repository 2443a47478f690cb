"""The pipeline the service (and `gen3dface run`) runs: photo bytes -> GLB + sidecar.

Stages (progress events carry these names): decode -> face -> fit -> generate -> reconstruct
-> texture -> export. The offline default (no learned weights) is: mediapipe face analysis,
head-model fit (ICT-FaceKit), the photo baked into the template's UVs, GLB export. With a
Gen3D-Face checkpoint (`PipelineConfig.checkpoint`, loaded once per HeadPipeline) the learned
generator adds views of the head for the rig's cameras (backend/recon/adapter.py registers
the template onto them when the reconstruction module is installed) and all views are baked;
with options.output_kind "surface" or "both" the reconstruction also makes the free-form
surface (its own atlas texture), written to the GLB as node "Surface" alone or beside the
rigged head (backend/export/result_glb.py). Without generated views the rigged head is
written and the sidecar's "output" says why.
Without any installed head model it falls back to mediapipe's face mesh of the photo (front of
the face only, no blendshapes) and says so in the sidecar's "fallbacks".

Arrays: the photo is HxWx3 uint8 RGB, rows top-to-bottom; cameras are OpenCV w2c in the head
frame plus pixel intrinsics (see protocol/cameras.py for the wire conversion).
"""
from __future__ import annotations

import contextlib
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from ...protocol import options as vocabulary
from .background import BackgroundRunner
from ..contracts import CancelToken, JobCancelled, NullSink, PipelineError, ProgressSink
from .generators import GENERATORS, learned_unavailable_reason
from .stages import SIDECAR_FORMAT, PipelineResult, load_head_model, make_fitter, run_stages

# the job options' choices live once, in protocol/options.py (names kept for importers)
GENERATOR_CHOICES = vocabulary.GENERATORS
QUALITY_CHOICES = vocabulary.QUALITIES
OUTPUT_KINDS = vocabulary.OUTPUT_KINDS
TEXTURE_SIZES = vocabulary.TEXTURE_SIZES

_D = vocabulary.DEFAULTS


@dataclass
class JobOptions:
    """A job's options; their choices, ranges and defaults are protocol/options.py's."""
    generator: str = _D["generator"]          # "auto" | "offline" | "gen3dface"
    seed: int = _D["seed"]                    # [0, 2^32)
    quality: str = _D["quality"]              # "draft" | "standard" | "high"
    texture_size: int = _D["texture_size"]    # texels per UV tile side: 512, 1024 or 2048
    output_kind: str = _D["output_kind"]      # "rigged" | "surface" | "both"
    neutral: bool = _D["neutral"]             # GLB weights all 0 (rest pose); the sidecar keeps the fit
    delit_texture: bool = _D["delit_texture"]     # de-light the skin (default: the photo's lighting kept)
    neck_skin: bool = _D["neck_skin"]         # skin, not clothes, below the jaw (the default)

    @classmethod
    def from_dict(cls, d: dict | None) -> "JobOptions":
        """Validated options (protocol/options.py validate); unknown keys are ignored;
        PipelineError(BAD_REQUEST) on bad values."""
        try:
            return cls(**vocabulary.validate(d))
        except vocabulary.OptionError as e:
            raise PipelineError("BAD_REQUEST", e.message) from None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PipelineConfig:
    assets_dir: Any = None           # folder laid out like shared/data (see backend/assets.py)
    device: str = "cpu"
    checkpoint: Any = None           # learned generator weights (enables "gen3dface")
    # overrides for the learned generator (mvdiff/learned.py LearnedGeneratorConfig: steps,
    # sampler, guidance, ring_views, ...); tests and benchmarks use them
    generator_settings: dict = field(default_factory=dict)
    # overrides for the reconstruction (backend/recon/adapter.py recon_config: "init_grid",
    # "surface_texture_size", "registration", "sdf" = SDFConfig fields or {"preset": "tiny"})
    reconstruction_settings: dict = field(default_factory=dict)
    # what of the photo may paint the skin (face/analysis.py, skin_mask.py): "hands" keeps
    # hands off the face and hair hanging beside it off the cheeks' sides; "face" (the
    # default) adds the skin-colour test inside the face below the brows (hair strands,
    # phones; not the hairline), likeness unchanged on the 18 shared photos (README); "full"
    # adds the test below the jaw (clothes), which the `neck_skin` job option (on by default)
    # adds to a job in any mode; "off" bakes the whole foreground
    skin_mask: str = "face"
    # threads of the BLAS libraries (numpy's and scipy's OpenBLAS) while a job runs; None leaves
    # the libraries' own choice (one per core). The offline head's linear algebra is small
    # (the fitter's 250-unknown steps, 3x3 colour models), where threads only wait on each
    # other and on the job's other threads: on the 2-core dev machine a warm job took 2.04 /
    # 2.18 s with the default and 1.42 / 1.48 s with one thread (median of 9 runs over three
    # photos, two rounds each), the GLBs byte-identical
    blas_threads: int | None = 1

    def __post_init__(self):
        from ..face.skin_mask import config_for_mode

        if self.blas_threads is not None and int(self.blas_threads) < 1:
            raise ValueError(f"blas_threads must be None or at least 1, got {self.blas_threads}")

        config_for_mode(self.skin_mask)              # a ValueError names the modes


def blas_threads_limited(n: int | None):
    """A context in which the BLAS libraries loaded in this process use at most `n` threads
    (threadpoolctl; the setting is process-wide, restored on exit). None, or threadpoolctl
    missing: no limit."""
    if n is None:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:                   # pragma: no cover - a dependency; degrade to no limit
        return contextlib.nullcontext()
    import scipy.linalg  # noqa: F401  (loads scipy's own OpenBLAS first, so the limit reaches it)

    return threadpool_limits(limits=int(n), user_api="blas")


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
        # One-off loads and opaque native calls run here so that a cancel never waits for
        # them (see background.py); what they build is cached in the runner.
        self._bg = BackgroundRunner()
        self._baker_sizes: list[int] = []
        self._generator_errors: dict[str, str] = {}   # name -> why it did not load

    # -- resources -------------------------------------------------------------------------
    def head_model_info(self) -> dict:
        from ..assets import find_head_model_file

        found = find_head_model_file(self.config.assets_dir)
        if found is None:
            return {"name": "mediapipe_face", "path": None, "origin": None, "fallback": True}
        return {"name": found.kind, "path": str(found.path), "origin": found.origin,
                "fallback": False}

    def head_model(self, cancel: CancelToken | None = None):
        """(HeadModel or None, FoundAsset or None), loaded once."""
        return self._bg.cached("head_model", lambda: load_head_model(self.config.assets_dir),
                               cancel)

    def _face_analyzer(self, cancel: CancelToken | None = None):
        from ..face.analysis import FaceAnalysisConfig, FaceAnalyzer

        from ..face.skin_mask import config_for_mode

        mode = self.config.skin_mask
        cfg = FaceAnalysisConfig(skin_mask=mode != "off", skin=config_for_mode(mode))
        return self._bg.cached("face_analyzer", lambda: FaceAnalyzer(cfg), cancel)

    def analyze_face(self, rgb, cancel: CancelToken | None = None, neck_skin: bool = False):
        """mediapipe face analysis on the runner thread (its graphs are created there on the
        first job, ~1 s); a cancel returns at once. `neck_skin`: the job option (the skin test
        below the jaw in the usable-skin mask)."""
        analyzer = self._face_analyzer(cancel)
        return self._bg.call(lambda: analyzer.analyze(rgb, neck_skin), cancel)

    def decode(self, image: bytes, cancel: CancelToken | None = None):
        from ..images import decode_image

        return self._bg.call(lambda: decode_image(bytes(image)), cancel)

    def fitter(self, model, quality: str, cancel: CancelToken | None = None):
        """The head fitter for `model` at the job's quality, built once."""
        return self._bg.cached(("fitter", id(model), quality),
                               lambda: make_fitter(model, quality), cancel)

    def call_on_runner(self, fn, cancel: CancelToken | None = None):
        """fn() on the runner thread (a one-off build, an opaque native call such as an image
        encode); a cancel returns at once."""
        return self._bg.call(fn, cancel)

    def baker(self, model, size: int, cancel: CancelToken | None = None):
        """The texture baker for `model` at `size` texels per tile (a few sizes are kept)."""
        from ..texture.bake import TextureBaker, TextureConfig

        if size not in self._baker_sizes:
            if len(self._baker_sizes) >= 3:     # keep a few sizes (rasters are cached inside)
                self._bg.forget(("baker", self._baker_sizes.pop(0)))
            self._baker_sizes.append(size)
        return self._bg.cached(("baker", size),
                               lambda: TextureBaker(model, TextureConfig(size=size)), cancel)

    def generator(self, name: str, cancel: CancelToken | None = None):
        """The generator `name`, built once per HeadPipeline (the learned model is loaded here,
        on the runner thread, so a cancel does not wait for it). A generator that failed to
        load is not retried: PipelineError(NOT_AVAILABLE) with the reason."""
        spec = GENERATORS.get(name)
        if spec is None:
            raise PipelineError("NOT_AVAILABLE", f"no generator named {name!r}")
        if name in self._generator_errors:
            raise PipelineError("NOT_AVAILABLE", self._generator_errors[name])
        if not spec.available(self.config):
            why = (learned_unavailable_reason(self.config) if name == "gen3dface" else None)
            raise PipelineError("NOT_AVAILABLE", why or f"the {name!r} generator is not "
                                "available on this backend")
        try:
            return self._bg.cached(("generator", name), lambda: spec.factory(self.config),
                                   cancel)
        except PipelineError as e:
            if e.code == "NOT_AVAILABLE":
                self._generator_errors[name] = e.message
            raise
        except JobCancelled:
            raise
        except Exception as e:      # a load that broke in an unforeseen way: not offered
            msg = f"the {name!r} generator failed to load ({type(e).__name__}: {e})"
            self._generator_errors[name] = msg
            raise PipelineError("NOT_AVAILABLE", msg) from e

    def generator_status(self) -> dict[str, str | None]:
        """name -> None when usable, else why not (loads the learned model the first time)."""
        out: dict[str, str | None] = {}
        for name in GENERATORS:
            try:
                self.generator(name)
                out[name] = None
            except PipelineError as e:
                out[name] = e.message
        return out

    def surface_unavailable_reason(self, status: dict | None = None,
                                   head_model: dict | None = None) -> str | None:
        """Why this backend cannot write the free-form surface (output kinds "surface" and
        "both"), or None. It is reconstructed from generated views, so it needs the learned
        generator, a rigged head model to register (ICT-FaceKit) and the reconstruction
        module."""
        from ..recon.adapter import reconstruction_entry

        status = self.generator_status() if status is None else status
        head_model = self.head_model_info() if head_model is None else head_model
        if status.get("gen3dface") is not None:
            return ("the free-form surface is reconstructed from generated views: it needs the "
                    "learned generator (" + str(status["gen3dface"]) + ")")
        if head_model.get("fallback") or head_model.get("name") != "ict_facekit":
            return ("the free-form surface needs the ICT-FaceKit head model to register "
                    "(run `gen3dface assets fetch`)")
        entry, why = reconstruction_entry()
        return None if entry is not None else why

    def capabilities(self) -> dict:
        status = self.generator_status()
        gens = [n for n, why in status.items() if why is None]
        head_model = self.head_model_info()
        no_surface = self.surface_unavailable_reason(status, head_model)
        caps = {"device": str(self.config.device), "gpu_name": _gpu_name(self.config.device),
                "generators": gens,
                "generators_unavailable": {n: why for n, why in status.items() if why},
                "head_model": head_model,
                "output_kinds": ["rigged"] if no_surface else list(OUTPUT_KINDS),
                "texture_sizes": list(TEXTURE_SIZES)}
        if no_surface:
            caps["output_kinds_unavailable"] = {"surface": no_surface, "both": no_surface}
        return caps

    # -- the job ---------------------------------------------------------------------------
    def run(self, image: bytes, rig=None, options: JobOptions | None = None,
            sink: ProgressSink | None = None, cancel: CancelToken | None = None,
            texture_sources: bool = False) -> PipelineResult:
        """One job. `texture_sources`: the result also carries the skin atlas's sources map
        (where each texel's colour came from; `gen3dface run --texture-sources`)."""
        options = options if isinstance(options, JobOptions) else JobOptions.from_dict(options)
        sink = sink or NullSink()
        cancel = cancel or CancelToken()
        with self._lock, blas_threads_limited(self.config.blas_threads):
            return run_stages(self, image, rig, options, sink, cancel, texture_sources)

    def resolve_generator(self, options: JobOptions,
                          cancel: CancelToken | None = None) -> tuple[str, list[str]]:
        """(generator name, fallbacks) for the options; "auto" is "gen3dface" when a checkpoint
        is configured and loads, else "offline" (with a fallback note when a configured
        checkpoint failed to load). An explicitly asked generator that is not available raises
        PipelineError(NOT_AVAILABLE) saying why."""
        if options.generator == "auto":
            if not self.config.checkpoint:
                return "offline", []
            try:
                self.generator("gen3dface", cancel)
                return "gen3dface", []
            except PipelineError as e:
                if e.code != "NOT_AVAILABLE":
                    raise
                return "offline", [f"generator: offline ({e.message})"]
        try:
            self.generator(options.generator, cancel)
        except PipelineError as e:
            if e.code != "NOT_AVAILABLE":
                raise
            raise PipelineError("NOT_AVAILABLE", f"the {options.generator!r} generator is not "
                                f"available on this backend: {e.message}") from None
        return options.generator, []

    def make_generator(self, name: str, cancel: CancelToken | None = None):
        return self.generator(name, cancel)


__all__ = ["JobOptions", "PipelineConfig", "PipelineResult", "HeadPipeline"]
