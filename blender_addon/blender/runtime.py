"""The add-on's live state in this Blender session, and the timer that drives a job.

One job at a time. The network runs in a background thread (core.worker.JobWorker: the
protocol client's blocking mode with deadlines, the GLB written to a temporary file there);
this module's `poll()` runs on the main thread from bpy.app.timers, drains the worker's event
queue into the JobTracker, turns previews into icons, and imports the result. Nothing here
blocks: each poll() handles what is queued and returns.

Tests (the bpy module has no event loop, so timers never fire on their own) call `poll()`
from their own loop, exactly as the timer would; see tests/test_blender_addon.py.
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import bpy

from ..core.job import JobState, JobTracker
from ..core.local_backend import LocalBackend
from ..core.messages import IMPORT_FAILED
from ..core.settings import ConnectionSettings, ImportSettings
from ..core.worker import JobRequest, JobWorker, fetch_capabilities

POLL_INTERVAL_S = 0.1
MAX_EVENTS_PER_POLL = 64


@dataclass
class ActiveJob:
    tracker: JobTracker
    worker: JobWorker | None
    import_settings: ImportSettings
    name: str
    scene_name: str
    cell_objects: list = field(default_factory=list)
    import_seconds: float = 0.0
    max_poll_ms: float = 0.0          # longest poll() outside the import itself (the stall)


class _Session:
    job: ActiveJob | None = None
    local: LocalBackend | None = None
    connection_lines: list[str] = []
    tmp: Path | None = None


def tmp_dir() -> Path:
    if _Session.tmp is None or not _Session.tmp.is_dir():
        _Session.tmp = Path(tempfile.mkdtemp(prefix="gen3dface-blender-"))
    return _Session.tmp


# -- jobs -------------------------------------------------------------------------------------

def current_job() -> ActiveJob | None:
    return _Session.job


def start_job(connection: ConnectionSettings, request: JobRequest, import_settings: ImportSettings,
              name: str, scene_name: str) -> ActiveJob:
    job = _Session.job
    if job is not None and job.tracker.state.active:
        raise RuntimeError("a job is already running; cancel it first")
    from . import previews
    previews.clear_job_previews()
    tracker = JobTracker()
    tracker.start()
    worker = JobWorker(connection, request, tmp_dir())
    _Session.job = ActiveJob(tracker, worker, import_settings, name, scene_name)
    worker.start()
    if not bpy.app.timers.is_registered(poll):
        bpy.app.timers.register(poll, first_interval=POLL_INTERVAL_S, persistent=False)
    return _Session.job


def cancel_job() -> None:
    job = _Session.job
    if job is None:
        return
    if job.tracker.cancel_requested() and job.worker is not None:
        job.worker.cancel()


def poll():
    """One tick on the main thread. Returns the delay until the next tick, or None when the
    job is over (the bpy.app.timers contract)."""
    job = _Session.job
    if job is None:
        return None
    t0 = time.perf_counter()
    import_s = 0.0
    for _ in range(MAX_EVENTS_PER_POLL):
        ev = job.worker.next_event() if job.worker else None
        if ev is None:
            break
        import_s += _apply(job, ev)
    if job.worker is not None and not job.worker.is_alive() and job.worker.next_event(peek=True) is None \
            and job.tracker.state.active and job.tracker.state is not JobState.IMPORTING:
        # the thread ended without a final event: a bug, never leave the panel spinning
        job.tracker.failed("INTERNAL", "the job's network thread stopped unexpectedly")
    stall_ms = (time.perf_counter() - t0 - import_s) * 1000.0
    job.max_poll_ms = max(job.max_poll_ms, stall_ms)
    _redraw()
    if job.tracker.state.final:
        return None
    return POLL_INTERVAL_S


def _apply(job: ActiveJob, ev) -> float:
    """Feed one worker event to the tracker; returns the seconds spent importing."""
    kind = ev[0]
    t = job.tracker
    if kind == "accepted":
        t.accepted(ev[1], ev[2])
    elif kind == "progress":
        t.progress(ev[1], ev[2], ev[3])
    elif kind == "preview":
        if not t.state.final:
            from . import previews
            previews.add_job_preview(ev[1], ev[2], tmp_dir())
        t.preview(ev[1], ev[2])
    elif kind == "result":
        path, sidecar = ev[1], ev[2]
        t.result_arrived()
        if t.state is JobState.IMPORTING:
            t0 = time.perf_counter()
            try:
                job.cell_objects = import_result(job, path, sidecar)
            except Exception as e:              # keep the panel honest about what happened
                # importer.ImportFailed: BAD_RESULT / IMPORT_FAILED, the scene left as it was
                code = getattr(e, "code", None)
                t.failed(code if isinstance(code, str) else IMPORT_FAILED,
                         getattr(e, "message", None) or f"importing the result failed: {e}")
            else:
                t.imported(job.cell_objects)
            finally:
                job.import_seconds = time.perf_counter() - t0
                _remove(path)
            return job.import_seconds
        _remove(path)
    elif kind == "error":
        t.failed(ev[1], ev[2])
    elif kind == "cancelled":
        t.cancelled()
    return 0.0


def import_result(job: ActiveJob, path, sidecar) -> list[str]:
    from .importer import import_glb
    s = job.import_settings
    return import_glb(path, job.name, s.head_to_world, s.unit_scale, sidecar)


def _remove(path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _redraw() -> None:
    wm = getattr(bpy.context, "window_manager", None)
    if wm is None:
        return
    for window in wm.windows:
        for area in window.screen.areas:
            if area.type in ("VIEW_3D", "PREFERENCES"):
                area.tag_redraw()


# -- Test connection ----------------------------------------------------------------------------

def test_connection(connection: ConnectionSettings) -> tuple[bool, list[str]]:
    """Blocking hello with the connect timeout (it is a button press; the timeout bounds it)."""
    ok, lines = fetch_capabilities(connection)
    _Session.connection_lines = lines
    return ok, lines


def connection_report() -> list[str]:
    return list(_Session.connection_lines)


# -- local backend ------------------------------------------------------------------------------

def start_local_backend(prefs) -> None:
    stop_local_backend()
    try:
        backend = LocalBackend(prefs.local_backend_settings(), state_dir=tmp_dir() / "backend")
        backend.start()
    except (ValueError, OSError) as e:
        _Session.connection_lines = [f"Local backend not started: {e}"]
        return
    _Session.local = backend


def stop_local_backend() -> None:
    backend, _Session.local = _Session.local, None
    if backend is not None:
        backend.stop()


def local_backend_connection() -> tuple[str, str] | None:
    b = _Session.local
    if b is None:
        return None
    return b.address, str(b.key_file)


def local_backend_status() -> str:
    b = _Session.local
    if b is None:
        return ""
    if b.running():
        return f"Local backend running on {b.address} (pid {b.process.pid}); log: {b.log_file}"
    return b.exit_message()


# -- lifetime -------------------------------------------------------------------------------------

def shutdown() -> None:
    """unregister() and Blender's exit: stop the job thread and the local backend, drop temp
    files."""
    job, _Session.job = _Session.job, None
    if job is not None and job.worker is not None:
        job.worker.cancel()
        job.worker.join(timeout=2.0)
    if bpy.app.timers.is_registered(poll):
        bpy.app.timers.unregister(poll)
    stop_local_backend()
    if _Session.tmp is not None:
        shutil.rmtree(_Session.tmp, ignore_errors=True)
        _Session.tmp = None


atexit.register(lambda: (stop_local_backend()))
