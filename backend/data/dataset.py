"""Training samples from gen3dface-multiview datasets: one random input view and N target views
of one identity, plus points on the prior mesh estimated from the input view.

A sample (dict; `torch.utils.data.default_collate` stacks them into a batch with a leading B):
    input_image    (3, S, S) float32 in [-1, 1], RGB, rows top-to-bottom, composited on the
                   background colour with the view's alpha
    input_mask     (1, S, S) float32 in [0, 1]
    input_w2c      (4, 4)    float32 OpenCV world-to-camera, world = head frame, metres
    input_K        (3, 3)    float32 pixel intrinsics for the S x S image (corner origin)
    target_images  (V, 3, S, S), target_masks (V, 1, S, S), target_w2c (V, 4, 4),
    target_K       (V, 3, 3)  the same for the V target views
    prior_points   (P, 3)    float32 points on the prior mesh (area-weighted), head frame
    prior_vertices (N, 3), prior_faces (F, 3)  only with `return_prior_mesh=True`
                   (not batchable across topologies: use batch size 1 or one topology)
    identity, input_view: str; target_views: list[str]

Sampling (section 3.2 of the paper, following its FaceScape protocol): the input view is drawn
at random among the identity's input candidates (|azimuth| <= input_max_azimuth_deg); the V
targets are drawn at random among its other views ("random"), or spread over azimuth: the
views nearest to V evenly spaced azimuths from a random offset ("spread"), so every sample
covers the whole head. Randomness comes from (seed, epoch, index): the same epoch gives the
same samples, so a resumed run sees the data it would have seen.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..camera import PinholeCamera
from .format import (DatasetIndex, IdentityRecord, PriorMesh, PruningManifest, ViewRecord,
                     load_rgba, read_dataset)

TARGET_SAMPLING = ("random", "spread")


@dataclass
class MultiViewDataConfig:
    roots: list[str] = field(default_factory=list)   # dataset folders (gen3dface-multiview)
    repeats: list[int] | None = None    # per root: how often its identities appear per epoch
    image_size: int = 256               # S: views are centre-cropped to square and resized
    n_target_views: int = 16            # V
    target_sampling: str = "random"     # "random" | "spread"
    input_max_azimuth_deg: float = 90.0
    include_input_in_targets: bool = False
    background: float = 1.0             # grey level the RGBA views are composited on (1 = white)
    prior_points: int = 2048            # P
    return_prior_mesh: bool = False
    use_pruning: bool = True            # honour pruning.json
    seed: int = 0

    def validate(self) -> "MultiViewDataConfig":
        if not self.roots:
            raise ValueError("data.roots: name at least one dataset folder")
        if self.target_sampling not in TARGET_SAMPLING:
            raise ValueError(f"data.target_sampling must be one of {TARGET_SAMPLING}")
        if self.image_size < 8 or self.n_target_views < 1 or self.prior_points < 1:
            raise ValueError("data: image_size >= 8, n_target_views >= 1, prior_points >= 1")
        if self.repeats is not None and len(self.repeats) != len(self.roots):
            raise ValueError("data.repeats needs one entry per root")
        return self


def crop_resize(rgba: np.ndarray, intr, size: int):
    """Centre square crop then resize to size x size; returns (rgba, K (3, 3)) with the
    intrinsics moved along (crop shifts the principal point, resize scales everything)."""
    from PIL import Image
    h, w = rgba.shape[:2]
    s = min(h, w)
    x0, y0 = (w - s) // 2, (h - s) // 2
    crop = rgba[y0:y0 + s, x0:x0 + s]
    if s != size:
        crop = np.asarray(Image.fromarray(crop, "RGBA").resize((size, size), Image.BILINEAR))
    k = PinholeCamera.from_intrinsics(np.eye(4), intr).K
    k[0, 2] -= x0
    k[1, 2] -= y0
    k[:2] *= size / s
    return crop, k


def sample_surface(vertices: np.ndarray, faces: np.ndarray, n: int,
                   rng: np.random.Generator) -> np.ndarray:
    """(n, 3) points uniformly distributed over the mesh surface."""
    tri = vertices[faces].astype(np.float64)                        # (F, 3, 3)
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    if len(faces) == 0 or area.sum() <= 0:
        idx = rng.integers(0, len(vertices), n)
        return vertices[idx].astype(np.float32)
    f = rng.choice(len(faces), size=n, p=area / area.sum())
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    t = tri[f]
    return (t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])
            ).astype(np.float32)


def choose_views(ident: IdentityRecord, usable: list[ViewRecord], cfg: MultiViewDataConfig,
                 rng: np.random.Generator) -> tuple[ViewRecord, list[ViewRecord]]:
    """(input view, target views) for one sample, as described in the module doc."""
    cands = [v for v in usable if v.input_candidate
             and abs(v.azimuth_deg) <= cfg.input_max_azimuth_deg + 1e-6]
    if not cands:
        raise ValueError(f"identity {ident.identity}: no input candidate within "
                         f"{cfg.input_max_azimuth_deg} deg of the front")
    inp = cands[rng.integers(len(cands))]
    pool = usable if cfg.include_input_in_targets else [v for v in usable if v.name != inp.name]
    if not pool:
        raise ValueError(f"identity {ident.identity}: no target views besides the input")
    n = cfg.n_target_views
    if cfg.target_sampling == "random":
        idx = rng.choice(len(pool), size=n, replace=len(pool) < n)
        return inp, [pool[i] for i in idx]
    # spread: nearest view to each of n evenly spaced azimuths (ties broken by elevation)
    offset = rng.uniform(0, 360.0 / n)
    az = np.array([v.azimuth_deg for v in pool])
    el = np.array([v.elevation_deg for v in pool])
    picked, taken = [], set()
    for k in range(n):
        want = (offset + k * 360.0 / n + 180.0) % 360.0 - 180.0
        d = np.abs((az - want + 180.0) % 360.0 - 180.0) + 0.1 * np.abs(el)
        order = np.argsort(d + rng.random(len(d)) * 1e-3)
        i = next((j for j in order if j not in taken), order[0])
        taken.add(int(i))
        picked.append(pool[int(i)])
    return inp, picked


class MultiViewDataset:
    """A torch-style map dataset over identities (torch imported only in __getitem__)."""

    def __init__(self, cfg: MultiViewDataConfig, indexes: list[DatasetIndex] | None = None):
        self.cfg = cfg.validate()
        self.indexes = indexes or [read_dataset(r) for r in cfg.roots]
        self.items: list[tuple[IdentityRecord, list[ViewRecord]]] = []
        repeats = cfg.repeats or [1] * len(self.indexes)
        for index, rep in zip(self.indexes, repeats):
            pruning = PruningManifest.load(index.root) if cfg.use_pruning else None
            for ident in index.identities:
                if pruning and ident.identity in pruning.dropped_identities:
                    continue
                dropped = set(pruning.dropped_views.get(ident.identity, [])) if pruning else set()
                usable = [v for v in ident.views if v.name not in dropped]
                if len(usable) < 2:
                    continue
                self.items.extend([(ident, usable)] * int(rep))
        if not self.items:
            raise ValueError(f"no usable identities in {cfg.roots}")
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.items)

    def _view_arrays(self, ident, view):
        rgba, k = crop_resize(load_rgba(ident, view), view.intrinsics, self.cfg.image_size)
        rgba = rgba.astype(np.float32) / 255.0
        alpha = rgba[..., 3:4]
        rgb = rgba[..., :3] * alpha + self.cfg.background * (1.0 - alpha)
        return (rgb.transpose(2, 0, 1) * 2.0 - 1.0, alpha.transpose(2, 0, 1), k)

    def __getitem__(self, i: int) -> dict:
        import torch
        ident, usable = self.items[i]
        rng = np.random.default_rng([self.cfg.seed, self.epoch, i])
        inp, targets = choose_views(ident, usable, self.cfg, rng)
        img, mask, k = self._view_arrays(ident, inp)
        timgs, tmasks, tks = zip(*(self._view_arrays(ident, v) for v in targets))
        prior_path = ident.prior_path(inp.name)
        if prior_path is None:
            raise ValueError(f"identity {ident.identity}: no prior mesh (see data/priors.py)")
        prior = PriorMesh.load(prior_path)
        f32 = lambda a: torch.from_numpy(np.ascontiguousarray(a, np.float32))  # noqa: E731
        out = {
            "input_image": f32(img), "input_mask": f32(mask),
            "input_w2c": f32(inp.w2c_array), "input_K": f32(k),
            "target_images": f32(np.stack(timgs)), "target_masks": f32(np.stack(tmasks)),
            "target_w2c": f32(np.stack([v.w2c_array for v in targets])),
            "target_K": f32(np.stack(tks)),
            "prior_points": f32(sample_surface(prior.vertices, prior.faces,
                                               self.cfg.prior_points, rng)),
            "identity": ident.identity, "input_view": inp.name,
            "target_views": [v.name for v in targets],
        }
        if self.cfg.return_prior_mesh:
            out["prior_vertices"] = f32(prior.vertices)
            out["prior_faces"] = torch.from_numpy(prior.faces.astype(np.int64))
        return out


def make_dataloader(dataset: MultiViewDataset, batch_size: int, shuffle: bool = True,
                    num_workers: int = 0, seed: int = 0, drop_last: bool = True):
    """A torch DataLoader whose shuffling is seeded (accelerate shards it across processes)."""
    import torch
    g = torch.Generator()
    g.manual_seed(seed)
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
        drop_last=drop_last and len(dataset) >= batch_size, generator=g,
        persistent_workers=num_workers > 0)


def describe(cfg: MultiViewDataConfig) -> str:
    ds = MultiViewDataset(cfg)
    n_views = sum(len(u) for _, u in ds.items)
    return (f"{len(ds)} samples per epoch (identities x repeats) from {len(ds.indexes)} "
            f"dataset(s): {', '.join(str(Path(i.root)) for i in ds.indexes)}; "
            f"{n_views} usable views")
