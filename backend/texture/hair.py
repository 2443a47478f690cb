"""A hair-like pattern for the scalp the photo did not show.

The unseen scalp takes the colour of the seen hair (bake.py); painted flat, the back of the
head reads as a dyed bald dome. Real hair shows strands: fine light and dark streaks running
down from the crown, much longer than they are wide. This module makes that pattern on the
scalp's surface points, so it is continuous across UV seams and the same for every texture
size:
 - each point gets coordinates (azimuth around the vertical axis through the crown, polar
   angle from the crown), the frame in which strands are lines of constant azimuth;
 - the pattern is smooth value noise, high-frequency across strands (azimuth) and
   low-frequency along them (polar angle), summed over a few octaves, in [-1, 1];
 - `shade_hair` scales a colour's brightness by (1 + amount * pattern), keeping its hue.
Pure numpy; points are metres in the head frame (+Y up, +Z forward). Deterministic for a seed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class HairPatternConfig:
    strands_around: float = 240.0   # noise cells across strands per turn (~2 mm on a head)
    cells_along: float = 10.0       # noise cells along strands from the crown to the nape
    octaves: int = 3
    amount: float = 0.16            # brightness swing of the streaks (+-16 %)
    seed: int = 7


def _value_noise(x: np.ndarray, y: np.ndarray, period_x: int, rng: np.random.Generator
                 ) -> np.ndarray:
    """Smooth value noise on a lattice, periodic in x with `period_x` cells (azimuth wraps)."""
    ny = int(np.ceil(y.max())) + 2 if len(y) else 2
    grid = rng.uniform(-1.0, 1.0, (period_x, ny))
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = x - x0, y - y0
    sx, sy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)     # smoothstep: no lattice creases
    xa, xb = x0 % period_x, (x0 + 1) % period_x
    ya, yb = np.clip(y0, 0, ny - 1), np.clip(y0 + 1, 0, ny - 1)
    top = grid[xa, ya] * (1 - sx) + grid[xb, ya] * sx
    bottom = grid[xa, yb] * (1 - sx) + grid[xb, yb] * sx
    return top * (1 - sy) + bottom * sy


def strand_pattern(points: np.ndarray, crown: np.ndarray,
                   config: HairPatternConfig | None = None) -> np.ndarray:
    """(M,) float32 in [-1, 1]: streaks running down from `crown` over the scalp `points`."""
    cfg = config or HairPatternConfig()
    p = np.asarray(points, np.float64) - np.asarray(crown, np.float64)
    if not len(p):
        return np.zeros(0, np.float32)
    azimuth = (np.arctan2(p[:, 0], p[:, 2]) / (2 * np.pi)) % 1.0          # [0, 1) around
    polar = np.arctan2(np.hypot(p[:, 0], p[:, 2]), -p[:, 1]) / np.pi      # 0 down, 1 up
    along = 1.0 - polar                                                    # 0 at the crown
    rng = np.random.default_rng(cfg.seed)
    out = np.zeros(len(p))
    norm = 0.0
    for o in range(cfg.octaves):
        k = 2 ** o
        period = max(4, int(round(cfg.strands_around * k)))
        out += _value_noise(azimuth * period, along * cfg.cells_along * k, period, rng) / k
        norm += 1.0 / k
    out /= norm
    out /= max(float(np.abs(out).max()), 1e-9)
    return out.astype(np.float32)


def shade_hair(colours: np.ndarray, pattern: np.ndarray, strength: np.ndarray | float,
               amount: float) -> np.ndarray:
    """Colours (M, 3) in [0, 1] with their brightness scaled by 1 + amount * strength *
    pattern; `strength` (M,) or scalar in [0, 1] (0: unchanged, e.g. hair the photo saw)."""
    gain = 1.0 + amount * np.asarray(strength, np.float32) * np.asarray(pattern, np.float32)
    gain = gain[:, None] if np.ndim(gain) == 1 else gain
    return np.clip(np.asarray(colours, np.float32) * gain, 0.0, 1.0)
