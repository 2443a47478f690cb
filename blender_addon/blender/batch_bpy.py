"""Batch in Blender: the bpy half of core/batch.py, shared by `blender -b -c gen3dface ...`
(cli.py) and `blender -b --python scripts/blender_batch.py -- ...`.

The network uses the protocol client's BLOCKING mode with deadlines (core.worker.run_job):
bpy.app.timers do not fire in background mode while a script holds the main thread.

The scene starts EMPTY (wm.read_homefile(use_empty=True): no startup cube, camera or light
around the heads); preferences and add-ons, this one included, stay as they are, so the
`-c gen3dface` command keeps working.
"""
from __future__ import annotations

import json
import sys
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


def main(argv, prog: str = "gen3dface") -> int:
    """Run a batch; returns the process exit code (0 all ok or --help, 1 some failed,
    2 usage: bad arguments, no key, a key the backend refuses)."""
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
    try:
        unreachable = core_batch.check_backend(settings, lambda: hello(settings.connection))
    except core_batch.UsageError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return core_batch.EXIT_USAGE
    if unreachable is not None:
        print(f"{prog}: {unreachable.message}; every photo fails", file=sys.stderr)
    if settings.blend:
        start_empty_scene()
    scene = bpy.context.scene
    us = float(scene.unit_settings.scale_length or 1.0) \
        if scene.unit_settings.system != "NONE" else 1.0
    parent = None
    if settings.blend:
        parent = bpy.data.collections.new(BATCH_COLLECTION)
        scene.collection.children.link(parent)

    def generate(photo: Path, cell) -> core_batch.JobOutput:
        data = photo.read_bytes()
        try:
            media = sniff_media_type(data)
        except ValueError as e:
            raise core_batch.JobError("BAD_IMAGE", f"{photo.name}: {e}") from None
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
            h2w = core_rig.head_to_world_at(tuple(c / us for c in cell), us)
            return import_glb(path, name, h2w, us, out.sidecar, parent)
        finally:
            Path(path).unlink(missing_ok=True)

    summary = core_batch.run_batch(settings, generate, place,
                                   log=lambda s: print(s, flush=True), unreachable=unreachable)
    if settings.blend:
        out = Path(settings.blend).resolve()
        out.parent.mkdir(parents=True, exist_ok=True)
        bpy.ops.wm.save_as_mainfile(filepath=str(out), compress=True)
    if settings.summary:
        summary.write_json(settings.summary)
        print(f"summary: {settings.summary}")
    else:
        print(json.dumps(summary.to_dict(), indent=2))
    for item in summary.failed:
        print(f"FAILED {item.photo}: {item.code}: {item.message} -- {item.advice}",
              file=sys.stderr)
    code = summary.exit_code()
    print(f"{len(summary.items) - len(summary.failed)}/{len(summary.items)} photos gave a "
          f"head; exit code {code}", flush=True)
    return code
