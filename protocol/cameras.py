"""Camera conventions and every conversion between them, in one place (pure Python, stdlib only).

Three frames meet here:

* WIRE / Blender (what the protocol carries): a camera is a camera-to-world 4x4 in Blender's
  camera frame (the camera looks down -Z, +Y is up in the image, +X right) placed in Blender's
  world (right-handed, Z up, metres), plus pixel intrinsics. A `Rig` also carries
  `head_to_world`: where the head frame sits in the Blender world.
* HEAD frame (= glTF frame of our GLBs): +Y up, +Z out of the face, +X the subject's LEFT,
  metres. Head -> Blender is +90 deg about X: (x, y, z)_head -> (x, -z, y)_blender.
* OpenCV camera (what the models use): x right, y down, z forward; a world-to-camera 4x4 `w2c`
  whose world is the HEAD frame.

Pixels: u right, v down, origin at the top-left CORNER of the image, so pixel (i, j) has its
centre at (i + 0.5, j + 0.5); a centred principal point is (width / 2, height / 2).
A point p_head projects as  (x, y, z) = w2c @ p,  u = fx * x / z + cx,  v = fy * y / z + cy.

Matrices are row-major tuples of 4 rows (`Mat4`); functions accept nested lists/tuples or
numpy arrays and always return plain tuples of floats (wrap them in np.asarray yourself).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

Mat4 = tuple  # tuple[tuple[float, float, float, float], ...]: 4 rows, row-major
Vec3 = tuple  # tuple[float, float, float]

MAX_CAMERAS = 64
MAX_RESOLUTION = 16384          # pixels per side
MAX_NAME_CHARS = 128
RIGID_TOLERANCE = 1e-4          # |R^T R - I| and |det R - 1| allowed on matrices from the wire

IDENTITY: Mat4 = ((1.0, 0.0, 0.0, 0.0), (0.0, 1.0, 0.0, 0.0), (0.0, 0.0, 1.0, 0.0),
                  (0.0, 0.0, 0.0, 1.0))
# (x, y, z)_head -> (x, -z, y)_blender: +90 degrees about X.
HEAD_TO_BLENDER: Mat4 = ((1.0, 0.0, 0.0, 0.0), (0.0, 0.0, -1.0, 0.0), (0.0, 1.0, 0.0, 0.0),
                         (0.0, 0.0, 0.0, 1.0))
# Blender camera frame (-Z forward, +Y up) <-> OpenCV camera frame (+Z forward, +Y down);
# its own inverse.
BLENDER_CAM_TO_OPENCV_CAM: Mat4 = ((1.0, 0.0, 0.0, 0.0), (0.0, -1.0, 0.0, 0.0),
                                   (0.0, 0.0, -1.0, 0.0), (0.0, 0.0, 0.0, 1.0))


class CameraError(ValueError):
    """A camera, intrinsics or rig that cannot be used (non-finite, not rigid, too many, ...)."""


# --------------------------------------------------------------------------------------------
# Small linear algebra on tuples
# --------------------------------------------------------------------------------------------

def _finite(x: Any, what: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)) and not hasattr(x, "__float__"):
        raise CameraError(f"{what} must be a number, got {type(x).__name__}")
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise CameraError(f"{what} must be a number, got {x!r}") from None
    if not math.isfinite(v):
        raise CameraError(f"{what} must be finite, got {v}")
    return v


def as_mat4(m: Any, what: str = "matrix") -> Mat4:
    """Any 4x4 nested sequence / numpy array -> Mat4 of finite floats (CameraError otherwise)."""
    if isinstance(m, (str, bytes, dict)) or not hasattr(m, "__len__"):
        raise CameraError(f"{what} must be a 4x4 matrix (4 rows of 4 numbers)")
    if len(m) != 4:
        raise CameraError(f"{what} must have 4 rows, got {len(m)}")
    rows = []
    for i in range(4):
        row = m[i]
        if isinstance(row, (str, bytes, dict)) or not hasattr(row, "__len__") or len(row) != 4:
            raise CameraError(f"{what} row {i} must have 4 numbers")
        rows.append(tuple(_finite(row[j], f"{what}[{i}][{j}]") for j in range(4)))
    return tuple(rows)


def as_vec3(p: Any, what: str = "point") -> Vec3:
    if isinstance(p, (str, bytes, dict)) or not hasattr(p, "__len__") or len(p) != 3:
        raise CameraError(f"{what} must have 3 numbers")
    return tuple(_finite(p[i], f"{what}[{i}]") for i in range(3))


def matmul(a: Any, b: Any) -> Mat4:
    """a @ b for 4x4 matrices."""
    a, b = as_mat4(a, "a"), as_mat4(b, "b")
    return tuple(tuple(sum(a[i][k] * b[k][j] for k in range(4)) for j in range(4))
                 for i in range(4))


def invert_rigid(m: Any) -> Mat4:
    """Inverse of a rigid transform [R t; 0 1] -> [R^T  -R^T t; 0 1] (exact, no pivoting)."""
    m = as_mat4(m)
    r = [[m[j][i] for j in range(3)] for i in range(3)]  # R^T
    t = [m[0][3], m[1][3], m[2][3]]
    ti = [-sum(r[i][k] * t[k] for k in range(3)) for i in range(3)]
    return (tuple(r[0]) + (ti[0],), tuple(r[1]) + (ti[1],), tuple(r[2]) + (ti[2],),
            (0.0, 0.0, 0.0, 1.0))


def transform_point(m: Any, p: Any) -> Vec3:
    """The 3D point m @ [p, 1] (affine part; the bottom row is assumed to be 0 0 0 1)."""
    m, p = as_mat4(m), as_vec3(p)
    return tuple(m[i][0] * p[0] + m[i][1] * p[1] + m[i][2] * p[2] + m[i][3] for i in range(3))


def rigidity_error(m: Any) -> float:
    """Largest deviation of a 4x4 from a rigid transform (R orthonormal, det +1, last row 0001)."""
    m = as_mat4(m)
    err = max(abs(m[3][0]), abs(m[3][1]), abs(m[3][2]), abs(m[3][3] - 1.0))
    for i in range(3):
        for j in range(3):
            dot = sum(m[k][i] * m[k][j] for k in range(3))
            err = max(err, abs(dot - (1.0 if i == j else 0.0)))
    det = (m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
           - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
           + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]))
    return max(err, abs(det - 1.0))


def remove_scale(m: Any) -> Mat4:
    """The rigid part of a 4x4 with positive per-axis scale (e.g. a Blender object whose scale
    was not applied): each rotation column normalised, translation kept."""
    m = as_mat4(m)
    cols = []
    for j in range(3):
        n = math.sqrt(sum(m[i][j] ** 2 for i in range(3)))
        if n <= 1e-12:
            raise CameraError("matrix has a zero-length axis; cannot remove its scale")
        cols.append([m[i][j] / n for i in range(3)])
    return tuple((cols[0][i], cols[1][i], cols[2][i], m[i][3]) for i in range(3)) + (
        (0.0, 0.0, 0.0, 1.0),)


def _check_rigid(m: Mat4, what: str) -> None:
    err = rigidity_error(m)
    if err > RIGID_TOLERANCE:
        raise CameraError(f"{what} is not a rigid transform (rotation + translation; deviation "
                          f"{err:.2g}). Remove scale/shear first (apply the object's scale).")


def _sub(a, b):
    return (a[0] - b[0], a[1] - b[1], a[2] - b[2])


def _cross(a, b):
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def _normalize(a):
    n = math.sqrt(a[0] ** 2 + a[1] ** 2 + a[2] ** 2)
    if n <= 1e-12:
        raise CameraError("zero-length vector")
    return (a[0] / n, a[1] / n, a[2] / n)


# --------------------------------------------------------------------------------------------
# Intrinsics, cameras, rigs
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Intrinsics:
    """Pixel intrinsics: image size in pixels, focal lengths and principal point in pixels
    (origin at the top-left corner of the image, v down)."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    def __post_init__(self):
        for name in ("width", "height"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) and not (
                    hasattr(v, "__index__") or (isinstance(v, float) and v.is_integer())):
                raise CameraError(f"intrinsics {name} must be an integer, got {v!r}")
            v = int(v)
            if not 1 <= v <= MAX_RESOLUTION:
                raise CameraError(f"intrinsics {name} must be in 1..{MAX_RESOLUTION}, got {v}")
            object.__setattr__(self, name, v)
        for name in ("fx", "fy", "cx", "cy"):
            object.__setattr__(self, name, _finite(getattr(self, name), f"intrinsics {name}"))
        if self.fx <= 0 or self.fy <= 0:
            raise CameraError(f"focal lengths must be positive, got fx={self.fx}, fy={self.fy}")

    def to_dict(self) -> dict:
        return {"width": self.width, "height": self.height, "fx": self.fx, "fy": self.fy,
                "cx": self.cx, "cy": self.cy}

    @classmethod
    def from_dict(cls, d: Any) -> "Intrinsics":
        if not isinstance(d, dict):
            raise CameraError("intrinsics must be an object with width, height, fx, fy, cx, cy")
        missing = [k for k in ("width", "height", "fx", "fy", "cx", "cy") if k not in d]
        if missing:
            raise CameraError(f"intrinsics lack {', '.join(missing)}")
        return cls(d["width"], d["height"], d["fx"], d["fy"], d["cx"], d["cy"])


@dataclass(frozen=True)
class Camera:
    """A camera in the WIRE convention: Blender camera frame -> Blender world, metres."""

    name: str
    cam_to_world: Mat4
    intrinsics: Intrinsics

    def __post_init__(self):
        if not isinstance(self.name, str) or len(self.name) > MAX_NAME_CHARS:
            raise CameraError(f"camera name must be a string of at most {MAX_NAME_CHARS} "
                              f"characters")
        m = as_mat4(self.cam_to_world, f"camera '{self.name}' cam_to_world")
        _check_rigid(m, f"camera '{self.name}' cam_to_world")
        object.__setattr__(self, "cam_to_world", m)
        if not isinstance(self.intrinsics, Intrinsics):
            raise CameraError(f"camera '{self.name}' intrinsics must be an Intrinsics")

    def to_dict(self) -> dict:
        return {"name": self.name, "cam_to_world": [list(r) for r in self.cam_to_world],
                "intrinsics": self.intrinsics.to_dict()}

    @classmethod
    def from_dict(cls, d: Any) -> "Camera":
        if not isinstance(d, dict):
            raise CameraError("a camera must be an object with name, cam_to_world, intrinsics")
        for k in ("cam_to_world", "intrinsics"):
            if k not in d:
                raise CameraError(f"camera lacks '{k}'")
        return cls(d.get("name", ""), d["cam_to_world"], Intrinsics.from_dict(d["intrinsics"]))


def default_head_to_world(center: Any = (0.0, 0.0, 0.0)) -> Mat4:
    """HEAD_TO_BLENDER with the head origin placed at `center` (Blender world, metres)."""
    c = as_vec3(center, "center")
    r = HEAD_TO_BLENDER
    return tuple(r[i][:3] + (c[i],) for i in range(3)) + ((0.0, 0.0, 0.0, 1.0),)


@dataclass(frozen=True)
class Rig:
    """Cameras (wire convention) plus where the head frame sits in the Blender world."""

    cameras: tuple = ()
    head_to_world: Mat4 = HEAD_TO_BLENDER

    def __post_init__(self):
        cams = tuple(self.cameras)
        if len(cams) > MAX_CAMERAS:
            raise CameraError(f"a rig may have at most {MAX_CAMERAS} cameras, got {len(cams)}")
        names = set()
        for c in cams:
            if not isinstance(c, Camera):
                raise CameraError("rig cameras must be Camera objects")
            if c.name in names:
                raise CameraError(f"two cameras are named '{c.name}'; names must be unique")
            names.add(c.name)
        object.__setattr__(self, "cameras", cams)
        m = as_mat4(self.head_to_world, "rig head_to_world")
        _check_rigid(m, "rig head_to_world")
        object.__setattr__(self, "head_to_world", m)

    def to_dict(self) -> dict:
        return {"convention": "blender", "units": "m",
                "head_to_world": [list(r) for r in self.head_to_world],
                "cameras": [c.to_dict() for c in self.cameras]}

    @classmethod
    def from_dict(cls, d: Any) -> "Rig":
        """Validates everything (finite numbers, rigid matrices, <= MAX_CAMERAS, sizes, unique
        names); raises CameraError with a clear message. Unknown keys are ignored."""
        if not isinstance(d, dict):
            raise CameraError("a rig must be an object with 'cameras' and 'head_to_world'")
        if d.get("convention", "blender") != "blender":
            raise CameraError(f"unknown rig convention {d.get('convention')!r}; "
                              "expected 'blender'")
        if d.get("units", "m") != "m":
            raise CameraError(f"rig units must be 'm' (metres), got {d.get('units')!r}")
        cams = d.get("cameras", [])
        if not isinstance(cams, (list, tuple)):
            raise CameraError("rig 'cameras' must be a list")
        if len(cams) > MAX_CAMERAS:
            raise CameraError(f"a rig may have at most {MAX_CAMERAS} cameras, got {len(cams)}")
        return cls(tuple(Camera.from_dict(c) for c in cams),
                   d.get("head_to_world", HEAD_TO_BLENDER))


# --------------------------------------------------------------------------------------------
# Conversions
# --------------------------------------------------------------------------------------------

def opencv_w2c_in_head(camera: Camera, rig: Rig) -> Mat4:
    """OpenCV world-to-camera whose world is the HEAD frame (what the models use):
    BLENDER_CAM_TO_OPENCV_CAM @ inverse(cam_to_world) @ head_to_world."""
    return matmul(BLENDER_CAM_TO_OPENCV_CAM,
                  matmul(invert_rigid(camera.cam_to_world), rig.head_to_world))


def camera_from_opencv_w2c_in_head(w2c: Any, intrinsics: Intrinsics, rig: Rig,
                                   name: str = "") -> Camera:
    """Inverse of `opencv_w2c_in_head`: cam_to_world = head_to_world @ w2c^-1 @ CV_TO_BLENDER."""
    w2c = as_mat4(w2c, "w2c")
    _check_rigid(w2c, "w2c")
    c2w = matmul(rig.head_to_world, matmul(invert_rigid(w2c), BLENDER_CAM_TO_OPENCV_CAM))
    return Camera(name, c2w, intrinsics)


def project_head_point(camera: Camera, rig: Rig, p_head: Any) -> tuple[float, float, float]:
    """(u, v, depth) of a head-frame point: pixel coordinates (corner origin, v down) and its
    depth along the optical axis (positive in front of the camera)."""
    x, y, z = transform_point(opencv_w2c_in_head(camera, rig), p_head)
    k = camera.intrinsics
    if abs(z) < 1e-12:
        raise CameraError("the point lies in the camera's focal plane; it has no projection")
    return (k.fx * x / z + k.cx, k.fy * y / z + k.cy, z)


def orbit_w2c_in_head(azimuth_deg: float, elevation_deg: float, radius_m: float,
                      target: Any = (0.0, 0.0, 0.0)) -> Mat4:
    """OpenCV w2c (world = head frame) of a camera at
    target + r * (cos(el) sin(az), sin(el), cos(el) cos(az)) looking at target with head +Y
    up in the image. Azimuth 0 is in front of the face (+Z); positive azimuth turns toward +X
    (the subject's left). At elevation +-90 the image 'up' is the limit of the orbit's up."""
    az = math.radians(_finite(azimuth_deg, "azimuth_deg"))
    el = math.radians(_finite(elevation_deg, "elevation_deg"))
    r = _finite(radius_m, "radius_m")
    if r <= 0:
        raise CameraError(f"radius_m must be positive, got {r}")
    t = as_vec3(target, "target")
    c = (t[0] + r * math.cos(el) * math.sin(az), t[1] + r * math.sin(el),
         t[2] + r * math.cos(el) * math.cos(az))
    forward = _normalize(_sub(t, c))
    # True image-up of the orbit (derivative of the position w.r.t. elevation): never parallel
    # to forward, so the poles need no special case.
    up = (-math.sin(el) * math.sin(az), math.cos(el), -math.sin(el) * math.cos(az))
    right = _normalize(_cross(forward, up))
    down = _cross(forward, right)
    rot = (right, down, forward)
    tr = tuple(-(rot[i][0] * c[0] + rot[i][1] * c[1] + rot[i][2] * c[2]) for i in range(3))
    return tuple(rot[i] + (tr[i],) for i in range(3)) + ((0.0, 0.0, 0.0, 1.0),)


def orbit_angles(position: Any, target: Any = (0.0, 0.0, 0.0)) -> tuple[float, float]:
    """(azimuth_deg, elevation_deg) of a camera at `position` (head frame) orbiting `target`:
    the inverse of `orbit_w2c_in_head`'s placement (azimuth in (-180, 180], elevation in
    [-90, 90]); (0, 0) at the target itself."""
    p, t = as_vec3(position, "position"), as_vec3(target, "target")
    d = _sub(p, t)
    r = math.sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2])
    if r == 0.0:
        return 0.0, 0.0
    return (math.degrees(math.atan2(d[0], d[2])),
            math.degrees(math.asin(max(-1.0, min(1.0, d[1] / r)))))


def camera_position_in_head(w2c: Any) -> Vec3:
    """Where an OpenCV w2c's camera sits in its world (the head frame): -R^T t."""
    m = as_mat4(w2c, "w2c")
    return tuple(-sum(m[k][i] * m[k][3] for k in range(3)) for i in range(3))


def intrinsics_from_fov(width: int, height: int, fov_deg: float) -> Intrinsics:
    """Square pixels, centred principal point, `fov_deg` the HORIZONTAL field of view."""
    fov = _finite(fov_deg, "fov_deg")
    if not 0.0 < fov < 180.0:
        raise CameraError(f"fov_deg must be in (0, 180), got {fov}")
    f = 0.5 * int(width) / math.tan(math.radians(fov) / 2.0)
    return Intrinsics(int(width), int(height), f, f, int(width) / 2.0, int(height) / 2.0)


def ring_rig(n_cameras: int = 16, elevation_deg: float = 0.0, radius_m: float = 1.0,
             resolution: int = 256, fov_deg: float = 25.0,
             center: Any = (0.0, 0.0, 0.0)) -> Rig:
    """`n_cameras` square cameras evenly spaced in azimuth (camera i at 360 * i / n degrees,
    camera 0 in front of the face) around the head origin, which sits at `center` in the
    Blender world (head_to_world = HEAD_TO_BLENDER translated to `center`)."""
    if isinstance(n_cameras, bool) or int(n_cameras) != n_cameras or not 1 <= n_cameras <= MAX_CAMERAS:
        raise CameraError(f"n_cameras must be an integer in 1..{MAX_CAMERAS}, got {n_cameras}")
    n = int(n_cameras)
    placement = Rig((), default_head_to_world(center))
    k = intrinsics_from_fov(resolution, resolution, fov_deg)
    cams = tuple(camera_from_opencv_w2c_in_head(
        orbit_w2c_in_head(360.0 * i / n, elevation_deg, radius_m), k, placement,
        name=f"cam_{i:03d}") for i in range(n))
    return Rig(cams, placement.head_to_world)


SENSOR_FITS = ("AUTO", "HORIZONTAL", "VERTICAL")


def blender_camera_intrinsics(lens_mm: float, sensor_width_mm: float, sensor_height_mm: float,
                              sensor_fit: str, res_x: int, res_y: int, shift_x: float = 0.0,
                              shift_y: float = 0.0) -> Intrinsics:
    """Pixel intrinsics of a Blender perspective camera (square pixels), as Blender computes
    its view plane: AUTO fits `sensor_width` to the LARGER image side; HORIZONTAL fits
    sensor_width to the width; VERTICAL fits sensor_height to the height. Shifts are in
    units of the fitted side (positive shift_y moves the view up, so cy grows)."""
    lens = _finite(lens_mm, "lens_mm")
    sw = _finite(sensor_width_mm, "sensor_width_mm")
    sh = _finite(sensor_height_mm, "sensor_height_mm")
    if lens <= 0 or sw <= 0 or sh <= 0:
        raise CameraError("lens and sensor sizes must be positive")
    fit = str(sensor_fit).upper()
    if fit not in SENSOR_FITS:
        raise CameraError(f"sensor_fit must be one of {SENSOR_FITS}, got {sensor_fit!r}")
    w, h = int(res_x), int(res_y)
    if fit == "AUTO":
        horizontal, sensor = w >= h, sw
    elif fit == "HORIZONTAL":
        horizontal, sensor = True, sw
    else:
        horizontal, sensor = False, sh
    fitted_px = w if horizontal else h
    f = lens / sensor * fitted_px
    sx, sy = _finite(shift_x, "shift_x"), _finite(shift_y, "shift_y")
    return Intrinsics(w, h, f, f, w / 2.0 - sx * fitted_px, h / 2.0 + sy * fitted_px)


def intrinsics_to_blender(intrinsics: Intrinsics, sensor_width_mm: float = 36.0) -> dict:
    """Blender camera settings that reproduce `intrinsics` (HORIZONTAL sensor fit with a
    `sensor_width_mm` sensor). Needs square pixels (fx == fy)."""
    k = intrinsics
    if abs(k.fx - k.fy) > 1e-6 * max(k.fx, k.fy):
        raise CameraError(f"Blender cameras have square pixels; fx={k.fx} != fy={k.fy}")
    sw = _finite(sensor_width_mm, "sensor_width_mm")
    return {"lens_mm": k.fx * sw / k.width, "sensor_width_mm": sw, "sensor_fit": "HORIZONTAL",
            "shift_x": (k.width / 2.0 - k.cx) / k.width,
            "shift_y": (k.cy - k.height / 2.0) / k.width,
            "res_x": k.width, "res_y": k.height}


__all__ = [
    "Mat4", "Vec3", "MAX_CAMERAS", "MAX_RESOLUTION", "IDENTITY", "HEAD_TO_BLENDER",
    "BLENDER_CAM_TO_OPENCV_CAM", "CameraError", "Intrinsics", "Camera", "Rig", "as_mat4",
    "as_vec3", "matmul", "invert_rigid", "transform_point", "rigidity_error", "remove_scale",
    "default_head_to_world", "opencv_w2c_in_head", "camera_from_opencv_w2c_in_head",
    "project_head_point", "orbit_w2c_in_head", "orbit_angles", "camera_position_in_head",
    "intrinsics_from_fov", "ring_rig",
    "SENSOR_FITS", "blender_camera_intrinsics", "intrinsics_to_blender",
]
