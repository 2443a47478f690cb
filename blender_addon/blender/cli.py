"""`blender -b -c gen3dface ARGS...`: the batch command (Blender >= 4.2 command-line commands,
bpy.utils.register_cli_command). Blender stops after the command returns and uses its return
value as the process exit code. The same code runs from scripts/blender_batch.py.

`blender -b -c gen3dface animate HEAD.blend take.csv ...` is the one sub-command: it keys a
head from a Live Link Face / ARKit take (animation.py)."""
from __future__ import annotations

import bpy

COMMAND = "gen3dface"
_handle = None


def _command(argv) -> int:
    argv = list(argv)
    if argv[:1] == ["animate"]:
        from .animation import main as animate
        return animate(argv[1:], prog=f"blender -c {COMMAND} animate")
    from .batch_bpy import main
    return main(list(argv), prog=f"blender -c {COMMAND}")


def register() -> None:
    global _handle
    if hasattr(bpy.utils, "register_cli_command") and _handle is None:
        _handle = bpy.utils.register_cli_command(COMMAND, _command)


def unregister() -> None:
    global _handle
    if _handle is not None:
        bpy.utils.unregister_cli_command(_handle)
        _handle = None
