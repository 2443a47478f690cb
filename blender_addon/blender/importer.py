"""Import a result GLB into the scene (main thread only).

Layout in the scene:
    collection "<name>" (under the scene collection)
      empty "<name>"            placed at the rig centre: core.rig.head_placement_matrix
        "<name>_Head", "<name>_EyeLeft", ...   the GLB's nodes, parented to the empty
The glTF importer turns the head-frame GLB upright (Y up -> Z up) and the morph targets'
names (mesh.extras.targetNames) into shape keys; images are packed into the .blend. Sidecar
facts become custom properties of the empty (and the head object).
"""
from __future__ import annotations

import json
from pathlib import Path

import bpy
from mathutils import Matrix

from ..core.rig import head_placement_matrix

PROP_PREFIX = "gen3dface_"


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
    first). Raises RuntimeError with the importer's complaint when the file cannot be read."""
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
        raise RuntimeError(f"Blender's glTF importer could not read {path}")
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


def set_sidecar_properties(obj, sidecar: dict) -> None:
    """Facts a TD can read in the N panel or from scripts: generator, head model, fallbacks,
    warnings, landmark error, timings, plus the whole sidecar as JSON."""
    p = PROP_PREFIX
    obj[p + "sidecar"] = json.dumps(sidecar, default=str)
    for key in ("generator", "head_model"):
        if key in sidecar and sidecar[key] is not None:
            obj[p + key] = str(sidecar[key])
    for key in ("fallbacks", "warnings"):
        items = sidecar.get(key) or []
        obj[p + key] = "; ".join(str(i) for i in items)
    err = sidecar.get("landmark_error_px")
    if isinstance(err, (int, float)):
        obj[p + "landmark_error_px"] = float(err)
    timings = sidecar.get("timings_s")
    if isinstance(timings, dict):
        obj[p + "timings_s"] = {str(k): float(v) for k, v in timings.items()
                                if isinstance(v, (int, float))}
