"""The contract between the orchestrator (backend/pipeline/) and the stages (face/, fitting/,
texture/, recon/, mvdiff/, export/, images.py, the service): how a running stage reports,
how it is stopped, how it fails, and what a view generator is given and returns.

This module depends on nothing but the standard library; stages import it, never the
orchestrator.

Every stage takes a `ProgressSink` and a `CancelToken`; stages call `cancel.raise_if_cancelled()`
between steps (so a running job stops within a step) and report `sink.progress(stage,
fraction, message)` with fraction in [0, 1] for that stage. A failure the person who sent the
photo can act on is a `PipelineError` with a protocol error code (the service turns it into
the protocol's error reply).

A view generator (registered in backend/pipeline/generators.py) turns the photo, its face
analysis and the fitted head (`HeadEstimate`) into extra views: `generate(photo, analysis,
head, rig, options, sink, cancel) -> Generated`.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol


class ProgressSink(Protocol):
    def progress(self, stage: str, fraction: float, message: str = "") -> None: ...

    def preview(self, name: str, png: bytes) -> None: ...


class NullSink:
    """A sink that drops everything (library use without a service)."""

    def progress(self, stage: str, fraction: float, message: str = "") -> None:
        pass

    def preview(self, name: str, png: bytes) -> None:
        pass


@dataclass
class CallbackSink:
    """A sink that forwards to plain callables (CLI progress bars, tests)."""

    on_progress: Callable[[str, float, str], None] | None = None
    on_preview: Callable[[str, bytes], None] | None = None

    def progress(self, stage: str, fraction: float, message: str = "") -> None:
        if self.on_progress:
            self.on_progress(stage, float(fraction), message)

    def preview(self, name: str, png: bytes) -> None:
        if self.on_preview:
            self.on_preview(name, png)


class JobCancelled(Exception):
    """Raised inside a stage when its job was cancelled."""


@dataclass
class CancelToken:
    """Cooperative cancellation, safe to set from another thread."""

    _event: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise JobCancelled("the job was cancelled")

    def wait(self, timeout: float | None = None) -> bool:
        """Block until cancelled (True) or `timeout` seconds passed (False)."""
        return self._event.wait(timeout)


class PipelineError(Exception):
    """An error with a protocol error code (NO_FACE, FACE_TOO_SMALL, BAD_IMAGE, ...) and a
    message written for the person who sent the photo: what went wrong and what to do."""

    def __init__(self, code: str, message: str, **details):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details


# -- the "generate" stage: what a view generator gets and gives ----------------------------

@dataclass
class Generated:
    views: list = field(default_factory=list)      # list[camera.View] (texture/generated views)
    vertices: Any = None                           # (N, 3) refined template vertices, or None
    info: dict = field(default_factory=dict)       # what goes into the sidecar


@dataclass
class HeadEstimate:
    """The head the fit stage produced, as generators see it (vertices (N, 3) metres, head
    frame; camera: the photo's `gen3dface.backend.camera.PinholeCamera`, OpenCV w2c whose
    world is the head frame, photo pixels). `fit` is the FitResult, or None on the mediapipe
    face-mesh fallback."""
    model: Any                                     # HeadModel
    vertices: Any
    camera: Any                                    # camera.PinholeCamera
    fit: Any = None


class ViewGenerator(Protocol):
    name: str

    def generate(self, photo, analysis, head: HeadEstimate, rig, options, sink,
                 cancel) -> Generated: ...
