"""The paper's identity-consistency filter (section 3.2): PanoHead's views of one seed do not
always show the same person. For every identity, the mean pairwise cosine similarity of its
views' face embeddings (ArcFace) measures consistency; only the top-K identities are kept.

Only views that show a face are embedded (|azimuth| <= max_azimuth_deg; a face embedding of
the back of a head is noise). Identities with fewer than `min_views` such views are scored
-1 (dropped first). K is `top_k`, or `keep_fraction` of the identities; the paper's K was
lost in the text we have. Views are cropped to their alpha bounding box before embedding
unless a `crop` callable is given (e.g. the face analyser's aligned crop).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..data.format import DatasetIndex, PruningManifest, load_rgba
from .embedders import FaceEmbedder, l2_normalise
from .janus import composite


@dataclass
class IdentityFilterConfig:
    top_k: int | None = None
    keep_fraction: float | None = 0.8
    max_azimuth_deg: float = 60.0
    min_views: int = 2
    background: int = 255


def alpha_crop(rgba: np.ndarray, background: int = 255) -> np.ndarray:
    """The view composited on the background, cropped to a square around its alpha bbox."""
    a = rgba[..., 3] > 127
    rgb = composite(rgba, background)
    if not a.any():
        return rgb
    ys, xs = np.nonzero(a)
    cy, cx = (ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2
    half = max(ys.max() - ys.min(), xs.max() - xs.min()) / 2 + 1
    y0, y1 = int(max(0, cy - half)), int(min(rgb.shape[0], cy + half))
    x0, x1 = int(max(0, cx - half)), int(min(rgb.shape[1], cx + half))
    return rgb[y0:y1, x0:x1]


def mean_pairwise_similarity(emb: np.ndarray) -> float:
    e = l2_normalise(emb)
    n = len(e)
    if n < 2:
        return -1.0
    s = e @ e.T
    return float((s.sum() - np.trace(s)) / (n * (n - 1)))


def identity_scores(index: DatasetIndex, embedder: FaceEmbedder,
                    cfg: IdentityFilterConfig | None = None,
                    crop: Callable[[np.ndarray], np.ndarray] | None = None) -> dict[str, float]:
    cfg = cfg or IdentityFilterConfig()
    crop = crop or (lambda rgba: alpha_crop(rgba, cfg.background))
    out = {}
    for r in index.identities:
        views = [v for v in r.views if abs(v.azimuth_deg) <= cfg.max_azimuth_deg + 1e-6]
        if len(views) < cfg.min_views:
            out[r.identity] = -1.0
            continue
        out[r.identity] = mean_pairwise_similarity(
            embedder.embed([crop(load_rgba(r, v)) for v in views]))
    return out


def select_top(scores: dict[str, float], cfg: IdentityFilterConfig) -> PruningManifest:
    n = len(scores)
    if cfg.top_k is not None:
        k = min(n, int(cfg.top_k))
    elif cfg.keep_fraction is not None:
        k = int(math.ceil(cfg.keep_fraction * n))
    else:
        raise ValueError("identity filter: set top_k or keep_fraction")
    order = sorted(scores, key=lambda i: (-scores[i], i))     # ties: by name (deterministic)
    keep = set(order[:k])
    dropped = sorted(i for i in scores if i not in keep)
    return PruningManifest(dropped_identities=dropped, details={
        "identity": {"k": k, "mean_pairwise_similarity": scores, "n_dropped": len(dropped)}})


def identity_filter(index: DatasetIndex, embedder: FaceEmbedder,
                    cfg: IdentityFilterConfig | None = None, crop=None) -> PruningManifest:
    cfg = cfg or IdentityFilterConfig()
    return select_top(identity_scores(index, embedder, cfg, crop), cfg)
