"""The exported shape-key set: Apple ARKit's 52 blendshapes under their exact
`ARFaceAnchor.BlendShapeLocation` names, in the order of Apple's documentation, built from
ICT-FaceKit's 53 expression shapes.

- 49 of the 52 are ICT shapes under ICT's name in ARKit spelling (eyeBlink_L -> eyeBlinkLeft);
- `browInnerUp` and `cheekPuff` are the SUMS of ICT's left and right shapes (ARKit has one
  coefficient for both sides); ICT's split shapes stay after the 52 as extras under ICT's own
  names (`browInnerUp_L`, `browInnerUp_R`, `cheekPuff_L`, `cheekPuff_R`), which no ARKit,
  Live Link Face or MetaHuman name collides with;
- `tongueOut` is DERIVED (ICT has no tongue shape): see tongue.py.

The head model itself (and the fitter) keep ICT's 53-shape basis: this set is built at export.
A fitted ICT expression maps onto the set exactly (`weights_from`): the part the left and right
weights share goes on the ARKit shape, the rest on the split extras.

Models without ICT's ARKit-named shapes (FLAME, mediapipe's face mesh) export their own
shapes unchanged (`is_arkit` False).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...protocol.arkit import ARKIT_BLENDSHAPES
from .model import HeadModel
from .tongue import TongueNotFound, TongueOutConfig, tongue_out_delta


# ARKit shape -> the two ICT shapes (in the model's ARKit spelling) it is the sum of
SUMMED = {"browInnerUp": ("browInnerUpLeft", "browInnerUpRight"),
          "cheekPuff": ("cheekPuffLeft", "cheekPuffRight")}
# the split ICT shapes kept after the 52, under ICT's own names
EXTRA_NAMES = {"browInnerUpLeft": "browInnerUp_L", "browInnerUpRight": "browInnerUp_R",
               "cheekPuffLeft": "cheekPuff_L", "cheekPuffRight": "cheekPuff_R"}
DERIVED = ("tongueOut",)
# what an ICT-FaceKit head exports, in order: the 52, then the split extras
EXPORTED_NAMES = ARKIT_BLENDSHAPES + tuple(EXTRA_NAMES.values())


@dataclass
class ArkitConfig:
    tongue: TongueOutConfig = field(default_factory=TongueOutConfig)
    keep_split_extras: bool = True      # browInnerUp_L/_R, cheekPuff_L/_R after the 52


@dataclass
class ShapeSet:
    """The shapes an export writes. Shape s is sum_e mix[s, e] * basis[e], plus derived[s]
    where present (then mix[s] is zero)."""
    names: list[str]
    sources: list[str]                  # "ict", "ict sum: a + b", "ict extra", "derived"
    mix: np.ndarray                     # (S, E) float64
    derived: dict                       # s -> (N, 3) float32 offsets, metres
    basis: np.ndarray                   # (E, N, 3) the model's expression basis
    is_arkit: bool

    def __len__(self) -> int:
        return len(self.names)

    def delta(self, s: int) -> np.ndarray:
        """(N, 3) float32 offsets of shape s, metres."""
        if s in self.derived:
            return self.derived[s]
        nz = np.flatnonzero(self.mix[s])
        if len(nz) == 1 and self.mix[s, nz[0]] == 1.0:
            return self.basis[nz[0]]
        return np.tensordot(self.mix[s, nz], self.basis[nz].astype(np.float64),
                            axes=1).astype(np.float32)

    def weights_from(self, model_weights) -> np.ndarray:
        """(S,) weights of this set that give the same mesh as the model's (E,) expression
        weights: exact when the split extras are kept (the derived shapes get 0; without the
        extras a summed shape gets the mean of its two sides)."""
        w = np.asarray(model_weights, np.float64).ravel()
        e = self.mix.shape[1]
        w = np.resize(w, e) if w.size else np.zeros(e)
        out = np.zeros(len(self.names))
        for s in range(len(self.names)):
            nz = np.flatnonzero(self.mix[s])
            if s not in self.derived and len(nz) == 1:
                out[s] = w[nz[0]] * self.mix[s, nz[0]]
        if not self.is_arkit:
            return out
        index = {n: i for i, n in enumerate(self.names)}
        for arkit, (a, b) in SUMMED.items():
            s = index[arkit]
            ia, ib = (int(i) for i in np.flatnonzero(self.mix[s]))
            common = min(w[ia], w[ib])
            out[s] = common
            for src, extra in ((ia, EXTRA_NAMES[a]), (ib, EXTRA_NAMES[b])):
                if extra in index:
                    out[index[extra]] = w[src] - common
                else:        # no extras: the ARKit shape alone, at the mean of both sides
                    out[s] = 0.5 * (w[ia] + w[ib])
        return out

    def weights_by_name(self, model_weights) -> dict:
        return {n: float(x) for n, x in zip(self.names, self.weights_from(model_weights))}


def has_arkit_source(model: HeadModel) -> bool:
    """Whether the model carries ICT's ARKit-named expressions (all 52 but the summed and
    derived ones, and both halves of each summed one)."""
    have = set(model.expression_names)
    need = {n for n in ARKIT_BLENDSHAPES if n not in SUMMED and n not in DERIVED}
    need |= {x for pair in SUMMED.values() for x in pair}
    return need <= have


def export_shapes(model: HeadModel, base_vertices: np.ndarray | None = None,
                  config: ArkitConfig | None = None) -> ShapeSet:
    """The shape set to export for `model` with the fitted neutral `base_vertices` (identity
    applied; used to place the derived tongueOut). See the module docstring."""
    cfg = config or ArkitConfig()
    names_in = list(model.expression_names)
    e = len(names_in)
    if not has_arkit_source(model):
        return ShapeSet(names_in, ["model"] * e, np.eye(e), {}, model.expression_basis, False)
    idx = {n: i for i, n in enumerate(names_in)}
    names, sources, rows, derived = [], [], [], {}
    for n in ARKIT_BLENDSHAPES:
        row = np.zeros(e)
        if n in SUMMED:
            a, b = SUMMED[n]
            row[idx[a]] = row[idx[b]] = 1.0
            sources.append(f"ict sum: {EXTRA_NAMES[a]} + {EXTRA_NAMES[b]}")
        elif n in DERIVED:
            try:
                derived[len(names)] = tongue_out_delta(model, base_vertices, cfg.tongue)
                sources.append("derived: tongue forward and down past the lower teeth, "
                               f"jaw open {cfg.tongue.jaw_open:g}")
            except TongueNotFound as err:
                # a model without a mouth interior still answers to the name; jaw only
                jaw = model.expression_basis[idx["jawOpen"]] * cfg.tongue.jaw_open
                derived[len(names)] = jaw.astype(np.float32)
                sources.append(f"derived: jaw open {cfg.tongue.jaw_open:g} only ({err})")
        else:
            row[idx[n]] = 1.0
            sources.append("ict")
        names.append(n)
        rows.append(row)
    if cfg.keep_split_extras:
        for ict_name, extra in EXTRA_NAMES.items():
            row = np.zeros(e)
            row[idx[ict_name]] = 1.0
            names.append(extra)
            sources.append("ict extra")
            rows.append(row)
    return ShapeSet(names, sources, np.array(rows), derived, model.expression_basis, True)
