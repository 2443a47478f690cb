"""The last-resort head model: mediapipe's 468-point face mesh, built from one photo's own
landmarks when no ICT-FaceKit or FLAME model is installed.

It is the FRONT OF THE FACE ONLY (no back of the head, no eyes or teeth) and has NO
blendshapes; `extras["limitations"]` says so and the pipeline copies that into the result's
metadata. Its triangles come from mediapipe's FACEMESH_TESSELATION edge list (the 3-cliques
of that graph, minus the few that are not faces); its UVs are the photo itself, so the
texture is a crop of the photo.

Frame: metres, head frame (+Y up, +Z toward the camera/out of the face, +X the subject's
left = image right), axis-aligned with the photo's camera (the face's own rotation is kept
in the mesh, not in the camera). Scale: the outer eye corners are set 9 cm apart.
"""
from __future__ import annotations

import collections
import functools
import itertools
from dataclasses import dataclass

import numpy as np

from ..camera import PinholeCamera
from .model import HeadModel

N_MESH = 468
OUTER_EYE_CORNERS = (33, 263)
OUTER_EYE_DISTANCE_M = 0.09
LIMITATIONS = ("front of the face only (mediapipe face mesh); no back of the head, eyes or "
               "teeth; no blendshapes")


@functools.lru_cache(maxsize=1)
def face_mesh_triangles() -> np.ndarray:
    """(F, 3) int32 triangles of mediapipe's face mesh (unoriented)."""
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_TESSELATION

    edges = {tuple(sorted(e)) for e in FACEMESH_TESSELATION}
    adj = collections.defaultdict(set)
    for a, b in edges:
        adj[a].add(b)
        adj[b].add(a)
    tris = {tuple(sorted((a, b, c))) for a, b in edges for c in adj[a] & adj[b]}
    count = collections.Counter(e for t in tris for e in itertools.combinations(t, 2))
    # A 3-clique that is not a face shares edges that already border two faces.
    tris = [t for t in tris
            if sum(count[e] > 2 for e in itertools.combinations(t, 2)) < 2]
    return np.array(sorted(tris), np.int32)


@dataclass
class PhotoFaceMesh:
    model: HeadModel
    camera: PinholeCamera     # the photo's: OpenCV world(head frame)-to-camera, photo pixels
    uv_box: tuple             # (x0, y0, side) photo pixels of the square the UVs span


def face_mesh_model(landmarks: np.ndarray, landmarks_z: np.ndarray,
                    image_size: tuple[int, int], fov_deg: float = 30.0,
                    margin: float = 0.08) -> PhotoFaceMesh:
    """A `HeadModel` from one photo's landmarks ((>=468, 2) pixels, (>=468,) relative depth in
    pixels, mediapipe's convention: smaller z = closer) plus the camera that sees it."""
    lm = np.asarray(landmarks, np.float64)[:N_MESH]
    z = np.asarray(landmarks_z, np.float64)[:N_MESH]
    if lm.shape != (N_MESH, 2) or z.shape != (N_MESH,):
        raise ValueError("face_mesh_model needs 468+ landmarks (u, v) and depths")
    w, h = int(image_size[0]), int(image_size[1])
    p = np.c_[lm, z]
    eye_px = np.linalg.norm(p[OUTER_EYE_CORNERS[0]] - p[OUTER_EYE_CORNERS[1]])
    s = OUTER_EYE_DISTANCE_M / max(eye_px, 1e-6)
    u0, v0 = lm.mean(0)
    z0 = z.mean()
    verts = np.c_[(lm[:, 0] - u0) * s, -(lm[:, 1] - v0) * s, -(z - z0) * s].astype(np.float32)
    tris = face_mesh_triangles().copy()
    # Orient every triangle outward: away from a point well behind the face.
    behind = np.array([0.0, 0.0, -0.15])
    a, b, c = verts[tris[:, 0]], verts[tris[:, 1]], verts[tris[:, 2]]
    n = np.cross(b - a, c - a)
    flip = np.einsum("ij,ij->i", (a + b + c) / 3 - behind, n) < 0
    tris[flip] = tris[flip][:, [0, 2, 1]]
    # UVs: the photo square around the face (OBJ/GL, v up).
    lo, hi = lm.min(0), lm.max(0)
    side = float((hi - lo).max() * (1 + 2 * margin))
    x0, y0 = (lo + hi) / 2 - side / 2
    uvs = np.c_[(lm[:, 0] - x0) / side, 1.0 - (lm[:, 1] - y0) / side].astype(np.float32)
    polys = np.c_[tris, np.full(len(tris), -1)].astype(np.int32)
    model = HeadModel(
        name="mediapipe_face", vertices=verts, polygons=polys, uvs=uvs, polygon_uvs=polys.copy(),
        polygon_groups=np.zeros(len(polys), np.int16), group_names=["M_Face"],
        identity_basis=np.zeros((0, N_MESH, 3), np.float32),
        expression_basis=np.zeros((0, N_MESH, 3), np.float32), expression_names=[],
        source="mediapipe face mesh of the photo",
        extras={"limitations": LIMITATIONS, "fallback": True})
    f = 0.5 * w / np.tan(np.radians(fov_deg) / 2)
    d = f * s
    w2c = np.array([[1.0, 0, 0, (u0 - w / 2) * s], [0, -1.0, 0, (v0 - h / 2) * s],
                    [0, 0, -1.0, d], [0, 0, 0, 1.0]])
    camera = PinholeCamera(w2c, float(f), float(f), w / 2, h / 2, w, h)
    return PhotoFaceMesh(model, camera, (float(x0), float(y0), side))
