"""Separating light from skin: the photo's lighting as 2nd-order spherical harmonics (SH) of
the surface normal, estimated on the seen skin, divided out of the projected colours.

Pure numpy. Normals are unit vectors (M, 3) in the head frame (the fitted head's own frame, so
the light is fixed to the head as it sat in the photo); colours (M, 3) float sRGB-coded RGB in
[0, 1], as a photo stores them. Light adds up, and divides out, in linear light: the fit and the
division are done on linearised colours and the albedo is coded back to sRGB (done on the
sRGB codes, a shading of 0.5 would brighten a shadow ~2.2 times too much: the first version
turned shadowed jaws orange on the shared photos).

Model: skin of one smooth albedo `a` (per channel) under a distant light, Lambertian, so each
seen colour is c_k(n) = a_k * s_k(n) with the shading s_k a 9-term SH polynomial of the normal
(Ramamoorthi & Hanrahan: 2nd order holds ~99% of a Lambertian irradiance). Since a_k is one
number per channel, c_k(n) = Y(n) . l_k is linear in 9 unknowns per channel: a weighted least
squares over the seen skin samples, reweighted (Tukey's biweight on the ratio residual
c / fit - 1) so what is not skin or not of that albedo (eyes, brows, lips, stubble, hair,
cast shadows, highlights) stops pulling on it. A small ridge on the 1st and 2nd bands keeps a
half-sphere of normals (one photo) from fitting noise. The fit is then scaled per channel so
that the mean shading over the seen skin (inliers, by their weights) is 1: dividing it out
keeps the photo's overall tone and colour, only the variation with the normal goes.

    light = estimate_lighting(colours, normals, weights)      # None: too little skin seen
    albedo = light.albedo(colours, normals)                   # colour / shading, clamped
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# real SH constants, bands 0..2 (orthonormal on the sphere)
_C0 = 0.28209479177387814
_C1 = 0.4886025119029199
_C2 = 1.0925484305920792
_C20 = 0.31539156525252005
_C22 = 0.5462742152960396
BAND = np.array([0, 1, 1, 1, 2, 2, 2, 2, 2])
LUMA = np.array([0.299, 0.587, 0.114])


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    """sRGB-coded values in [0, 1] to linear light (IEC 61966-2-1)."""
    c = np.clip(np.asarray(c, np.float64), 0.0, 1.0)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c: np.ndarray) -> np.ndarray:
    """Linear light in [0, 1] to sRGB-coded values."""
    c = np.clip(np.asarray(c, np.float64), 0.0, 1.0)
    return np.where(c <= 0.0031308, 12.92 * c, 1.055 * c ** (1 / 2.4) - 0.055)


def sh_basis(normals: np.ndarray) -> np.ndarray:
    """(M, 9) real SH basis of unit normals (M, 3): Y00, Y1-1 (y), Y10 (z), Y11 (x), Y2-2 (xy),
    Y2-1 (yz), Y20 (3z^2 - 1), Y21 (xz), Y22 (x^2 - y^2)."""
    n = np.asarray(normals, np.float64)
    x, y, z = n[:, 0], n[:, 1], n[:, 2]
    out = np.empty((len(n), 9))
    out[:, 0] = _C0
    out[:, 1] = _C1 * y
    out[:, 2] = _C1 * z
    out[:, 3] = _C1 * x
    out[:, 4] = _C2 * x * y
    out[:, 5] = _C2 * y * z
    out[:, 6] = _C20 * (3.0 * z * z - 1.0)
    out[:, 7] = _C2 * x * z
    out[:, 8] = _C22 * (x * x - y * y)
    return out


@dataclass
class DelightConfig:
    iterations: int = 8              # reweighting passes
    ridge: float = 1e-4              # per-band penalty (band 1: x1, band 2: x4), relative to
                                     # the total sample weight (conditioning only: 1e-3
                                     # already flattens a real side light's band 2, and the
                                     # reweighting then drops the dark side as outliers)
    outlier_sigmas: float = 3.5      # Tukey biweight cut-off, in robust (MAD) sigmas
    min_sigma: float = 0.1           # floor of the residual scale (linear light): a cut-off
                                     # under ~35% off the fit would drop real skin (pores,
                                     # blush, noise)
    min_samples: int = 400           # fewer seen skin samples: no de-lighting
    max_samples: int = 60000         # the fit uses an even subsample of at most this many
    min_luma: float = 0.03           # darker samples (pupils, nostrils, black hair) not skin
    max_value: float = 0.985         # samples clipped in any channel are not used
    max_residual: float = 0.5        # robust scale of the (linear) ratio residual above which
                                     # the seen colours are not one skin under one light (a
                                     # painted or patterned surface): no de-lighting (synthetic
                                     # skin fits to ~0.05, the shared photos to 0.28-0.5 where
                                     # they pass, uniform random colours to 0.63)
    min_shading: float = 0.3         # the divisor is clamped to [min, max] (a deep shadow is
    max_shading: float = 2.0         # brightened at most 1 / 0.3 times; noise not blown up)


@dataclass
class Lighting:
    """Per-channel SH shading, normalised so its mean over the seen skin is 1."""
    coeffs: np.ndarray               # (9, 3) SH coefficients per channel
    config: DelightConfig = field(default_factory=DelightConfig)
    n_samples: int = 0               # samples fitted
    inlier_fraction: float = 0.0     # their share (by weight) the robust fit kept
    residual: float = 0.0            # robust scale of the ratio residual at the end
    seen_range: tuple = (0.0, np.inf)  # 2nd-98th percentile of the shading over the fitted
                                       # skin: the fit is never extrapolated beyond it (under
                                       # the chin, the normals the face did not show)

    def shading(self, normals: np.ndarray) -> np.ndarray:
        """(M, 3) shading at unit normals (M, 3), clamped to [min_shading, max_shading]."""
        s = sh_basis(normals) @ self.coeffs
        lo = max(self.config.min_shading, self.seen_range[0])
        hi = min(self.config.max_shading, self.seen_range[1])
        return np.clip(s, lo, hi)

    def albedo(self, colours: np.ndarray, normals: np.ndarray) -> np.ndarray:
        """sRGB colours (M, 3) in [0, 1] divided by the shading at their normals in linear
        light, back to sRGB (float32, [0, 1])."""
        lin = srgb_to_linear(colours) / self.shading(normals)
        return linear_to_srgb(lin).astype(np.float32)

    def range(self, normals: np.ndarray, weights: np.ndarray | None = None) -> tuple:
        """(5th, 95th) percentile of the luminance shading over `normals`: how strongly lit
        one side is against the other."""
        s = self.shading(normals) @ LUMA
        return tuple(float(x) for x in np.percentile(s, [5, 95]))

    def info(self) -> dict:
        return {"sh_coefficients": np.round(self.coeffs, 5).tolist(),
                "n_samples": int(self.n_samples),
                "inlier_fraction": round(float(self.inlier_fraction), 4),
                "residual": round(float(self.residual), 4)}


def _subsample(n: int, k: int) -> np.ndarray:
    if n <= k:
        return np.arange(n)
    return np.linspace(0, n - 1, k).astype(np.int64)


def estimate_lighting(colours: np.ndarray, normals: np.ndarray, weights: np.ndarray,
                      skin: np.ndarray | None = None,
                      config: DelightConfig | None = None) -> Lighting | None:
    """The photo's lighting from seen samples: colours (M, 3) in [0, 1], unit normals (M, 3),
    weights (M,) >= 0 (0: not seen), `skin` (M,) bool to restrict to (optional). None when
    fewer than `min_samples` usable skin samples are left, or when they do not fit one albedo
    under one light (`max_residual`)."""
    cfg = config or DelightConfig()
    c = np.asarray(colours, np.float64)
    n = np.asarray(normals, np.float64)
    w = np.asarray(weights, np.float64)
    use = (w > 0) & np.isfinite(c).all(1) & ((c @ LUMA) > cfg.min_luma) & \
        (c.max(1) < cfg.max_value)
    c = srgb_to_linear(np.nan_to_num(c))        # light adds up in linear light
    if skin is not None:
        use &= np.asarray(skin, bool)
    idx = np.flatnonzero(use)
    if len(idx) < cfg.min_samples:
        return None
    idx = idx[_subsample(len(idx), cfg.max_samples)]
    c, n, w = c[idx], n[idx], w[idx]
    y = sh_basis(n)
    pen = cfg.ridge * w.sum() * np.array([0.0, 1, 1, 1, 4, 4, 4, 4, 4])
    robust = np.ones(len(c))
    coeffs = np.zeros((9, 3))
    sigma = 1.0
    for it in range(max(1, cfg.iterations)):
        ww = w * robust
        a = (y * ww[:, None]).T @ y + np.diag(pen)
        b = (y * ww[:, None]).T @ c
        coeffs = np.linalg.solve(a, b)
        fit = y @ coeffs
        # ratio residual on luminance (colour and albedo ratios are what differ off skin)
        r = (c @ LUMA) / np.maximum(fit @ LUMA, 1e-3) - 1.0
        med = np.median(r[robust > 0]) if (robust > 0).any() else 0.0
        sigma = max(1.4826 * np.median(np.abs(r - med)[robust > 0]), cfg.min_sigma)
        u = (r - med) / (cfg.outlier_sigmas * sigma)
        robust = np.where(np.abs(u) < 1.0, (1.0 - u * u) ** 2, 0.0)
    if robust.sum() <= 0 or sigma > cfg.max_residual:
        return None
    # the mean over the seen skin by the samples' weights: on a synthetic head, nearest to
    # the mean over the photo's own head pixels (1.06-1.09 off it, against 1.10-1.13 by
    # projected area and 1.17-1.2 by texel area: the atlas gives the face more texels)
    ww = w * robust
    mean = (ww[:, None] * np.maximum(y @ coeffs, 1e-6)).sum(0) / ww.sum()
    if not (mean > 1e-3).all():
        return None
    coeffs = coeffs / mean[None, :]
    inl = robust > 0
    sl = (y[inl] @ coeffs) @ LUMA
    rng = (float(np.percentile(sl, 2)), float(np.percentile(sl, 98)))
    return Lighting(coeffs, cfg, len(idx), float((w * robust).sum() / w.sum()), float(sigma),
                    rng)


def sh_shading(coeffs: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """Unclamped (M, 3) shading of SH coefficients (9, 3) at unit normals (M, 3): for
    rendering synthetic truth under a known light."""
    return sh_basis(normals) @ np.asarray(coeffs, np.float64)


__all__ = ["sh_basis", "sh_shading", "DelightConfig", "Lighting", "estimate_lighting"]
