"""Gen3D-Face for Blender: one photo of a face -> a rigged, textured 3D head in the scene.

This folder is two things at once (see README, "Blender extension"):
- the source of the Blender extension (blender_manifest.toml beside this file; built into an
  installable zip by scripts/build_extension.py, which also bundles the pyzmq wheels and the
  project's protocol/ package as `<extension>/protocol/`);
- in development, the package `gen3dface.blender_addon`.

Layout (after glTF-Blender-IO's io/ + blender/ split):
- core/     plain Python, no bpy: job state machine, rig maths (through wire.cameras), user
            messages, batch loop and summary, settings objects, the background job worker,
            the local-backend launcher. Tested with plain pytest.
- blender/  the thin bpy layer: preferences, scene properties, panel, operators, GLB import,
            the `blender -c gen3dface` command. Operators read properties, build a settings
            object from core/settings.py and call the core.
- wire.py   the ONE place that imports the protocol package (bundled `.protocol` inside the
            extension, `gen3dface.protocol` in development).

Importing this package never imports bpy; only register()/unregister() do.
"""
from __future__ import annotations


def register() -> None:
    from .blender import register as _register
    _register()


def unregister() -> None:
    from .blender import unregister as _unregister
    _unregister()
