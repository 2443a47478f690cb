"""The paper's Janus filter (section 3.2): PanoHead sometimes paints a blurry face on the back
of the head. A CLIP zero-shot classifier with the class names "back of human head" and "human
front face" scores every BACK view (|azimuth| >= back_min_azimuth_deg); views whose
front-face probability exceeds tau are dropped.

The paper's value of tau was lost in the text we have; 0.5 (the classifier's decision
boundary) is the default here. Scores are kept in the manifest, so a different tau can be
applied later without re-running CLIP (`apply_janus_threshold`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.format import DatasetIndex, PruningManifest, load_rgba
from .embedders import ImageTextEmbedder, zero_shot_probabilities

BACK_CLASS = "back of human head"
FRONT_CLASS = "human front face"


@dataclass
class JanusFilterConfig:
    threshold: float = 0.5               # tau: drop when P(front face) > tau
    back_min_azimuth_deg: float = 120.0  # which views count as back views
    prompt_template: str = "a photo of the {}"
    background: int = 255                # RGBA views are composited on this grey level
    batch_size: int = 32


def composite(rgba: np.ndarray, background: int) -> np.ndarray:
    a = rgba[..., 3:4].astype(np.float32) / 255.0
    return np.round(rgba[..., :3] * a + background * (1 - a)).astype(np.uint8)


def janus_scores(index: DatasetIndex, embedder: ImageTextEmbedder,
                 cfg: JanusFilterConfig | None = None) -> dict[str, dict[str, float]]:
    """{identity: {view: P(front face)}} for every back view."""
    cfg = cfg or JanusFilterConfig()
    prompts = [cfg.prompt_template.format(BACK_CLASS), cfg.prompt_template.format(FRONT_CLASS)]
    todo = [(r, v) for r in index.identities for v in r.views
            if abs(v.azimuth_deg) >= cfg.back_min_azimuth_deg - 1e-6]
    scores: dict[str, dict[str, float]] = {}
    for s in range(0, len(todo), cfg.batch_size):
        chunk = todo[s:s + cfg.batch_size]
        imgs = [composite(load_rgba(r, v), cfg.background) for r, v in chunk]
        p = zero_shot_probabilities(embedder, imgs, prompts)[:, 1]
        for (r, v), pf in zip(chunk, p):
            scores.setdefault(r.identity, {})[v.name] = float(pf)
    return scores


def apply_janus_threshold(scores: dict[str, dict[str, float]], threshold: float) -> PruningManifest:
    dropped = {i: sorted(v for v, p in views.items() if p > threshold)
               for i, views in scores.items()}
    dropped = {i: v for i, v in dropped.items() if v}
    return PruningManifest(dropped_views=dropped, details={
        "janus": {"threshold": threshold, "front_face_probability": scores,
                  "n_scored": sum(len(v) for v in scores.values()),
                  "n_dropped": sum(len(v) for v in dropped.values())}})


def janus_filter(index: DatasetIndex, embedder: ImageTextEmbedder,
                 cfg: JanusFilterConfig | None = None) -> PruningManifest:
    cfg = cfg or JanusFilterConfig()
    return apply_janus_threshold(janus_scores(index, embedder, cfg), cfg.threshold)
