"""Render GLB heads the way an artist sees them in Blender, many heads in one process.

usage: .venv/bin/python scripts/render_heads_bpy.py JOBS.json

JOBS.json: {"size": 320, "samples": 16, "yaws": [0, 30, 60, 90, 180], "threads": 1,
            "jobs": [{"glb": "A.glb", "sidecar": "A.sidecar.json", "out_prefix": "dir/A"}, ...]}
A job may name its own views: "photo": false leaves the photo view out, "yaws": [...] replaces
the ring's yaws (the benchmark renders only the views its cache lacks).

For every job: a fresh factory scene, the GLB imported with Blender's own glTF importer,
Cycles on the CPU (`samples` samples, everything else at Blender's factory defaults), a flat
grey world (colour 0.8, strength 1), transparent film. Views:
- `OUT_photo.png`: the photo's camera from the sidecar (`camera.intrinsics` {width, height, fx,
  cx, cy} in photo pixels and `camera.blender_cam_to_world`, a Blender camera, looking down -Z,
  +Y up, in Blender world coordinates), the long side scaled to `size` pixels;
- `OUT_yawNNN.png`: a yaw ring at eye level around the bounding-box centre of the head mesh
  (the mesh with the most vertices), 0.9 m away, 30 degree field of view, `size` square; yaw
  turns the camera towards the subject's left (the head faces -Y after the glTF import).
PNGs are RGBA, transparent where no surface is seen. One JSON line per job goes to stdout
(`{"job": i, "ok": ..., "seconds": ..., "error": ...}`); a failing job does not stop the rest.
This is the same measurement as the shared reference renderer (../shared/tools/judge), written
for the project so that one Blender start serves a whole list of heads.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
import traceback

import bpy
import numpy as np
from mathutils import Matrix, Vector

RING_DISTANCE_M = 0.9
RING_FOV_DEG = 30.0


def _setup_scene(samples: int, threads: int):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    if threads > 0:
        scene.render.threads_mode = "FIXED"
        scene.render.threads = threads
    scene.render.film_transparent = True
    scene.render.resolution_percentage = 100
    world = bpy.data.worlds.new("w")
    scene.world = world
    world.use_nodes = True
    bg = world.node_tree.nodes["Background"]
    bg.inputs[1].default_value = 1.0                     # flat grey ambient
    bg.inputs[0].default_value = (0.8, 0.8, 0.8, 1.0)
    return scene


def _set_intrinsics(scene, cam_data, w, h, fx, cx=None, cy=None):
    """A pinhole of pixel focal fx (the sidecar's fy is taken equal), principal point (cx, cy)
    in pixels, rows down; resolution w x h."""
    scene.render.resolution_x, scene.render.resolution_y = int(w), int(h)
    cam_data.sensor_fit = "HORIZONTAL"
    cam_data.sensor_width = 36.0
    cam_data.lens = fx / w * 36.0
    cx = w / 2 if cx is None else cx
    cy = h / 2 if cy is None else cy
    cam_data.shift_x = -(cx - w / 2) / w
    cam_data.shift_y = (cy - h / 2) / w


def _render(scene, path):
    """Render to a temporary file, then move it into place: a reader never sees half a PNG."""
    tmp = f"{path[:-4]}.tmp{os.getpid()}.png"
    scene.render.filepath = tmp
    bpy.ops.render.render(write_still=True)
    os.replace(tmp, path)


def render_job(job: dict, size: int, samples: int, yaws, threads: int) -> list[str]:
    scene = _setup_scene(samples, threads)
    bpy.ops.import_scene.gltf(filepath=job["glb"])
    meshes = [o for o in scene.objects if o.type == "MESH"]
    if not meshes:
        raise RuntimeError(f"no mesh in {job['glb']}")
    with open(job["sidecar"]) as f:
        side = json.load(f)
    cam_data = bpy.data.cameras.new("cam")
    cam = bpy.data.objects.new("cam", cam_data)
    scene.collection.objects.link(cam)
    scene.camera = cam
    out = job["out_prefix"]
    written = []

    # 1. the photo's own camera, the long side scaled to `size`
    if job.get("photo", True):
        intr = side["camera"]["intrinsics"]
        s = size / max(intr["width"], intr["height"])
        _set_intrinsics(scene, cam_data, round(intr["width"] * s), round(intr["height"] * s),
                        intr["fx"] * s, intr["cx"] * s, intr["cy"] * s)
        cam.matrix_world = Matrix(side["camera"]["blender_cam_to_world"])
        _render(scene, out + "_photo.png")
        written.append(out + "_photo.png")

    # 2. the yaw ring around the head mesh's bounding-box centre, at its height
    head = max(meshes, key=lambda o: len(o.data.vertices))
    hp = np.array([head.matrix_world @ v.co for v in head.data.vertices])
    centre = Vector(((hp.min(0) + hp.max(0)) / 2).tolist())
    fx = size / 2 / math.tan(math.radians(RING_FOV_DEG) / 2)
    _set_intrinsics(scene, cam_data, size, size, fx)
    for yaw in job.get("yaws", yaws):
        t = math.radians(float(yaw))
        eye = centre + Vector((RING_DISTANCE_M * math.sin(t), -RING_DISTANCE_M * math.cos(t), 0.0))
        d = (centre - eye).normalized()
        cam.matrix_world = Matrix.Translation(eye) @ d.to_track_quat("-Z", "Y").to_matrix().to_4x4()
        path = f"{out}_yaw{int(round(float(yaw))):03d}.png"
        _render(scene, path)
        written.append(path)
    return written


def main(argv):
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        spec = json.load(f)
    size = int(spec.get("size", 320))
    samples = int(spec.get("samples", 16))
    yaws = spec.get("yaws", [0, 30, 60, 90, 180])
    threads = int(spec.get("threads", 0))
    failed = 0
    for i, job in enumerate(spec["jobs"]):
        t0 = time.perf_counter()
        rec = {"job": i, "out_prefix": job["out_prefix"]}
        try:
            rec["written"] = render_job(job, size, samples, yaws, threads)
            rec["ok"] = True
        except Exception as e:                    # report and go on with the next head
            failed += 1
            rec.update(ok=False, error=f"{type(e).__name__}: {e}",
                       traceback=traceback.format_exc(limit=3))
        rec["seconds"] = round(time.perf_counter() - t0, 3)
        print("RENDER_JOB " + json.dumps(rec), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
