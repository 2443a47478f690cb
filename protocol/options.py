"""The job options, written down once: their choices, ranges and defaults, and one
`validate()`.

Every side reads this module: the backend's `JobOptions` (backend/pipeline/pipeline.py), the
CLI's argparse choices (backend/commands/run.py, submit.py), export and reconstruction
(backend/export/result_glb.py, backend/recon/stage.py), and the Blender add-on (its settings,
its panel menus and its batch command). Pure Python (standard library only), so it is bundled
inside the extension with the rest of protocol/.

    validate({"texture_size": 2048})  -> {"generator": "auto", "seed": 0, ..., "texture_size": 2048}
    validate({"texture_size": 256})   -> OptionError("option texture_size=256 is not one of ...")

A backend reports what it can do in its capabilities (`pipeline.texture_sizes`,
`pipeline.output_kinds`, `pipeline.generators`; SPEC.md 5.2); `offered_choices(pipeline)`
turns that into the choices a client offers, and falls back to this vocabulary's when it has
no capabilities (offline).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GENERATORS = ("auto", "offline", "gen3dface")
QUALITIES = ("draft", "standard", "high")
TEXTURE_SIZES = (512, 1024, 2048)          # texels per UV tile side
OUTPUT_KINDS = ("rigged", "surface", "both")
SEED_RANGE = (0, 2 ** 32)                  # [low, high)


class OptionError(ValueError):
    """A job option has a value no backend accepts; `key` names the option."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key
        self.message = message


@dataclass(frozen=True)
class Option:
    name: str
    kind: str                          # "choice" | "int" | "bool"
    default: Any
    choices: tuple = ()                # kind "choice"
    range: tuple | None = None         # kind "int": [low, high)
    doc: str = ""


OPTIONS: dict[str, Option] = {o.name: o for o in (
    Option("generator", "choice", "auto", GENERATORS,
           doc="auto: Gen3D-Face when the backend has its weights, else offline"),
    Option("seed", "int", 0, range=SEED_RANGE, doc="the learned generator's noise seed"),
    Option("quality", "choice", "standard", QUALITIES,
           doc="fitting iterations and sampling steps"),
    Option("texture_size", "choice", 1024, TEXTURE_SIZES,
           doc="texels per UV tile side"),
    Option("output_kind", "choice", "rigged", OUTPUT_KINDS,
           doc="rigged: the template head; surface/both: the free-form surface (learned "
               "generator only)"),
    Option("neutral", "bool", False,
           doc="the GLB at rest (shape-key weights 0); the sidecar keeps the fit"),
    Option("delit_texture", "bool", False,
           doc="the skin texture de-lit, an albedo (backend/texture/delight.py); default "
               "false: as the photo lit it"),
    Option("neck_skin", "bool", True,
           doc="the neck and shoulders below the jaw painted with skin where the photo shows "
               "clothes (backend/face/skin_mask.py); false: as the photo shows them"),
)}

DEFAULTS: dict[str, Any] = {name: o.default for name, o in OPTIONS.items()}


def _join(values) -> str:
    return ", ".join(map(str, values))


def validate_one(key: str, value: Any) -> Any:
    """The option's value, normalised (an integral float texture size becomes an int), or
    OptionError saying which option and what it accepts. None is the default."""
    opt = OPTIONS.get(key)
    if opt is None:
        raise OptionError(key, f"unknown option {key!r}; known: {_join(OPTIONS)}")
    if value is None:
        return opt.default
    if opt.kind == "bool":
        if not isinstance(value, bool):
            raise OptionError(key, f"option {key}={value!r} must be true or false")
        return value
    if opt.kind == "int":
        lo, hi = opt.range
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value < hi:
            raise OptionError(key, f"option {key}={value!r} must be an integer in "
                              f"[{lo}, {'2^32' if hi == 2 ** 32 else hi})")
        return value
    if all(isinstance(c, int) for c in opt.choices):     # numeric choices (texture_size)
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or int(value) != value or int(value) not in opt.choices:
            raise OptionError(key, f"option {key}={value!r} is not one of {_join(opt.choices)}")
        return int(value)
    if not isinstance(value, str) or value not in opt.choices:
        raise OptionError(key, f"option {key}={value!r} is not one of {_join(opt.choices)}")
    return value


def validate(options: dict | None, *, strict: bool = False) -> dict:
    """All options (defaults filled in) from a partial dict. Unknown keys are ignored (a newer
    client may send options an older backend does not know), or refused when `strict`.
    OptionError names the first bad key."""
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise OptionError("", "options must be an object")
    if strict:
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise OptionError(unknown[0], f"unknown option {unknown[0]!r}; known: "
                              f"{_join(OPTIONS)}")
    return {key: validate_one(key, options.get(key)) for key in OPTIONS}


def offered_choices(pipeline: dict | None = None) -> dict[str, tuple]:
    """Choice option -> the choices to offer: what a backend's capabilities ("pipeline"
    object) say it can do, restricted to this vocabulary (a value outside it would be
    refused anyway), else the vocabulary's own choices. "auto" is always offered; a generator
    is offered when the backend lists it."""
    pipeline = pipeline if isinstance(pipeline, dict) else {}
    out = {name: o.choices for name, o in OPTIONS.items() if o.kind == "choice"}

    def reported(key, vocabulary, extra=()):
        got = pipeline.get(key)
        if not isinstance(got, (list, tuple)):
            return None
        picked = tuple(v for v in vocabulary if v in got or v in extra)
        return picked or None

    gens = reported("generators", GENERATORS, extra=("auto",))
    if gens:
        out["generator"] = gens
    for opt, key in (("quality", "qualities"), ("texture_size", "texture_sizes"),
                     ("output_kind", "output_kinds")):
        got = reported(key, OPTIONS[opt].choices)
        if got:
            out[opt] = got
    return out


__all__ = ["GENERATORS", "QUALITIES", "TEXTURE_SIZES", "OUTPUT_KINDS", "SEED_RANGE",
           "OptionError", "Option", "OPTIONS", "DEFAULTS", "validate", "validate_one",
           "offered_choices"]
