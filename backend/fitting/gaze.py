"""Gaze from the photo's irises: where each fitted eyeball looks, both eyes agreeing, and the
ARKit eyeLook* weights that turn the exported eyeballs that way.

Frames: the head frame (metres, +Y up, +Z out of the face, +X the subject's left); cameras are
OpenCV world(head frame)-to-camera 4x4 with pixel intrinsics; landmarks are mediapipe's 478
photo pixels (corner origin). Angles are degrees: yaw positive toward the subject's left (+X),
pitch positive up (+Y).

Method: one shared gaze for both eyes (eyes that disagree are landmark noise, not a squint)
is fitted to mediapipe's ten iris landmarks through the same forward model the GLB uses: the
eyeLook* weights of that gaze turn the eyeballs (as the exporter's morph targets do, linear
blends included), the iris landmarks' points on the turned eyeballs are projected by the
photo's fitted camera, and the gaze with the smallest reprojection error wins, each eye
weighted by how squarely the camera sees it. Gaze is clipped to the targets' range.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Rotation at weight 1 of the eyeLook targets (the exporter writes them with these angles).
EYE_LOOK_DEG = {"Up": 25.0, "Down": 30.0, "In": 30.0, "Out": 30.0}


@dataclass
class Gaze:
    yaw_deg: float                     # shared by both eyes (+ toward the subject's left)
    pitch_deg: float                   # (+ up)
    per_eye: dict                      # side -> (yaw, pitch) measured, or None
    weights: dict                      # ARKit eyeLook* name -> weight in [0, 1]

    def info(self) -> dict:
        return {"yaw_deg": round(self.yaw_deg, 2), "pitch_deg": round(self.pitch_deg, 2),
                "per_eye": {k: (None if v is None else [round(v[0], 2), round(v[1], 2)])
                            for k, v in self.per_eye.items()}}


def fit_gaze(observed: np.ndarray, rest_points: np.ndarray, offsets: dict, sides: np.ndarray,
             camera, facing: dict | None = None,
             max_deg: tuple[float, float] = (30.0, 25.0)) -> Gaze:
    """The one gaze (yaw, pitch) whose eyeLook* weights, applied as the GLB applies them, put
    the iris points where the photo shows them.

    observed (L, 2) iris landmarks in photo pixels; rest_points (L, 3) the same landmarks on
    the head without any eyeLook (head frame); offsets {eyeLook name: (L, 3)} how each target
    at weight 1 moves them; sides (L,) "Left"/"Right"; facing {side: weight} how squarely the
    camera sees each eye (a turned-away eye's landmarks count less); camera the photo's
    `gen3dface.backend.camera.PinholeCamera`. A coarse grid over the
    targets' range, then a fine one around the best: the cost is piecewise smooth, small and
    cheap (a few milliseconds, vectorised), and a grid cannot stop in a local minimum of the
    coarse scale."""
    obs = np.asarray(observed, np.float64)
    rest = np.asarray(rest_points, np.float64)
    r, t = camera.w2c[:3, :3], camera.w2c[:3, 3]
    k = camera
    facing = facing or {}
    row_w = np.array([facing.get(s, 1.0) for s in sides], np.float64)

    names = list(offsets)
    d = np.stack([offsets[n] for n in names]) if names else np.zeros((0,) + rest.shape)

    def costs(yaw, pitch, rows):
        """Reprojection cost of every (yaw, pitch) pair of the grid at once."""
        w = _weights_grid(yaw, pitch, names)                          # (G, T)
        p = rest[None] + np.einsum("gt,tlc->glc", w, d)               # (G, L, 3)
        q = p @ r.T + t
        uv = np.stack([k.fx * q[..., 0] / q[..., 2] + k.cx,
                       k.fy * q[..., 1] / q[..., 2] + k.cy], -1)
        e = ((uv - obs) ** 2).sum(-1)                                 # (G, L)
        return (e[:, rows] * row_w[rows]).sum(1)

    def search(rows, fine=True):
        ys, ps = np.meshgrid(np.arange(-max_deg[0], max_deg[0] + 1e-9, 2.0),
                             np.arange(-max_deg[1], max_deg[1] + 1e-9, 2.0))
        ys, ps = ys.ravel(), ps.ravel()
        i = int(np.argmin(costs(ys, ps, rows)))
        y0, p0 = ys[i], ps[i]
        if fine:
            ys, ps = np.meshgrid(np.arange(y0 - 2.0, y0 + 2.0 + 1e-9, 0.25),
                                 np.arange(p0 - 2.0, p0 + 2.0 + 1e-9, 0.25))
            ys = np.clip(ys.ravel(), -max_deg[0], max_deg[0])
            ps = np.clip(ps.ravel(), -max_deg[1], max_deg[1])
            i = int(np.argmin(costs(ys, ps, rows)))
            y0, p0 = ys[i], ps[i]
        return float(y0), float(p0)

    both = np.ones(len(obs), bool)
    yaw, pitch = search(both)
    per_eye = {}
    for side in ("Right", "Left"):
        rows = np.asarray(sides) == side
        per_eye[side] = search(rows, fine=False) if rows.any() else None
    return Gaze(yaw, pitch, per_eye, eye_look_weights(yaw, pitch))


def _rotation(axis: str, deg: float) -> np.ndarray:
    a = np.radians(deg)
    c, s = np.cos(a), np.sin(a)
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def eye_look_rotation(name: str, side: str, deg: dict) -> np.ndarray | None:
    """Rotation (head frame) of the `side` eyeball for ARKit target `name`, or None when the
    target does not rotate that eye. Up: gaze toward +Y; Out: away from the nose (+X for
    the subject's left eye); In: toward the nose."""
    if not (name.startswith("eyeLook") and name.endswith(side)):
        return None
    direction = name[len("eyeLook"):-len(side)]
    if direction == "Up":
        return _rotation("x", -deg["Up"])
    if direction == "Down":
        return _rotation("x", deg["Down"])
    toward_plus_x = (direction == "Out") == (side == "Left")
    return _rotation("y", deg[direction] if toward_plus_x else -deg[direction])


def eye_turn_offset(points: np.ndarray, centre: np.ndarray, rot: np.ndarray) -> np.ndarray:
    """(n, 3): the morph-target offset that turns eyeball points by `rot` about `centre`."""
    return (points - centre) @ rot.T + centre - points


def eye_rotation_offsets(model, base_vertices: np.ndarray, deg: dict | None = None) -> dict:
    """{expression index: (eyeball vertex ids, (n, 3) offsets)}: how each eyeLook* target
    turns its eyeball about the eyeball's fitted centre (on top of the model's own basis), as
    the exporter writes it."""
    from ..texture.eyes import eyeball

    deg = deg or EYE_LOOK_DEG
    base = np.asarray(base_vertices, np.float64)
    out = {}
    for side in ("Left", "Right"):
        eye = eyeball(base, model, side)
        if eye is None:
            continue
        ids = model.vertices_of_groups(*[g for g in model.group_names
                                         if g.startswith(("M_Sclera", "M_Iris"))
                                         and g.endswith(side)])
        pos = base[ids]
        for e, name in enumerate(model.expression_names):
            rot = eye_look_rotation(name, side, deg)
            if rot is not None:
                out[e] = (ids, eye_turn_offset(pos, eye.centre, rot))
    return out


def _weights_grid(yaw: np.ndarray, pitch: np.ndarray, names: list, deg: dict = EYE_LOOK_DEG):
    """The eyeLook* weights `names` of G gazes at once: (G, len(names)). 'Out' is away from the
    nose: toward +X for the subject's left eye, -X for the right."""
    plus, minus = np.maximum(yaw, 0.0), np.maximum(-yaw, 0.0)
    up, down = np.maximum(pitch, 0.0), np.maximum(-pitch, 0.0)
    cols = {}
    for side in ("Left", "Right"):
        out_d, in_d = (plus, minus) if side == "Left" else (minus, plus)
        cols[f"eyeLookOut{side}"] = np.minimum(out_d / deg["Out"], 1.0)
        cols[f"eyeLookIn{side}"] = np.minimum(in_d / deg["In"], 1.0)
        cols[f"eyeLookUp{side}"] = np.minimum(up / deg["Up"], 1.0)
        cols[f"eyeLookDown{side}"] = np.minimum(down / deg["Down"], 1.0)
    zero = np.zeros_like(np.asarray(yaw, np.float64))
    return np.stack([cols.get(n, zero) for n in names], -1) if names else zero[:, None][:, :0]


def eye_look_weights(yaw_deg: float, pitch_deg: float, deg: dict = EYE_LOOK_DEG) -> dict:
    """ARKit eyeLook{Up,Down,In,Out}{Left,Right} weights for a shared gaze. 'Out' is away from
    the nose: toward +X for the subject's left eye, -X for the right."""
    names = [f"eyeLook{d}{s}" for s in ("Left", "Right") for d in ("Out", "In", "Up", "Down")]
    w = _weights_grid(np.array([float(yaw_deg)]), np.array([float(pitch_deg)]), names, deg)[0]
    return {n: float(x) for n, x in zip(names, w)}
