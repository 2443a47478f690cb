"""What the service's worker runs: a *workload* with the pipeline's interface.

    capabilities() -> dict                     (sent in the HELLO reply)
    parse_options(dict) -> options             (PipelineError("BAD_REQUEST") on bad values)
    run(image_bytes, rig, options, sink, cancel) -> object with .glb (bytes) and .sidecar (dict)

The product runs `HeadPipelineWorkload` (the real `HeadPipeline`); the server only ever gets a
factory, so the load/fault scripts can plug in their synthetic test workload
(`gen3dface.backend.service.harness`), which is never offered to users.

Memory: `is_out_of_memory(exc)` recognises GPU and host OOM (torch.cuda.OutOfMemoryError,
MemoryError, allocator RuntimeErrors); `free_memory()` is what the worker calls after one so
that the next job still runs.
"""
from __future__ import annotations

import gc
import sys
from typing import Any, Callable, Protocol

from ..contracts import CancelToken, ProgressSink


class Workload(Protocol):
    def capabilities(self) -> dict: ...

    def parse_options(self, options: dict) -> Any: ...

    def run(self, image: bytes, rig: Any, options: Any, sink: ProgressSink,
            cancel: CancelToken) -> Any: ...


WorkloadFactory = Callable[[], Workload]


class HeadPipelineWorkload:
    """The real pipeline (backend/pipeline/pipeline.py) behind the workload interface."""

    def __init__(self, assets_dir=None, device: str = "cpu", checkpoint=None):
        from ..pipeline.pipeline import HeadPipeline, JobOptions, PipelineConfig

        self._options_type = JobOptions
        self.pipeline = HeadPipeline(PipelineConfig(assets_dir=assets_dir, device=device,
                                                    checkpoint=checkpoint))

    def capabilities(self) -> dict:
        return dict(self.pipeline.capabilities())

    def parse_options(self, options: dict) -> Any:
        return self._options_type.from_dict(options or {})

    def run(self, image, rig, options, sink, cancel):
        return self.pipeline.run(image, rig, options, sink, cancel)


def head_pipeline_factory(assets_dir=None, device: str = "cpu", checkpoint=None) -> WorkloadFactory:
    return lambda: HeadPipelineWorkload(assets_dir=assets_dir, device=device, checkpoint=checkpoint)


_OOM_TEXT = ("out of memory", "can't allocate memory", "cannot allocate memory",
             "not enough memory", "failed to allocate")


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    torch = sys.modules.get("torch")
    if torch is not None:
        oom = getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)
        if oom is not None and isinstance(exc, oom):
            return True
    if type(exc).__name__ == "OutOfMemoryError":
        return True
    return isinstance(exc, RuntimeError) and any(t in str(exc).lower() for t in _OOM_TEXT)


def free_memory() -> None:
    """Collect garbage and return cached GPU blocks to the driver (after an OOM)."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_available() and torch.cuda.is_initialized():
                torch.cuda.synchronize()
                torch.cuda.empty_cache()
        except Exception:   # a broken CUDA context must not take the server down
            pass
