"""Batch fallback for Blender without `-c` commands (or without the extension enabled):

    blender -b --python scripts/blender_batch.py -- PHOTO_OR_FOLDER... --address tcp://HOST:PORT
            --key-file KEY [--blend out.blend] [--glb-dir out/] [--summary summary.json] ...

(also runs as `python scripts/blender_batch.py -- ...` with the bpy wheel). Same arguments,
same code, same exit codes as `blender -b -c gen3dface ...`: 0 every photo gave a head (or
--help), 1 some failed (the summary says which and why), 2 bad arguments, no key (--key-file,
or --insecure for a development backend on loopback) or a key the backend refuses, 130
interrupted (Ctrl-C, SIGTERM). Each head gets a 16-camera ring rig (--cameras N; 0 for none);
the .blend starts from an empty scene. A bad result fails its photo only; the .blend and the
summary are always written, with what was done so far.

Where the add-on code comes from, first hit wins:
1. the installed and enabled extension (bl_ext.<repo>.gen3dface), which brings pyzmq;
2. the development install (`pip install -e .`: gen3dface.blender_addon);
3. this checkout: blender_addon/ and protocol/ loaded under a `gen3dface` namespace (Blender's
   Python then needs pyzmq: install the extension once, or pip-install pyzmq into it).
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _script_args() -> list[str]:
    argv = sys.argv
    return argv[argv.index("--") + 1:] if "--" in argv else argv[1:]


def _installed_extension():
    for name, mod in list(sys.modules.items()):
        if name.startswith("bl_ext.") and name.endswith(".gen3dface") and name.count(".") == 2:
            return name
    try:
        import addon_utils
        for mod in addon_utils.modules():
            if mod.__name__.startswith("bl_ext.") and mod.__name__.endswith(".gen3dface"):
                addon_utils.enable(mod.__name__, default_set=False)
                return mod.__name__
    except Exception:
        pass
    return None


def _load_checkout() -> str:
    """blender_addon/ and protocol/ of this checkout as gen3dface.blender_addon/.protocol."""
    if "gen3dface" not in sys.modules:
        pkg = types.ModuleType("gen3dface")
        pkg.__path__ = []
        sys.modules["gen3dface"] = pkg
    for folder, name in (("protocol", "gen3dface.protocol"),
                         ("blender_addon", "gen3dface.blender_addon")):
        if name in sys.modules:
            continue
        spec = importlib.util.spec_from_file_location(
            name, REPO / folder / "__init__.py", submodule_search_locations=[str(REPO / folder)])
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return "gen3dface.blender_addon"


def addon_package() -> str:
    name = _installed_extension()
    if name:
        return name
    try:
        importlib.import_module("gen3dface.blender_addon")
        return "gen3dface.blender_addon"
    except ImportError:
        return _load_checkout()


def main() -> int:
    pkg = addon_package()
    batch_bpy = importlib.import_module(pkg + ".blender.batch_bpy")
    return batch_bpy.main(_script_args(),
                          prog="blender -b --python scripts/blender_batch.py --")


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.exit(code)
