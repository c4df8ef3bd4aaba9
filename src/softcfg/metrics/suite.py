"""One metric suite for every extractor: FID, sFID, IS, KID, precision and recall from cached features.

The digits classifier and the Inception network differ only in which features they provide; the numbers
are computed the same way (ADM's definitions, softcfg.metrics.adm). Precision is the share of samples
inside the reference manifold, recall the share of reference images inside the sample manifold.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from softcfg.metrics import METRICS, adm


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


def compute_metrics(
    samples: FeatureSet,
    reference: FeatureSet,
    names: tuple[str, ...],
    kid_subset_size: int = 1000,
    pr: PRSettings = PRSettings(),
) -> dict[str, float]:
    """The requested metrics; a metric the features cannot give is an error, never a number."""
    unknown = sorted(set(names) - set(METRICS))
    if unknown:
        raise ValueError(f"unknown metric {unknown[0]!r} (known: {', '.join(METRICS)})")
    out: dict[str, float] = {}
    if "is" in names:
        if samples.logits is None:
            raise ValueError(f"Inception Score unavailable: {samples.unavailable or 'no logits'}")
        out["is"] = adm.inception_score(samples.logits)
    if "fid" in names:
        s, r = samples.fid_statistics, reference.fid_statistics
        out["fid"] = adm.frechet_distance(s.mu, s.sigma, r.mu, r.sigma)
    if "sfid" in names:
        if samples.sfid is None or reference.sfid is None:
            raise ValueError("sFID needs Inception's spatial features (mixed_6/conv) of both sets")
        out["sfid"] = adm.frechet_distance(
            samples.sfid.mu, samples.sfid.sigma, reference.sfid.mu, reference.sfid.sigma
        )
    if "precision" in names or "recall" in names:
        p, r = adm.precision_recall(reference.features, samples.features, pr.k, pr.block, pr.mode, pr.device)
        out.update({key: v for key, v in (("precision", p), ("recall", r)) if key in names})
    if "kid" in names:
        out["kid"], out["kid_std"] = adm.kernel_inception_distance(
            samples.features, reference.features, kid_subset_size
        )
    return out


def class_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Share of samples the classifier assigns to the class they were generated for."""
    return float((logits.argmax(-1) == labels).mean())
