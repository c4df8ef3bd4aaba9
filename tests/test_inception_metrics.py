"""Every metric of the suite on features of the real (converted) Inception applied to a few hundred
generated images, against the published formulas computed here with numpy/scipy."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import generated_images
from softcfg.metrics import adm, inception_features
from softcfg.metrics.inception import POOL, SPATIAL
from softcfg.metrics.inception_features import feature_set, features_arrays, merged_feature_set
from softcfg.metrics.suite import compute_metrics
from test_adm_metrics import adm_fid, brute_force_pr, softmax_is

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:Matrix is singular")]


@pytest.fixture(scope="module")
def extracted(inception_weights):
    """Samples in two shards and a reference set, from different image distributions; with the raw
    features the extractor returned, recorded on the way (pool_3 and the sFID tensor)."""
    raw = []
    original = inception_features.extract

    def recording(*args, **kwargs):
        raw.append(original(*args, **kwargs))
        return raw[-1]

    inception_features.extract = recording
    try:
        sets = [generated_images(90, 48, seed=1), generated_images(110, 48, seed=2)]
        sets.append(generated_images(200, 48, seed=3, palette_shift=90))
        arrays = [features_arrays(images, inception_weights, {}, 64, "cpu") for images in sets]
    finally:
        inception_features.extract = original
    return arrays[:2], arrays[2], raw


@pytest.fixture(scope="module")
def arrays(extracted):
    return extracted[0], extracted[1]


def test_fid_and_sfid_equal_adms_sqrtm_on_the_raw_features(extracted):
    shards, reference, raw = extracted
    ours = compute_metrics(merged_feature_set(shards), feature_set(reference), ("fid", "sfid"))
    for metric, layer in (("fid", POOL), ("sfid", SPATIAL)):
        x = np.concatenate([raw[0][layer], raw[1][layer]]).astype(np.float64)
        y = raw[2][layer].astype(np.float64)
        expected = adm_fid(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
        assert ours[metric] == pytest.approx(expected, rel=1e-4), metric
        assert ours[metric] > 1.0  # two different image distributions
    assert raw[2][SPATIAL].shape == (200, 17 * 17 * 7)


def test_merged_shards_equal_the_concatenation_and_the_old_sums(arrays):
    """Statistics computed at merge time from the shards' float32 features: numpy's over the
    concatenation, and the float64 sums and outer-product sums the previous layout stored per shard."""
    shards, _ = arrays
    merged = merged_feature_set(shards)
    for got, name in ((merged.fid, "pool"), (merged.sfid, "spatial")):
        x = np.concatenate([s[name] for s in shards]).astype(np.float64)
        cov = np.cov(x, rowvar=False)
        assert np.abs(got.sigma - cov).max() <= 1e-10 * np.abs(cov).max()
        assert np.abs(got.mu - x.mean(0)).max() <= 1e-10 * np.abs(x.mean(0)).max()
        old = adm.merge([adm.MomentSums.of(s[name]) for s in shards])
        assert np.abs(got.sigma - old.covariance).max() <= 1e-10 * np.abs(old.covariance).max()
        assert np.abs(got.mu - old.mean).max() <= 1e-10 * np.abs(old.mean).max()


def test_inception_score_from_softmax_probabilities(arrays):
    """The converted weights have no head, so a random 2048 x 1008 matrix stands in for it."""
    shards, _ = arrays
    pool = np.concatenate([s["pool"] for s in shards])
    w = np.random.default_rng(0).normal(size=(2048, 1008)).astype(np.float32) / 8
    logits = pool @ w
    assert adm.inception_score(logits) == pytest.approx(softmax_is(logits, 5000), rel=1e-4)


def test_precision_recall_equal_brute_force_and_follow_adms_convention(arrays):
    shards, reference = arrays
    x, y = np.concatenate([s["pool"] for s in shards]), reference["pool"]
    assert adm.precision_recall(y, x) == brute_force_pr(y, x)
    collapsed = np.repeat(y[:4], 40, axis=0)  # four reference images, repeated
    precision, recall = adm.precision_recall(y, collapsed)
    assert precision == 1.0 and recall < 0.2
    assert adm.precision_recall(collapsed, y) == (recall, precision)
