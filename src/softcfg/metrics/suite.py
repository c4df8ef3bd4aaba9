"""One metric suite for every extractor: FID, sFID, IS, KID, precision and recall from cached features.

The digits classifier and the Inception network differ only in which features they provide; the numbers
are computed the same way (ADM's definitions, softcfg.metrics.adm). Precision is the share of samples
inside the reference manifold, recall the share of reference images inside the sample manifold.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from softcfg.metrics import Metric, adm, get_metric


@dataclass(frozen=True)
class Gaussian:
    """FID statistics: mean and covariance, float64."""

    mu: np.ndarray
    sigma: np.ndarray

    @classmethod
    def of(cls, sums: adm.MomentSums) -> Gaussian:
        return cls(sums.mean, sums.covariance)


@dataclass(frozen=True)
class FeatureSet:
    """What the metrics read of one image set. ``fid``/``sfid`` default to statistics of ``features``
    (``sfid`` has no such default: it needs the spatial tensor); ``logits`` feed IS; ``spatial`` reads
    the sFID features again part by part (sFID intervals need them by block, and they are too large to
    keep: 50k x 2023 float32 is 400 MB)."""

    features: np.ndarray  # [N, D] float32: pool_3 or the digits classifier's features
    logits: np.ndarray | None = None
    fid: Gaussian | None = None
    sfid: Gaussian | None = None
    unavailable: str | None = None  # why IS cannot be computed from these features, if it cannot
    spatial: Callable[[], Iterable[np.ndarray]] | None = None

    @property
    def fid_statistics(self) -> Gaussian:
        return self.fid if self.fid is not None else Gaussian.of(adm.MomentSums.of(self.features))


@dataclass(frozen=True)
class PRSettings:
    k: int = adm.PR_NEIGHBOURS
    block: int = adm.PR_BLOCK
    mode: str = "float32"  # the distance blocks' precision (adm.PR_MODES)
    device: str = "cpu"


@dataclass(frozen=True)
class MetricSettings:
    """What a metric function may read besides the two feature sets."""

    kid_subset_size: int = 1000
    pr: PRSettings = PRSettings()


def compute_metrics(
    samples: FeatureSet,
    reference: FeatureSet,
    names: tuple[str, ...],
    kid_subset_size: int = 1000,
    pr: PRSettings = PRSettings(),
) -> dict[str, float]:
    """The requested metrics, each record's function called once for all of its metrics asked for; a
    metric the features cannot give is an error, never a number."""
    groups: dict[str, list[Metric]] = {}  # by function, in the order asked for
    for name in names:
        metric = get_metric(name, "metric")
        groups.setdefault(metric.compute, []).append(metric)
    settings = MetricSettings(kid_subset_size, pr)
    out: dict[str, float] = {}
    for metrics in groups.values():
        out.update(metrics[0].function()(samples, reference, tuple(m.name for m in metrics), settings))
    return out


def inception_score(
    samples: FeatureSet, reference: FeatureSet, names: tuple[str, ...], settings: MetricSettings
) -> dict[str, float]:
    if samples.logits is None:
        raise ValueError(f"Inception Score unavailable: {samples.unavailable or 'no logits'}")
    return {"is": adm.inception_score(samples.logits)}


def frechet_distance(
    samples: FeatureSet, reference: FeatureSet, names: tuple[str, ...], settings: MetricSettings
) -> dict[str, float]:
    s, r = samples.fid_statistics, reference.fid_statistics
    return {"fid": adm.frechet_distance(s.mu, s.sigma, r.mu, r.sigma)}


def spatial_frechet_distance(
    samples: FeatureSet, reference: FeatureSet, names: tuple[str, ...], settings: MetricSettings
) -> dict[str, float]:
    if samples.sfid is None or reference.sfid is None:
        raise ValueError("sFID needs Inception's spatial features (mixed_6/conv) of both sets")
    s, r = samples.sfid, reference.sfid
    return {"sfid": adm.frechet_distance(s.mu, s.sigma, r.mu, r.sigma)}


def precision_recall(
    samples: FeatureSet, reference: FeatureSet, names: tuple[str, ...], settings: MetricSettings
) -> dict[str, float]:
    """ADM's precision and recall (k = 3), from one pass over the distance blocks."""
    pr = settings.pr
    p, r = adm.precision_recall(reference.features, samples.features, pr.k, pr.block, pr.mode, pr.device)
    return {key: v for key, v in (("precision", p), ("recall", r)) if key in names}


def density_coverage(
    samples: FeatureSet, reference: FeatureSet, names: tuple[str, ...], settings: MetricSettings
) -> dict[str, float]:
    """Naeem et al.'s density and coverage (k = 5) over the reference's k-NN balls, in the precision/recall
    mode's arithmetic."""
    pr = settings.pr
    d, c = adm.density_coverage(
        reference.features, samples.features, adm.DC_NEIGHBOURS, pr.block, pr.mode, pr.device
    )
    return {key: v for key, v in (("density", d), ("coverage", c)) if key in names}


def kernel_inception_distance(
    samples: FeatureSet, reference: FeatureSet, names: tuple[str, ...], settings: MetricSettings
) -> dict[str, float]:
    """torch-fidelity's KID; its standard deviation over subsets as ``kid_std``."""
    kid, std = adm.kernel_inception_distance(samples.features, reference.features, settings.kid_subset_size)
    return {"kid": kid, "kid_std": std}


def class_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Share of samples the classifier assigns to the class they were generated for."""
    return float((logits.argmax(-1) == labels).mean())
