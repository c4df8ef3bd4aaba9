"""Image-set metrics as records, over feature extractors registered by name.

A ``Metric`` says what it reads of a feature set (``needs``: the pooled ``features``, Inception's
``logits``, its ``spatial`` map), the function that computes it (one function may give several metrics
from one pass, as precision and recall do), its label and direction for the tables, and whether the
bootstrap gives it an interval. The built-in ones follow ADM's definitions (``softcfg.metrics.suite``);
metrics installed under the entry-point group ``softcfg.metrics`` (``name = "package.module:METRIC"``, a
``Metric``) are scored the same way when a sweep names them. A model family names the extractor that
scores it (``softcfg.models.registry.Family.extractor``); the extractor's record says what its features
provide, so a config is checked before any job runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any

from softcfg.options import ConfigError

ENTRY_POINT_GROUP = "softcfg.metrics"


@dataclass(frozen=True)
class Metric:
    """One number of the suite as the config, the scorer and the tables see it."""

    name: str
    label: str  # the tables' column header, with its direction: "FID ↓"
    lower_is_better: bool
    compute: str
    """``package.module:function``, function(samples, reference, names, settings) -> {name: value}
    (``softcfg.metrics.suite``: ``FeatureSet``s and ``MetricSettings``); metrics of one function are
    computed in one call."""
    needs: tuple[str, ...] = ("features",)  # of a FeatureSet: features, logits, spatial
    interval: bool = False  # the bootstrap gives it a confidence interval (softcfg.metrics.bootstrap)

    def function(self) -> Any:
        module, _, name = self.compute.partition(":")
        return getattr(import_module(module), name)


_SUITE = "softcfg.metrics.suite"
BUILTIN = (
    Metric("fid", "FID ↓", True, f"{_SUITE}:frechet_distance", interval=True),
    Metric("sfid", "sFID ↓", True, f"{_SUITE}:spatial_frechet_distance", ("spatial",), interval=True),
    Metric("is", "IS ↑", False, f"{_SUITE}:inception_score", ("logits",), interval=True),
    Metric("kid", "KID ↓", True, f"{_SUITE}:kernel_inception_distance"),
    Metric("precision", "Prec ↑", False, f"{_SUITE}:precision_recall", interval=True),
    Metric("recall", "Rec ↑", False, f"{_SUITE}:precision_recall", interval=True),
    Metric("density", "Dens ↑", False, f"{_SUITE}:density_coverage"),  # Naeem et al. 2020, k = 5
    Metric("coverage", "Cov ↑", False, f"{_SUITE}:density_coverage"),
)
METRICS = tuple(m.name for m in BUILTIN)
"""The built-in metrics: the default of a sweep (those its extractors provide) and of the schema."""
INTERVAL_METRICS = tuple(m.name for m in BUILTIN if m.interval)  # with a confidence interval (bootstrap)
_REGISTRY: dict[str, Metric] = {m.name: m for m in BUILTIN}


def register_metric(metric: Metric) -> Metric:
    if not isinstance(metric, Metric):
        raise TypeError(f"{metric!r} is not a Metric")
    if _REGISTRY.get(metric.name, metric) != metric:
        raise ValueError(f"metric {metric.name!r} is registered twice")
    _REGISTRY[metric.name] = metric
    return metric


def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def metric_names() -> list[str]:
    """Every metric name: built-in first, then installed ones (not imported until used)."""
    return list(_REGISTRY) + sorted(set(_entry_points()) - set(_REGISTRY))


def get_metric(name: str, where: str = "metrics.names") -> Metric:
    """The metric called ``name``, importing its entry point on first use; a refused or failing plugin is
    named in one line."""
    if name not in _REGISTRY:
        ep = _entry_points().get(name)
        if ep is None:
            raise ConfigError(f"{where}: unknown metric {name!r} (expected one of {metric_names()})")
        try:
            metric = ep.load()
        except Exception as exc:
            raise ConfigError(f"{where}: metric {name!r} ({ep.value}) could not be imported: {exc}") from None
        if not isinstance(metric, Metric) or metric.name != name:
            raise ConfigError(f"{where}: entry point {ep.value} is not a Metric named {name!r}")
        register_metric(metric)
    return _REGISTRY[name]


@dataclass(frozen=True)
class Extractor:
    """A feature extractor as the workflow and the metrics step see it."""

    name: str
    description: str
    provides: tuple[str, ...]  # what of a FeatureSet its files hold: features, logits, spatial
    file_tag: str  # the ``extractor`` its feature files record in their ``meta``
    reader: str  # "module:function"(sample paths, reference path) -> scoring.FeatureSets

    def gives(self, metric: Metric) -> bool:
        return set(metric.needs) <= set(self.provides)

    @property
    def metrics(self) -> tuple[str, ...]:
        """The built-in metrics its features give."""
        return tuple(m.name for m in BUILTIN if self.gives(m))


EXTRACTORS = {
    "digits": Extractor(
        "digits",
        "the embedded digits classifier",
        ("features", "logits"),
        file_tag="digits-classifier",
        reader="softcfg.metrics.scoring:digits_feature_sets",
    ),
    "inception": Extractor(
        "inception",
        "ADM's 2015 Inception (pool_3, spatial, logits)",
        ("features", "logits", "spatial"),
        file_tag="inception-v3-adm",
        reader="softcfg.metrics.scoring:inception_feature_sets",
    ),
}

PR_MODES = ("float32", "float16", "float64")
"""Precision/recall distance blocks (``adm.precision_recall``): ADM's float32 and float16, or float64, whose
counts do not depend on the machine's BLAS kernel (in float32, |u|^2 - 2 u.v + |v|^2 loses the digits of a
small distance between points of large norm, and AVX2 and AVX-512 kernels round it differently)."""
