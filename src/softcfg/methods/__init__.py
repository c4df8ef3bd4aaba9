"""Guidance methods by name: every ``GuidanceMethod`` defined in a module of this package, and any
installed under the entry-point group ``softcfg.methods`` (``name = "package.module:MethodClass"``), so a
user's method runs in the workflow without editing this package. A new built-in method is one new module
here; entry points are imported only when their name is asked for.
"""

from __future__ import annotations

import pkgutil
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any

from softcfg.methods.base import (
    SSG,
    CachePerturbation,
    Guidance,
    GuidanceMethod,
    Refinement,
    build_guidance,
)
from softcfg.methods.cfg import CFG
from softcfg.methods.none import NoGuidance
from softcfg.methods.softcfg import SoftCFG
from softcfg.options import ConfigError, validate

ENTRY_POINT_GROUP = "softcfg.methods"
_REGISTRY: dict[str, type[GuidanceMethod]] = {}


def register_method(cls: type[GuidanceMethod]) -> type[GuidanceMethod]:
    """Register a method class under the default of its ``name`` field; usable as a decorator."""
    if not (isinstance(cls, type) and issubclass(cls, GuidanceMethod)):
        raise TypeError(f"{cls!r} is not a GuidanceMethod subclass")
    name = cls.model_fields["name"].default
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__name__} needs a default for its name field, e.g. name: Literal['x'] = 'x'")
    if _REGISTRY.get(name, cls) is not cls:
        raise ValueError(f"method {name!r} is registered twice ({_REGISTRY[name].__name__}, {cls.__name__})")
    _REGISTRY[name] = cls
    return cls


def _register_builtin() -> None:
    """Register the methods defined in this package's modules, in module order."""
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        module = import_module(f"{__name__}.{info.name}")
        for obj in vars(module).values():
            defined_here = isinstance(obj, type) and obj.__module__ == module.__name__
            if defined_here and issubclass(obj, GuidanceMethod) and obj is not GuidanceMethod:
                register_method(obj)


_register_builtin()
BUILTIN_METHODS = tuple(_REGISTRY)
"""The package's own methods: what the committed schema and the Parquet tables' fixed columns are built
from, whatever else happens to be installed."""


def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def method_names() -> list[str]:
    """Every method name: built-in first, then installed ones, each sorted by name."""
    return list(_REGISTRY) + sorted(set(_entry_points()) - set(_REGISTRY))


def method_class(name: str, where: str = "method") -> type[GuidanceMethod]:
    """The class registered as ``name``, importing its entry point on first use."""
    if name not in _REGISTRY:
        ep = _entry_points().get(name)
        if ep is None:
            raise ConfigError(f"{where}.name: unknown method {name!r} (expected one of {method_names()})")
        cls = ep.load()
        if not (isinstance(cls, type) and issubclass(cls, GuidanceMethod)):
            raise ConfigError(f"{where}.name: entry point {ep.value} is not a GuidanceMethod subclass")
        if cls.model_fields["name"].default != name:
            raise ConfigError(
                f"{where}.name: entry point {name!r} names a method called "
                f"{cls.model_fields['name'].default!r}"
            )
        register_method(cls)
    return _REGISTRY[name]


def parse_method(data: Any, where: str = "method") -> GuidanceMethod:
    """A method entry (a mapping with ``name``, optionally ``preset``) as its validated options."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {data!r}")
    if "name" not in data:
        raise ConfigError(f"missing key {where}.name (one of {method_names()})")
    if not isinstance(data["name"], str):
        raise ConfigError(f"{where}.name must be a string, got {data['name']!r}")
    cls = method_class(data["name"], where)
    if "preset" in data:
        data = apply_preset(data, where)
    return validate(cls, data, where)


def apply_preset(data: dict, where: str) -> dict:
    """``preset: alitok-XL`` fills the upstream sampler's options (gamma, k, temperature); given keys win."""
    from softcfg.models.registry import presets

    data = dict(data)
    name = data.pop("preset")
    known = presets()
    if name not in known:
        raise ConfigError(f"{where}.preset: unknown {name!r} (expected one of {sorted(known)})")
    if not method_class(data["name"], where).uses_uncond:
        raise ConfigError(f"{where}.preset: method {data['name']!r} runs no guidance")
    return {**known[name], **data}


__all__ = [
    "CFG",
    "ENTRY_POINT_GROUP",
    "SSG",
    "CachePerturbation",
    "Guidance",
    "GuidanceMethod",
    "NoGuidance",
    "Refinement",
    "SoftCFG",
    "apply_preset",
    "build_guidance",
    "method_class",
    "method_names",
    "parse_method",
    "register_method",
]
