"""Import a result GLB into the scene (main thread only).

Layout in the scene:
    collection "<name>" (under the scene collection)
      empty "<name>"            placed at the rig centre: core.rig.head_placement_matrix
        "<name>_Head", "<name>_EyeLeft", ...   the GLB's nodes, parented to the empty
The glTF importer turns the head-frame GLB upright (Y up -> Z up) and the morph targets'
names (mesh.extras.targetNames) into shape keys; images are packed into the .blend. Sidecar
facts become custom properties of the empty (and the head object).

A result that cannot be imported leaves the scene as it was: the file's structure is checked
first (core/glb_check.py: not a GLB, truncated, broken chunks or JSON never reach the
importer), and when the importer (or anything after it) fails, every datablock made since the
import started (objects, meshes, materials, images, shape keys, the collection, ...) is
removed again before ImportFailed is raised.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import bpy
from mathutils import Matrix

from ..core.glb_check import GlbError, check_glb_file
from ..core.messages import BAD_RESULT, IMPORT_FAILED
from ..core.rig import head_placement_matrix

PROP_PREFIX = "gen3dface_"
MAX_PROP_NAME = 63                  # Blender's limit on ID property names (bytes)
# bpy.data collections an import can add to (the glTF importer, and this module)
_ID_KINDS = ("objects", "meshes", "materials", "images", "textures", "node_groups",
             "collections", "actions", "armatures", "cameras", "lights", "curves",
             "shape_keys", "worlds")


class ImportFailed(RuntimeError):
    """A result that could not be imported: code BAD_RESULT (the file is not a valid GLB)
    or IMPORT_FAILED (Blender's importer, or the placement after it, failed). Nothing of it
    is left in the scene."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def _importer_message(e: BaseException) -> str:
    """The importer's complaint in one line (its RuntimeError carries a whole traceback)."""
    text = str(e).strip()
    if text.startswith("Error:"):
        text = text[len("Error:"):].strip()
    lines = [ln.strip() for ln in text.splitlines()
             if ln.strip() and not ln.strip().startswith("Location:")]
    if lines and lines[0].startswith("Python: Traceback"):
        lines = lines[-1:]          # the exception line, e.g. "KeyError: 9999"
    return (lines[0] if lines else type(e).__name__)[:500]


class _NewData:
    """What exists before an import, so that whatever it adds can be removed again."""

    def __init__(self):
        self.before = {k: {i.as_pointer() for i in getattr(bpy.data, k)} for k in _ID_KINDS
                       if hasattr(bpy.data, k)}
        layer = bpy.context.view_layer
        self.selected = {o.name for o in layer.objects if o.select_get()}
        self.active = layer.objects.active.name if layer.objects.active is not None else None

    def added(self) -> list:
        return [(k, i) for k, seen in self.before.items() for i in getattr(bpy.data, k)
                if i.as_pointer() not in seen]

    def remove_added(self) -> None:
        """Remove what the import added (shape keys go with their meshes); restore the
        selection and the active object."""
        new = [(k, i) for k, i in self.added() if k != "shape_keys"]
        try:
            bpy.data.batch_remove([i for _, i in new])
        except Exception:
            for k, i in new:
                try:
                    getattr(bpy.data, k).remove(i)
                except Exception:          # already gone with its owner
                    pass
        layer = bpy.context.view_layer
        layer.update()
        for o in layer.objects:
            if o is not None:
                o.select_set(o.name in self.selected)
        if self.active is not None and self.active in layer.objects:
            layer.objects.active = layer.objects[self.active]


def _gltf_kwargs(**wanted) -> dict:
    """Only the importer options this Blender version has (4.2 lacks some of 4.5's)."""
    props = {p.identifier for p in bpy.ops.import_scene.gltf.get_rna_type().properties}
    return {k: v for k, v in wanted.items() if k in props}


def new_collection(name: str, parent=None):
    coll = bpy.data.collections.new(name)
    (parent or bpy.context.scene.collection).children.link(coll)
    return coll


def _layer_collection(layer_coll, coll):
    if layer_coll.collection == coll:
        return layer_coll
    for child in layer_coll.children:
        found = _layer_collection(child, coll)
        if found:
            return found
    return None


def import_glb(path: str | Path, name: str, head_to_world, unit_scale: float = 1.0,
               sidecar: dict | None = None, parent_collection=None) -> list[str]:
    """Import the GLB at `path` as `name`; returns the names of the objects made (the empty
    first). Raises ImportFailed (a RuntimeError) with a code and a one-line message when the
    file cannot be imported, leaving the scene as it was (see the module docstring)."""
    try:
        check_glb_file(path)
    except GlbError as e:
        raise ImportFailed(BAD_RESULT, str(e)) from None
    snapshot = _NewData()
    try:
        return _import_glb(path, name, head_to_world, unit_scale, sidecar, parent_collection)
    except BaseException as e:            # the importer's errors, and Ctrl-C in the middle
        snapshot.remove_added()
        if not isinstance(e, Exception):
            raise
        if isinstance(e, ImportFailed):
            raise
        raise ImportFailed(IMPORT_FAILED, "Blender's glTF importer could not read the "
                           f"result: {_importer_message(e)}") from None


def _import_glb(path, name, head_to_world, unit_scale, sidecar, parent_collection) -> list[str]:
    scene = bpy.context.scene
    view_layer = bpy.context.view_layer
    coll = new_collection(name, parent_collection)
    layer_coll = _layer_collection(view_layer.layer_collection, coll)
    previous_active = view_layer.active_layer_collection
    before = set(bpy.data.objects)
    view_layer.active_layer_collection = layer_coll
    # Some importer versions divide by the scene's unit scale themselves, some do not: import
    # at scale 1 (metres = BU) and let the placement matrix do the unit conversion once.
    units = scene.unit_settings
    saved_scale = units.scale_length
    units.scale_length = 1.0
    try:
        result = bpy.ops.import_scene.gltf(**_gltf_kwargs(
            filepath=str(path), import_pack_images=True, import_shading="NORMALS",
            import_scene_as_collection=False, import_select_created_objects=True))
    finally:
        units.scale_length = saved_scale
        view_layer.active_layer_collection = previous_active
    if "FINISHED" not in result:
        raise ImportFailed(IMPORT_FAILED, "Blender's glTF importer did not finish reading the "
                           f"result ({', '.join(sorted(result)) or 'no status'})")
    new_objects = [o for o in bpy.data.objects if o not in before]
    for o in new_objects:                 # the importer links to the active collection;
        if coll not in o.users_collection:    # make sure nothing landed elsewhere
            coll.objects.link(o)
        for other in list(o.users_collection):
            if other != coll:
                other.objects.unlink(o)

    root = bpy.data.objects.new(name, None)
    root.empty_display_type = "PLAIN_AXES"
    root.empty_display_size = 0.15 / unit_scale
    coll.objects.link(root)
    root.matrix_world = Matrix([list(r) for r in head_placement_matrix(head_to_world,
                                                                        unit_scale)])
    for o in new_objects:
        part = o.name.split(".")[0]
        o[PROP_PREFIX + "part"] = part
        if o.parent is None:
            o.parent = root
            o.matrix_parent_inverse = Matrix.Identity(4)
        o.name = f"{name}_{part}"
        if o.data is not None and hasattr(o.data, "name"):
            o.data.name = f"{name}_{part}"
    for img in _images_of(new_objects):
        if img.packed_file is None and img.source == "FILE":
            img.pack()
    view_layer.update()                   # children's matrix_world follow the new parent
    parts = {o.get(PROP_PREFIX + "part") for o in new_objects}
    if "Surface" in parts and "Head" in parts:
        # Output kind "both": the free-form surface overlaps the rigged head; it comes in
        # hidden (viewport and render) so the scene shows the animatable head. Unhide it in
        # the Outliner to compare or to use it instead.
        for o in new_objects:
            if o.get(PROP_PREFIX + "part") == "Surface":
                o.hide_set(True)
                o.hide_render = True
    if sidecar:
        set_sidecar_properties(root, sidecar)
        head = next((o for o in new_objects if o.get(PROP_PREFIX + "part") == "Head"), None)
        if head is not None:
            set_sidecar_properties(head, sidecar)
    return [root.name] + [o.name for o in new_objects]


def _images_of(objects):
    seen = set()
    for o in objects:
        for slot in getattr(o, "material_slots", ()):
            mat = slot.material
            if mat is None or not mat.use_nodes:
                continue
            for node in mat.node_tree.nodes:
                img = getattr(node, "image", None)
                if img is not None and img.name not in seen:
                    seen.add(img.name)
                    yield img


def _finite(v) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    try:
        f = float(v)
    except OverflowError:             # a JSON integer too large for a float
        return None
    return f if math.isfinite(f) else None


def set_sidecar_properties(obj, sidecar: dict) -> None:
    """Facts a TD can read in the N panel or from scripts: generator, head model, fallbacks,
    warnings, landmark error, timings, plus the whole sidecar as JSON. Whatever shape a
    backend gave them, they never fail the import (odd values are skipped)."""
    p = PROP_PREFIX
    obj[p + "sidecar"] = json.dumps(sidecar, default=str)
    for key in ("generator", "head_model"):
        if key in sidecar and sidecar[key] is not None:
            obj[p + key] = str(sidecar[key])[:4096]
    for key in ("fallbacks", "warnings"):
        items = sidecar.get(key) or []
        if not isinstance(items, list):
            items = [items]
        obj[p + key] = "; ".join(str(i) for i in items)[:65536]
    err = _finite(sidecar.get("landmark_error_px"))
    if err is not None:
        obj[p + "landmark_error_px"] = err
    timings = sidecar.get("timings_s")
    if isinstance(timings, dict):
        obj[p + "timings_s"] = {str(k): f for k, f in ((k, _finite(v)) for k, v in
                                                       list(timings.items())[:256])
                                if f is not None and len(str(k).encode("utf-8")) <= MAX_PROP_NAME}
