"""Filling what no view saw: a smooth colour field on the mesh, and padding around UV islands.

Colours here are float RGB in [0, 1]; textures (H, W, 3) float32, rows top-to-bottom.
"""
from __future__ import annotations

import numpy as np

DEFAULT_SKIN = (0.78, 0.60, 0.50)


def robust_skin_tone(colors: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    """Skin tone (3,) from observed vertex colours: the mid-luminance band of confidently
    seen samples (drops dark hair/brows/shadow and bright highlights/background)."""
    good = confidence > 0.8
    if good.sum() < 20:
        return np.array(DEFAULT_SKIN)
    c = colors[good]
    lum = c @ np.array([0.299, 0.587, 0.114])
    lo, hi = np.percentile(lum, [35, 85])
    band = c[(lum >= lo) & (lum <= hi)]
    return band.mean(0) if len(band) else c.mean(0)


def edge_laplacian(n: int, edges: np.ndarray):
    """Graph Laplacian (n, n) of the unweighted, undirected graph of `edges` (E, 2): degree
    minus adjacency, an edge listed twice or in both directions counted once."""
    import scipy.sparse as sp

    e = np.asarray(edges, np.int64).reshape(-1, 2)
    i = np.concatenate([e[:, 0], e[:, 1]])
    j = np.concatenate([e[:, 1], e[:, 0]])
    a = sp.coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n)).tocsr()
    a.data[:] = 1.0                                   # unweighted adjacency (duplicates merged)
    deg = np.asarray(a.sum(1)).ravel()
    return sp.diags(deg) - a


def _laplacian(n: int, triangles: np.ndarray):
    t = np.asarray(triangles, np.int64)
    return edge_laplacian(n, np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]]))


def mesh_fill_colors(skin_vertices: np.ndarray, triangles: np.ndarray, colors: np.ndarray,
                     confidence: np.ndarray, n_vertices: int, data_weight: float,
                     prior_weight: float, region_priors: dict | None = None,
                     variants: tuple = ()):
    """Solve a screened smoothness problem on the skin's vertex graph:
        minimise  sum_edges |x_i - x_j|^2 + sum_i a_i |x_i - obs_i|^2 + b_i |x_i - prior_i|^2
    with a_i = data_weight * confidence_i, b_i = prior_weight * (1 - confidence_i) (raised for
    vertices of `region_priors`, e.g. the mouth socket, which get their own prior colour; a
    colour None is the skin tone). Seen vertices keep their colour; unseen ones blend from
    their seen neighbours into the skin tone with distance. Returns (colours (n_vertices, 3),
    skin tone (3,)).

    `variants`: dicts {name: (vertices, rgb)}, each the same problem with the prior colour of
    those vertices replaced (their weights unchanged), solved in the same factorisation; with
    any, a third value is the list of their colours (n_vertices, 3)."""
    import scipy.sparse as sp
    from scipy.sparse.linalg import splu

    sv = np.asarray(skin_vertices, np.int64)
    local = np.full(n_vertices, -1, np.int64)
    local[sv] = np.arange(len(sv))
    tri = local[np.asarray(triangles, np.int64)]
    tri = tri[(tri >= 0).all(1)]
    lap = _laplacian(len(sv), tri)
    skin = robust_skin_tone(colors, confidence)
    prior = np.tile(skin, (len(sv), 1))
    b = prior_weight * (1.0 - confidence)

    def rows(rng):
        ids = local[np.arange(*rng)] if isinstance(rng, tuple) else local[np.asarray(rng)]
        return ids[ids >= 0]

    for rng, rgb in (region_priors or {}).values():
        ids = rows(rng)
        prior[ids] = skin if rgb is None else rgb
        b[ids] = np.maximum(b[ids], 2.0 * (1.0 - confidence[ids]))
    a = data_weight * confidence
    system = (lap + sp.diags(a + b + 1e-6)).tocsc()
    priors = [prior]
    for variant in variants:
        p = prior.copy()
        for rng, rgb in variant.values():
            p[rows(rng)] = rgb
        priors.append(p)
    rhs = np.hstack([a[:, None] * colors + b[:, None] * p + 1e-6 * skin for p in priors])
    x = splu(system).solve(rhs) if len(sv) else rhs
    outs = []
    for k in range(len(priors)):
        out = np.zeros((n_vertices, 3), np.float64)
        out[sv] = np.clip(x[:, 3 * k:3 * k + 3], 0.0, 1.0)
        outs.append(out)
    if variants:
        return outs[0], skin, outs[1:]
    return outs[0], skin


def nearest_fill_outside(texture: np.ndarray, covered: np.ndarray, pad: int = 8,
                         check=None, band_rows: int = 256) -> np.ndarray:
    """Pad the UV islands: texels outside them take the average colour of covered texels
    within `pad` texels (grown ring by ring), the rest the islands' mean colour, so bilinear
    filtering and mipmaps never bleed black into island borders.

    Works on bands of `band_rows` rows with `pad` rows of context on either side (a ring
    reaches one row further per pass, so each band's result is exactly the whole image's);
    `check()`, if given, runs between bands (it raises to stop, e.g. a CancelToken's
    raise_if_cancelled)."""
    if covered.all() or not covered.any():
        return texture
    h = texture.shape[0]
    total = np.zeros(texture.shape[2:], np.float64)
    for r0 in range(0, h, band_rows):                 # the islands' mean colour, by bands
        if check is not None:
            check()
        total += texture[r0:r0 + band_rows][covered[r0:r0 + band_rows]].sum(0, dtype=np.float64)
    fallback = (total / np.count_nonzero(covered)).astype(np.float32)
    out = np.empty(texture.shape, np.float32)         # every band writes all of its rows
    for r0 in range(0, h, band_rows):
        if check is not None:
            check()
        r1 = min(h, r0 + band_rows)
        a, b = max(0, r0 - pad), min(h, r1 + pad)
        band = _pad_band(texture[a:b], covered[a:b], pad)
        out[r0:r1] = band[r0 - a:r1 - a]
        left = ~covered[r0:r1] & np.isnan(out[r0:r1, :, 0])
        out[r0:r1][left] = fallback
    return out


def _pad_band(texture: np.ndarray, covered: np.ndarray, pad: int) -> np.ndarray:
    """nearest_fill_outside on one band; texels no ring reached are NaN."""
    import cv2

    w = covered.astype(np.float32)
    acc = texture.astype(np.float32) * w[..., None]
    out = texture.astype(np.float32).copy()
    have = covered.copy()
    kernel = np.ones((3, 3), np.float32)
    for _ in range(pad):
        acc_b = cv2.filter2D(acc, -1, kernel, borderType=cv2.BORDER_CONSTANT)
        w_b = cv2.filter2D(w, -1, kernel, borderType=cv2.BORDER_CONSTANT)
        new = (~have) & (w_b > 0)
        if not new.any():
            break
        out[new] = acc_b[new] / w_b[new][:, None]
        have |= new
        w = have.astype(np.float32)
        acc = out * w[..., None]
    out[~have] = np.nan
    return out
