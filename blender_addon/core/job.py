"""The state of one Generate job as the panel shows it, as a small state machine.

The background worker (core/worker.py) turns protocol traffic into events; the main thread
feeds them here from a bpy.app.timers callback and draws `JobTracker.view()`. Events that
arrive after the job ended (a late progress message after a cancel, a result after a
timeout) are ignored, so the panel never flips back from a final state.

    IDLE -> CONNECTING -> QUEUED -> RUNNING -> IMPORTING -> DONE
                 |           |          |          |
                 +-----------+----------+----------+--> FAILED
                 +-- cancel -> CANCELLING --(ack / result / error)--> CANCELLED
"""
from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field

from .messages import UserError, user_error

# Share of the whole job each pipeline stage takes (for one overall progress bar). Stages the
# backend does not send simply never move the bar; unknown stages count as "other".
STAGE_WEIGHTS = {
    "queue": 0.0, "decode": 0.02, "face": 0.05, "fit": 0.13, "generate": 0.40,
    "reconstruct": 0.15, "texture": 0.15, "export": 0.05, "receive": 0.03, "import": 0.02,
}
STAGE_ORDER = tuple(STAGE_WEIGHTS)
STAGE_LABELS = {
    "queue": "Waiting in the backend's queue", "decode": "Reading photo", "face": "Finding the face", "fit": "Fitting the head model",
    "generate": "Generating views", "reconstruct": "Reconstructing the surface",
    "texture": "Baking the texture", "export": "Writing the GLB",
    "receive": "Receiving the result", "import": "Importing into Blender",
}


class JobState(enum.Enum):
    IDLE = "idle"
    CONNECTING = "connecting"
    QUEUED = "queued"
    RUNNING = "running"
    IMPORTING = "importing"
    DONE = "done"
    FAILED = "failed"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)

    @property
    def active(self) -> bool:
        return not self.final and self is not JobState.IDLE


class TransitionError(RuntimeError):
    pass


@dataclass
class JobView:
    """What the panel draws."""

    state: JobState
    stage: str
    label: str             # e.g. "Fitting the head model"
    fraction: float        # overall, in [0, 1]
    message: str           # the backend's latest progress message
    error: UserError | None
    previews: tuple[str, ...]
    elapsed_s: float


@dataclass
class JobTracker:
    clock: callable = time.monotonic
    state: JobState = JobState.IDLE
    job_id: str = ""
    stage: str = ""
    stage_fraction: float = 0.0
    message: str = ""
    queue_position: int | None = None
    error: UserError | None = None
    previews: dict = field(default_factory=dict)     # name -> png bytes (latest per name)
    result_objects: tuple[str, ...] = ()
    _bar: float = 0.0                                # overall fraction shown, never decreasing
    _started: float | None = None
    _ended: float | None = None

    # -- events -------------------------------------------------------------------------
    def start(self) -> None:
        if self.state.active:
            raise TransitionError("a job is already running; cancel it first")
        self.__init__(clock=self.clock)
        self.state = JobState.CONNECTING
        self._started = self.clock()

    def accepted(self, job_id: str, queue_position: int | None = None) -> None:
        if self.state is JobState.CONNECTING:
            self.job_id, self.queue_position = job_id, queue_position
            self.state = JobState.QUEUED
        elif self.state is JobState.CANCELLING:
            self.job_id = job_id

    def progress(self, stage: str, fraction: float, message: str = "") -> None:
        if self.state in (JobState.CONNECTING, JobState.QUEUED, JobState.RUNNING):
            self.state = JobState.RUNNING
            if stage != self.stage:
                self.stage, self.stage_fraction = stage, 0.0
            self.stage_fraction = min(1.0, max(self.stage_fraction, float(fraction)))
            self.message = message or self.message

    def preview(self, name: str, png: bytes) -> None:
        if not self.state.final:
            self.previews[name] = png

    def result_arrived(self) -> None:
        """The GLB is here; the main thread imports it next."""
        if self.state is JobState.CANCELLING:
            self._finish(JobState.CANCELLED)
        elif self.state.active:
            self.state, self.stage, self.stage_fraction = JobState.IMPORTING, "import", 0.0

    def imported(self, object_names) -> None:
        if self.state is not JobState.IMPORTING:
            raise TransitionError(f"imported() in state {self.state.value}")
        self.result_objects = tuple(object_names)
        self.stage_fraction = 1.0
        self._finish(JobState.DONE)

    def failed(self, code: str, message: str) -> None:
        if self.state is JobState.CANCELLING:
            self._finish(JobState.CANCELLED)
        elif self.state.active:
            self.error = user_error(code, message)
            self._finish(JobState.FAILED)

    def cancel_requested(self) -> bool:
        """True when a cancel must be sent to the backend."""
        if self.state.active and self.state is not JobState.CANCELLING:
            if self.state is JobState.IMPORTING:
                return False            # the import runs in one main-thread call; too late
            self.state = JobState.CANCELLING
            return True
        return False

    def cancelled(self) -> None:
        if self.state.active:
            self._finish(JobState.CANCELLED)

    def _finish(self, state: JobState) -> None:
        self.state = state
        self._ended = self.clock()

    # -- view ---------------------------------------------------------------------------
    def overall_fraction(self) -> float:
        if self.state is JobState.DONE:
            return 1.0
        if self.stage not in STAGE_WEIGHTS:      # none yet, or a stage this add-on does not
            return self._bar                       # know: keep the bar where it was
        done = 0.0
        for name in STAGE_ORDER:
            if name == self.stage:
                break
            done += STAGE_WEIGHTS[name]
        self._bar = max(self._bar, min(1.0, done + STAGE_WEIGHTS[self.stage] * self.stage_fraction))
        return self._bar

    def view(self) -> JobView:
        end = self._ended if self._ended is not None else self.clock()
        elapsed = 0.0 if self._started is None else end - self._started
        if self.state is JobState.QUEUED and self.queue_position:
            label = f"Queued (position {self.queue_position})"
        elif self.state in (JobState.RUNNING, JobState.IMPORTING):
            label = STAGE_LABELS.get(self.stage, self.stage.capitalize() or "Working")
        else:
            label = {JobState.CONNECTING: "Connecting to the backend",
                     JobState.QUEUED: "Queued", JobState.CANCELLING: "Cancelling",
                     JobState.CANCELLED: "Cancelled", JobState.DONE: "Done",
                     JobState.FAILED: "Failed", JobState.IDLE: ""}.get(self.state, "")
        return JobView(self.state, self.stage, label, self.overall_fraction(), self.message,
                       self.error, tuple(self.previews), elapsed)
