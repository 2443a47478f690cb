"""The panel's scene properties (bpy.types.Scene.gen3dface) and their plain settings objects."""
from __future__ import annotations

import bpy
from bpy.props import (BoolProperty, EnumProperty, FloatProperty, IntProperty,
                       PointerProperty, StringProperty)

from ..core import settings as core_settings

# Labels of the job options' menus. The choices themselves come from the connected backend's
# capabilities (core/settings.py BackendOffer), restricted to the vocabulary the backend
# validates with (protocol/options.py); before any backend answered, the vocabulary's own.
GENERATOR_LABELS = {
    "auto": ("Auto", "The best generator the backend offers (Gen3D-Face when its weights are "
             "installed, else the offline template fit)"),
    "offline": ("Offline fit", "Head-model fit and photo texture only; no learned views"),
    "gen3dface": ("Gen3D-Face", "Multi-view diffusion + reconstruction (needs the backend's "
                  "trained weights)"),
}
OUTPUT_LABELS = {
    "rigged": ("Rigged template", "The head model's topology with ARKit's 52 shape keys"),
    "surface": ("Free-form surface", "The reconstructed surface (where the generator has one)"),
    "both": ("Both", "Rigged template and free-form surface"),
}


def _label(option: str, value) -> tuple[str, str]:
    if option == "generator":
        return GENERATOR_LABELS.get(value, (str(value), str(value)))
    if option == "output_kind":
        return OUTPUT_LABELS.get(value, (str(value), str(value)))
    if option == "texture_size":
        return f"{value} px", f"{value} x {value} texture"
    return str(value).capitalize(), f"{str(value).capitalize()} preset"


def _number(option: str, value) -> int:
    """The enum's stored integer: the size itself for texture sizes, else the value's place
    in the vocabulary, so a stored choice keeps its meaning when the offered list changes."""
    if option == "texture_size":
        return int(value)
    return core_settings.vocabulary.OPTIONS[option].choices.index(value)


def menu_address(context=None) -> str | None:
    """The backend address whose capabilities the menus follow (None: not configured)."""
    try:
        from . import preferences
        prefs = preferences.get(context)
        return prefs.connection_settings().address if prefs is not None else None
    except Exception:        # a bad address in the preferences: the vocabulary's choices
        return None


_ITEMS: dict = {}            # Blender needs Python to keep the strings of dynamic items alive


def menu_items(option: str, context=None) -> list[tuple]:
    """The (identifier, name, description, number) items of one option's menu."""
    choices = core_settings.BackendOffer.choices(menu_address(context))[option]
    items = [(str(v), *_label(option, v), _number(option, v)) for v in choices]
    key = (option, tuple(items))
    return _ITEMS.setdefault(key, items)


def _items_callback(option: str):
    def items(self, context):
        return menu_items(option, context)
    return items


def _default_number(option: str) -> int:
    return _number(option, core_settings.OPTION_DEFAULTS[option])


def _chosen(props, option: str):
    """The menu's value, or (when the stored choice is not offered by this backend) the
    vocabulary's default if offered, else the first offered choice."""
    value = getattr(props, option)
    offered = [i[0] for i in menu_items(option)]
    if value not in offered:
        default = str(core_settings.OPTION_DEFAULTS[option])
        value = default if default in offered else offered[0]
    return int(value) if option == "texture_size" else value


SEED_MAX = min(core_settings.vocabulary.SEED_RANGE[1] - 1, 2 ** 31 - 1)   # IntProperty is 32-bit


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
    generator: EnumProperty(name="Generator", items=_items_callback("generator"),
                            default=_default_number("generator"))
    seed: IntProperty(name="Seed", default=core_settings.OPTION_DEFAULTS["seed"],
                      min=core_settings.vocabulary.SEED_RANGE[0], max=SEED_MAX)
    quality: EnumProperty(name="Quality", items=_items_callback("quality"),
                          default=_default_number("quality"))
    texture_size: EnumProperty(name="Texture", items=_items_callback("texture_size"),
                               default=_default_number("texture_size"))
    output_kind: EnumProperty(name="Output", items=_items_callback("output_kind"),
                              default=_default_number("output_kind"))
    neutral: BoolProperty(name="Neutral pose", default=False,
                          description="Import the head at rest (all shape keys 0) instead of "
                                      "with the photo's expression; the fitted values stay in "
                                      "the head's custom properties")
    delit_texture: BoolProperty(name="De-lit texture", default=False,
                                description="Divide the photo's lighting out of the skin "
                                            "texture (an albedo, to light in Blender) instead "
                                            "of keeping the photo look")
    neck_skin: BoolProperty(name="Skin neck", default=core_settings.OPTION_DEFAULTS["neck_skin"],
                            description="Paint the neck and shoulders below the jaw with skin "
                                        "where the photo shows clothes (collar, tie, scarf); "
                                        "off: as the photo shows them")
    result_name: StringProperty(name="Name", default="Gen3DFace",
                                description="Name of the new collection and objects")
    show_previews: BoolProperty(name="Previews", default=True)

    def generate_options(self) -> core_settings.GenerateOptions:
        return core_settings.GenerateOptions(_chosen(self, "generator"), int(self.seed),
                                             _chosen(self, "quality"),
                                             _chosen(self, "texture_size"),
                                             _chosen(self, "output_kind"), bool(self.neutral),
                                             bool(self.delit_texture),
                                             bool(self.neck_skin))

    def ring_settings(self, unit_scale: float = 1.0) -> core_settings.RingSettings:
        return core_settings.RingSettings(n_cameras=self.ring_cameras,
                                          radius_m=self.ring_radius * unit_scale,
                                          elevation_deg=self.ring_elevation)


classes = (GEN3DFACE_PG_scene,)


def register_props() -> None:
    bpy.types.Scene.gen3dface = PointerProperty(type=GEN3DFACE_PG_scene)


def unregister_props() -> None:
    del bpy.types.Scene.gen3dface
