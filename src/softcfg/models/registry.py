"""Model families by name: what the config needs to know about each without importing torch.

A family is an adapter to ``ARModel`` (``softcfg.models.base``); its record names the function that
builds it from a model entry (imported only when a model is loaded), its upstream sizes and image sizes,
the upstream samplers' defaults (``preset: <family>-<size>``, or ``<family>-<size>-<image size>`` where
the defaults depend on it, in a method entry), the SoftCFG paper's Table 1 rows those presets reproduce,
and which feature extractor scores its samples. Families installed under the entry-point group
``softcfg.models`` (``name = "package.module:FAMILY"``, a ``Family``) are found the same way as the
built-in ones.
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
    image_sizes: tuple[int, ...] = ()  # resolutions a model entry must choose from; empty: one, fixed
    presets: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # size[-px] -> method options
    paper_name: str = ""  # how the papers' tables name the family (AliTok-XL is "AliTok" size XL)
    paper_rows: Mapping[str, str] = field(default_factory=dict)  # preset key -> Table 1 "generator" column
    extractor: str = "inception"  # the feature extractor that scores its samples (softcfg.metrics)
    trainable: bool = False  # the workflow can train it itself (rule train_generator)

    def load(self, entry: ModelEntry) -> ARModel:
        module, _, function = self.loader.partition(":")
        return getattr(import_module(module), function)(entry)


def _llamagen_preset(cfg_scale: float) -> dict[str, float]:
    """sample_c2i_ddp.py's defaults (top-k 0, top-p 1.0, temperature 1.0, cfg-interval -1: none) with a
    constant scale (k = 0)."""
    return {"gamma": cfg_scale, "k": 0.0, "temperature": 1.0, "top_k": 0, "top_p": 1.0}


_BUILTIN = (
    Family("digits", "softcfg.models.loading:load_digits", extractor="digits", trainable=True),
    Family(
        "alitok",
        "softcfg.models.loading:load_alitok",
        paper_name="AliTok",
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
        paper_name="RAR",
        sizes=("B", "L", "XL", "XXL"),
        # RAR's README sampling settings per size: guidance_scale, guidance_scale_pow, temperature.
        presets={
            "B": {"gamma": 16.0, "k": 2.75, "temperature": 1.0},
            "L": {"gamma": 15.5, "k": 2.5, "temperature": 1.02},
            "XL": {"gamma": 6.9, "k": 1.5, "temperature": 1.02},
            "XXL": {"gamma": 8.0, "k": 1.2, "temperature": 1.02},
        },
    ),
    Family(
        "llamagen",
        "softcfg.models.loading:load_llamagen",
        paper_name="LlamaGen",
        sizes=("B", "L", "XL", "XXL", "3B"),
        image_sizes=(256, 384),
        presets={
            # 384 px, evaluated at 256 (eval_size: 256): GETTING_STARTED.md's "Sampling" commands
            # (--image-size 384 --image-size-eval 256 --cfg-scale ...) at ce98ec4
            "B-384": _llamagen_preset(2.0),
            "L-384": _llamagen_preset(2.0),
            "XL-384": _llamagen_preset(1.75),
            "XXL-384": _llamagen_preset(1.75),
            "3B-384": _llamagen_preset(1.65),
            # 256 px (released for B and L only): upstream recommends no scale, so sample_c2i_ddp.py's
            # --cfg-scale default
            "B-256": _llamagen_preset(1.5),
            "L-256": _llamagen_preset(1.5),
        },
        paper_rows={"L-384": "LlamaGen-L", "3B-384": "LlamaGen-3B"},
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
