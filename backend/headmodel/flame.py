"""FLAME (`generic_model.pkl`, as users download it from flame.is.tue.mpg.de) as a HeadModel.

The file is a Python-2 pickle of a dict whose arrays are partly chumpy objects (`v_template`,
`shapedirs`, `posedirs`, ...) and whose `J_regressor` is a scipy sparse matrix. It is read
WITHOUT chumpy and without running any code from the file: a restricted unpickler allows
numpy's array reconstruction and turns every other class (chumpy.Ch, scipy.sparse, ...) into
an inert record of its pickled state; arrays are taken from those records (chumpy keeps its
value in the `x` attribute). Use it only on files the user put on their own disk: the
service never unpickles anything that came over the wire.

Frame and units: FLAME is in metres with +Y up and +Z out of the face, +X the subject's left
(the head frame). FLAME's expression space is PCA, not ARKit: the expressions are named
`flame_exp_000`... UVs come from `FLAME_texture.npz` (`vt`, `ft`) next to the pkl when present,
otherwise a cylindrical projection is used (recorded in `extras["uv_source"]`).
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from .model import HeadModel

_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
}


class _Record:
    """What an arbitrary pickled object becomes: its class name and pickled state, inert."""

    def __init__(self, *args, **kwargs):
        self.args = args
        self.state = None

    def __setstate__(self, state):
        self.state = state

    def __repr__(self):
        return f"<pickled {type(self).__qualname__}>"


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _NUMPY_GLOBALS:
            return super().find_class(module, name)
        if (module, name) in (("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor")):
            import copyreg

            return copyreg._reconstructor
        if (module, name) in (("__builtin__", "object"), ("builtins", "object")):
            return object
        if (module, name) == ("_codecs", "encode"):     # bytes in protocol-2 pickles
            import codecs

            return codecs.encode
        # Anything else (chumpy.ch.Ch, scipy.sparse.csc.csc_matrix, ...): an inert record class.
        return type(name, (_Record,), {"__module__": "gen3dface.flame_pickle." + module})


def safe_load_pickle(path: str | Path):
    with open(path, "rb") as f:
        return _SafeUnpickler(f, encoding="latin1").load()


def _array(obj, what: str) -> np.ndarray:
    if isinstance(obj, np.ndarray):
        return obj
    if isinstance(obj, _Record):
        st = obj.state
        if isinstance(st, tuple) and len(st) == 2 and isinstance(st[1], dict):
            st = st[1]
        if isinstance(st, dict):
            for key in ("x", "_x", "a"):
                if isinstance(st.get(key), np.ndarray):
                    return st[key]
                if isinstance(st.get(key), _Record):
                    return _array(st[key], what)
            arrays = [v for v in st.values() if isinstance(v, np.ndarray)]
            if arrays:
                return max(arrays, key=lambda a: a.size)
    if isinstance(obj, (list, tuple)):
        return np.asarray(obj)
    raise ValueError(f"FLAME file: cannot read {what!r} as an array ({type(obj).__name__})")


def _cylindrical_uvs(v: np.ndarray) -> np.ndarray:
    c = v.mean(0)
    u = np.arctan2(v[:, 0] - c[0], v[:, 2] - c[2]) / (2 * np.pi) + 0.5
    y = v[:, 1]
    t = (y - y.min()) / max(np.ptp(y), 1e-9)
    return np.c_[u, t].astype(np.float32)


def load_flame_pkl(path: str | Path, n_shape: int = 300, n_expression: int = 100) -> HeadModel:
    """Load FLAME's generic_model.pkl (see the module doc) as a HeadModel."""
    path = Path(path)
    d = safe_load_pickle(path)
    if not isinstance(d, dict) or "v_template" not in d or "f" not in d or "shapedirs" not in d:
        raise ValueError(f"{path} is not a FLAME model (needs v_template, f, shapedirs)")
    v = _array(d["v_template"], "v_template").astype(np.float32)
    f = _array(d["f"], "f").astype(np.int32)
    sd = _array(d["shapedirs"], "shapedirs").astype(np.float32)       # (N, 3, S + E)
    n = len(v)
    if v.shape != (n, 3) or f.ndim != 2 or f.shape[1] != 3 or sd.shape[:2] != (n, 3):
        raise ValueError(f"{path}: unexpected FLAME array shapes v {v.shape} f {f.shape} "
                         f"shapedirs {sd.shape}")
    total = sd.shape[2]
    ns = min(n_shape, total)
    # FLAME 2020: 300 shape + 100 expression components; older/smaller files: split alike.
    n_shape_file = 300 if total >= 400 else total // 2 if total > 1 else total
    ns = min(ns, n_shape_file)
    ne = min(n_expression, total - n_shape_file)
    ident = np.moveaxis(sd[:, :, :ns], 2, 0)
    expr = np.moveaxis(sd[:, :, n_shape_file:n_shape_file + ne], 2, 0)
    tex = path.with_name("FLAME_texture.npz")
    if tex.is_file():
        with np.load(tex, allow_pickle=False) as t:
            uvs, puv, uv_source = t["vt"].astype(np.float32), t["ft"].astype(np.int32), tex.name
    else:
        uvs, puv, uv_source = _cylindrical_uvs(v), f.copy(), "cylindrical projection"
    return HeadModel(
        name="flame", vertices=v, polygons=f, uvs=uvs, polygon_uvs=puv,
        polygon_groups=np.zeros(len(f), np.int16), group_names=["M_Head"],
        identity_basis=ident.astype(np.float32), expression_basis=expr.astype(np.float32),
        expression_names=[f"flame_exp_{i:03d}" for i in range(ne)], source=str(path),
        extras={"uv_source": uv_source,
                "limitations": "FLAME expressions are PCA components, not ARKit blendshapes"})
