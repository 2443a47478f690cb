"""The bpy layer: preferences, scene properties, panel, operators, import, the
`blender -c gen3dface` command. One `classes` tuple, registered in order and unregistered in
reverse (the glTF-Blender-IO habit)."""
from __future__ import annotations

import bpy

from . import animation, cli, operators, panel, preferences, previews, properties, runtime

classes = (*preferences.classes, *properties.classes, *operators.classes, *animation.classes,
           *panel.classes)


def register() -> None:
    for cls in classes:
        bpy.utils.register_class(cls)
    properties.register_props()
    cli.register()


def unregister() -> None:
    cli.unregister()
    runtime.shutdown()
    previews.release()
    properties.unregister_props()
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
