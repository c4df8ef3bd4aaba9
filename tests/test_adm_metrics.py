"""The ADM metric suite against independent computations written here from the published formulas."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from softcfg.metrics import adm
from softcfg.metrics.suite import FeatureSet, PRSettings, compute_metrics


def adm_fid(mu1, sigma1, mu2, sigma2) -> float:
    """ADM's evaluator: sqrtm of the covariance product, real part kept."""
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * 1e-6
        covmean = scipy.linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def brute_force_pr(reference: np.ndarray, samples: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Precision/recall from full float64 distance matrices: k-th neighbour radii (self excluded)."""

    def sq(a, b):
        return ((a[:, None, :].astype(np.float64) - b[None, :, :]) ** 2).sum(-1)

    ref_radii = np.sort(sq(reference, reference), axis=1)[:, k]
    smp_radii = np.sort(sq(samples, samples), axis=1)[:, k]
    precision = (sq(samples, reference) <= ref_radii[None, :]).any(axis=1).mean()
    recall = (sq(reference, samples) <= smp_radii[None, :]).any(axis=1).mean()
    return float(precision), float(recall)


def softmax_is(logits: np.ndarray, split: int) -> float:
    """IS = mean over consecutive splits of exp(mean_x KL(p(y|x) || p(y)))."""
    scores = []
    for start in range(0, len(logits), split):
        z = logits[start : start + split].astype(np.float64)
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        marginal = p.mean(axis=0)
        scores.append(np.exp(np.mean(np.sum(p * (np.log(p) - np.log(marginal)), axis=1))))
    return float(np.mean(scores))


def features(n: int, d: int, seed: int, shift: float = 0.0) -> np.ndarray:
    """Non-negative, correlated, pool_3-like features."""
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    return np.abs(rng.normal(size=(n, d)) @ mix + 0.3 + shift).astype(np.float32)


def test_merged_shard_statistics_equal_statistics_of_the_concatenation():
    x = features(1000, 48, seed=0)
    shards = [x[:137], x[137:600], x[600:]]
    merged = adm.merge([adm.MomentSums.of(s) for s in shards])
    mean, cov = x.astype(np.float64).mean(axis=0), np.cov(x.astype(np.float64), rowvar=False)
    assert np.abs(merged.mean - mean).max() <= 1e-10 * np.abs(mean).max()
    assert np.abs(merged.covariance - cov).max() <= 1e-10 * np.abs(cov).max()
    assert merged.n == 1000


def test_fid_equals_adms_sqrtm_form():
    a, b = features(600, 32, seed=1), features(500, 32, seed=2, shift=0.2)
    stats = [(x.astype(np.float64).mean(0), np.cov(x, rowvar=False)) for x in (a, b)]
    ours = adm.frechet_distance(*stats[0], *stats[1])
    assert ours == pytest.approx(adm_fid(*stats[0], *stats[1]), rel=1e-8)
    assert adm.frechet_distance(*stats[0], *stats[0]) == pytest.approx(0.0, abs=1e-8)


@pytest.mark.parametrize("n", [700, 12000])
def test_inception_score_uses_adms_consecutive_splits(n):
    rng = np.random.default_rng(3)
    logits = (rng.normal(size=(n, 50)) * 3).astype(np.float32)
    assert adm.inception_score(logits) == pytest.approx(softmax_is(logits, 5000), rel=1e-10)
    if n > 5000:  # a shuffled or evenly split variant would differ
        assert adm.inception_score(logits) != pytest.approx(softmax_is(logits[::-1], 5000), rel=1e-6)


@pytest.mark.parametrize("block", [10000, 7])
def test_precision_recall_equal_brute_force_in_float32(block):
    ref, smp = features(150, 16, seed=4), features(120, 16, seed=5, shift=0.3)
    assert adm.precision_recall(ref, smp, block=block) == brute_force_pr(ref, smp)


def test_float16_blocks_follow_adms_half_precision_graph():
    """Each op rounded to half (float32 accumulation), written again here in NumPy."""

    def half(a):
        return a.astype(np.float16).astype(np.float32)

    def sq16(u, v):
        u, v = half(u), half(v)
        nu, nv = half(half(u * u).sum(1)), half(half(v * v).sum(1))
        d = half(nu[:, None] - half(2 * half(u @ v.T)))
        return np.maximum(half(d + nv[None, :]), 0)

    def pr16(ref, smp, k=3):
        ref_r, smp_r = np.sort(sq16(ref, ref), 1)[:, k], np.sort(sq16(smp, smp), 1)[:, k]
        precision = (sq16(smp, ref) <= ref_r[None]).any(1).mean()
        recall = (sq16(ref, smp) <= smp_r[None]).any(1).mean()
        return float(precision), float(recall)

    ref, smp = features(150, 64, seed=6), features(130, 64, seed=7, shift=0.1)
    assert adm.precision_recall(ref, smp, float16=True, block=50) == pr16(ref, smp)
    huge = ref * 300  # squared norms above float16's range: ADM falls back to float32
    assert adm.precision_recall(huge, smp * 300, float16=True) == adm.precision_recall(huge, smp * 300)


def test_mode_collapse_gives_high_precision_and_low_recall_and_swapping_swaps():
    ref = features(200, 16, seed=8)
    collapsed = np.repeat(ref[:4], 50, axis=0) + np.float32(1e-3)  # a few reference images, repeated
    precision, recall = adm.precision_recall(ref, collapsed)
    assert precision == 1.0 and recall < 0.1
    assert adm.precision_recall(collapsed, ref) == (recall, precision)


def test_metrics_that_the_features_cannot_give_are_errors_not_numbers():
    f = FeatureSet(features(20, 8, seed=9), unavailable="no softmax head")
    with pytest.raises(ValueError, match="Inception Score unavailable: no softmax head"):
        compute_metrics(f, f, ("is",))
    with pytest.raises(ValueError, match="sFID needs"):
        compute_metrics(f, f, ("sfid",))
    with pytest.raises(ValueError, match="unknown metric 'isc'"):
        compute_metrics(f, f, ("isc",))
    with pytest.raises(ValueError, match="needs more than 3 points"):
        compute_metrics(FeatureSet(f.features[:3]), f, ("precision",), pr=PRSettings())
