"""Drive an imported head with a Live Link Face / ARKit CSV take (the bpy half of
core/livelink.py): the "Animate from Take" operator (panel button, file picker) and
`blender -b -c gen3dface animate HEAD.blend take.csv [--save OUT.blend]`.

What gets keyed (one new action per animated data-block, linear interpolation):
- every mesh of the head (Head, Teeth, and the eyes when their rotation is not in the take)
  gets its shape keys keyed by name from the take's 52 blendshape columns;
- HeadYaw/HeadPitch/HeadRoll rotate the head's root empty (the "<name>" empty that parents
  Head, eyes and teeth) on top of its placement (core.livelink.rotation_quaternion);
- LeftEyeYaw/... and RightEyeYaw/... rotate the eye objects about their eyeball centre (the
  eye's origin is moved there once, mesh and shape keys alike, nothing visible changes); the
  eye meshes' own eyeLook* shape keys are then left unkeyed, so gaze is not applied twice
  (the Head's eyeLook* keys, which move the lids, are keyed).

Time (`time` setting): "take" (default) sets the scene's frame rate to the take's and keys row
i on start + its take frame; "scene" keeps the scene's rate and keys each row at start + its
time x scene fps (sub-frame keys). Either way the scene's frame range is set to the take.

Nothing is touched until the take has been read and checked whole and the head found; should
keying still fail, what was made is removed and the scene's frame settings restored.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty
from mathutils import Matrix, Quaternion, Vector

from ..core import livelink
from ..core.livelink import TakeError, TakeSettings

PART = "gen3dface_part"
REST = "gen3dface_rest_quaternion"
PIVOT = "gen3dface_eye_pivot"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
_INTERP_LINEAR = 1          # FCurve keyframe interpolation enum: CONSTANT 0, LINEAR 1, BEZIER 2


class AnimationError(ValueError):
    """The scene has no head this take can drive; the message says what to do."""


@dataclass(frozen=True)
class AnimateSettings:
    take: TakeSettings = field(default_factory=TakeSettings)
    time: str = "take"                 # "take" or "scene" (see the module docstring)
    start_frame: int | None = None     # None: the scene's frame_start
    rotations: bool = True             # head/eye rotation columns drive the objects

    def __post_init__(self):
        if self.time not in livelink.TIME_MODES:
            raise TakeError(f"time must be one of {livelink.TIME_MODES}, not {self.time!r}")


@dataclass
class HeadRig:
    root: object | None                # the "<name>" empty (None: a bare mesh object)
    head: object
    eyes: dict                         # "Left"/"Right" -> eye object
    meshes: list                       # every mesh of the head that has shape keys


@dataclass
class AnimateReport:
    frames: int
    frame_range: tuple
    fps: float
    keyed: dict                        # object name -> number of shape keys keyed
    head_rotation: bool
    eyes_rotated: list
    notes: list

    def lines(self) -> list[str]:
        keyed = ", ".join(f"{k}: {v}" for k, v in self.keyed.items())
        out = [f"{self.frames} frames keyed on frames {self.frame_range[0]}-"
               f"{self.frame_range[1]} at {self.fps:g} fps ({keyed} shape keys)"]
        out.append("head rotation keyed" if self.head_rotation else "head rotation not keyed")
        if self.eyes_rotated:
            out.append("eye rotation keyed: " + ", ".join(self.eyes_rotated))
        return out + self.notes


# --- finding the head -----------------------------------------------------------------

def _has_keys(ob) -> bool:
    return ob.type == "MESH" and ob.data.shape_keys is not None


def _rig_of_root(root) -> HeadRig | None:
    parts = {c.get(PART): c for c in root.children if c.get(PART)}
    head = parts.get("Head")
    if head is None or not _has_keys(head):
        return None
    eyes = {s: parts[f"Eye{s}"] for s in ("Left", "Right") if f"Eye{s}" in parts}
    meshes = [c for c in root.children if _has_keys(c)]
    return HeadRig(root, head, eyes, meshes)


def find_rig(scene, name: str | None = None, active=None) -> HeadRig:
    """The head to drive: the one named `name` (its root empty or any of its objects), else
    the active object's head, else the scene's only imported head. A mesh with ARKit shape
    keys that the add-on did not import can be named too (then it alone is keyed)."""
    objects = list(scene.objects)
    if name:
        ob = scene.objects.get(name)
        if ob is None:
            raise AnimationError(f"no object named {name!r} in scene {scene.name!r}")
        candidates = [ob]
    elif active is not None:
        candidates = [active]
    else:
        candidates = []
    for ob in candidates:
        root = ob if ob.get(PART) is None and ob.type == "EMPTY" else ob.parent
        rig = _rig_of_root(root) if root is not None else None
        if rig is not None:
            return rig
        if _has_keys(ob) and name:
            return HeadRig(None, ob, {}, [ob])
    roots = [o for o in objects if o.type == "EMPTY" and _rig_of_root(o) is not None]
    if len(roots) == 1:
        return _rig_of_root(roots[0])
    if not roots:
        raise AnimationError(f"scene {scene.name!r} has no Gen3D-Face head (generate or "
                             "import one first, or name a mesh with ARKit shape keys)")
    raise AnimationError(f"scene {scene.name!r} has {len(roots)} heads ("
                         + ", ".join(sorted(r.name for r in roots))
                         + "): select one, or name it with --head")


# --- keying -----------------------------------------------------------------------------

def _new_action(id_data, name: str):
    """A new action assigned to `id_data`, and the collection to make its F-curves in."""
    ad = id_data.animation_data or id_data.animation_data_create()
    action = bpy.data.actions.new(name)
    ad.action = action
    if hasattr(action, "fcurves"):               # Blender 4.2 .. 4.5 (legacy API in 4.4+)
        return action, action.fcurves
    from bpy_extras import anim_utils            # Blender 5: slotted actions only
    slot = action.slots.new(id_type=id_data.id_type, name=id_data.name)
    ad.action_slot = slot
    return action, anim_utils.action_ensure_channelbag_for_slot(action, slot).fcurves


def _assign_slot(id_data, action) -> None:
    ad = id_data.animation_data
    if getattr(ad, "action_slot", "n/a") is None and len(action.slots):
        ad.action_slot = action.slots[0]


def _key(fcurves, data_path: str, index: int, frames, values) -> None:
    fc = fcurves.new(data_path, index=index)
    n = len(frames)
    fc.keyframe_points.add(n)
    co = [0.0] * (2 * n)
    co[0::2] = frames
    co[1::2] = values
    fc.keyframe_points.foreach_set("co", co)
    fc.keyframe_points.foreach_set("interpolation", [_INTERP_LINEAR] * n)
    fc.update()


def _continuous(quats):
    out, prev = [], None
    for q in quats:
        if prev is not None and prev.dot(q) < 0:
            q = -q
        out.append(q)
        prev = q
    return out


def _rest_quaternion(ob) -> Quaternion:
    if REST in ob:
        return Quaternion(tuple(ob[REST]))
    q = ob.matrix_basis.decompose()[1]
    ob[REST] = tuple(q)
    return q


def _key_rotation(ob, take, names, plan_frames, action_name, made) -> None:
    rest = _rest_quaternion(ob)
    cols = [take.rotations[n] for n in names]
    quats = _continuous([rest @ Quaternion(livelink.rotation_quaternion(*a))
                         for a in zip(*cols)])
    action, fcurves = _new_action(ob, action_name)
    made.append(action)
    for i in range(4):
        _key(fcurves, "rotation_quaternion", i, plan_frames, [q[i] for q in quats])
    _assign_slot(ob, action)
    ob.rotation_mode = "QUATERNION"


def _eye_pivot(ob) -> None:
    """Move the eye object's origin to its eyeball centre (once), keeping its look."""
    if PIVOT in ob:
        return
    co = [v.co for v in ob.data.vertices]
    lo = Vector((min(c.x for c in co), min(c.y for c in co), min(c.z for c in co)))
    hi = Vector((max(c.x for c in co), max(c.y for c in co), max(c.z for c in co)))
    c = (lo + hi) / 2
    ob.data.transform(Matrix.Translation(-c), shape_keys=True)
    ob.matrix_basis = ob.matrix_basis @ Matrix.Translation(c)
    ob[PIVOT] = tuple(c)


def apply_take(scene, rig: HeadRig, take: livelink.Take,
               settings: AnimateSettings | None = None) -> AnimateReport:
    s = settings or AnimateSettings()
    start = scene.frame_start if s.start_frame is None else int(s.start_frame)
    scene_fps = scene.render.fps / scene.render.fps_base
    plan = livelink.plan_timeline(take, s.time, start, scene_fps)
    head_rot = s.rotations and all(n in take.rotations for n in livelink.HEAD_ROTATIONS) \
        and rig.root is not None
    eye_rot = {side: ob for side, ob in rig.eyes.items()
               if s.rotations and all(n in take.rotations for n in livelink.EYE_ROTATIONS[side])}
    matched = {n for ob in rig.meshes for n in take.shapes if n in ob.data.shape_keys.key_blocks}
    if not matched:
        raise AnimationError(f"{rig.head.name} has none of the take's shape keys (ARKit names "
                             "such as jawOpen): is it a Gen3D-Face head?")
    saved = (scene.render.fps, scene.render.fps_base, scene.frame_start, scene.frame_end)
    previous = {}
    made: list = []
    keyed: dict = {}
    try:
        for ob in rig.meshes:
            key = ob.data.shape_keys
            names = [n for n in livelink.ARKIT_BLENDSHAPES
                     if n in take.shapes and n in key.key_blocks
                     and not (ob in eye_rot.values() and n.startswith("eyeLook"))]
            if not names:
                continue
            previous[key] = key.animation_data.action if key.animation_data else None
            action, fcurves = _new_action(key, f"{ob.name}_take")
            made.append(action)
            for n in names:
                _key(fcurves, f'key_blocks["{n}"].value', 0, plan.frames, take.shapes[n])
            _assign_slot(key, action)
            keyed[ob.name] = len(names)
        rotated = []
        if head_rot:
            previous[rig.root] = rig.root.animation_data.action \
                if rig.root.animation_data else None
            _key_rotation(rig.root, take, livelink.HEAD_ROTATIONS, plan.frames,
                          f"{rig.root.name}_take", made)
        for side, ob in eye_rot.items():
            previous[ob] = ob.animation_data.action if ob.animation_data else None
            _eye_pivot(ob)
            _key_rotation(ob, take, livelink.EYE_ROTATIONS[side], plan.frames,
                          f"{ob.name}_take", made)
            rotated.append(ob.name)
        if plan.fps is not None:
            scene.render.fps, scene.render.fps_base = plan.fps, plan.fps_base
        scene.frame_start, scene.frame_end = plan.frame_start, plan.frame_end
    except Exception:
        for id_data, act in previous.items():
            if id_data.animation_data is not None:
                id_data.animation_data.action = act
        for act in made:
            bpy.data.actions.remove(act)
        (scene.render.fps, scene.render.fps_base, scene.frame_start,
         scene.frame_end) = saved
        raise
    scene.frame_set(scene.frame_current)
    notes = take.notes()
    if not head_rot and s.rotations and rig.root is None:
        notes.append("the head has no root empty: head rotation not keyed")
    return AnimateReport(take.n_frames, (plan.frame_start, plan.frame_end),
                         scene.render.fps / scene.render.fps_base, keyed, head_rot,
                         rotated, notes)


# --- the operator and the panel's button ------------------------------------------------

TIME_ITEMS = [("take", "Take's rate", "Set the scene's frame rate to the take's; one key per "
               "take frame"),
              ("scene", "Scene's rate", "Keep the scene's frame rate; keys land at the take's "
               "times (sub-frame keys)")]
UNIT_ITEMS = [("normalized", "Normalized", "1.0 = 90 degrees (assumed for Live Link Face)"),
              ("radians", "Radians", ""), ("degrees", "Degrees", "")]


class GEN3DFACE_OT_animate_take(bpy.types.Operator):
    bl_idname = "gen3dface.animate_take"
    bl_label = "Animate from Take"
    bl_description = ("Key the head's shape keys (and head and eye rotation) from a Live Link "
                      "Face / ARKit CSV take")
    bl_options = {"REGISTER", "UNDO"}

    filepath: StringProperty(subtype="FILE_PATH")
    filter_glob: StringProperty(default="*.csv", options={"HIDDEN"})
    fps: FloatProperty(name="Take fps", default=60.0, min=1.0, max=1000.0,
                       description="The take's frame rate (Live Link Face: 60 unless changed)")
    time: EnumProperty(name="Timing", items=TIME_ITEMS, default="take")
    start_frame: IntProperty(name="Start frame", default=-1, min=-1,
                             description="First frame of the take (-1: the scene's start)")
    rotation_units: EnumProperty(name="Rotation units", items=UNIT_ITEMS, default="normalized")
    rotations: BoolProperty(name="Head and eye rotation", default=True)
    allow_missing: BoolProperty(name="Allow missing columns", default=False,
                                description="Key what the take has when blendshape columns "
                                            "are missing, instead of refusing it")

    def invoke(self, context, event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        scene = context.scene
        try:
            settings = AnimateSettings(
                take=TakeSettings(fps=self.fps, allow_missing=self.allow_missing,
                                  rotation_units=self.rotation_units),
                time=self.time, start_frame=None if self.start_frame < 0 else self.start_frame,
                rotations=self.rotations)
            take = livelink.read_take(bpy.path.abspath(self.filepath), settings.take)
            rig = find_rig(scene, active=context.active_object)
            report = apply_take(scene, rig, take, settings)
        except (TakeError, AnimationError) as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        self.report({"INFO"}, " | ".join(report.lines()))
        return {"FINISHED"}


def draw_panel_box(layout) -> None:
    """The panel's "Animation" box (called from panel.py)."""
    box = layout.box()
    box.label(text="Animation", icon="ACTION")
    box.operator(GEN3DFACE_OT_animate_take.bl_idname, icon="FILE_MOVIE")


classes = (GEN3DFACE_OT_animate_take,)


# --- blender -b -c gen3dface animate ----------------------------------------------------

def _parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description="Key a Gen3D-Face head in a .blend from a Live Link Face / "
        "ARKit CSV take, then save the .blend (in place unless --save).")
    p.add_argument("blend", help="the .blend with the head")
    p.add_argument("take", help="the CSV take (Live Link Face's, or ARKit-named columns)")
    p.add_argument("--save", metavar="OUT.blend", help="write here instead of over BLEND")
    p.add_argument("--head", metavar="NAME", help="the head (its empty or one of its objects) "
                   "when the file has several")
    p.add_argument("--fps", type=float, default=60.0, help="the take's frame rate (default 60)")
    p.add_argument("--time", choices=livelink.TIME_MODES, default="take",
                   help="take: set the scene's fps to the take's (default); scene: keep the "
                   "scene's fps and key at the take's times")
    p.add_argument("--start-frame", type=int, default=None,
                   help="first frame of the take (default: the scene's start frame)")
    p.add_argument("--rotation-units", choices=tuple(livelink.ROTATION_UNITS),
                   default="normalized", help="units of the rotation columns (default "
                   "normalized: 1.0 = 90 degrees)")
    p.add_argument("--no-rotation", action="store_true",
                   help="do not key head and eye rotation")
    p.add_argument("--allow-missing", action="store_true",
                   help="key what is there when blendshape columns are missing")
    return p


def main(argv, prog: str = "gen3dface animate") -> int:
    """Exit code: 0 keyed and saved; 2 bad arguments, an unreadable or malformed take, no
    head (nothing written); 1 the save failed."""
    try:
        a = _parser(prog).parse_args(list(argv))
    except SystemExit as e:            # argparse printed the usage or the help
        return EXIT_OK if e.code == 0 else EXIT_USAGE
    blend = Path(a.blend)
    if not blend.is_file():
        print(f"{prog}: no .blend file at {blend}", file=sys.stderr)
        return EXIT_USAGE
    try:
        settings = AnimateSettings(
            take=TakeSettings(fps=a.fps, allow_missing=a.allow_missing,
                              rotation_units=a.rotation_units),
            time=a.time, start_frame=a.start_frame, rotations=not a.no_rotation)
        take = livelink.read_take(a.take, settings.take)       # before the .blend is opened
    except TakeError as e:
        print(f"{prog}: {e}; nothing written", file=sys.stderr)
        return EXIT_USAGE
    bpy.ops.wm.open_mainfile(filepath=str(blend.resolve()))
    scene = bpy.context.scene
    try:
        rig = find_rig(scene, a.head)
        report = apply_take(scene, rig, take, settings)
    except (TakeError, AnimationError) as e:
        print(f"{prog}: {e}; nothing written", file=sys.stderr)
        return EXIT_USAGE
    out = Path(a.save).resolve() if a.save else blend.resolve()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        bpy.ops.wm.save_as_mainfile(filepath=str(out), compress=True)
    except (OSError, RuntimeError) as e:
        print(f"{prog}: could not save {out}: {e}", file=sys.stderr)
        return EXIT_FAILED
    for line in report.lines():
        print(line)
    print(f"saved {out}", flush=True)
    return EXIT_OK
