"""CPU renderer: ray casting with embree (embreex) through every pixel centre.

Output layouts (one `RenderedView` per camera, rows top-to-bottom):
  rgba     (H, W, 4) uint8, straight (not premultiplied) alpha = mask * 255
  depth    (H, W) float32 metres along the optical axis (camera z); +inf where empty
  normals  (H, W, 3) float32 unit normals in the HEAD FRAME (the mesh's outward normal,
           smooth-interpolated, not flipped toward the camera); 0 where empty
  mask     (H, W) float32 in [0, 1] (coverage; fractional only with supersampling)
  face_id  (H, W) int32 triangle index into the concatenation of all meshes' faces; -1 empty
Shading: "unlit" gives the albedo; "lambert" multiplies it by ambient + sum of fixed
head-frame directional lights (view-independent, so multi-view photo-consistency holds).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from embreex import rtcore_scene
from embreex.mesh_construction import TriangleMesh

from ..camera import PinholeCamera
from .camera import as_cameras
from .mesh import TexturedMesh

MISS_T = 1e30


@dataclass
class RenderConfig:
    shading: str = "lambert"                       # "unlit" | "lambert"
    ambient: float = 0.45
    lights: tuple = ((0.3, 0.5, 0.8, 0.45), (-0.6, 0.2, 0.3, 0.25))   # (dx, dy, dz, power)
    background: tuple = (0, 0, 0, 0)               # RGBA uint8 where nothing is hit
    supersample: int = 1                           # k x k rays per pixel (antialiased masks)

    def __post_init__(self):
        if self.shading not in ("unlit", "lambert"):
            raise ValueError(f"shading must be 'unlit' or 'lambert', got {self.shading!r}")
        if int(self.supersample) < 1:
            raise ValueError("supersample must be >= 1")


@dataclass
class RenderedView:
    rgba: np.ndarray
    depth: np.ndarray
    normals: np.ndarray
    mask: np.ndarray
    face_id: np.ndarray
    camera: PinholeCamera = field(repr=False)


@dataclass
class Hits:
    t: np.ndarray          # (M,) distance along the ray, MISS_T where missed
    face: np.ndarray       # (M,) global triangle index, -1 where missed
    bary: np.ndarray       # (M, 3) barycentrics of (v0, v1, v2)

    @property
    def hit(self) -> np.ndarray:
        return self.face >= 0


class RayCaster:
    """One embree scene over one or more meshes; global triangle ids run over the
    concatenation of the meshes' faces in order."""

    def __init__(self, meshes: TexturedMesh | Sequence[TexturedMesh]):
        self.meshes = [meshes] if isinstance(meshes, TexturedMesh) else list(meshes)
        if not self.meshes:
            raise ValueError("nothing to render: no meshes")
        self.scene = rtcore_scene.EmbreeScene()
        self.offsets = np.cumsum([0] + [len(m.faces) for m in self.meshes])
        for m in self.meshes:
            TriangleMesh(scene=self.scene, vertices=m.vertices.astype(np.float32),
                         indices=m.faces.astype(np.int32))
        self._normals = [m.vertex_normals() for m in self.meshes]

    def cast(self, origins: np.ndarray, directions: np.ndarray) -> Hits:
        o = np.ascontiguousarray(origins, np.float32)
        d = np.ascontiguousarray(directions, np.float32)
        r = self.scene.run(o, d, output=1)
        prim, geom = r["primID"].astype(np.int64), r["geomID"].astype(np.int64)
        hit = (prim >= 0) & (geom >= 0)
        face = np.where(hit, self.offsets[np.clip(geom, 0, len(self.meshes) - 1)] + prim, -1)
        u, v = r["u"].astype(np.float64), r["v"].astype(np.float64)
        bary = np.stack([1 - u - v, u, v], axis=1)
        t = np.where(hit, r["tfar"].astype(np.float64), MISS_T)
        return Hits(t, face, bary)

    def split(self, face: np.ndarray):
        """Global triangle ids (M,) -> (mesh index (M,), local face id (M,))."""
        g = np.searchsorted(self.offsets, face, side="right") - 1
        return g, face - self.offsets[g]

    def shade(self, hits: Hits, config: RenderConfig):
        """Albedo-shaded colours (M, 3) and smooth normals (M, 3) for hit rays."""
        m = len(hits.face)
        rgb, nrm = np.zeros((m, 3)), np.zeros((m, 3))
        g, local = self.split(np.where(hits.hit, hits.face, 0))
        for k, mesh in enumerate(self.meshes):
            sel = hits.hit & (g == k)
            if not sel.any():
                continue
            f, b = local[sel], hits.bary[sel]
            rgb[sel] = mesh.colors_at(f, b)
            n = np.einsum("mk,mkc->mc", b, self._normals[k][mesh.faces[f]])
            nrm[sel] = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-20)
        if config.shading == "lambert":
            light = np.full(m, config.ambient)
            for lx, ly, lz, power in config.lights:
                ld = np.array([lx, ly, lz]) / np.linalg.norm([lx, ly, lz])
                light += power * np.clip(nrm @ ld, 0.0, None)
            rgb = rgb * light[:, None]
        return np.clip(rgb, 0.0, 1.0), nrm

    def render(self, camera: PinholeCamera, config: RenderConfig | None = None) -> RenderedView:
        config = config or RenderConfig()
        s = int(config.supersample)
        cam = camera.scaled(s) if s > 1 else camera
        o, d = cam.pixel_rays()
        hits = self.cast(o, d)
        rgb, nrm = self.shade(hits, config)
        hit = hits.hit
        depth = np.where(hit, hits.t * (d @ cam.forward), np.inf)
        h, w = cam.height, cam.width
        bg = np.asarray(config.background, np.float64) / 255.0
        rgba = np.empty((h * w, 4))
        rgba[:, :3] = np.where(hit[:, None], rgb, bg[:3])
        rgba[:, 3] = np.where(hit, 1.0, bg[3])
        mask = hit.astype(np.float64)
        face = hits.face
        if s > 1:
            H, W = camera.height, camera.width

            def pool(a):
                return a.reshape(H, s, W, s, -1).mean(axis=(1, 3)).reshape(H * W, -1)

            cover = pool(mask[:, None])[:, 0]
            # colours: average over covered subsamples (straight alpha), background elsewhere
            col = pool(rgba[:, :3] * mask[:, None]) / np.maximum(cover, 1e-9)[:, None]
            rgba = np.concatenate([np.where(cover[:, None] > 0, col, bg[:3]),
                                   (cover + (1 - cover) * bg[3])[:, None]], axis=1)
            n = pool(nrm * mask[:, None])
            nrm = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-20)
            dd = np.where(hit, depth, 0.0)
            depth = np.where(cover > 0, pool(dd[:, None])[:, 0] / np.maximum(cover, 1e-9),
                             np.inf)
            centre = face.reshape(H, s, W, s)[:, s // 2, :, s // 2].reshape(-1)
            face, mask, h, w = centre, cover, H, W
        return RenderedView(
            rgba=np.round(np.clip(rgba, 0, 1) * 255).astype(np.uint8).reshape(h, w, 4),
            depth=depth.astype(np.float32).reshape(h, w),
            normals=(nrm * (mask > 0)[:, None]).astype(np.float32).reshape(h, w, 3),
            mask=mask.astype(np.float32).reshape(h, w),
            face_id=face.astype(np.int32).reshape(h, w),
            camera=camera)


def render_views(meshes: TexturedMesh | Sequence[TexturedMesh], cameras,
                 config: RenderConfig | None = None) -> list[RenderedView]:
    """Render `meshes` (one or several, occluding each other) from every camera (PinholeCamera
    or (w2c, intrinsics) pairs)."""
    caster = RayCaster(meshes)
    return [caster.render(c, config) for c in as_cameras(cameras)]
