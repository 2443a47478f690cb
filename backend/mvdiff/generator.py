"""The learned generator the pipeline registers: photo + mask + estimated camera + head mesh +
target cameras -> RGBA views of the head with their cameras, ready for reconstruction.

Array layouts (backend conventions):
    photo_rgb   HxWx3 uint8 RGB, rows top-to-bottom
    mask        HxW float32 in [0, 1] (1 = head/foreground)
    rgba        RxRx4 uint8 (R = the model's view resolution, 256 for the full configs)
    w2c         4x4 float64, OpenCV world-to-camera, world = head frame (metres)
    intrinsics  gen3dface.protocol.cameras.Intrinsics, pixels of the image they describe
    head mesh   vertices (N, 3) float head frame metres; faces (F, 3) or (F, 4) int, -1 padded

Model views are square: each target camera keeps its pose, and its image is centre-cropped to
a square and resized to R x R; the returned intrinsics describe exactly that image. The input
photo is cropped to a square around the mask (intrinsics adjusted the same way) and
composited on white, the background the model is trained with. Alpha comes from thresholding
the generated white background.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..contracts import CancelToken, NullSink, PipelineError, ProgressSink
from .model import MultiViewDiffusion
from .sampling import SamplerConfig, sample_views

STAGE = "generate"


@dataclass(frozen=True)
class TargetCamera:
    """A camera to generate: OpenCV w2c in the head frame + the intrinsics of its image."""
    name: str
    w2c: np.ndarray
    intrinsics: object            # gen3dface.protocol.cameras.Intrinsics


@dataclass
class GeneratedView:
    name: str
    rgba: np.ndarray              # R x R x 4 uint8
    w2c: np.ndarray               # 4x4 OpenCV w2c, head frame
    intrinsics: object            # Intrinsics of the R x R image


def targets_from_rig(rig) -> list[TargetCamera]:
    """Wire Rig -> target cameras in the model's convention (via the one conversion module)."""
    from gen3dface.protocol.cameras import opencv_w2c_in_head

    return [TargetCamera(cam.name, np.asarray(opencv_w2c_in_head(cam, rig), np.float64),
                         cam.intrinsics) for cam in rig.cameras]


def square_view_intrinsics(intr, resolution: int):
    """Intrinsics of `intr`'s image centre-cropped to a square and resized to resolution^2."""
    from gen3dface.protocol.cameras import Intrinsics

    side = min(intr.width, intr.height)
    x0, y0 = (intr.width - side) / 2.0, (intr.height - side) / 2.0
    s = resolution / side
    return Intrinsics(resolution, resolution, intr.fx * s, intr.fy * s, (intr.cx - x0) * s,
                      (intr.cy - y0) * s)


def crop_input_view(photo_rgb: np.ndarray, mask: np.ndarray, intr, resolution: int,
                    margin: float = 0.25):
    """Square crop around the mask (padded white outside the photo), composited on white and
    resized -> (image (3, R, R) float in [0, 1], Intrinsics of that image)."""
    from gen3dface.protocol.cameras import Intrinsics

    if photo_rgb.ndim != 3 or photo_rgb.shape[2] != 3 or photo_rgb.dtype != np.uint8:
        raise PipelineError("BAD_IMAGE", "the photo must be an HxWx3 uint8 RGB array")
    H, W = photo_rgb.shape[:2]
    if mask is None:
        mask = np.ones((H, W), np.float32)
    if mask.shape != (H, W):
        raise PipelineError("BAD_REQUEST", f"mask {mask.shape} does not match photo {(H, W)}")
    if (intr.width, intr.height) != (W, H):
        raise PipelineError("BAD_REQUEST", f"photo intrinsics are for {intr.width}x{intr.height}, "
                            f"the photo is {W}x{H}")
    ys, xs = np.nonzero(mask > 0.5)
    if len(xs) == 0:
        x0, x1, y0, y1 = 0, W, 0, H
    else:
        x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    side = int(math.ceil(max(x1 - x0, y1 - y0) * (1 + margin)))
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    left, top = int(round(cx - side / 2.0)), int(round(cy - side / 2.0))
    m = np.clip(mask.astype(np.float32), 0, 1)[..., None]
    comp = photo_rgb.astype(np.float32) / 255.0 * m + (1.0 - m)
    canvas = np.ones((side, side, 3), np.float32)
    sx0, sy0 = max(left, 0), max(top, 0)
    sx1, sy1 = min(left + side, W), min(top + side, H)
    canvas[sy0 - top:sy1 - top, sx0 - left:sx1 - left] = comp[sy0:sy1, sx0:sx1]
    img = torch.from_numpy(canvas).permute(2, 0, 1)[None]
    img = F.interpolate(img, size=(resolution, resolution), mode="bilinear",
                        align_corners=False, antialias=True)[0].clamp(0, 1)
    s = resolution / side
    k = Intrinsics(resolution, resolution, intr.fx * s, intr.fy * s, (intr.cx - left) * s,
                   (intr.cy - top) * s)
    return img, k


def alpha_from_background(rgb: np.ndarray, threshold: float = 0.03,
                          softness: float = 0.05) -> np.ndarray:
    """HxWx3 float in [0, 1] on white -> HxW float alpha: 0 where the pixel is white within
    `threshold`, ramping to 1 over `softness`."""
    d = (1.0 - rgb).max(axis=-1)
    return np.clip((d - threshold) / softness, 0.0, 1.0)


def triangulate(faces: np.ndarray) -> np.ndarray:
    """(F, 3) or (F, 4) with -1 padding -> (T, 3) triangles (fan split of quads)."""
    faces = np.asarray(faces)
    if faces.ndim != 2 or faces.shape[1] not in (3, 4):
        raise PipelineError("BAD_REQUEST", "head faces must be (F, 3) or (F, 4)")
    if faces.shape[1] == 3:
        return faces.astype(np.int64)
    tri = faces[:, [0, 1, 2]]
    quads = faces[faces[:, 3] >= 0][:, [0, 2, 3]]
    return np.concatenate([tri, quads]).astype(np.int64)


class MultiViewGenerator:
    """Inference object around a `MultiViewDiffusion` (see module doc for conventions)."""

    def __init__(self, model: MultiViewDiffusion, device: str = "cpu",
                 dtype: torch.dtype | None = None, compile: bool = False):
        self.device = torch.device(device)
        if dtype is None:
            dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        self.dtype = dtype
        self.model = model.to_inference(self.device, dtype)
        if compile:
            self.model.unet = torch.compile(self.model.unet)

    @classmethod
    def from_checkpoint(cls, path_or_hub_id: str, device: str = "cpu",
                        dtype: torch.dtype | None = None,
                        compile: bool = False) -> "MultiViewGenerator":
        """Load a checkpoint saved by `MultiViewDiffusion.save_pretrained` (local folder or
        Hugging Face hub id)."""
        try:
            model = MultiViewDiffusion.from_pretrained(path_or_hub_id)
        except (OSError, FileNotFoundError, ValueError) as e:
            raise PipelineError("NOT_AVAILABLE", f"cannot load the Gen3D-Face checkpoint "
                                f"'{path_or_hub_id}': {e}") from e
        return cls(model, device, dtype, compile)

    @property
    def resolution(self) -> int:
        return self.model.resolution

    def generate(self, photo_rgb: np.ndarray, mask: np.ndarray | None, photo_w2c,
                 photo_intrinsics, head_vertices: np.ndarray | None,
                 head_faces: np.ndarray | None, target_cameras, seed: int = 0,
                 steps: int = 50, sampler: str = "ddim", guidance: float = 3.0,
                 sink: ProgressSink | None = None, cancel: CancelToken | None = None,
                 preview_every: int = 0, preview_decode: bool = False,
                 noise: torch.Tensor | None = None) -> list[GeneratedView]:
        """`target_cameras`: a wire `Rig` or a sequence of `TargetCamera`. Returns one
        `GeneratedView` per target, in order. Raises PipelineError / JobCancelled."""
        sink = sink or NullSink()
        cancel = cancel or CancelToken()
        targets: Sequence[TargetCamera] = (targets_from_rig(target_cameras)
                                           if hasattr(target_cameras, "cameras")
                                           else list(target_cameras))
        if not targets:
            raise PipelineError("BAD_REQUEST", "no target cameras to generate")
        R = self.resolution
        dev, f32 = self.device, torch.float32
        sink.progress(STAGE, 0.0, f"preparing {len(targets)} views")
        img, in_k = crop_input_view(photo_rgb, mask, photo_intrinsics, R)
        view_k = [square_view_intrinsics(t.intrinsics, R) for t in targets]

        def kvec(k):
            return [k.fx, k.fy, k.cx, k.cy]

        tw2c = torch.tensor(np.stack([np.asarray(t.w2c, np.float64) for t in targets]),
                            dtype=f32, device=dev)[None]
        tK = torch.tensor([kvec(k) for k in view_k], dtype=f32, device=dev)[None]
        iw2c = torch.tensor(np.asarray(photo_w2c, np.float64), dtype=f32, device=dev)[None]
        iK = torch.tensor([kvec(in_k)], dtype=f32, device=dev)
        verts = faces = None
        if head_vertices is not None:
            verts = torch.tensor(np.asarray(head_vertices), dtype=f32, device=dev)[None]
            faces = torch.from_numpy(triangulate(head_faces)).to(dev)
        cfg = SamplerConfig(sampler=sampler, steps=steps, guidance=guidance,
                            preview_every=preview_every, preview_decode=preview_decode)
        try:
            cfg.validate()
        except ValueError as e:
            raise PipelineError("BAD_REQUEST", str(e)) from e

        t0 = time.perf_counter()
        try:
            with torch.inference_mode():
                cond = self.model.condition(img[None].to(dev), verts, faces)
                lat = sample_views(
                    self.model, cond, tw2c, tK, iw2c, iK, cfg, seed=seed, noise=noise,
                    on_progress=lambda i, n: sink.progress(
                        STAGE, 0.05 + 0.9 * i / n, f"denoising step {i}/{n}"),
                    on_preview=lambda i, png_rgb: sink.preview(
                        f"generate_step_{i + 1:03d}", _png(png_rgb)),
                    should_stop=cancel.raise_if_cancelled)
                cancel.raise_if_cancelled()
                rgb = self.model.decode_latents(lat[0])
        except torch.OutOfMemoryError as e:
            raise PipelineError("OUT_OF_MEMORY", f"the GPU ran out of memory generating "
                                f"{len(targets)} views; use fewer cameras") from e
        rgb_np = rgb.float().permute(0, 2, 3, 1).cpu().numpy()
        views = []
        for t, k, im in zip(targets, view_k, rgb_np):
            a = alpha_from_background(im)
            rgba = np.concatenate([im, a[..., None]], -1)
            views.append(GeneratedView(t.name, (rgba * 255).round().astype(np.uint8),
                                       np.asarray(t.w2c, np.float64), k))
        sink.progress(STAGE, 1.0, f"{len(views)} views in {time.perf_counter() - t0:.1f} s")
        return views


def _png(rgb: np.ndarray) -> bytes:
    from ..images import encode_png
    return encode_png(rgb)
