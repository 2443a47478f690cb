"""What a running pipeline reports and how it is stopped: progress, previews, cancellation,
and the coded errors that the service turns into protocol error replies.

Every stage takes a `ProgressSink` and a `CancelToken`; stages call `cancel.raise_if_cancelled()`
between steps (so a running job stops within a step) and report `sink.progress(stage,
fraction, message)` with fraction in [0, 1] for that stage.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Protocol


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
