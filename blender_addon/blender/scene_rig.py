"""Camera objects <-> the core's camera specs (main thread)."""
from __future__ import annotations

import bpy
from mathutils import Matrix

from ..core.rig import CameraSpec, camera_object_numbers

RING_COLLECTION = "Gen3DFace Rig"


def camera_specs_in(collection, scene) -> list[CameraSpec]:
    """Every camera object in the collection (and its children), sorted by name."""
    r = scene.render
    pct = r.resolution_percentage / 100.0
    res_x, res_y = max(1, round(r.resolution_x * pct)), max(1, round(r.resolution_y * pct))
    if abs(r.pixel_aspect_x - r.pixel_aspect_y) > 1e-6:
        raise ValueError("the render's pixel aspect is not 1:1; set Pixel Aspect X = Y")
    out = []
    for obj in sorted(collection.all_objects, key=lambda o: o.name):
        if obj.type != "CAMERA":
            continue
        cam = obj.data
        out.append(CameraSpec(
            name=obj.name, matrix_world=tuple(tuple(row) for row in obj.matrix_world),
            lens_mm=cam.lens, sensor_width_mm=cam.sensor_width,
            sensor_height_mm=cam.sensor_height, sensor_fit=cam.sensor_fit,
            res_x=res_x, res_y=res_y, shift_x=cam.shift_x, shift_y=cam.shift_y, kind=cam.type))
    if not out:
        raise ValueError(f"collection '{collection.name}' holds no cameras")
    return out


def add_ring_objects(scene, rig, unit_scale: float = 1.0):
    """A new collection with one camera object per rig camera. Sets the scene's render
    resolution to the ring's (the cameras' intrinsics assume it)."""
    coll = bpy.data.collections.new(RING_COLLECTION)
    scene.collection.children.link(coll)
    for cam in rig.cameras:
        n = camera_object_numbers(cam, unit_scale)
        data = bpy.data.cameras.new(cam.name)
        data.lens = n["lens_mm"]
        data.sensor_width = n["sensor_width_mm"]
        data.sensor_fit = n["sensor_fit"]
        data.shift_x, data.shift_y = n["shift_x"], n["shift_y"]
        obj = bpy.data.objects.new(cam.name, data)
        obj.matrix_world = Matrix([list(r) for r in n["matrix_world"]])
        coll.objects.link(obj)
    if rig.cameras:
        n = camera_object_numbers(rig.cameras[0], unit_scale)
        scene.render.resolution_x, scene.render.resolution_y = n["res_x"], n["res_y"]
        scene.render.resolution_percentage = 100
    return coll
