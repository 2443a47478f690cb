"""Registry of view generators: what fills the "generate" stage of the pipeline.

A generator turns the photo (with its face analysis and the fitted head) into extra views for
the texture baker and the reconstruction (the types are backend/contracts.py's): `generate(photo, analysis, head, rig, options, sink,
cancel)` returns a `Generated` with a list of `gen3dface.backend.camera.View`s (posed RGB + mask; the photo itself
is added by the pipeline at its fitted camera) and optionally refined vertices of the same
topology.

- "offline": no generated views; texture and geometry come from the photo and the fit alone.
  Always available.
- "gen3dface": the paper's learned multi-view diffusion (backend/mvdiff/learned.py,
  `make_generator(config)`). `available` only says a checkpoint is configured and the module
  imports; HeadPipeline loads it once (on the first capabilities() or job) and lists it only
  when the load succeeded.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

# the generate stage's contract (what a generator is given and returns) is the stages' own
from ..contracts import Generated, HeadEstimate, ViewGenerator  # noqa: F401

LEARNED_GENERATOR_MODULE = "gen3dface.backend.mvdiff.learned"


@dataclass
class GeneratorSpec:
    name: str
    description: str
    available: Callable[[Any], bool]               # PipelineConfig -> bool
    factory: Callable[[Any], ViewGenerator]        # PipelineConfig -> generator


class OfflineGenerator:
    name = "offline"

    def generate(self, photo, analysis, head, rig, options, sink, cancel) -> Generated:
        sink.progress("generate", 1.0, "offline: no generated views")
        return Generated()


def learned_unavailable_reason(config) -> str | None:
    """Why the learned generator cannot be offered (before trying to load it), or None."""
    if not getattr(config, "checkpoint", None):
        return ("no checkpoint configured: the Gen3D-Face generator needs trained weights; "
                "train them with `gen3dface train` (docs/TRAINING.md) and start the backend "
                "with --checkpoint DIR (a checkpoint folder or a Hugging Face hub id)")
    try:
        mod = importlib.import_module(LEARNED_GENERATOR_MODULE)
    except ImportError as e:
        return f"the learned generator cannot be imported ({e}); reinstall gen3dface"
    if not hasattr(mod, "make_generator"):
        return f"{LEARNED_GENERATOR_MODULE} has no make_generator"
    return None


def _learned_available(config) -> bool:
    return learned_unavailable_reason(config) is None


def _learned_factory(config) -> ViewGenerator:
    return importlib.import_module(LEARNED_GENERATOR_MODULE).make_generator(config)


GENERATORS: dict[str, GeneratorSpec] = {
    "offline": GeneratorSpec("offline", "no generated views: photo + head-model fit",
                             lambda config: True, lambda config: OfflineGenerator()),
    "gen3dface": GeneratorSpec("gen3dface", "Gen3D-Face multi-view diffusion (needs weights)",
                               _learned_available, _learned_factory),
}


def register_generator(spec: GeneratorSpec) -> None:
    GENERATORS[spec.name] = spec


def available_generators(config) -> list[str]:
    return [name for name, spec in GENERATORS.items() if spec.available(config)]
