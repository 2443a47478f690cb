"""Likeness measures of heads rendered from photos (scripts/bench_likeness.py): pure numpy, no
dlib, no Blender, so they are unit-tested on synthetic encodings and images.

The judge is a face-recognition network that maps a face image to a 128-d encoding (dlib's
ResNet in the benchmark); two faces are "the same person" when their encodings are closer
than THRESHOLD (dlib's 0.6). For one view v (the photo's own camera, yaw 0, yaw 30, ...):

  found      the judge finds a face in head i's render of view v
  genuine    d(photo_i, render_i)                 mean over the renders found
  verified   share of ALL judged photos whose render is found and has genuine < THRESHOLD
  impostor   d(photo_j, render_i), j != i         mean over the renders found
  rank-1     render_i is nearer to photo_i than every other render_j of the view (found ones),
             as a share of the renders found

The set of photos is the photos the judge can read (an encoding was found in the photo); a
head that is missing (its pipeline failed) counts as a render not found.

Images: HxWx3 float64 RGB in [0, 1], rows top-to-bottom; renders arrive as HxWx4 uint8 RGBA.
Masks: HxW bool. Landmark points: (N, 2) pixel coordinates u right, v down, origin at the
top-left corner of the image (pixel (i, j) has its centre at (j + 0.5, i + 0.5)).
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

THRESHOLD = 0.6          # dlib's "same person" distance
GREY = 128 / 255.0       # the background renders are composited on (as the reference judge)


# -- identity distances ------------------------------------------------------------------
def face_distance(a, b) -> float:
    """Euclidean distance of two encodings."""
    return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))


def view_scores(photos: Mapping[str, np.ndarray], renders: Mapping[str, np.ndarray | None],
                threshold: float = THRESHOLD) -> dict:
    """Scores of one view. `photos`: stem -> encoding of every judged photo (photos without an
    encoding must be left out by the caller); `renders`: stem -> encoding of that photo's head
    rendered in this view, None (or absent) where the judge found no face / there is no head.
    Renders of stems that are not in `photos` are ignored.

    Returns {"photos", "found", "genuine_mean", "genuine_below", "verified", "impostor_mean",
    "rank1", "genuine": {stem: distance}}; means are None when nothing was found."""
    stems = sorted(photos)
    found = [s for s in stems if renders.get(s) is not None]
    P = {s: np.asarray(photos[s], np.float64) for s in stems}
    R = {s: np.asarray(renders[s], np.float64) for s in found}
    genuine, impostor, rank1 = {}, [], 0
    for s in found:
        d = {t: face_distance(P[t], R[s]) for t in stems}
        genuine[s] = d[s]
        impostor += [d[t] for t in stems if t != s]
        # identification: among the renders of this view, is head s the nearest to photo s?
        ds = {t: face_distance(P[s], R[t]) for t in found}
        rank1 += int(min(ds, key=ds.get) == s)
    g = np.array(list(genuine.values()))
    return {
        "photos": len(stems),
        "found": len(found),
        "genuine_mean": float(g.mean()) if g.size else None,
        "genuine_below": float((g < threshold).mean()) if g.size else None,
        "verified": float((g < threshold).sum()) / len(stems) if stems else None,
        "impostor_mean": float(np.mean(impostor)) if impostor else None,
        "rank1": rank1 / len(found) if found else None,
        "genuine": genuine,
    }


def genuine_ratio(ours: dict, peer: dict) -> dict:
    """ours / peer of the genuine distance of one view (below 1: ours looks more like the
    person). "all": the ratio of the two means, each over its own found renders; "paired": the
    ratio of the means over the photos whose render is found for both, with their number."""
    def ratio(a, b):
        return None if a is None or b is None or b == 0 else a / b

    common = sorted(set(ours["genuine"]) & set(peer["genuine"]))
    paired = ratio(float(np.mean([ours["genuine"][s] for s in common])) if common else None,
                   float(np.mean([peer["genuine"][s] for s in common])) if common else None)
    return {"all": ratio(ours["genuine_mean"], peer["genuine_mean"]), "paired": paired,
            "n_paired": len(common)}


def between_views_mean(renders_by_view: Mapping[str, Mapping[str, np.ndarray | None]]) -> float | None:
    """Mean distance between the found renders of one head in different views (all pairs of
    views, all heads): how consistent the head's identity is as it turns."""
    stems = sorted({s for r in renders_by_view.values() for s in r})
    pairs = []
    for s in stems:
        e = [np.asarray(r[s], np.float64) for r in renders_by_view.values() if r.get(s) is not None]
        pairs += [face_distance(x, y) for i, x in enumerate(e) for y in e[i + 1:]]
    return float(np.mean(pairs)) if pairs else None


def box_iou(a, b) -> float:
    """Intersection over union of two boxes (x0, y0, x1, y1)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


# -- images --------------------------------------------------------------------------------
def composite(rgba, background=GREY) -> np.ndarray:
    """HxWx4 uint8 (or float in [0, 1]) RGBA over `background` (a grey level in [0, 1], an RGB
    triple, or an HxWx3 image in [0, 1]) -> HxWx3 float64 in [0, 1]."""
    a = np.asarray(rgba)
    a = a.astype(np.float64) / 255.0 if a.dtype == np.uint8 else a.astype(np.float64)
    if a.ndim != 3 or a.shape[2] != 4:
        raise ValueError(f"expected HxWx4 RGBA, got {a.shape}")
    bg = np.broadcast_to(np.asarray(background, np.float64), a.shape[:2] + (3,))
    alpha = a[..., 3:4]
    return a[..., :3] * alpha + bg * (1.0 - alpha)


def polygon_mask(points, width: int, height: int) -> np.ndarray:
    """HxW bool: the pixels whose centres lie inside the closed polygon `points` ((N, 2) u, v
    pixel coordinates, corner origin; see the module doc)."""
    from skimage.draw import polygon

    p = np.asarray(points, np.float64)
    if p.ndim != 2 or p.shape[1] != 2 or len(p) < 3:
        raise ValueError(f"expected (N>=3, 2) polygon points, got {p.shape}")
    mask = np.zeros((int(height), int(width)), bool)
    # skimage puts pixel (r, c)'s centre at (r, c); ours is at (r + 0.5, c + 0.5)
    rr, cc = polygon(p[:, 1] - 0.5, p[:, 0] - 0.5, shape=mask.shape)
    mask[rr, cc] = True
    return mask


def _check_masked_pair(ref, test, mask):
    ref, test, mask = np.asarray(ref, np.float64), np.asarray(test, np.float64), np.asarray(mask, bool)
    if ref.shape != test.shape or ref.ndim != 3 or mask.shape != ref.shape[:2]:
        raise ValueError(f"shapes differ: {ref.shape} {test.shape} mask {mask.shape}")
    if not mask.any():
        raise ValueError("the mask is empty")
    return ref, test, mask


def psnr_in_mask(ref, test, mask) -> float:
    """PSNR in dB of two HxWx3 images in [0, 1] over the pixels of `mask` only (all three
    channels); inf where they agree exactly."""
    ref, test, mask = _check_masked_pair(ref, test, mask)
    mse = float(np.mean((ref[mask] - test[mask]) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(1.0 / mse)


def ssim_in_mask(ref, test, mask, win_size: int = 7) -> float:
    """Mean SSIM of two HxWx3 images in [0, 1] over the pixels of `mask`: skimage's SSIM map
    (data range 1, a win_size uniform window, the three channels averaged), averaged over the
    mask. Windows near the mask's edge see pixels just outside it."""
    from skimage.metrics import structural_similarity

    ref, test, mask = _check_masked_pair(ref, test, mask)
    win = min(win_size, min(ref.shape[:2]) - (1 - min(ref.shape[:2]) % 2))
    if win < 3:
        raise ValueError(f"images of {ref.shape[:2]} are too small for SSIM")
    _, smap = structural_similarity(ref, test, channel_axis=-1, data_range=1.0, win_size=win,
                                    full=True)
    return float(smap.mean(axis=2)[mask].mean())


# -- timing --------------------------------------------------------------------------------
def cold_warm(seconds: Sequence[float]) -> dict:
    """{"cold": the first run, "warm_median": the median of the others (None with one run),
    "n"}: the first run in a process pays the imports and model loads."""
    s = [float(x) for x in seconds]
    if not s:
        return {"cold": None, "warm_median": None, "n": 0}
    return {"cold": s[0], "warm_median": float(np.median(s[1:])) if len(s) > 1 else None,
            "n": len(s)}


def mean_or_none(values) -> float | None:
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    return float(np.mean(v)) if v else None
