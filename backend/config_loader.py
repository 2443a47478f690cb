"""One strict loader of configuration dataclasses from plain dicts (TOML / JSON tables,
checkpoint JSON, the service's settings dicts).

    build(TrainLoopConfig, {"max_steps": 7}, "train")       -> TrainLoopConfig(max_steps=7, ...)
    build(TrainLoopConfig, {"max_step": 7}, "train")        -> ConfigError: [train] unknown keys: max_step (known: ...)

Rules, the same for every config:
- an unknown key is an error that names it (a typo must never fall back to a default
  silently); `ConfigError.keys` holds the unknown names, `ConfigError.where` the table;
- a dict given for a field whose type is a dataclass (or `X | None`) is built the same way,
  recursively (`[synth.landmark_fit]`, `registration.hull`, a checkpoint's `backbone`);
  anything but a dict (or the dataclass itself, or None where allowed) there is an error;
- a list given for a field typed `tuple` (JSON and TOML have no tuples) becomes a tuple;
  anything else is passed on as it is, and the dataclass's own checks run.

Used by the training config (train/config.py), the multi-view diffusion model's config
(mvdiff/config.py, checkpoint JSON), the reconstruction settings (recon/adapter.py) and the
training's model overrides (train/loop.py). Standard library only.
"""
from __future__ import annotations

import dataclasses
import sys
import types
import typing
from typing import Any


class ConfigError(ValueError):
    """A configuration table the loader cannot build; the message names the table and key."""

    def __init__(self, message: str, where: str = "", keys: tuple = ()):
        super().__init__(message)
        self.where = where
        self.keys = tuple(keys)


def _field_types(kind) -> dict[str, Any]:
    """Field name -> resolved annotation (None where it cannot be resolved)."""
    try:
        return typing.get_type_hints(kind)
    except Exception:
        pass
    module = vars(sys.modules.get(kind.__module__, types.ModuleType("x")))
    out: dict[str, Any] = {}
    for f in dataclasses.fields(kind):
        try:
            out[f.name] = eval(f.type, module) if isinstance(f.type, str) else f.type
        except Exception:
            out[f.name] = None
    return out


def _union_args(annotation) -> tuple:
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return typing.get_args(annotation)
    return (annotation,)


def _dataclass_type(annotation):
    for a in _union_args(annotation):
        if isinstance(a, type) and dataclasses.is_dataclass(a):
            return a
    return None


def _is_tuple_type(annotation, default) -> bool:
    if isinstance(default, tuple):
        return True
    return any(a is tuple or typing.get_origin(a) is tuple for a in _union_args(annotation))


def _label(where: str) -> str:
    return f"[{where}] " if where else ""


def _check_keys(kind, values, where: str) -> dict:
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{_label(where)}must be a table (an object of keys), not "
                          f"{type(values).__name__}", where)
    known = [f.name for f in dataclasses.fields(kind) if f.init]
    unknown = sorted(str(k) for k in set(values) - set(known))
    if unknown:
        types_ = _field_types(kind)
        noun = ("sections" if known and all(_dataclass_type(types_.get(n)) for n in known)
                else "keys")
        raise ConfigError(f"{_label(where)}unknown {noun}: {', '.join(unknown)} "
                          f"(known: {', '.join(known)})", where, unknown)
    return values


def _convert(annotation, default, value, where: str):
    sub = _dataclass_type(annotation)
    if sub is not None and isinstance(value, dict):
        return build(sub, value, where)
    if sub is not None and not isinstance(value, sub) \
            and not (value is None and type(None) in _union_args(annotation)):
        raise ConfigError(f"[{where}] must be a table (an object of keys), not "
                          f"{type(value).__name__}", where)
    if isinstance(value, list) and _is_tuple_type(annotation, default):
        return tuple(value)
    return value


def _default_of(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    return None


def kwargs(kind, values: dict | None, where: str = "") -> dict:
    """The keyword arguments `build` would pass to `kind` (checked and converted), for a
    constructor other than the class itself (a preset such as SDFConfig.tiny(**kw))."""
    values = _check_keys(kind, values, where)
    types_ = _field_types(kind)
    fields = {f.name: f for f in dataclasses.fields(kind)}
    return {k: _convert(types_.get(k), _default_of(fields[k]), v,
                        f"{where}.{k}" if where else k)
            for k, v in values.items()}


def build(kind, values: dict | None, where: str = ""):
    """kind(**values) after the rules above; ConfigError naming the table and key."""
    kw = kwargs(kind, values, where)
    try:
        return kind(**kw)
    except TypeError as e:           # a required field is missing
        raise ConfigError(f"{_label(where)}{e}", where) from None


def update(obj, values: dict | None, where: str = ""):
    """Set `values` on the dataclass instance `obj` in place (a dict for a dataclass-typed
    field updates that field's object the same way); the same key checks as `build`."""
    kind = type(obj)
    values = _check_keys(kind, values, where)
    types_ = _field_types(kind)
    fields = {f.name: f for f in dataclasses.fields(kind)}
    for k, v in values.items():
        sub_where = f"{where}.{k}" if where else k
        current = getattr(obj, k)
        if isinstance(v, dict) and dataclasses.is_dataclass(current) \
                and not isinstance(current, type):
            update(current, v, sub_where)
        else:
            setattr(obj, k, _convert(types_.get(k), _default_of(fields[k]), v, sub_where))
    return obj


__all__ = ["ConfigError", "build", "kwargs", "update"]
