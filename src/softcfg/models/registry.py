"""Model families by name: what the config needs to know about each without importing torch.

A family is an adapter to ``ARModel`` (``softcfg.models.base``); its record names the function that
builds it from a model entry (imported only when a model is loaded), its upstream sizes, the upstream
samplers' defaults (``preset: <family>-<size>`` in a method entry) and which
feature extractor scores its samples. Families installed under the entry-point group ``softcfg.models``
(``name = "package.module:FAMILY"``, a ``Family``) are found the same way as the built-in ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import import_module
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from softcfg.options import ConfigError

if TYPE_CHECKING:
    from softcfg.config import ModelEntry
    from softcfg.models.base import ARModel

ENTRY_POINT_GROUP = "softcfg.models"


@dataclass(frozen=True)
class Family:
    """One model family as the config and the workflow see it."""

    name: str
    loader: str  # "package.module:function", function(entry: ModelEntry) -> ARModel
    sizes: tuple[str, ...] = ()  # named upstream sizes; empty: the entry gives dims (or none are needed)
    presets: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # size -> method options
    extractor: str = "inception"  # the feature extractor that scores its samples (softcfg.metrics)
    trainable: bool = False  # the workflow can train it itself (rule train_generator)

    def load(self, entry: ModelEntry) -> ARModel:
        module, _, function = self.loader.partition(":")
        return getattr(import_module(module), function)(entry)


_BUILTIN = (
    Family("digits", "softcfg.models.loading:load_digits", extractor="digits", trainable=True),
    Family(
        "alitok",
        "softcfg.models.loading:load_alitok",
        sizes=("B", "L", "XL"),
        # The released AliTok configs' (guidance_scale, guidance_scale_pow, temperature) per size.
        presets={
            "B": {"gamma": 16.0, "k": 1.8, "temperature": 1.0},
            "L": {"gamma": 6.0, "k": 0.7, "temperature": 1.0},
            "XL": {"gamma": 13.0, "k": 1.4, "temperature": 1.0},
        },
    ),
    Family(
        "rar",
        "softcfg.models.loading:load_rar",
        sizes=("B", "L", "XL", "XXL"),
        # RAR's README sampling settings per size: guidance_scale, guidance_scale_pow, temperature.
        presets={
            "B": {"gamma": 16.0, "k": 2.75, "temperature": 1.0},
            "L": {"gamma": 15.5, "k": 2.5, "temperature": 1.02},
            "XL": {"gamma": 6.9, "k": 1.5, "temperature": 1.02},
            "XXL": {"gamma": 8.0, "k": 1.2, "temperature": 1.02},
        },
    ),
)
_REGISTRY: dict[str, Family] = {f.name: f for f in _BUILTIN}


def register_family(family: Family) -> Family:
    if not isinstance(family, Family):
        raise TypeError(f"{family!r} is not a Family")
    if _REGISTRY.get(family.name, family) != family:
        raise ValueError(f"model family {family.name!r} is registered twice")
    _REGISTRY[family.name] = family
    return family


def _entry_points() -> dict:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def family_names() -> list[str]:
    return list(_REGISTRY) + sorted(set(_entry_points()) - set(_REGISTRY))


def get_family(name: str, where: str = "model") -> Family:
    """The family called ``name``, importing its entry point on first use."""
    if name not in _REGISTRY:
        ep = _entry_points().get(name)
        if ep is None:
            raise ConfigError(f"{where}.family: unknown {name!r} (expected one of {family_names()})")
        family = ep.load()
        if not isinstance(family, Family) or family.name != name:
            raise ConfigError(f"{where}.family: entry point {ep.value} is not a Family named {name!r}")
        register_family(family)
    return _REGISTRY[name]


def presets() -> dict[str, dict[str, float]]:
    """Every ``<family>-<size>`` preset of the registered families."""
    return {
        f"{family.name}-{size}": dict(options)
        for family in _REGISTRY.values()
        for size, options in family.presets.items()
    }
