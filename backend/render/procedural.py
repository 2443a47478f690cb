"""Procedural solid textures and smooth random fields (seeded, seam-free): skin, hair and
flat-ish materials for the synthetic ground truth, plus the smooth displacement field used to
give synthetic heads detail that the template cannot express.

Every function takes points (M, 3) in metres (head frame) and returns float arrays; colours
are (M, 3) RGB in [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import map_coordinates

_LATTICE = 48            # lattice cells per octave (periodic)


@dataclass
class SolidNoise:
    """Sum of trilinear value-noise octaves, zero mean, roughly unit variance.

    `scales_m` are the feature sizes (metres) of the octaves, `weights` their amplitudes;
    `stretch` (3,) divides coordinates per axis (hair strands: stretched along one axis)."""

    seed: int
    scales_m: tuple = (0.02, 0.008, 0.003, 0.0015)
    weights: tuple = (1.0, 0.6, 0.45, 0.35)
    stretch: tuple = (1.0, 1.0, 1.0)

    def __post_init__(self):
        rng = np.random.default_rng(self.seed)
        self._grids = [rng.standard_normal((_LATTICE,) * 3) for _ in self.scales_m]
        self._offsets = [rng.uniform(0, _LATTICE, 3) for _ in self.scales_m]
        self._norm = 1.0 / np.sqrt(sum(w * w for w in self.weights) * 0.3)

    def __call__(self, points: np.ndarray) -> np.ndarray:
        p = np.asarray(points, np.float64) / np.asarray(self.stretch, np.float64)
        out = np.zeros(len(p))
        for grid, off, s, w in zip(self._grids, self._offsets, self.scales_m, self.weights):
            c = (p / s + off).T
            out += w * map_coordinates(grid, c, order=1, mode="grid-wrap")
        return out * self._norm


def smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


@dataclass
class SkinTexture:
    """Skin: a base tone, blotches, pores and freckles. Callable on (M, 3) points."""

    seed: int
    base_rgb: tuple = (0.78, 0.58, 0.47)
    contrast: float = 0.16

    def __post_init__(self):
        self._tone = SolidNoise(self.seed, (0.03, 0.012), (1.0, 0.5))
        self._fine = SolidNoise(self.seed + 1, (0.004, 0.002, 0.0012), (1.0, 0.8, 0.6))
        self._spots = SolidNoise(self.seed + 2, (0.005, 0.0025), (1.0, 0.7))

    def __call__(self, points: np.ndarray) -> np.ndarray:
        base = np.asarray(self.base_rgb)
        tone = self._tone(points)[:, None]
        fine = self._fine(points)[:, None]
        spots = smoothstep((self._spots(points) - 1.2) / 0.8)[:, None]
        col = base * (1 + 0.6 * self.contrast * tone + self.contrast * fine)
        col = col * (1 - 0.35 * spots) + spots * 0.35 * np.array([0.45, 0.25, 0.18])
        col[:, 0:1] += 0.03 * tone          # redder blotches
        return np.clip(col, 0, 1)


@dataclass
class HairTexture:
    """Hair: dark strands, stretched noise along the vertical axis. Callable on (M, 3)."""

    seed: int
    base_rgb: tuple = (0.28, 0.18, 0.11)

    def __post_init__(self):
        self._strands = SolidNoise(self.seed, (0.01, 0.004, 0.0018), (0.5, 1.0, 0.8),
                                   stretch=(1.0, 4.0, 1.0))
        self._clumps = SolidNoise(self.seed + 1, (0.025,), (1.0,))

    def __call__(self, points: np.ndarray) -> np.ndarray:
        s = self._strands(points)[:, None]
        c = self._clumps(points)[:, None]
        return np.clip(np.asarray(self.base_rgb) * (1 + 0.35 * s + 0.15 * c), 0, 1)


@dataclass
class FlatTexture:
    """A plain material with a little noise (eyes, teeth, gums)."""

    seed: int
    rgb: tuple
    amount: float = 0.06

    def __post_init__(self):
        self._n = SolidNoise(self.seed, (0.003, 0.0015), (1.0, 0.7))

    def __call__(self, points: np.ndarray) -> np.ndarray:
        return np.clip(np.asarray(self.rgb) * (1 + self.amount * self._n(points)[:, None]), 0, 1)


def random_skin_rgb(rng: np.random.Generator) -> tuple:
    """A plausible skin base colour, light to dark."""
    t = rng.uniform(0, 1)
    light, dark = np.array([0.86, 0.66, 0.55]), np.array([0.42, 0.27, 0.18])
    return tuple(light * (1 - t) + dark * t)
