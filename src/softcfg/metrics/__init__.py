"""Image-set metrics: one suite (ADM's definitions) over feature extractors registered by name.

A model family names the extractor that scores it (``softcfg.models.registry.Family.extractor``); the
record here says which metrics that extractor can give, so a config is checked before any job runs.
"""

from __future__ import annotations

from dataclasses import dataclass

METRICS = ("fid", "sfid", "is", "kid", "precision", "recall")
INTERVAL_METRICS = ("fid", "sfid", "is", "precision", "recall")  # with a confidence interval (bootstrap)


@dataclass(frozen=True)
class Extractor:
    """A feature extractor as the workflow and the metrics step see it."""

    name: str
    description: str
    metrics: tuple[str, ...]  # what its features support
    per_shard: bool  # features are extracted per sample shard (fan-out) rather than per run
    file_tag: str  # the ``extractor`` its feature files record in their ``meta``
    reader: str  # "module:function"(sample paths, reference path) -> scoring.FeatureSets


EXTRACTORS = {
    "digits": Extractor(
        "digits",
        "the embedded digits classifier",
        ("fid", "is", "kid", "precision", "recall"),
        per_shard=False,
        file_tag="digits-classifier",
        reader="softcfg.metrics.scoring:digits_feature_sets",
    ),
    "inception": Extractor(
        "inception",
        "ADM's 2015 Inception (pool_3, spatial, logits)",
        METRICS,
        per_shard=True,
        file_tag="inception-v3-adm",
        reader="softcfg.metrics.scoring:inception_feature_sets",
    ),
}

PR_MODES = ("float32", "float16", "float64")
"""Precision/recall distance blocks (``adm.precision_recall``): ADM's float32 and float16, or float64, whose
counts do not depend on the machine's BLAS kernel (in float32, |u|^2 - 2 u.v + |v|^2 loses the digits of a
small distance between points of large norm, and AVX2 and AVX-512 kernels round it differently)."""
