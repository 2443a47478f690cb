"""Face analysis of one photo with mediapipe 0.10.21's bundled models (no download):
face detection (short- and full-range), the 478-point face mesh with iris, and selfie
segmentation for the foreground mask.

Arrays:
- input photo: HxWx3 uint8 RGB, rows top-to-bottom.
- landmarks: (478, 2) float64 pixel coordinates in the ORIGINAL photo, u right, v down, origin
  at the top-left CORNER (pixel (i, j) has its centre at (i + 0.5, j + 0.5)); mediapipe's
  normalised coordinates times the image size are exactly this convention.
- landmarks_z: (478,) float64 mediapipe's relative depth, scaled to photo pixels (smaller =
  closer to the camera; origin near the head centre; same scale as u).
- crop: SxSx3 uint8 RGB, the face aligned to a canonical square (FFHQ-style: eyes level, eyes
  and mouth at fixed places); crop_affine (2x3) maps photo pixels to crop pixels.
- mask: HxW float32 in [0, 1], the person (foreground) in the photo.
- skin: HxW float32 in [0, 1], the "usable skin" mask (skin_mask.py): 0 on hands, on
  occluders over the face (hair strands, phones, glasses) and on clothing below the jaw, 1
  elsewhere; `view_mask` = mask x skin is what may paint the texture.
- hands: list of (21, 2) float64 hand landmarks in photo pixels (mediapipe hands).

Thread safety: a `FaceAnalyzer` keeps its mediapipe graphs between calls (creating them costs
~30 ms each); mediapipe graphs are not re-entrant, so `analyze` holds a lock and concurrent
calls on one analyzer run one after the other. The service calls it from its one worker
thread; use one analyzer per thread if you need parallelism.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from ..contracts import PipelineError
from .alignment import (apply_affine, canonical_square, invert_affine, square_to_affine,
                        to_opencv_affine)
from .landmarks import N_LANDMARKS
from .selection import box_iou, merge_boxes, pick_main_face
from .skin_mask import SkinMaskConfig, usable_skin


def _box(points: np.ndarray) -> np.ndarray:
    """(x0, y0, x1, y1) of (n, 2) points."""
    return np.concatenate([points.min(0), points.max(0)])


@dataclass
class FaceAnalysisConfig:
    detect_max_side: int = 1024        # detection runs on a copy no larger than this
    min_detection_confidence: float = 0.5
    min_face_px: int = 64              # smaller faces raise FACE_TOO_SMALL
    mesh_crop_margin: float = 2.2      # face-mesh crop side = margin * detected box size
    mesh_input_size: int = 384         # the face-mesh crop is resampled to this many pixels
    crop_size: int = 512               # side of the aligned canonical crop
    segment: bool = True               # compute the foreground mask
    skin_mask: bool = True             # compute the usable-skin mask (hands, occluders)
    skin: SkinMaskConfig = field(default_factory=SkinMaskConfig)
    hand_min_confidence: float = 0.5   # mediapipe hands' palm detection threshold
    hand_pad: float = 0.75             # hands are also looked for in the photo set in a black
                                       # border this share of its long side wide (0: not):
                                       # a hand cut by the photo's edge (fingers at the chin,
                                       # the palm below the frame) is found there
    # mediapipe's native code (TFLite, absl) writes INFO/WARNING lines straight to file
    # descriptor 2 while its graphs start and first run; no environment variable silences
    # them in 0.10.21. When True, fd 2 is pointed at /dev/null during an analyzer's FIRST
    # analysis only (a second or so, once per process): other threads' stderr output in that
    # window is lost too, so turn it off when debugging.
    quiet_native_logs: bool = True


@dataclass
class FaceAnalysis:
    landmarks: np.ndarray              # (478, 2) float64 photo pixels (see module doc)
    landmarks_z: np.ndarray            # (478,) float64 relative depth in photo pixels
    face_box: np.ndarray               # (4,) x0, y0, x1, y1 photo pixels of the chosen face
    n_faces: int                       # faces found in the photo
    crop: np.ndarray                   # (S, S, 3) uint8 aligned face
    crop_affine: np.ndarray            # (2, 3) photo -> crop
    mask: np.ndarray | None            # (H, W) float32 [0, 1] foreground, or None
    image_size: tuple[int, int]        # (width, height) of the photo
    warnings: list[str] = field(default_factory=list)
    skin: np.ndarray | None = None     # (H, W) float32 [0, 1] usable skin, or None
    hands: list = field(default_factory=list)   # (21, 2) float64 photo pixels per hand
    skin_info: dict = field(default_factory=dict)

    @property
    def view_mask(self) -> np.ndarray | None:
        """What may paint the texture: foreground x usable skin (either alone when the other
        was not computed; None when neither was)."""
        if self.skin is None:
            return self.mask
        if self.mask is None:
            return self.skin
        return (self.mask * self.skin).astype(np.float32)

    @property
    def width(self) -> int:
        return self.image_size[0]

    @property
    def height(self) -> int:
        return self.image_size[1]


def face_cut_off(landmarks: np.ndarray, width: int, height: int,
                 min_share: float = 0.03) -> str | None:
    """A warning when at least `min_share` of the face's 468 mesh landmarks fall outside the
    photo (the face is cut off by its edges), naming the edges; None otherwise. The fit still
    runs: what the photo does not show is mirrored or filled like any unseen skin."""
    lm = np.asarray(landmarks, np.float64)[:468, :2]
    x, y = lm[:, 0], lm[:, 1]
    outside = (x < 0) | (x >= width) | (y < 0) | (y >= height)
    share = float(outside.mean())
    if share < min_share:
        return None
    edges = [name for name, m in (("left", x < 0), ("right", x >= width), ("top", y < 0),
                                  ("bottom", y >= height)) if m.mean() >= min_share / 2]
    return (f"{share:.0%} of the face lies outside the photo (cut off at its "
            f"{' and '.join(edges) or 'edges'}); that part of the head is guessed from the "
            "rest. Use a photo that shows the whole face for a better likeness.")


def _check_rgb(rgb) -> np.ndarray:
    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
        raise PipelineError("BAD_IMAGE", f"expected an HxWx3 uint8 RGB image, got shape "
                            f"{a.shape} dtype {a.dtype}")
    if min(a.shape[:2]) < 16:
        raise PipelineError("BAD_IMAGE", f"the image is too small ({a.shape[1]}x{a.shape[0]} px)")
    return np.ascontiguousarray(a)


@contextlib.contextmanager
def _native_stderr_silenced():
    """Point file descriptor 2 at /dev/null for the duration (native libraries write there
    directly, past sys.stderr)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        yield
        return
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class FaceAnalyzer:
    def __init__(self, config: FaceAnalysisConfig | None = None):
        self.config = config or FaceAnalysisConfig()
        self._lock = threading.Lock()
        self._graphs: dict = {}
        self._started = False

    # -- mediapipe graphs, created on first use and reused --------------------------------
    def _graph(self, name: str):
        g = self._graphs.get(name)
        if g is None:
            from mediapipe.python.solutions import (face_detection, face_mesh, hands,
                                                    selfie_segmentation)
            conf = self.config.min_detection_confidence
            if name == "det_short":
                g = face_detection.FaceDetection(model_selection=0, min_detection_confidence=conf)
            elif name == "det_full":
                g = face_detection.FaceDetection(model_selection=1, min_detection_confidence=conf)
            elif name == "mesh":
                g = face_mesh.FaceMesh(static_image_mode=True, max_num_faces=2,
                                       refine_landmarks=True, min_detection_confidence=conf)
            elif name == "seg":
                g = selfie_segmentation.SelfieSegmentation(model_selection=0)
            elif name == "hands":
                g = hands.Hands(static_image_mode=True, max_num_hands=2, model_complexity=1,
                                min_detection_confidence=self.config.hand_min_confidence)
            else:
                raise KeyError(name)
            self._graphs[name] = g
        return g

    def close(self) -> None:
        with self._lock:
            for g in self._graphs.values():
                g.close()
            self._graphs.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- steps ----------------------------------------------------------------------------
    def detect(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """All faces: boxes (n, 4) photo pixels and scores (n,), from both detectors on a
        downscaled copy, merged."""
        h, w = rgb.shape[:2]
        s = min(1.0, self.config.detect_max_side / max(h, w))
        small = rgb if s >= 1.0 else cv2.resize(rgb, (round(w * s), round(h * s)),
                                                interpolation=cv2.INTER_AREA)
        boxes, scores = [], []
        for name in ("det_short", "det_full"):
            for d in self._graph(name).process(small).detections or []:
                b = d.location_data.relative_bounding_box
                boxes.append((b.xmin * w, b.ymin * h, (b.xmin + b.width) * w,
                              (b.ymin + b.height) * h))
                scores.append(float(d.score[0]) if d.score else 0.0)
        return merge_boxes(boxes, scores)

    def _mesh_on_crop(self, rgb: np.ndarray, centre, side: float):
        """Face mesh on a square crop (photo centre/side), resampled to mesh_input_size.
        Returns (landmarks (478, 2) photo px, z (478,) photo px) of the face nearest the crop
        centre, or None."""
        n = self.config.mesh_input_size
        k = n / side
        a = np.array([[k, 0.0, n / 2 - k * centre[0]], [0.0, k, n / 2 - k * centre[1]]])
        crop = cv2.warpAffine(rgb, to_opencv_affine(a), (n, n), flags=cv2.INTER_AREA
                              if k < 1 else cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        faces = self._graph("mesh").process(crop).multi_face_landmarks or []
        best = None
        for f in faces:
            pts = np.array([(p.x * n, p.y * n, p.z * n) for p in f.landmark], np.float64)
            if len(pts) != N_LANDMARKS:
                continue
            d = np.hypot(*(pts[:, :2].mean(0) - n / 2))
            if best is None or d < best[0]:
                best = (d, pts)
        if best is None:
            return None
        pts = best[1]
        return apply_affine(invert_affine(a), pts[:, :2]), pts[:, 2] / k

    def segment(self, rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        s = min(1.0, self.config.detect_max_side / max(h, w))
        small = rgb if s >= 1.0 else cv2.resize(rgb, (round(w * s), round(h * s)),
                                                interpolation=cv2.INTER_AREA)
        m = self._graph("seg").process(small).segmentation_mask
        m = cv2.resize(np.asarray(m, np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        return np.clip(m, 0.0, 1.0).astype(np.float32)

    def detect_hands(self, rgb: np.ndarray) -> list[np.ndarray]:
        """Hand landmarks, (21, 2) float64 photo pixels per hand, from mediapipe hands (palm
        detection + landmarks, at most two per pass) on a downscaled copy, and again on that
        copy set in a black border (`hand_pad`): mediapipe's palm detector misses a hand whose
        palm the photo's edge cuts off (id06692's fingers at her chin, the hand below the
        frame) and finds it with room around the photo. A hand found in both passes counts
        once (the first pass's)."""
        h, w = rgb.shape[:2]
        s = min(1.0, self.config.detect_max_side / max(h, w))
        small = rgb if s >= 1.0 else cv2.resize(rgb, (round(w * s), round(h * s)),
                                                interpolation=cv2.INTER_AREA)
        graph = self._graph("hands")
        hands = [np.array([(p.x * w, p.y * h) for p in hl.landmark], np.float64)
                 for hl in graph.process(small).multi_hand_landmarks or []]
        pad = int(round(self.config.hand_pad * max(small.shape[:2])))
        if pad > 0:
            framed = cv2.copyMakeBorder(small, pad, pad, pad, pad, cv2.BORDER_CONSTANT,
                                        value=(0, 0, 0))
            fh, fw = framed.shape[:2]
            for hl in graph.process(framed).multi_hand_landmarks or []:
                pts = np.array([((p.x * fw - pad) / s, (p.y * fh - pad) / s)
                                for p in hl.landmark], np.float64)
                if all(box_iou(_box(pts), _box(q)) < 0.3 for q in hands):
                    hands.append(pts)
        return hands

    def skin_mask(self, rgb: np.ndarray, landmarks: np.ndarray, neck_skin: bool = False,
                  foreground: np.ndarray | None = None):
        """(usable-skin mask HxW float32 or None, hands, info) for the photo and its landmarks.
        `neck_skin` (the job option): the skin test below the jaw on as well, so clothes and
        hair hanging there no longer paint the neck and shoulders, which the texture then fills
        with the skin (bake.py); with the mask off it is that test alone, no hands.
        `foreground`: the person mask, where the pale-edge test looks (skin_mask.py)."""
        cfg = self.config.skin
        on = self.config.skin_mask and cfg.enabled
        if not (on or neck_skin):
            return None, [], {}
        if on:
            hands = self.detect_hands(rgb) if cfg.hands else []
            cfg = replace(cfg, neck=True) if neck_skin else cfg
        else:
            hands, cfg = [], SkinMaskConfig(face_test=False, neck=True)
        m = usable_skin(rgb, landmarks, hands, cfg, foreground)
        return m.usable, hands, dict(m.info, neck_skin=True) if neck_skin else m.info

    def analyze(self, rgb, neck_skin: bool = False) -> FaceAnalysis:
        rgb = _check_rgb(rgb)
        with self._lock:
            quiet = self.config.quiet_native_logs and not self._started
            with (_native_stderr_silenced() if quiet else contextlib.nullcontext()):
                try:
                    return self._analyze(rgb, neck_skin)
                finally:
                    self._started = True

    def _analyze(self, rgb: np.ndarray, neck_skin: bool = False) -> FaceAnalysis:
        cfg = self.config
        h, w = rgb.shape[:2]
        boxes, _ = self.detect(rgb)
        warnings: list[str] = []
        if len(boxes) == 0:
            # The detectors can miss tight crops and strong profiles that the face mesh's own
            # detector (inside the graph) still finds: try it on the whole photo.
            side = max(h, w)
            found = self._mesh_on_crop(rgb, (w / 2, h / 2), side)
            if found is None:
                raise PipelineError("NO_FACE", "No face was found in the photo. Use a photo "
                                    "where one face is clearly visible, lit, and not covered.")
            lm = found[0]
            boxes = np.array([[*lm.min(0), *lm.max(0)]])
        n_faces = len(boxes)
        i = pick_main_face(boxes, w, h)
        box = boxes[i]
        if n_faces > 1:
            warnings.append(f"{n_faces} faces found; used the largest, most central one")
        across = max(box[2] - box[0], box[3] - box[1])
        if across < cfg.min_face_px:
            raise PipelineError(
                "FACE_TOO_SMALL", f"The face is only {across:.0f} px across; at least "
                f"{cfg.min_face_px} px is needed. Use a larger or closer photo of the face, or "
                "crop the photo around the face without shrinking it.", face_px=float(across))
        centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
        found = None
        for margin in (cfg.mesh_crop_margin, cfg.mesh_crop_margin * 1.6):
            found = self._mesh_on_crop(rgb, centre, margin * across)
            if found is not None:
                break
        if found is None:
            raise PipelineError("NO_FACE", "A face was detected but its landmarks could not "
                                "be found (it may be turned away, covered or blurred). Use a "
                                "photo with the face more visible.")
        lm, z = found
        # Second pass: re-centre the mesh crop on the landmarks themselves (tighter, better
        # resolution for faces that the detector boxed loosely).
        lo, hi = lm[:468].min(0), lm[:468].max(0)
        refined = self._mesh_on_crop(rgb, (lo + hi) / 2, 1.6 * float(max(hi - lo)))
        if refined is not None and np.median(np.hypot(*(refined[0] - lm).T)) < 0.1 * across:
            lm, z = refined
        cut = face_cut_off(lm, w, h)
        if cut is not None:
            warnings.append(cut)
        quad = canonical_square(lm)
        affine = square_to_affine(quad, cfg.crop_size)
        crop = cv2.warpAffine(rgb, to_opencv_affine(affine), (cfg.crop_size, cfg.crop_size),
                              flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        mask = self.segment(rgb) if cfg.segment else None
        skin, hands, info = self.skin_mask(rgb, lm, neck_skin, mask)
        return FaceAnalysis(landmarks=lm, landmarks_z=z, face_box=np.asarray(box, np.float64),
                            n_faces=n_faces, crop=crop, crop_affine=affine, mask=mask,
                            image_size=(w, h), warnings=warnings, skin=skin, hands=hands,
                            skin_info=info)
