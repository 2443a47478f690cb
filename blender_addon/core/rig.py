"""Camera rigs on the Blender side, without bpy: the default ring, a rig from the user's
cameras, the rig centre, and where the imported head goes.

All axis, lens and unit conventions are in the protocol's cameras module (wire.cameras); this
module only gathers Blender's numbers into its calls. Blender units (BU) vs metres: the scene's
unit scale `unit_scale` = scene.unit_settings.scale_length is metres per BU; everything on the
wire is metres, so translations are multiplied by unit_scale going out and divided coming in.

Matrices are row-major 4x4 nested tuples (the protocol's Mat4), e.g. Blender's
`[tuple(r) for r in obj.matrix_world]`.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..wire import cameras
from .settings import RingSettings, SettingsError


@dataclass(frozen=True)
class CameraSpec:
    """One Blender camera object's numbers (what the bpy layer reads from it)."""

    name: str
    matrix_world: tuple            # 4x4, Blender units, may carry object scale
    lens_mm: float
    sensor_width_mm: float
    sensor_height_mm: float
    sensor_fit: str                # "AUTO" | "HORIZONTAL" | "VERTICAL"
    res_x: int                     # render resolution with the percentage applied
    res_y: int
    shift_x: float = 0.0
    shift_y: float = 0.0
    kind: str = "PERSP"            # Blender camera type; only PERSP is supported


def _rigid_in_metres(m, unit_scale: float) -> tuple:
    """A camera's matrix_world without object scale, translation in metres (the wire's
    camera-to-world must be rigid)."""
    r = cameras.remove_scale(m)
    return tuple(tuple(r[i][:3]) + (r[i][3] * unit_scale,) for i in range(3)) + (r[3],)


def head_to_world_at(center_bu, unit_scale: float = 1.0) -> tuple:
    """The default head placement: head->Blender rotation, head origin at the rig centre."""
    return cameras.default_head_to_world(tuple(float(c) * unit_scale for c in center_bu))


def rig_from_camera_specs(specs, center_bu, unit_scale: float = 1.0):
    """A wire Rig from the user's cameras, the head placed at `center_bu` (Blender units)."""
    specs = list(specs)
    if not specs:
        raise SettingsError("the camera collection holds no cameras; add a camera or use "
                            "the default ring")
    cams = []
    for s in specs:
        if s.kind != "PERSP":
            raise SettingsError(f"camera {s.name!r} is {s.kind}; only perspective cameras "
                                "can be sent to the backend")
        intr = cameras.blender_camera_intrinsics(
            s.lens_mm, s.sensor_width_mm, s.sensor_height_mm, s.sensor_fit,
            int(s.res_x), int(s.res_y), s.shift_x, s.shift_y)
        cams.append(cameras.Camera(s.name, _rigid_in_metres(s.matrix_world, unit_scale), intr))
    return cameras.Rig(tuple(cams), head_to_world_at(center_bu, unit_scale))


def default_ring(center_bu, ring: RingSettings = RingSettings(), unit_scale: float = 1.0):
    """The default ring of cameras around `center_bu` (e.g. the 3D cursor), as a wire Rig."""
    center_m = tuple(float(c) * unit_scale for c in center_bu)
    return cameras.ring_rig(n_cameras=int(ring.n_cameras), elevation_deg=ring.elevation_deg,
                            radius_m=ring.radius_m, resolution=int(ring.resolution),
                            fov_deg=ring.fov_deg, center=center_m)


def camera_object_numbers(camera, unit_scale: float = 1.0) -> dict:
    """What the bpy layer sets on a new camera object for a wire Camera: matrix_world in
    Blender units, plus lens/sensor/shift/resolution from the protocol's conversion."""
    m = [list(r) for r in camera.cam_to_world]
    for i in range(3):
        m[i][3] /= unit_scale
    d = dict(cameras.intrinsics_to_blender(camera.intrinsics))
    d["matrix_world"] = tuple(tuple(r) for r in m)
    return d


def rig_centre(specs, unit_scale: float = 1.0):
    """The point (Blender units) nearest to every camera's optical axis, in least squares:
    where a ring of cameras looks. Falls back to the cameras' centroid when the axes are
    (nearly) parallel, e.g. a single camera or a flat row of cameras looking the same way."""
    a = [[0.0] * 3 for _ in range(3)]
    b = [0.0] * 3
    centroid = [0.0] * 3
    specs = list(specs)
    if not specs:
        raise SettingsError("no cameras to find a rig centre from")
    for s in specs:
        m = _rigid_in_metres(s.matrix_world, 1.0)
        p = [m[i][3] for i in range(3)]
        d = [-m[i][2] for i in range(3)]          # Blender cameras look down their -Z
        for i in range(3):
            centroid[i] += p[i] / len(specs)
            for j in range(3):
                proj = (1.0 if i == j else 0.0) - d[i] * d[j]
                a[i][j] += proj
                b[i] += proj * p[j]
    x = _solve3(a, b)
    return tuple(centroid) if x is None else tuple(x)


def _solve3(a, b):
    det = _det3(a)
    if abs(det) < 1e-6 * max(1.0, max(abs(v) for r in a for v in r)) ** 3:
        return None
    out = []
    for k in range(3):
        m = [[b[i] if j == k else a[i][j] for j in range(3)] for i in range(3)]
        out.append(_det3(m) / det)
    return out


def _det3(m):
    return (m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]))


def head_placement_matrix(head_to_world, unit_scale: float = 1.0) -> tuple:
    """Matrix (Blender units) for the empty that parents an imported GLB.

    Blender's glTF importer already applies the head->Blender rotation H, so a head point p
    lands at H p (numerically metres). The rig wants head_to_world p = R p + t (metres), i.e.
    in Blender units (R H^T (H p) + t) / unit_scale: the parent is [R H^T / s | t / s]."""
    h = cameras.HEAD_TO_BLENDER
    r = [[float(head_to_world[i][j]) for j in range(3)] for i in range(3)]
    out = []
    for i in range(3):
        row = [sum(r[i][k] * h[j][k] for k in range(3)) / unit_scale for j in range(3)]
        row.append(float(head_to_world[i][3]) / unit_scale)
        out.append(tuple(row))
    out.append((0.0, 0.0, 0.0, 1.0))
    return tuple(out)
