"""Batch in Blender: the bpy half of core/batch.py, shared by `blender -b -c gen3dface ...`
(cli.py) and `blender -b --python scripts/blender_batch.py -- ...`.

The network uses the protocol client's BLOCKING mode with deadlines (core.worker.run_job):
bpy.app.timers do not fire in background mode while a script holds the main thread.

The scene starts EMPTY (wm.read_homefile(use_empty=True): no startup cube, camera or light
around the heads); preferences and add-ons, this one included, stay as they are, so the
`-c gen3dface` command keeps working.

The .blend and the summary are always written at the end, with what was done so far, also
when the run is interrupted: Ctrl-C and SIGTERM (a render farm's stop) raise
KeyboardInterrupt in the batch loop (in `blender -b` Blender's own SIGINT handler would only
set a break flag, so the batch installs its own for the duration), the current job is
cancelled on the backend, and a signal that arrives while the files are being written waits
for them (exit code 130).
"""
from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
from pathlib import Path

import bpy

from ..core import batch as core_batch
from ..core import rig as core_rig
from ..core.network_policy import check_online_access
from ..core.photo import sniff_media_type
from ..core.worker import JobRequest, connect, make_client, run_job

BATCH_COLLECTION = "Gen3DFace Batch"


def start_empty_scene() -> None:
    """Replace Blender's startup scene with an empty one (plus a plain world). Unlike
    read_factory_settings this keeps the preferences and the enabled add-ons."""
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    if scene.world is None:
        scene.world = bpy.data.worlds.new("World")


def hello(connection) -> None:
    """One hello to the backend (core_batch.check_backend): JobError on any problem."""
    client = make_client(connection)
    try:
        connect(client, connection)
    finally:
        client.close()


@contextlib.contextmanager
def _signals(prog: str):
    """While the batch runs, SIGINT and SIGTERM raise KeyboardInterrupt; once the caller sets
    mode["interrupt"] = False (the outputs are being written) they are noted and ignored.
    Main thread only; the previous handlers come back at the end."""
    mode = {"interrupt": True}
    if threading.current_thread() is not threading.main_thread():
        yield mode
        return

    def handler(signum, frame):
        name = signal.Signals(signum).name
        if mode["interrupt"]:
            print(f"{prog}: {name}: stopping; the .blend and the summary will hold what was "
                  "done so far", file=sys.stderr, flush=True)
            raise KeyboardInterrupt(name)
        print(f"{prog}: {name}: writing the .blend and the summary first", file=sys.stderr,
              flush=True)

    saved = {}
    for sig in (signal.SIGINT, getattr(signal, "SIGTERM", None)):
        if sig is None:
            continue
        try:
            saved[sig] = signal.signal(sig, handler)
        except (ValueError, OSError):
            pass
    try:
        yield mode
    finally:
        for sig, old in saved.items():
            try:            # None: the handler was set outside Python (Blender's own)
                signal.signal(sig, old if old is not None else signal.SIG_DFL)
            except (ValueError, OSError):
                pass


def write_outputs(settings, summary: core_batch.BatchSummary, prog: str) -> None:
    """Save the .blend, then the summary; a failure of one is reported, never fatal."""
    if settings.blend:
        try:
            out = Path(settings.blend).resolve()
            out.parent.mkdir(parents=True, exist_ok=True)
            bpy.ops.wm.save_as_mainfile(filepath=str(out), compress=True)
        except Exception as e:             # RuntimeError from the operator, OSError
            msg = f"cannot save the .blend {settings.blend}: {str(e).strip()}"
            summary.errors.append({"code": "CLIENT_ERROR", "message": msg})
            print(f"{prog}: {msg}", file=sys.stderr)
    text = json.dumps(summary.to_dict(), indent=2)
    if settings.summary:
        try:
            summary.write_json(settings.summary)
            print(f"summary: {settings.summary}")
            return
        except OSError as e:
            print(f"{prog}: cannot write the summary {settings.summary}: {e}; here it is",
                  file=sys.stderr)
    print(text)


def main(argv, prog: str = "gen3dface") -> int:
    """Run a batch; returns the process exit code (0 all ok or --help, 1 some failed,
    2 usage: bad arguments, no key, a key the backend refuses, 130 interrupted). Once the
    photos have been sent, the .blend (with --blend) and the summary are always written."""
    try:
        settings = core_batch.settings_from_args(argv, prog)
    except core_batch.HelpShown:
        return core_batch.EXIT_OK
    except core_batch.UsageError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return core_batch.EXIT_USAGE
    blocked = check_online_access(settings.connection.address, bool(bpy.app.online_access))
    if blocked is not None:
        print(f"{prog}: {core_batch.batch_error(blocked.code, blocked.message).text}",
              file=sys.stderr)
        return core_batch.EXIT_USAGE
    state = {"us": 1.0, "parent": None}

    def generate(photo: Path, cell) -> core_batch.JobOutput:
        data = photo.read_bytes()
        try:
            media = sniff_media_type(data)
        except ValueError as e:
            raise core_batch.JobError("BAD_IMAGE", f"{photo.name}: {e}") from None
        us = state["us"]
        rig = (core_rig.default_ring(tuple(c / us for c in cell), settings.ring, us)
               if settings.ring is not None else None)
        req = JobRequest(photo=data, media_type=media, photo_name=photo.name, rig=rig,
                         options=settings.options.to_dict())
        return run_job(settings.connection, req)

    def place(name: str, out: core_batch.JobOutput, cell) -> list:
        if not settings.blend:
            return []
        from .importer import import_glb
        import tempfile
        with tempfile.NamedTemporaryFile(suffix=".glb", delete=False) as f:
            f.write(out.glb)
            path = f.name
        try:
            us = state["us"]
            h2w = core_rig.head_to_world_at(tuple(c / us for c in cell), us)
            return import_glb(path, name, h2w, us, out.sidecar, state["parent"])
        finally:
            Path(path).unlink(missing_ok=True)

    interrupted, unreachable = "", None
    with _signals(prog) as signals:
        try:
            unreachable = core_batch.check_backend(settings,
                                                   lambda: hello(settings.connection))
            if unreachable is not None:
                print(f"{prog}: {unreachable.message}; every photo fails", file=sys.stderr)
            if settings.blend:
                start_empty_scene()
            scene = bpy.context.scene
            if scene.unit_settings.system != "NONE":
                state["us"] = float(scene.unit_settings.scale_length or 1.0)
            if settings.blend:
                state["parent"] = bpy.data.collections.new(BATCH_COLLECTION)
                scene.collection.children.link(state["parent"])
        except core_batch.UsageError as e:
            print(f"{prog}: {e}", file=sys.stderr)
            return core_batch.EXIT_USAGE
        except KeyboardInterrupt:
            interrupted = "the batch was interrupted before the first photo"
            signals["interrupt"] = False
            if settings.blend and state["parent"] is None:
                start_empty_scene()          # never save Blender's startup scene as heads
        summary = core_batch.run_batch(settings, generate, place,
                                       log=lambda s: print(s, flush=True),
                                       unreachable=unreachable, interrupted=interrupted)
        signals["interrupt"] = False
        write_outputs(settings, summary, prog)
        for item in summary.failed:
            print(f"FAILED {item.photo}: {item.code}: {item.message} -- {item.advice}",
                  file=sys.stderr)
        if summary.interrupted:
            print(f"INTERRUPTED: {summary.interrupted}", file=sys.stderr)
        code = summary.exit_code()
        print(f"{len(summary.items) - len(summary.failed)}/{len(summary.items)} photos gave a "
              f"head; exit code {code}", flush=True)
    return code
