"""Operators: Generate, Cancel, Add Camera Ring, Test Connection.

Each reads properties, builds plain settings objects (core/settings.py), and calls the core or
the runtime; none blocks for longer than reading the photo (Generate) or the connect timeout
(Test Connection, a deliberate button press).
"""
from __future__ import annotations


import bpy

from ..core import rig as core_rig
from ..core.messages import BAD_INPUT, user_error
from ..core.network_policy import check_online_access
from ..core.settings import ImportSettings
from ..core.worker import JobRequest
from . import preferences, runtime
from .photo import photo_bytes
from .scene_rig import add_ring_objects, camera_specs_in


def unit_scale(scene) -> float:
    s = scene.unit_settings
    return float(s.scale_length) if s.system != "NONE" and s.scale_length > 0 else 1.0


def build_rig(scene, props):
    """The wire Rig for the panel's camera choice, or None ("None": no rig; the head still
    lands at the 3D cursor)."""
    us = unit_scale(scene)
    cursor = tuple(scene.cursor.location)
    if props.rig_source == "RING":
        return core_rig.default_ring(cursor, props.ring_settings(1.0), us)
    if props.rig_source == "COLLECTION":
        coll = props.camera_collection
        if coll is None:
            raise ValueError("pick a camera collection (or use the default ring)")
        specs = camera_specs_in(coll, scene)
        centre = core_rig.rig_centre(specs, us) if len(specs) > 1 else cursor
        return core_rig.rig_from_camera_specs(specs, centre, us)
    return None


class GEN3DFACE_OT_generate(bpy.types.Operator):
    bl_idname = "gen3dface.generate"
    bl_label = "Generate Head"
    bl_description = "Send the photo and camera rig to the backend and import the head"

    @classmethod
    def poll(cls, context):
        job = runtime.current_job()
        return job is None or not job.tracker.state.active

    def execute(self, context):
        scene = context.scene
        props = scene.gen3dface
        prefs = preferences.get(context)
        try:
            connection = prefs.connection_settings()
            options = props.generate_options()
            data, media_type, photo_name = photo_bytes(props)
            rig = build_rig(scene, props)
        except (ValueError, OSError) as e:
            err = user_error(BAD_INPUT, str(e))
            self.report({"ERROR"}, err.text)
            return {"CANCELLED"}
        blocked = check_online_access(connection.address, bool(bpy.app.online_access))
        if blocked is not None:
            self.report({"ERROR"}, blocked.text)
            return {"CANCELLED"}
        us = unit_scale(scene)
        h2w = rig.head_to_world if rig is not None else core_rig.head_to_world_at(
            tuple(scene.cursor.location), us)
        request = JobRequest(photo=data, media_type=media_type, photo_name=photo_name,
                             rig=rig, options=options.to_dict())
        try:
            runtime.start_job(connection, request,
                              ImportSettings(props.result_name or "Gen3DFace", us, h2w),
                              props.result_name or "Gen3DFace", scene.name)
        except (RuntimeError, OSError) as e:    # a job still running; no temp folder
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        return {"FINISHED"}


class GEN3DFACE_OT_cancel(bpy.types.Operator):
    bl_idname = "gen3dface.cancel"
    bl_label = "Cancel"
    bl_description = "Cancel the running job"

    @classmethod
    def poll(cls, context):
        job = runtime.current_job()
        return job is not None and job.tracker.state.active

    def execute(self, context):
        runtime.cancel_job()
        return {"FINISHED"}


class GEN3DFACE_OT_add_ring(bpy.types.Operator):
    bl_idname = "gen3dface.add_camera_ring"
    bl_label = "Add Camera Ring"
    bl_description = ("Create the default ring of cameras around the 3D cursor in a new "
                      "collection, and use it as the rig")
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        scene = context.scene
        props = scene.gen3dface
        us = unit_scale(scene)
        try:
            rig = core_rig.default_ring(tuple(scene.cursor.location), props.ring_settings(1.0), us)
        except ValueError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        coll = add_ring_objects(scene, rig, us)
        props.camera_collection = coll
        props.rig_source = "COLLECTION"
        self.report({"INFO"}, f"Added {len(rig.cameras)} cameras in '{coll.name}'")
        return {"FINISHED"}


class GEN3DFACE_OT_test_connection(bpy.types.Operator):
    bl_idname = "gen3dface.test_connection"
    bl_label = "Test Connection"
    bl_description = "Ask the backend what it offers (device, GPU, generators, protocol version)"

    def execute(self, context):
        prefs = preferences.get(context)
        try:
            connection = prefs.connection_settings()
        except ValueError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        blocked = check_online_access(connection.address, bool(bpy.app.online_access))
        if blocked is not None:
            self.report({"ERROR"}, blocked.text)
            return {"CANCELLED"}
        ok, lines = runtime.test_connection(connection)
        self.report({"INFO"} if ok else {"ERROR"}, " | ".join(lines))
        return {"FINISHED"} if ok else {"CANCELLED"}


classes = (GEN3DFACE_OT_generate, GEN3DFACE_OT_cancel, GEN3DFACE_OT_add_ring,
           GEN3DFACE_OT_test_connection)
