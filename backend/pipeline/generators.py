"""Registry of view generators: what fills the "generate" stage of the pipeline.

A generator turns the photo (with its face analysis and head-model fit) into extra views for
the texture baker (and, on the learned path, the reconstruction): `generate(...)` returns a
`Generated` with a list of `BakeView`s and optionally refined vertices of the same topology.

- "offline": no generated views; texture and geometry come from the photo and the fit alone.
  Always available.
- "gen3dface": the paper's learned multi-view diffusion. Listed only when a checkpoint is
  configured AND a module providing it is installed: the learned-path engineer registers it by
  exposing `make_generator(config) -> ViewGenerator` in the module named by
  `LEARNED_GENERATOR_MODULE` (or by calling `register_generator` at import time).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

LEARNED_GENERATOR_MODULE = "gen3dface.backend.mvdiff.generator"


@dataclass
class Generated:
    views: list = field(default_factory=list)      # list[BakeView] (texture/generated views)
    vertices: Any = None                           # (N, 3) refined template vertices, or None
    info: dict = field(default_factory=dict)       # what goes into the sidecar


class ViewGenerator(Protocol):
    name: str

    def generate(self, photo, analysis, fit, rig, options, sink, cancel) -> Generated: ...


@dataclass
class GeneratorSpec:
    name: str
    description: str
    available: Callable[[Any], bool]               # PipelineConfig -> bool
    factory: Callable[[Any], ViewGenerator]        # PipelineConfig -> generator


class OfflineGenerator:
    name = "offline"

    def generate(self, photo, analysis, fit, rig, options, sink, cancel) -> Generated:
        sink.progress("generate", 1.0, "offline: no generated views")
        return Generated()


def _learned_available(config) -> bool:
    if not getattr(config, "checkpoint", None):
        return False
    try:
        mod = importlib.import_module(LEARNED_GENERATOR_MODULE)
    except ImportError:
        return False
    return hasattr(mod, "make_generator")


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
