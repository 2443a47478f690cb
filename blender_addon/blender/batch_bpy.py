"""Batch in Blender: the bpy half of core/batch.py, shared by `blender -b -c gen3dface ...`
(cli.py) and `blender -b --python scripts/blender_batch.py -- ...`.

The network uses the protocol client's BLOCKING mode with deadlines (core.worker.run_job):
bpy.app.timers do not fire in background mode while a script holds the main thread.
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
from ..core.worker import JobRequest, run_job

BATCH_COLLECTION = "Gen3DFace Batch"


def main(argv, prog: str = "gen3dface") -> int:
    """Run a batch; returns the process exit code (0 all ok, 1 some failed, 2 usage)."""
    try:
        settings = core_batch.settings_from_args(argv, prog)
    except core_batch.UsageError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return core_batch.EXIT_USAGE
    blocked = check_online_access(settings.connection.address, bool(bpy.app.online_access))
    if blocked is not None:
        print(f"{prog}: {blocked.text} (start Blender with --online-mode)", file=sys.stderr)
        return core_batch.EXIT_USAGE
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
                                   log=lambda s: print(s, flush=True))
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
