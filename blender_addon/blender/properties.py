"""The panel's scene properties (bpy.types.Scene.gen3dface) and their plain settings objects."""
from __future__ import annotations

import bpy
from bpy.props import (BoolProperty, EnumProperty, FloatProperty, IntProperty,
                       PointerProperty, StringProperty)

from ..core import settings as core_settings

GENERATOR_ITEMS = [
    ("auto", "Auto", "The best generator the backend offers (Gen3D-Face when its weights are "
     "installed, else the offline template fit)"),
    ("offline", "Offline fit", "Head-model fit and photo texture only; no learned views"),
    ("gen3dface", "Gen3D-Face", "Multi-view diffusion + reconstruction (needs the backend's "
     "trained weights)"),
]
QUALITY_ITEMS = [(q, q.capitalize(), f"{q.capitalize()} preset") for q in core_settings.QUALITIES]
TEXTURE_ITEMS = [(str(s), f"{s} px", f"{s} x {s} texture") for s in core_settings.TEXTURE_SIZES]
OUTPUT_ITEMS = [
    ("rigged", "Rigged template", "The head model's topology with ARKit's 52 shape keys"),
    ("surface", "Free-form surface", "The reconstructed surface (where the generator has one)"),
    ("both", "Both", "Rigged template and free-form surface"),
]


def _photo_path_changed(self, context):
    from . import previews
    previews.load_photo_thumbnail(self)


class GEN3DFACE_PG_scene(bpy.types.PropertyGroup):
    photo_source: EnumProperty(name="Photo", items=[
        ("FILE", "File", "A photo file on disk"),
        ("IMAGE", "Image", "An image already loaded in Blender")], default="FILE")
    photo_path: StringProperty(name="Photo file", subtype="FILE_PATH",
                               update=_photo_path_changed)
    photo_image: PointerProperty(name="Image", type=bpy.types.Image)
    rig_source: EnumProperty(name="Cameras", items=[
        ("RING", "Default ring", "A ring of cameras around the 3D cursor (no objects needed)"),
        ("COLLECTION", "Collection", "The camera objects in a collection"),
        ("NONE", "None", "Send no rig; the head lands at the 3D cursor")], default="RING")
    ring_cameras: IntProperty(name="Cameras", default=16, min=1, max=64)
    ring_radius: FloatProperty(name="Radius", default=1.0, min=0.05, max=100.0, unit="LENGTH")
    ring_elevation: FloatProperty(name="Elevation", default=0.0, min=-89.0, max=89.0)
    camera_collection: PointerProperty(name="Camera collection", type=bpy.types.Collection)
    generator: EnumProperty(name="Generator", items=GENERATOR_ITEMS, default="auto")
    seed: IntProperty(name="Seed", default=0, min=0)
    quality: EnumProperty(name="Quality", items=QUALITY_ITEMS, default="standard")
    texture_size: EnumProperty(name="Texture", items=TEXTURE_ITEMS, default="1024")
    output_kind: EnumProperty(name="Output", items=OUTPUT_ITEMS, default="rigged")
    neutral: BoolProperty(name="Neutral pose", default=False,
                          description="Import the head at rest (all shape keys 0) instead of "
                                      "with the photo's expression; the fitted values stay in "
                                      "the head's custom properties")
    result_name: StringProperty(name="Name", default="Gen3DFace",
                                description="Name of the new collection and objects")
    show_previews: BoolProperty(name="Previews", default=True)

    def generate_options(self) -> core_settings.GenerateOptions:
        return core_settings.GenerateOptions(self.generator, int(self.seed), self.quality,
                                             int(self.texture_size), self.output_kind,
                                             bool(self.neutral))

    def ring_settings(self, unit_scale: float = 1.0) -> core_settings.RingSettings:
        return core_settings.RingSettings(n_cameras=self.ring_cameras,
                                          radius_m=self.ring_radius * unit_scale,
                                          elevation_deg=self.ring_elevation)


classes = (GEN3DFACE_PG_scene,)


def register_props() -> None:
    bpy.types.Scene.gen3dface = PointerProperty(type=GEN3DFACE_PG_scene)


def unregister_props() -> None:
    del bpy.types.Scene.gen3dface
