"""Which pixels of the photo may paint the skin: the "usable skin" mask.

The photo's foreground mask says person vs background; this module removes what covers the
face or is not skin where skin belongs:
- hands (from mediapipe's hand landmarks: the convex hull of each hand's 21 points, widened to
  the fingers' width, plus skin-coloured pixels connected to it outside the face);
- occluders over the face (hair strands, phones, glasses, microphones): pixels inside the face
  oval whose colour is not this photo's skin, as a robust colour model estimated on the cheeks
  and forehead finds it, except the eyes, brows, lips and lower nose, which legitimately are not
  skin-coloured;
- pale pixels at the face's edge and beside it (white or grey hair at the temple, a rim light
  along the jaw): brighter than the cheeks and near grey, they are not skin even where the
  test inside the face leaves the outline alone;
- clothing (and hair hanging down) below the jaw line: there, non-skin pixels are not neck skin,
  nor small islands of skin a hand cuts off (the neck between its fingers),
  nor near-grey ones (white collars), and only the neck's own column may paint the neck: beside
  and below it (shoulders, the chest, hair over them) the texture's skin fill paints instead.
Elsewhere (the scalp's hair, the ears, the background) the mask is 1, so the foreground mask
passes unchanged: the baker reads the scalp's hair colour from there.

Pure numpy / OpenCV: the hand landmarks come in as arrays (analysis.py runs mediapipe), so the
logic is testable without mediapipe.

Arrays: rgb HxWx3 uint8; landmarks (478, 2) photo pixels, corner origin (see analysis.py);
hands a list of (21, 2) photo-pixel arrays; masks HxW float32 in [0, 1] (1 = usable skin).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from .landmarks import FACE_OVAL, LEFT_EYE_OPENING, MOUTH_CORNERS, RIGHT_EYE_OPENING

# mediapipe face-mesh index sets (FACEMESH_LIPS outer ring, FACEMESH_*_EYEBROW, and points
# around the nose's base and nostrils).
LIPS_OUTER = np.array([61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0,
                       37, 39, 40, 185])
RIGHT_BROW = np.array([70, 63, 105, 66, 107, 55, 65, 52, 53, 46])
LEFT_BROW = np.array([300, 293, 334, 296, 336, 285, 295, 282, 283, 276])
NOSE_BASE = np.array([1, 2, 97, 98, 326, 327, 64, 294, 48, 278, 240, 460, 75, 305, 19, 94, 141,
                      370, 79, 309, 166, 392])
# colour-model patches: the middle of each cheek and the forehead above the brows
RIGHT_CHEEK = np.array([50, 101, 118, 117, 123, 147, 187, 205, 36])
LEFT_CHEEK = np.array([280, 330, 347, 346, 352, 376, 411, 425, 266])
FOREHEAD = np.array([67, 109, 10, 338, 297, 299, 337, 151, 108, 69])
CHIN = 152                             # the chin's lowest point on the face oval
# the jaw line, from the subject's left jaw angle around the chin to the right one (a run of
# FACE_OVAL)
JAW = np.array([361, 288, 397, 365, 379, 378, 400, 377, 152, 148, 176, 149, 150, 136, 172, 58,
                132])

# Mirror twin of each of the 468 face-mesh points (-1: none reliable), derived once from the ICT-
# FaceKit mapping (backend/fitting/data/mediapipe_to_ict.json): each landmark's point on ICT's
# symmetric neutral template, mirrored across x = 0, matched to the nearest landmark point,
# keeping only the pairs that match both ways.
LANDMARK_TWIN = np.array("""
    0 1 2 248 4 5 6 -1 8 9 10 11 12 13 14 15 16 17 18 125 -1 251 252 253 254 255 256 257 258
    259 260 261 262 466 264 265 266 267 268 269 270 271 272 273 274 275 276 277 344 360 280
    281 282 283 284 285 286 287 435 -1 -1 306 308 293 455 295 296 297 298 299 300 301 302 303
    304 305 292 307 -1 -1 310 311 -1 313 314 315 316 317 -1 319 320 321 322 323 -1 415 324 -1
    327 326 329 330 278 332 333 334 335 336 337 338 339 340 341 342 343 440 345 346 347 348
    349 350 351 352 353 19 355 356 -1 -1 -1 -1 401 362 -1 364 365 -1 367 368 369 -1 371 372
    373 374 375 376 377 378 379 151 152 380 381 382 383 384 385 386 387 -1 389 390 164 391 392
    393 168 394 395 396 397 -1 399 175 400 -1 -1 403 404 405 406 -1 407 408 410 411 412 413
    414 -1 416 417 418 195 419 197 363 199 200 421 422 423 424 425 426 427 428 -1 430 431 432
    433 434 -1 436 437 309 -1 -1 441 442 443 444 445 446 -1 448 449 450 451 452 453 454 -1 456
    457 354 459 -1 -1 370 463 465 -1 388 467 3 -1 -1 21 22 23 24 25 26 27 28 29 30 31 32 -1 34
    35 36 37 38 39 40 41 42 43 44 45 46 47 102 -1 50 51 52 53 54 55 56 57 -1 -1 -1 -1 76 63 -1
    65 66 67 68 69 70 71 72 73 74 75 61 77 62 218 80 81 -1 83 84 85 86 87 -1 89 90 91 92 93 96
    -1 99 98 -1 100 101 -1 103 104 105 106 107 108 109 110 111 112 113 114 48 116 117 118 119
    120 121 122 123 124 238 126 127 -1 -1 -1 49 -1 133 198 135 136 -1 138 139 140 242 142 143
    144 145 146 147 148 149 150 153 154 155 156 157 158 159 160 246 162 163 165 166 167 169
    170 171 172 -1 174 176 132 -1 179 180 181 182 184 185 -1 186 187 188 189 190 95 192 193
    194 196 -1 201 202 203 204 205 206 207 208 -1 210 211 212 213 214 58 216 217 -1 -1 115 221
    222 223 224 225 226 -1 228 229 230 231 232 233 234 64 236 237 -1 239 -1 -1 -1 243 -1 244
    33 247
""".split(), np.int64)


@dataclass
class SkinMaskConfig:
    enabled: bool = True               # False: the mask is all ones (foreground unchanged)
    work_max_side: int = 640           # the masks are computed on a copy no larger than this
    # hands
    hands: bool = True
    hand_widen: float = 0.10           # hull dilated by this share of the hand's size
    hand_grow: float = 0.35            # skin-coloured pixels connected to the hull, up to this
                                       # share of the hand's size beyond it (outside the face)
    # the skin colour model (a Gaussian in log brightness and rg chromaticity, fitted robustly
    # on the cheek and forehead patches)
    lightness_tolerance: float = 2.5   # brightness spread widened this much (shading is not paint)
    min_sigma: tuple = (0.25, 0.6, 0.4)  # floors on the spreads of log2 brightness, r, g
    skin_d0: float = 3.0               # Mahalanobis distance: fully skin below,
    skin_d1: float = 4.5               # not skin above (smooth in between)
    min_patch_px: int = 60             # fewer patch pixels: no colour model (hands only)
    # occluders
    eye_scale: float = 1.35            # eye openings scaled about their centre (lower lid)
    feature_widen: float = 0.035       # eyes/brows/lips/nose regions widened by this share of
                                       # the face size (lashes, lid shadow, lip liner)
    min_blob: float = 4e-4             # non-skin blobs smaller than this share of the face
                                       # area are pores, freckles or noise, not occluders
    max_mark: float = 6e-3             # compact non-skin blobs smaller than this share of the
                                       # face area are marks of the face (moles, blotches)
    occluder_widen: float = 0.012      # occluders dilated by this share of the face size
    face_test: bool = True             # apply the skin test inside the face oval (False:
                                       # only hands and, with `neck`, clothes below the jaw)
    forehead_test: bool = False        # the test inside the face covers the forehead above
                                       # the brows too (False: from the brows down; above them
                                       # hair framing the face is the hairline, paint for it)
    chin_test: bool = False            # ... and the face below the mouth corners (False:
                                       # beards and stubble on the chin and jaw are the face's
                                       # own, even on a turned face whose mirror twin is hidden)
    face_min_depth: float = 0.10       # inside the face oval, a non-skin blob that never
                                       # reaches this share of the face size in from the oval's
                                       # edge is the hairline or the jaw's silhouette (hair
                                       # framing the face, background at the edge), not an
                                       # occluder across the face: it stays (0: off)
    # at the face's edge (inside the oval within `face_min_depth` of its outline, below the
    # brows) and beside the face, a pixel brighter than the cheek patches (by `edge_bright`
    # log2 steps) and near grey is not skin: white or grey hair at the temple and beside the
    # ear, a pale background, a rim light at the silhouette. Baked, they paint white streaks
    # down the cheek's side that every turned view shows. Near grey: less saturated than
    # `edge_white` of the patches' saturation, or than `edge_grey` of it and off skin's hue
    # (by shadow_hue_face_deg, or 3 of the patches' hue spreads): a highlight on skin keeps
    # skin's hue. Shade saturates skin and darkens it, so it never passes. Skin lit near white
    # (patches less saturated than `edge_min_saturation`, rg percent from grey: image02024's
    # 1.7, image02246's 2.7) is itself near grey, and its highlights and silver make-up would
    # go too: no test there (edge_grey 0: off)
    edge_grey: float = 0.5
    edge_white: float = 0.25
    edge_bright: float = 0.0
    edge_min_saturation: float = 6.0
    neck: bool = True                  # apply the skin test below the jaw line
    sides: bool = True                 # apply the skin test beside the face, from the eye line
                                       # down to the jaw (the head's cheek sides and ears):
                                       # hair hanging there in the photo is not paint for them
    side_width: float = 0.45           # ... that band reaches this many face sizes outward
    side_tolerance: float = 2.0        # ... and its skin test is this much looser (ears are
                                       # redder than cheeks, the sides shaded), but a pixel
    side_dark: float = 1.75            # this many log2 steps darker than the cheek patches is
                                       # not skin there even in skin's hue (dark hair is)
    neck_depth: float = 1.2            # the region below the jaw extends this many face sizes
    neck_tolerance: float = 1.4        # below the jaw the skin test is this much looser (the
                                       # neck is in the jaw's shadow; clothes are far from skin)
    neck_dark: float = 2.0             # ... but this many log2 steps darker than the cheek
                                       # patches is not skin there (hair over the shoulders;
                                       # the deepest shade taken for skin, shadow_depth; 1.75
                                       # also takes the shade under three chins)
    neck_grey: float = 0.5             # ... and a pixel less saturated than this share of
                                       # the patches' saturation is not skin there either (a
                                       # white collar, a grey shirt, the white background at
                                       # the neck's edge; shade saturates skin, not greys it)
    neck_side_grey: float = 0.3        # ... where the band beside the face reaches below the
                                       # jaw (a collar beside the jaw; stubble greys the jaw's
                                       # side, so a lower floor there)
    # below the jaw only the neck itself may paint the neck: a column under the jaw, this
    # share of the distance between the jaw angles wide and reaching `neck_length` face
    # sizes below the chin. Beside it and below it the photo shows shoulders, hair hanging
    # down, collars and the chest, which the fitted head's shoulders do not match: the skin
    # fill paints them (0: no column)
    neck_width: float = 0.9
    neck_length: float = 0.6
    # below the jaw, skin left only in islands smaller than this share of the face size
    # squared next to a hand (within `hand_widen` of it: the neck between and below the
    # fingers of a hand under the chin) is not projected: painted, it reads as streaks and
    # blotches; the fill paints the neck there instead (0: off). Islands between hair strands
    # stay: bare neck seen between them is the neck's own skin
    neck_island: float = 0.02
    feather: float = 0.008             # edge softening (Gaussian sigma, share of face size)
    # skin in shadow (a side-lit cheek, the neck under the jaw): same hue as the patches,
    # saturation within these factors of theirs, up to shadow_depth log2 steps darker (0: off)
    shadow_depth: float = 2.0
    shadow_hue_deg: float = 8.0
    shadow_hue_face_deg: float = 15.0  # ... inside the face oval (stubble, a beard's shadow)
    shadow_saturation: tuple = (0.5, 3.5)
    shadow_saturation_abs: float = 16.0  # ... or up to this saturation (rg percent from grey),
                                       # whichever is higher: patches lit near white (an
                                       # overexposed cheek, image02246: 2.7) make the relative
                                       # bound reject the shaded side's ordinary skin (12-14).
                                       # Not higher: red hair has skin's hue and is as dark as
                                       # shade, but more saturated (image02246's beside her jaw
                                       # and over her cheek: 17-23; at 22 it painted her face's
                                       # side and neck)
    # thin dark strands (hair across the face) blend with the skin under them, so their colour
    # is only a little off skin: a pixel this much darker (log2 brightness) than its
    # neighbourhood's closing (a morphological black-hat no wider than `strand_width` of the
    # face) and off the skin model by `strand_d` sigmas is not skin either; 0 turns it off
    strand_contrast: float = 0.25
    strand_width: float = 0.02
    strand_d: float = 2.0
    strand_eye_margin: float = 0.02    # ... not within this share of the face size around the
                                       # eyes (beyond `feature_widen`): creases, bags and crow's
                                       # feet there are the face's own lines
    # left/right consistency: a non-skin pixel inside the face whose colour matches its mirror
    # twin's neighbourhood (the other side of the face, through the landmarks) is a symmetric
    # feature of this face (smile folds, a beard, make-up), not an occluder
    mirror_check: bool = True
    mirror_radius: float = 0.02        # the twin's neighbourhood (share of the face size)
    mirror_tolerance: float = 1.5      # agreement within this many colour-model sigmas


@dataclass
class SkinMask:
    usable: np.ndarray                 # HxW float32 [0, 1]: 1 = may paint the skin
    # diagnostics, at the working resolution (the photo scaled by work_scale):
    hands: np.ndarray                  # bool: hand pixels
    occluders: np.ndarray              # bool: non-skin pixels inside the face / below the jaw
    skin_prob: np.ndarray | None       # float32 skin-colour probability (None: no model)
    info: dict = field(default_factory=dict)
    work_scale: float = 1.0


def _poly(shape, pts, value=1) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    cv2.fillPoly(m, [np.round(np.asarray(pts)).astype(np.int32)], value)
    return m


def _hull(shape, pts) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(m, cv2.convexHull(np.round(np.asarray(pts)).astype(np.int32)), 1)
    return m


def _disk(r: float) -> np.ndarray:
    r = max(1, int(round(r)))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def _grow(mask: np.ndarray, r: float) -> np.ndarray:
    """uint8 0/1 mask dilated by a disk of radius r px (a distance transform: its cost does
    not grow with r, unlike a kernel's)."""
    m = (np.asarray(mask) > 0).astype(np.uint8)
    if r < 0.5 or not m.any():
        return m
    if r <= 3:
        return cv2.dilate(m, _disk(r))
    d = cv2.distanceTransform(1 - m, cv2.DIST_L2, 5)
    return (d <= r).astype(np.uint8)


def face_size(landmarks: np.ndarray) -> float:
    lm = np.asarray(landmarks)[FACE_OVAL]
    return float(max(np.ptp(lm[:, 0]), np.ptp(lm[:, 1]), 1.0))


def face_regions(shape, landmarks: np.ndarray, cfg: SkinMaskConfig) -> dict:
    """uint8 masks (0/1) of `shape`: "face" (inside the face oval), "features" (eyes, brows,
    lips, lower nose, widened), "patches" (cheeks and forehead), "below_jaw" (below the jaw
    line, beside and under the chin, outside the face oval), "beyond_neck" (the part of
    below_jaw beside or below the neck's column, not beside the face), "beside" (outside the oval
    beside it, from the eye line down), "below_brows" and "above_mouth" (half-planes across
    the face), "around_eyes" (the eyes' regions widened by `strand_eye_margin` more),
    "pale_keep" (each eye with its brow as in "features" but not widened, the lips and the
    nose widened)."""
    lm = np.asarray(landmarks, np.float64)
    size = face_size(lm)
    face = _poly(shape, lm[FACE_OVAL])
    feat = np.zeros(shape, np.uint8)
    # what the pale-edge test leaves alone: each eye with its brow as the features have them
    # but not widened (the sclera, also of an eye whose landmarks mediapipe closes onto the
    # lower lid, and grey brows; white hair at the temple beyond them is neither) and the
    # mouth and nose widened (teeth, the nose tip's highlight)
    pale_keep = np.zeros(shape, np.uint8)
    # each eye with its upper lid up to the brow: lashes, liner past the corners, lid shadow
    # and make-up are the eye's own; the hull also covers an eye that the landmarks place
    # too low (mediapipe sometimes closes an open eye)
    for eye, brow in ((RIGHT_EYE_OPENING, RIGHT_BROW), (LEFT_EYE_OPENING, LEFT_BROW)):
        e = lm[eye]
        c = e.mean(0)
        hull = _hull(shape, np.vstack([c + cfg.eye_scale * (e - c), lm[brow]]))
        feat |= hull
        pale_keep |= hull
    around_eyes = _grow(feat, (cfg.feature_widen + cfg.strand_eye_margin) * size)
    mouth_nose = _grow(_poly(shape, lm[LIPS_OUTER]) | _hull(shape, lm[NOSE_BASE]),
                       cfg.feature_widen * size)
    feat = _grow(feat, cfg.feature_widen * size) | mouth_nose
    pale_keep |= mouth_nose
    patches = np.zeros(shape, np.uint8)
    for ids in (RIGHT_CHEEK, LEFT_CHEEK, FOREHEAD):
        patches |= _hull(shape, lm[ids])
    patches &= 1 - feat
    # below the jaw: the jaw polyline, carried sideways from the jaw angles and down
    eyes = (lm[list(RIGHT_EYE_OPENING)].mean(0) + lm[list(LEFT_EYE_OPENING)].mean(0)) / 2
    mouth = lm[list(MOUTH_CORNERS)].mean(0)
    down = mouth - eyes
    down /= max(np.linalg.norm(down), 1e-9)
    side = np.array([-down[1], down[0]])               # image-right for an upright face
    jaw = lm[JAW]
    if (jaw[0] - jaw[-1]) @ side < 0:                  # order the jaw from image-left to right
        jaw = jaw[::-1]
    far = cfg.neck_depth * size
    poly = np.vstack([jaw[0] - side * far, jaw, jaw[-1] + side * far,
                      jaw[-1] + side * far + down * far, jaw[0] - side * far + down * far])
    below = _poly(shape, poly) & (1 - face)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    # the neck's column: centred between the jaw angles, down from the chin
    mid = (jaw[0] + jaw[-1]) / 2
    half = abs(float((jaw[-1] - jaw[0]) @ side)) / 2 * cfg.neck_width
    lateral_px = (xx - mid[0]) * side[0] + (yy - mid[1]) * side[1]
    below_chin = (xx - lm[CHIN][0]) * down[0] + (yy - lm[CHIN][1]) * down[1]
    neck = ((np.abs(lateral_px) <= half) & (below_chin <= cfg.neck_length * size)
            if cfg.neck_width > 0 else np.ones(shape, bool)).astype(np.uint8)
    # beside the face: the oval pushed outward sideways (its widest points by side_width face
    # sizes, the chin not at all), from the eye line down, minus the oval itself
    oval = lm[FACE_OVAL]
    lateral = (oval - oval.mean(0)) @ side
    lateral = np.clip(lateral / max(np.abs(lateral).max(), 1e-9), -1.0, 1.0)
    wide = _poly(shape, oval + lateral[:, None] * side[None] * (cfg.side_width * size))
    along = (xx - eyes[0]) * down[0] + (yy - eyes[1]) * down[1]     # px down from the eyes
    beside = (wide & (1 - face) & (along >= 0)).astype(np.uint8)
    # from the brows' upper edge down (the forehead above is where hair frames the face)
    top = float(((lm[list(RIGHT_BROW) + list(LEFT_BROW)] - eyes) @ down).min())
    below_brows = (along >= top).astype(np.uint8)
    # above the mouth corners (below them, on the chin and the jaw, beards and stubble grow)
    above_mouth = (along < float((mouth - eyes) @ down)).astype(np.uint8)
    return {"face": face, "features": feat, "patches": patches, "below_jaw": below,
            "beyond_neck": below & (1 - neck) & (1 - beside), "beside": beside,
            "below_brows": below_brows, "above_mouth": above_mouth,
            "around_eyes": around_eyes, "pale_keep": pale_keep, "size": size}


# the pipeline's modes (PipelineConfig.skin_mask): what of the photo may paint the skin
SKIN_MASK_MODES = ("off", "hands", "face", "full")


def config_for_mode(mode: str) -> SkinMaskConfig:
    """"off": nothing taken out; "hands": hands, and hair hanging beside the face; "face"
    (the default): + the skin-colour test inside the face below the brows (strands, phones);
    "full": + the test below the jaw (clothes)."""
    if mode not in SKIN_MASK_MODES:
        raise ValueError(f"skin_mask must be one of {SKIN_MASK_MODES}, not {mode!r}")
    return SkinMaskConfig(enabled=mode != "off", face_test=mode in ("face", "full"),
                          neck=mode == "full")


@dataclass
class SkinColourModel:
    mean: np.ndarray                   # (3,) (log2 brightness / lightness_tolerance, r, g)
    inv_cov: np.ndarray                # (3, 3)
    n_pixels: int
    inlier_share: float
    # the patches' hue (degrees around the grey point in the rg plane), saturation (distance
    # from grey) and log2 brightness, medians, and the hue's robust spread: for the shadow test
    hue: float = 0.0
    hue_sigma: float = 0.0
    saturation: float = 0.0
    brightness: float = 0.0

    def distance(self, col: np.ndarray, cfg: SkinMaskConfig) -> np.ndarray:
        x = col.reshape(-1, 3) * np.array([1.0 / cfg.lightness_tolerance, 1.0, 1.0], np.float32)
        x = x - self.mean.astype(np.float32)
        a = self.inv_cov
        # written out (no matrix product): BLAS threads would only contend for the cores
        d2 = (a[0, 0] * x[:, 0] * x[:, 0] + a[1, 1] * x[:, 1] * x[:, 1]
              + a[2, 2] * x[:, 2] * x[:, 2] + 2 * a[0, 1] * x[:, 0] * x[:, 1]
              + 2 * a[0, 2] * x[:, 0] * x[:, 2] + 2 * a[1, 2] * x[:, 1] * x[:, 2])
        return np.sqrt(np.maximum(d2, 0.0)).reshape(col.shape[:2])


def colour_features(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 RGB -> the colour model's space, float32 (log2 brightness, r, g): r and g
    are the chromaticities R/(R+G+B), G/(R+G+B) in percent, which do not change when the light
    on the skin gets brighter or darker (shading scales R, G and B alike); the brightness is
    kept on a log scale (a shadow that halves the light moves it by 1)."""
    r, g, b = (rgb[..., c].astype(np.float32) + 3.0 for c in range(3))
    tot = r + g + b
    inv = 100.0 / tot
    return np.stack([np.log2(tot), r * inv, g * inv], -1)


def fit_skin_model(col: np.ndarray, patch: np.ndarray,
                   cfg: SkinMaskConfig) -> SkinColourModel | None:
    """A Gaussian in (log2 brightness / lightness_tolerance, r, g) over the patch pixels,
    robustly: a median / MAD start, then the mean and covariance of the pixels within 3 robust
    sigmas (hair or a phone over part of a patch does not move it). None with too few patch
    pixels."""
    x = col[patch.astype(bool)].astype(np.float64)
    if len(x) < cfg.min_patch_px:
        return None
    x[:, 0] /= cfg.lightness_tolerance
    floor = np.asarray(cfg.min_sigma, np.float64) * np.array([1 / cfg.lightness_tolerance, 1, 1])
    med = np.median(x, 0)
    mad = np.maximum(1.4826 * np.median(np.abs(x - med), 0), floor)
    d = np.sqrt((((x - med) / mad) ** 2).sum(1))
    inl = x[d < 3.0]
    if len(inl) < cfg.min_patch_px // 2:
        inl = x
    mean = inl.mean(0)
    dev = inl - mean
    cov = np.einsum("ni,nj->ij", dev, dev) / max(len(inl) - 1, 1) + np.diag(floor ** 2)
    hue, sat = _hue_sat(inl[:, 1], inl[:, 2])
    h0 = float(np.median(hue))
    return SkinColourModel(mean, _inv3(cov), len(x), float(len(inl) / len(x)), hue=h0,
                           hue_sigma=float(1.4826 * np.median(np.abs(hue - h0))),
                           saturation=float(np.median(sat)),
                           brightness=float(np.median(inl[:, 0])) * cfg.lightness_tolerance)


def _hue_gap(hue, model: "SkinColourModel"):
    """Degrees (0-180) between hues and the cheek patches' hue."""
    return np.abs((np.asarray(hue) - model.hue + 180.0) % 360.0 - 180.0)


def _face_depth(reg: dict) -> np.ndarray:
    """Each pixel's distance (px) in from the face oval's outline, computed once per regions."""
    if "face_depth" not in reg:
        reg["face_depth"] = cv2.distanceTransform(reg["face"], cv2.DIST_L2, 5)
    return reg["face_depth"]


def _hue_sat(r, g):
    dr, dg = np.asarray(r) - 100.0 / 3, np.asarray(g) - 100.0 / 3
    return np.degrees(np.arctan2(dg, dr)), np.hypot(dr, dg)


def shadowed_skin(col: np.ndarray, model: SkinColourModel, cfg: SkinMaskConfig,
                  hue_deg=None) -> np.ndarray:
    """(n,) bool for colour rows (n, 3): skin in shadow. Shade keeps the skin's hue, darkens it
    (up to `shadow_depth` log2 steps) and saturates it (light scattered inside the skin), which
    moves it off the lit patches' Gaussian; hair, clothes and phones differ in hue, are greyer
    or darker still. `hue_deg`: the hue tolerance, one or per row (default shadow_hue_deg)."""
    hue, sat = _hue_sat(col[:, 1], col[:, 2])
    dh = _hue_gap(hue, model)
    lo, hi = cfg.shadow_saturation
    db = col[:, 0] - model.brightness
    hue_deg = cfg.shadow_hue_deg if hue_deg is None else hue_deg
    return ((dh <= np.maximum(hue_deg, 3.0 * model.hue_sigma))
            & (sat >= lo * model.saturation)
            & (sat <= max(hi * model.saturation, cfg.shadow_saturation_abs))
            & (db >= -cfg.shadow_depth) & (db <= 0.5))


def _inv3(m: np.ndarray) -> np.ndarray:
    """Inverse of a 3x3 matrix by its adjugate (no LAPACK call: its threads would only
    contend for the shared cores)."""
    a = np.asarray(m, np.float64)
    adj = np.array([[a[1, 1] * a[2, 2] - a[1, 2] * a[2, 1], a[0, 2] * a[2, 1] - a[0, 1] * a[2, 2],
                     a[0, 1] * a[1, 2] - a[0, 2] * a[1, 1]],
                    [a[1, 2] * a[2, 0] - a[1, 0] * a[2, 2], a[0, 0] * a[2, 2] - a[0, 2] * a[2, 0],
                     a[0, 2] * a[1, 0] - a[0, 0] * a[1, 2]],
                    [a[1, 0] * a[2, 1] - a[1, 1] * a[2, 0], a[0, 1] * a[2, 0] - a[0, 0] * a[2, 1],
                     a[0, 0] * a[1, 1] - a[0, 1] * a[1, 0]]])
    return adj / (a[0] @ adj[:, 0])


def skin_probability(col: np.ndarray, model: SkinColourModel, cfg: SkinMaskConfig) -> np.ndarray:
    d = model.distance(col, cfg)
    t = np.clip((d - cfg.skin_d0) / (cfg.skin_d1 - cfg.skin_d0), 0.0, 1.0)
    return (1.0 - t * t * (3 - 2 * t)).astype(np.float32)


def hand_region(shape, hands, skin: np.ndarray | None, face: np.ndarray,
                cfg: SkinMaskConfig) -> np.ndarray:
    """uint8 0/1: each hand's landmark hull widened to the fingers, plus skin-coloured pixels
    connected to it within `hand_grow` of its size outside the face oval (inside the face the
    skin model cannot tell a hand from a cheek, so only the widened hull counts there)."""
    out = np.zeros(shape, np.uint8)
    for pts in hands or []:
        pts = np.asarray(pts, np.float64)[:, :2]
        size = float(max(np.ptp(pts[:, 0]), np.ptp(pts[:, 1]), 1.0))
        core = _grow(_hull(shape, pts), cfg.hand_widen * size)
        out |= core
        if skin is None or cfg.hand_grow <= 0:
            continue
        zone = _grow(core, cfg.hand_grow * size) & (1 - face)
        cand = ((skin > 0.5) & zone.astype(bool)).astype(np.uint8) | core
        n, lab = cv2.connectedComponents(cand, connectivity=8)
        hit = np.unique(lab[core.astype(bool)])
        hit = hit[hit > 0]
        if len(hit):
            out |= np.isin(lab, hit).astype(np.uint8)
    return out


def strands(col: np.ndarray, model: SkinColourModel, reg: dict,
            cfg: SkinMaskConfig) -> np.ndarray:
    """HxW bool: thin dark lines inside the face (away from its outline, where the face meets
    hair or background), somewhat off the skin colour (see SkinMaskConfig.strand_*)."""
    r = max(1.5, cfg.strand_width * reg["size"])
    bright = np.ascontiguousarray(col[..., 0])
    inner = cv2.erode(reg["face"], _disk(2 * r)).astype(bool)
    if not inner.any():
        return inner
    ys, xs = np.nonzero(inner)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    pad = int(np.ceil(r)) + 1
    y0, x0 = max(0, y0 - pad), max(0, x0 - pad)
    y1, x1 = min(bright.shape[0], y1 + pad), min(bright.shape[1], x1 + pad)
    out = np.zeros(bright.shape, bool)
    bh = cv2.morphologyEx(bright[y0:y1, x0:x1], cv2.MORPH_BLACKHAT, _disk(r))
    dark = bh > cfg.strand_contrast
    off = model.distance(col[y0:y1, x0:x1], cfg) > cfg.strand_d
    out[y0:y1, x0:x1] = dark & off
    return out & inner


def mirror_agrees(col: np.ndarray, landmarks: np.ndarray, ys: np.ndarray, xs: np.ndarray,
                  model: SkinColourModel, size: float, cfg: SkinMaskConfig,
                  features: np.ndarray | None = None) -> np.ndarray:
    """(n,) bool for the pixels (ys, xs): the colour matches the neighbourhood of the pixel's
    mirror twin (found by interpolating the landmark twins' positions piecewise linearly over
    the landmarks' triangulation), channel by channel within `mirror_tolerance` sigmas of the
    skin model. Near the face's midline (twin within the neighbourhood) the pixel must match
    the neighbourhoods on both sides of it instead. Pixels whose twin (or side) falls outside
    the photo or the landmarks, or inside `features` (eyes, brows, lips: dark for their own
    reasons), get False (no evidence)."""
    from scipy.spatial import Delaunay

    n = len(ys)
    if n == 0:
        return np.zeros(0, bool)
    has = np.flatnonzero(LANDMARK_TWIN >= 0)
    src = np.asarray(landmarks, np.float64)[has]
    dst = np.asarray(landmarks, np.float64)[LANDMARK_TWIN[has]]
    tri = Delaunay(src)
    pts = np.stack([xs + 0.5, ys + 0.5], 1).astype(np.float64)
    simplex = tri.find_simplex(pts)
    inside = simplex >= 0
    t = tri.transform[simplex[inside]]
    b2 = np.einsum("nij,nj->ni", t[:, :2], pts[inside] - t[:, 2])
    bary = np.concatenate([b2, 1 - b2.sum(1, keepdims=True)], 1)
    twin = np.full((n, 2), -1e9)
    twin[inside] = np.einsum("nk,nkc->nc", bary, dst[tri.simplices[simplex[inside]]])
    r = max(1.0, cfg.mirror_radius * size)
    h, w = col.shape[:2]
    feat = np.zeros((h, w), bool) if features is None else features.astype(bool)

    def usable_at(qx, qy):
        qi, qj = np.floor(qx).astype(np.int64), np.floor(qy).astype(np.int64)
        ok = (qi >= 0) & (qi < w) & (qj >= 0) & (qj < h)
        ok[ok] = ~feat[qj[ok], qi[ok]]
        return ok, np.clip(qi, 0, w - 1), np.clip(qj, 0, h - 1)

    ok, tx, ty = usable_at(twin[:, 0], twin[:, 1])
    ok &= inside
    far = np.hypot(twin[:, 0] - pts[:, 0], twin[:, 1] - pts[:, 1]) > 2.5 * r
    # Near the midline the twin is the pixel itself: there, ask instead whether the pixel
    # matches the face on both sides of it (a beard or a shadow under the lip is as wide as
    # it is symmetric; a strand down the nose is not).
    eyes = (np.asarray(landmarks)[list(RIGHT_EYE_OPENING)].mean(0)
            - np.asarray(landmarks)[list(LEFT_EYE_OPENING)].mean(0))
    side = eyes / max(np.linalg.norm(eyes), 1e-9) * (3.0 * r)
    okl, lx, ly = usable_at(pts[:, 0] + side[0], pts[:, 1] + side[1])
    okr, rx, ry = usable_at(pts[:, 0] - side[0], pts[:, 1] - side[1])
    mid = inside & ~far & okl & okr
    ok &= far
    k = _disk(r)
    sd = np.sqrt(np.diag(_inv3(model.inv_cov)))
    sd = sd * np.array([cfg.lightness_tolerance, 1.0, 1.0])
    agree = ok | mid
    if not agree.any():
        return agree
    # the neighbourhood filters run on the face's bounding box only
    pad = int(np.ceil(4 * r)) + 1
    lmk = np.asarray(landmarks)
    x0, y0 = (max(0, int(v) - pad) for v in lmk.min(0))
    x1, y1 = min(w, int(lmk[:, 0].max()) + pad + 1), min(h, int(lmk[:, 1].max()) + pad + 1)
    j, m = np.flatnonzero(ok), np.flatnonzero(mid)

    def box(qx, qy):
        return np.clip(qy - y0, 0, y1 - y0 - 1), np.clip(qx - x0, 0, x1 - x0 - 1)

    for c in range(3):
        ch = np.ascontiguousarray(col[y0:y1, x0:x1, c])
        lo, hi = cv2.erode(ch, k), cv2.dilate(ch, k)
        tol = cfg.mirror_tolerance * sd[c]
        v = col[ys, xs, c]
        for idx, qx, qy in ((j, tx, ty), (m, lx, ly), (m, rx, ry)):
            bj = box(qx[idx], qy[idx])
            agree[idx] &= (v[idx] >= lo[bj] - tol) & (v[idx] <= hi[bj] + tol)
    return agree


def occluder_blobs(mask: np.ndarray, size: float, cfg: SkinMaskConfig) -> np.ndarray:
    """The non-skin blobs of `mask` that are occluders: not the small ones (pores, noise),
    and not the compact mid-sized ones (moles, birthmarks, blotches: the face's own marks);
    thin or large ones stay (strands, frames, phones, hands' shadows)."""
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    area = stats[:, cv2.CC_STAT_AREA].astype(np.float64)
    bw = stats[:, cv2.CC_STAT_WIDTH].astype(np.float64)
    bh = stats[:, cv2.CC_STAT_HEIGHT].astype(np.float64)
    fill = area / np.maximum(bw * bh, 1.0)
    aspect = np.maximum(bw, bh) / np.maximum(np.minimum(bw, bh), 1.0)
    mark = (area < cfg.max_mark * size * size) & (fill > 0.35) & (aspect < 3.0)
    keep = (area >= cfg.min_blob * size * size) & ~mark
    keep[0] = False
    return keep[lab]


def skin_islands(usable: np.ndarray, max_area: float,
                 touching: np.ndarray | None = None) -> np.ndarray:
    """The pixels of `usable` (bool) in connected regions (8-connected) smaller than
    `max_area` pixels; with `touching` (bool), only the regions that reach into it."""
    n, lab, stats, _ = cv2.connectedComponentsWithStats(usable.astype(np.uint8), connectivity=8)
    small = stats[:, cv2.CC_STAT_AREA] < max_area
    if touching is not None:
        near = np.zeros(n, bool)
        near[np.unique(lab[touching & usable])] = True
        small &= near
    small[0] = False
    return small[lab]


def pale_edge(col: np.ndarray, model: SkinColourModel, reg: dict,
              cfg: SkinMaskConfig) -> np.ndarray:
    """HxW bool: near-grey pixels brighter than the cheek patches at the face's edge (inside
    the oval within `face_min_depth` of its outline and below the brows, the eyes, brows, lips
    and nose excluded: regions["pale_keep"]) and beside the face (see
    SkinMaskConfig.edge_grey)."""
    face = reg["face"].astype(bool)
    zone = reg["beside"].astype(bool) if cfg.sides else np.zeros_like(face)
    if cfg.face_test:
        zone |= (face & (_face_depth(reg) < max(cfg.face_min_depth, 0.0) * reg["size"])
                 & reg["below_brows"].astype(bool))
    zone &= ~reg["pale_keep"].astype(bool)
    out = np.zeros(face.shape, bool)
    if not zone.any():
        return out
    ys, xs = np.nonzero(zone)
    c = col[ys, xs]
    hue, sat = _hue_sat(c[:, 1], c[:, 2])
    off_hue = _hue_gap(hue, model) > max(cfg.shadow_hue_face_deg, 3.0 * model.hue_sigma)
    grey = (sat < cfg.edge_white * model.saturation) | \
        ((sat < cfg.edge_grey * model.saturation) & off_hue)
    pale = grey & (c[:, 0] > model.brightness + cfg.edge_bright)
    out[ys[pale], xs[pale]] = True
    return out


def shallow_in_face(mask: np.ndarray, face: np.ndarray, min_depth: float,
                    depth: np.ndarray | None = None) -> np.ndarray:
    """The pixels of `mask` inside `face` that belong to blobs never reaching `min_depth` px in
    from the face's edge (the blob's parts outside the face are not returned). `depth`: the
    face's distance transform, if already made."""
    inside = mask.astype(bool) & face.astype(bool)
    if not inside.any():
        return inside
    if depth is None:
        depth = cv2.distanceTransform(face.astype(np.uint8), cv2.DIST_L2, 5)
    n, lab = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    deepest = np.zeros(n, np.float32)
    np.maximum.at(deepest, lab[inside], depth[inside])
    shallow = deepest < min_depth
    shallow[0] = False
    return shallow[lab] & inside


def usable_skin(rgb: np.ndarray, landmarks: np.ndarray, hands=None,
                config: SkinMaskConfig | None = None,
                foreground: np.ndarray | None = None) -> SkinMask:
    """The usable-skin mask of a photo (see the module doc). `hands`: a list of (21, 2)
    photo-pixel hand landmark arrays (may be empty or None). `foreground`: the person mask
    (HxW, 1 = person), if known: the pale-edge test then looks only at the person (a pale
    background beside the face is no paint anyway, and its test, widened, would eat into
    the face's edge)."""
    cfg = config or SkinMaskConfig()
    t0 = time.perf_counter()
    h, w = rgb.shape[:2]
    if not cfg.enabled:
        ones = np.ones((h, w), np.float32)
        z = np.zeros((h, w), bool)
        return SkinMask(ones, z, z, None, {"enabled": False})
    s = min(1.0, cfg.work_max_side / max(h, w))
    small = rgb if s >= 1.0 else cv2.resize(rgb, (round(w * s), round(h * s)),
                                            interpolation=cv2.INTER_AREA)
    sh = small.shape[:2]
    lm = np.asarray(landmarks, np.float64)[:, :2] * s
    hands_s = [np.asarray(p, np.float64)[:, :2] * s for p in (hands or []) if cfg.hands]
    reg = face_regions(sh, lm, cfg)
    size = reg["size"]
    col = colour_features(small)
    model = fit_skin_model(col, reg["patches"], cfg)
    skin = skin_probability(col, model, cfg) if model is not None else None
    hand = hand_region(sh, hands_s, skin, reg["face"], cfg)
    occ = np.zeros(sh, bool)
    n_mirrored = 0
    if skin is not None:
        zone = reg["face"] & (1 - reg["features"]) if cfg.face_test else \
            np.zeros_like(reg["face"])
        if not cfg.forehead_test:
            zone &= reg["below_brows"]
        if not cfg.chin_test:
            zone &= reg["above_mouth"]
        if cfg.neck:
            zone |= reg["below_jaw"]
        if cfg.sides:
            zone |= reg["beside"]
        occ = (skin < 0.5) & zone.astype(bool)
        # below the jaw and beside the face: (region, its skin test's looseness, darker than
        # the cheeks by this is not skin there); in this order, so that where the two meet
        # (the cheeks' sides down to the jaw angles) the side's test decides
        outer = [(reg[name].astype(bool), tol, dark) for on, name, tol, dark in (
            (cfg.neck, "below_jaw", cfg.neck_tolerance, cfg.neck_dark),
            (cfg.sides, "beside", cfg.side_tolerance, cfg.side_dark)) if on]
        for sel, tol, _ in outer:                    # looser there (shade, ears)
            if tol != 1.0:
                loose = replace(cfg, skin_d0=cfg.skin_d0 * tol, skin_d1=cfg.skin_d1 * tol)
                occ[sel] = skin_probability(col[sel][:, None], model, loose)[:, 0] < 0.5
        if cfg.shadow_depth > 0:
            ys, xs = np.nonzero(occ)
            # inside the face stubble greys the hue a little: a wider hue tolerance there
            hue_deg = np.where(reg["face"][ys, xs] > 0,
                               max(cfg.shadow_hue_face_deg, cfg.shadow_hue_deg), cfg.shadow_hue_deg)
            shade = shadowed_skin(col[ys, xs], model, cfg, hue_deg)
            occ[ys[shade], xs[shade]] = False
        # far darker than the cheeks in skin's hue is hair (or a dark collar), not skin in
        # shade, beside the face and below the jaw
        for sel, _, dark in outer:
            if dark > 0:
                occ[sel] |= col[sel][:, 0] < model.brightness - dark
        # near grey below the jaw is cloth or background (shade saturates skin, it does not
        # grey it); where the side band reaches below the jaw, a lower floor (stubble greys
        # the jaw's side)
        if cfg.neck:
            below = reg["below_jaw"].astype(bool)
            band = reg["beside"].astype(bool) if cfg.sides else np.zeros_like(below)
            for sel, share in ((below & ~band, cfg.neck_grey), (below & band, cfg.neck_side_grey)):
                if share > 0:
                    sat = _hue_sat(col[sel][:, 1], col[sel][:, 2])[1]
                    occ[sel] |= sat < share * model.saturation
        if cfg.strand_contrast > 0 and cfg.face_test:
            occ |= strands(col, model, reg, cfg) & zone.astype(bool) & \
                ~reg["around_eyes"].astype(bool)
        if cfg.mirror_check:
            ys, xs = np.nonzero(occ & reg["face"].astype(bool))
            sym = mirror_agrees(col, lm, ys, xs, model, size, cfg, reg["features"])
            occ[ys[sym], xs[sym]] = False
            n_mirrored = int(sym.sum())
        occ = occluder_blobs(occ, size, cfg)
        if cfg.face_test and cfg.face_min_depth > 0:
            occ &= ~shallow_in_face(occ, reg["face"], cfg.face_min_depth * size,
                                    _face_depth(reg))
        occ = _grow(occ, cfg.occluder_widen * size).astype(bool)
        # the widening stays out of the features (an eye beside a strand keeps its colour)
        occ &= ~reg["features"].astype(bool)
        if cfg.edge_grey > 0 and model.saturation >= cfg.edge_min_saturation:
            pale = pale_edge(col, model, reg, cfg)
            if foreground is not None:
                fg = np.asarray(foreground, np.float32)
                if fg.shape != sh:
                    fg = cv2.resize(fg, (sh[1], sh[0]), interpolation=cv2.INTER_AREA)
                pale &= fg > 0.5
            pale = _grow(pale, cfg.occluder_widen * size)
            occ |= pale.astype(bool) & ~reg["pale_keep"].astype(bool)
    if cfg.neck:                       # what below the jaw is not the neck (the column)
        occ |= reg["beyond_neck"].astype(bool)
    bad = occ | hand.astype(bool)
    if cfg.neck and cfg.neck_island > 0 and hand.any():
        bad |= skin_islands(~bad & reg["below_jaw"].astype(bool), cfg.neck_island * size * size,
                            _grow(hand, cfg.hand_widen * size).astype(bool))
    bad = bad.astype(np.float32)
    sigma = cfg.feather * size
    if sigma > 0.3:
        bad = np.maximum(bad, cv2.GaussianBlur(bad, (0, 0), sigma))
    usable = 1.0 - bad
    face = reg["face"].astype(bool)
    face_occluded = float(bad[face].mean()) if face.any() else 0.0
    if s < 1.0:
        usable = cv2.resize(usable, (w, h), interpolation=cv2.INTER_LINEAR)
    info = {"enabled": True, "n_hands": len(hands_s),
            "colour_model": None if model is None else
            {"n_patch_px": model.n_pixels, "inlier_share": round(model.inlier_share, 3)},
            "face_occluded": round(face_occluded, 4),
            "kept_by_mirror_px": n_mirrored,
            "time_s": round(time.perf_counter() - t0, 4)}
    return SkinMask(np.clip(usable, 0.0, 1.0).astype(np.float32), hand.astype(bool),
                    occ.astype(bool), skin, info, work_scale=s)
