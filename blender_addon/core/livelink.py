"""Read a Live Link Face / ARKit CSV take (plain Python: no bpy).

A take is one header row, then one row per frame (see README, "Drive the head with an iPhone
take"). Live Link Face writes `Timecode`, `BlendShapeCount`, ARKit's 52 blendshapes in
PascalCase (`EyeBlinkLeft` ... `TongueOut`) and 9 rotations (`HeadYaw` ... `RightEyeRoll`).
Columns are read by NAME, never by position: ARKit's camelCase spelling (`eyeBlinkLeft`, as
Face Cap and others write it) is accepted too, case-insensitively. Columns this reader does
not know are ignored and listed in `Take.ignored`.

Strict: `read_take` either returns a whole, valid Take or raises TakeError with a message
that names the row and column; it never returns half a take, so the Blender layer can
validate everything before it touches the scene.

Time: `Timecode` is `HH:MM:SS:FF` or `HH:MM:SS:FF.fff` at the take's frame rate (the file does
not store the rate; Live Link Face records at 60 fps by default, so that is the default).
ASSUMPTION (not verified against the app): `.fff` is a fraction of a frame. Each row's time
is its timecode minus the first row's, in frames of the take (`Take.frames`, floats; a
dropped frame leaves a gap). Timecodes must increase from row to row.

Rotations: ASSUMPTION (as one public importer reads them, not verified against the app): the
9 rotation columns are normalized angles, 1.0 = 90 degrees (`rotation_units="normalized"`);
"radians" and "degrees" can be chosen instead. Their sign conventions are defined by
`rotation_quaternion` below.
"""
from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..wire import load

# Apple's ARFaceAnchor.BlendShapeLocation names, in the order of Apple's documentation: the
# protocol's list, shared with the backend's exported shape keys.
ARKIT_BLENDSHAPES = load("arkit").ARKIT_BLENDSHAPES
ROTATIONS = ("HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
             "RightEyeYaw", "RightEyePitch", "RightEyeRoll")
HEAD_ROTATIONS = ROTATIONS[0:3]
EYE_ROTATIONS = {"Left": ROTATIONS[3:6], "Right": ROTATIONS[6:9]}
TIMECODE = "Timecode"
COUNT = "BlendShapeCount"
ROTATION_UNITS = {"normalized": math.pi / 2, "radians": 1.0, "degrees": math.pi / 180}
MAX_ROWS = 1_000_000                # ~4.6 hours at 60 fps
_TIMECODE = re.compile(r"^\s*(\d{1,2}):(\d{2}):(\d{2})[:;](\d{1,3})(?:\.(\d+))?\s*$")


class TakeError(ValueError):
    """The CSV is not a take this reader can use; the message says where and why."""


@dataclass(frozen=True)
class TakeSettings:
    fps: float = 60.0                        # the take's frame rate (not stored in the file)
    allow_missing: bool = False              # key what is there when blendshapes are missing
    rotation_units: str = "normalized"       # "normalized" (1 = 90 deg), "radians", "degrees"

    def __post_init__(self):
        if not (isinstance(self.fps, (int, float)) and math.isfinite(self.fps)
                and 1.0 <= self.fps <= 1000.0):
            raise TakeError(f"the take's frame rate must be between 1 and 1000 fps, "
                            f"not {self.fps!r}")
        if self.rotation_units not in ROTATION_UNITS:
            raise TakeError(f"rotation units must be one of {tuple(ROTATION_UNITS)}, "
                            f"not {self.rotation_units!r}")


@dataclass
class Take:
    fps: float
    timecodes: list[str]
    frames: list[float]                      # per row: frames of the take since the first row
    shapes: dict[str, list[float]]           # ARKit name -> per-row value, clamped to 0..1
    rotations: dict[str, list[float]]        # e.g. "HeadYaw" -> per-row angle in RADIANS
    missing_shapes: list[str] = field(default_factory=list)
    missing_rotations: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)     # columns not read
    clamped: int = 0                         # blendshape values outside 0..1, clamped

    @property
    def n_frames(self) -> int:
        return len(self.frames)

    @property
    def duration_s(self) -> float:
        return self.frames[-1] / self.fps if self.frames else 0.0

    def seconds(self) -> list[float]:
        return [f / self.fps for f in self.frames]

    def notes(self) -> list[str]:
        """What a user should know about this take (missing or ignored columns, clamping)."""
        out = []
        if self.missing_shapes:
            out.append(f"{len(self.missing_shapes)} blendshape column(s) missing, not keyed: "
                       + ", ".join(self.missing_shapes))
        if self.missing_rotations:
            out.append("no rotation column(s) " + ", ".join(self.missing_rotations))
        if self.ignored:
            out.append("ignored column(s) " + ", ".join(self.ignored))
        if self.clamped:
            out.append(f"{self.clamped} blendshape value(s) outside 0..1 clamped")
        return out


def csv_column(name: str) -> str:
    """Live Link Face's column for an ARKit name: jawOpen -> JawOpen."""
    return name[0].upper() + name[1:]


def parse_timecode(text: str, fps: float) -> float:
    """`HH:MM:SS:FF[.fff]` -> frames since 00:00:00:00 at `fps` (float). TakeError when it is
    not a timecode or a field is out of range."""
    m = _TIMECODE.match(text or "")
    if not m:
        raise TakeError(f"{text!r} is not a timecode (HH:MM:SS:FF or HH:MM:SS:FF.fff)")
    hh, mm, ss, ff = (int(m.group(i)) for i in range(1, 5))
    if mm >= 60 or ss >= 60:
        raise TakeError(f"timecode {text!r}: minutes and seconds must be below 60")
    if ff >= math.ceil(fps - 1e-6):
        raise TakeError(f"timecode {text!r}: frame {ff} does not exist at {fps:g} fps "
                        "(is the take's frame rate right?)")
    sub = float("0." + m.group(5)) if m.group(5) else 0.0
    return ((hh * 60 + mm) * 60 + ss) * round(fps) + ff + sub


def _float(text: str, row: int, column: str) -> float:
    try:
        v = float(text)
    except (TypeError, ValueError):
        raise TakeError(f"row {row}, column {column}: {text!r} is not a number") from None
    if not math.isfinite(v):
        raise TakeError(f"row {row}, column {column}: {text!r} is not a finite number")
    return v


def read_take(path, settings: TakeSettings | None = None) -> Take:
    """Read the take at `path`. Raises TakeError (see the module docstring)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise TakeError(f"cannot read {path}: {e.strerror or e}") from None
    return parse_take(data, settings, where=path.name)


def parse_take(data: bytes | str, settings: TakeSettings | None = None,
               where: str = "the take") -> Take:
    """Read a take from its bytes or text. Raises TakeError naming `where`."""
    s = settings or TakeSettings()
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise TakeError(f"{where} is not a UTF-8 text file (a CSV take is)") from None
    try:
        return _parse(data, s)
    except TakeError as e:
        raise TakeError(f"{where}: {e}") from None
    except csv.Error as e:
        raise TakeError(f"{where}: not a readable CSV ({e})") from None


def _parse(text: str, s: TakeSettings) -> Take:
    if not text.strip():
        raise TakeError("the file is empty")
    rows = csv.reader(io.StringIO(text))
    header = next(rows, None)
    header = [h.strip() for h in header or []]
    if not any(header):
        raise TakeError("the first row (the header) is empty")
    seen: dict[str, int] = {}
    for i, h in enumerate(header):
        if h.lower() in seen:
            raise TakeError(f"column {h!r} appears twice in the header")
        seen[h.lower()] = i
    if TIMECODE.lower() not in seen:
        raise TakeError(f"no {TIMECODE} column (the header starts {header[:3]})")
    shape_col = {n: seen[n.lower()] for n in ARKIT_BLENDSHAPES if n.lower() in seen}
    rot_col = {n: seen[n.lower()] for n in ROTATIONS if n.lower() in seen}
    missing = [csv_column(n) for n in ARKIT_BLENDSHAPES if n not in shape_col]
    if not shape_col:
        raise TakeError("no ARKit blendshape columns (EyeBlinkLeft ... TongueOut) in the header")
    if missing and not s.allow_missing:
        raise TakeError(f"{len(missing)} of ARKit's 52 blendshape columns missing: "
                        + ", ".join(missing))
    known = {TIMECODE.lower(), COUNT.lower()} | {n.lower() for n in ARKIT_BLENDSHAPES} \
        | {n.lower() for n in ROTATIONS}
    ignored = [h for h in header if h.lower() not in known and h]
    count_col = seen.get(COUNT.lower())
    tc_col = seen[TIMECODE.lower()]
    scale = ROTATION_UNITS[s.rotation_units]

    timecodes, frames = [], []
    shapes = {n: [] for n in shape_col}
    rotations = {n: [] for n in rot_col}
    clamped = 0
    first = None
    for row_no, row in enumerate(rows, start=2):
        if not row or all(not c.strip() for c in row):
            continue                                   # blank lines (a trailing newline)
        if len(row) != len(header):
            raise TakeError(f"row {row_no} has {len(row)} values, the header {len(header)}")
        if len(frames) >= MAX_ROWS:
            raise TakeError(f"more than {MAX_ROWS} rows: not a take this reader accepts")
        tc = row[tc_col].strip()
        try:
            f = parse_timecode(tc, s.fps)
        except TakeError as e:
            raise TakeError(f"row {row_no}, column {TIMECODE}: {e}") from None
        if first is None:
            first = f
        rel = f - first
        if frames and rel <= frames[-1]:
            raise TakeError(f"row {row_no}, column {TIMECODE}: {tc!r} does not come after "
                            f"the previous row's {timecodes[-1]!r}")
        if count_col is not None:
            c = row[count_col].strip()
            if not re.fullmatch(r"\d+", c):
                raise TakeError(f"row {row_no}, column {COUNT}: {c!r} is not a whole number")
        for n, ci in shape_col.items():
            v = _float(row[ci].strip(), row_no, header[ci])
            if v < 0.0 or v > 1.0:
                clamped += 1
                v = min(max(v, 0.0), 1.0)
            shapes[n].append(v)
        for n, ci in rot_col.items():
            rotations[n].append(_float(row[ci].strip(), row_no, header[ci]) * scale)
        timecodes.append(tc)
        frames.append(rel)
    if not frames:
        raise TakeError("the header is there but no frames follow it")
    return Take(fps=float(s.fps), timecodes=timecodes, frames=frames, shapes=shapes,
                rotations=rotations, missing_shapes=missing,
                missing_rotations=[n for n in ROTATIONS if n not in rot_col],
                ignored=ignored, clamped=clamped)


# --- rotations --------------------------------------------------------------------------

def _quat_mul(a, b):
    aw, ax, ay, az = a
    bw, bx, by, bz = b
    return (aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw)


def _axis_angle(axis, angle):
    s = math.sin(angle / 2)
    return (math.cos(angle / 2), axis[0] * s, axis[1] * s, axis[2] * s)


# The head frame's axes in Blender's coordinates (the glTF importer's Y-up -> Z-up turn):
# +X the subject's left -> +X; +Y up -> +Z; +Z out of the face -> -Y.
UP, LEFT, FORWARD = (0.0, 0.0, 1.0), (1.0, 0.0, 0.0), (0.0, -1.0, 0.0)


def rotation_quaternion(yaw: float, pitch: float, roll: float) -> tuple:
    """(w, x, y, z) in Blender's frame of the head (or an eye) for angles in radians.

    Conventions (ASSUMED, see the module docstring): yaw turns about the up axis, positive
    toward the subject's left; pitch about the subject's left axis, positive nose DOWN; roll
    about the forward axis, positive tilting the top of the head toward the subject's right.
    Applied yaw, then pitch, then roll in the turning frame: q = q_yaw * q_pitch * q_roll."""
    q_yaw = _axis_angle(UP, yaw)
    q_pitch = _axis_angle(LEFT, pitch)
    q_roll = _axis_angle(FORWARD, roll)
    return _quat_mul(_quat_mul(q_yaw, q_pitch), q_roll)


def rotate(q, v) -> tuple:
    """The vector v turned by the unit quaternion q."""
    w, x, y, z = _quat_mul(_quat_mul(q, (0.0, *v)), (q[0], -q[1], -q[2], -q[3]))
    return (x, y, z)


# --- where keys go on the scene timeline ------------------------------------------------

TIME_MODES = ("take", "scene")


@dataclass(frozen=True)
class TimelinePlan:
    """Where a take's rows land: scene frames (floats) and the scene's fps to set."""
    frames: list[float]
    fps: int | None                # scene.render.fps to set (None: keep the scene's)
    fps_base: float | None         # scene.render.fps_base to set
    frame_start: int
    frame_end: int


def plan_timeline(take: Take, mode: str, start_frame: int, scene_fps: float) -> TimelinePlan:
    """`mode` "take": the scene runs at the take's rate (fps/fps_base set so that
    fps / fps_base == take.fps) and row i lands on start + its take frame (whole frames for
    a take without dropped or fractional frames). "scene": the scene keeps its rate
    (`scene_fps` = fps / fps_base) and each row lands at start + its time x scene_fps
    (sub-frame keys where they fall between frames)."""
    if mode not in TIME_MODES:
        raise TakeError(f"time mode must be one of {TIME_MODES}, not {mode!r}")
    if mode == "take":
        fps = max(1, round(take.fps))
        frames = [start_frame + f for f in take.frames]
        base = fps / take.fps
    else:
        if not (math.isfinite(scene_fps) and scene_fps > 0):
            raise TakeError(f"the scene's frame rate {scene_fps!r} is not usable")
        fps, base = None, None
        frames = [start_frame + t * scene_fps for t in take.seconds()]
    end = max(start_frame, math.ceil(frames[-1] - 1e-6))
    return TimelinePlan(frames, fps, base, start_frame, end)
