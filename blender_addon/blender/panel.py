"""The 3D Viewport sidebar panel (N panel, tab "Gen3D-Face")."""
from __future__ import annotations

import textwrap

import bpy

from ..core.job import JobState
from . import animation, previews, runtime

PROGRESS_MIN_VERSION = (4, 0, 0)     # UILayout.progress


def _wrapped(layout, text: str, icon: str = "NONE", width: int = 48) -> None:
    lines = textwrap.wrap(text, width) or [""]
    for i, line in enumerate(lines):
        layout.label(text=line, icon=icon if i == 0 else "BLANK1")


class GEN3DFACE_PT_main(bpy.types.Panel):
    bl_label = "Gen3D-Face"
    bl_idname = "GEN3DFACE_PT_main"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Gen3D-Face"

    def draw(self, context):
        layout = self.layout
        props = context.scene.gen3dface
        job = runtime.current_job()
        busy = job is not None and job.tracker.state.active

        box = layout.box()
        box.enabled = not busy
        box.label(text="Photo", icon="IMAGE_DATA")
        box.row().prop(props, "photo_source", expand=True)
        if props.photo_source == "FILE":
            box.prop(props, "photo_path", text="")
        else:
            box.template_ID(props, "photo_image", open="image.open")
        icon = previews.photo_icon(props)
        if icon:
            box.template_icon(icon_value=icon, scale=6.0)

        box = layout.box()
        box.enabled = not busy
        box.label(text="Camera rig", icon="OUTLINER_OB_CAMERA")
        box.row().prop(props, "rig_source", expand=True)
        if props.rig_source == "RING":
            col = box.column(align=True)
            col.prop(props, "ring_cameras")
            col.prop(props, "ring_radius")
            col.prop(props, "ring_elevation")
            box.operator("gen3dface.add_camera_ring", icon="ADD")
        elif props.rig_source == "COLLECTION":
            box.prop(props, "camera_collection", text="")
        box.label(text="The head lands at the rig centre (ring: the 3D cursor)", icon="INFO")

        box = layout.box()
        box.enabled = not busy
        box.label(text="Options", icon="PREFERENCES")
        col = box.column()
        col.use_property_split = True
        for name in ("generator", "seed", "quality", "texture_size", "output_kind", "neutral",
                     "delit_texture", "neck_skin", "result_name"):
            col.prop(props, name)

        row = layout.row(align=True)
        row.scale_y = 1.5
        if busy:
            row.operator("gen3dface.cancel", icon="CANCEL")
        else:
            row.operator("gen3dface.generate", icon="PLAY")

        if job is not None:
            self.draw_job(layout, job, props)

        animation.draw_panel_box(layout)

    def draw_job(self, layout, job, props):
        v = job.tracker.view()
        box = layout.box()
        text = f"{v.label} ({v.fraction * 100:.0f}%)" if v.state.active else v.label
        if v.state.active and bpy.app.version >= PROGRESS_MIN_VERSION:
            box.progress(factor=v.fraction, type="BAR", text=text)
        else:
            icon = {JobState.DONE: "CHECKMARK", JobState.FAILED: "ERROR",
                    JobState.CANCELLED: "CANCEL"}.get(v.state, "TIME")
            box.label(text=text, icon=icon)
        if v.message and v.state.active:
            _wrapped(box, v.message)
        if v.error is not None:
            _wrapped(box, v.error.message, icon="ERROR")
            _wrapped(box, v.error.advice, icon="QUESTION")
        if v.state is JobState.DONE:
            box.label(text=f"Imported {len(job.cell_objects)} objects in {v.elapsed_s:.1f} s")
        icons = previews.job_preview_icons()
        if icons and props.show_previews:
            grid = box.grid_flow(columns=4, even_columns=True, align=True)
            for ic in icons[-8:]:
                grid.template_icon(icon_value=ic, scale=3.0)


classes = (GEN3DFACE_PT_main,)
