"""The ADM metric suite against independent computations written here from the published formulas."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

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


def test_inception_score_stays_finite_where_a_float32_probability_underflows():
    """ADM takes TF's float32 softmax and computes p log p in NumPy: a probability that underflows to 0 gives
    0 * log 0 = NaN. Here the log-probabilities are float64 (log-softmax), so 0 log 0 counts as 0."""
    rng = np.random.default_rng(10)
    logits = (rng.normal(size=(300, 20)) * 3).astype(np.float32)
    logits[0, 0] = -200.0  # exp(-200) is 0 in float32, 1.4e-87 in float64

    z = logits - logits.max(axis=1, keepdims=True)
    p32 = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)  # float32 throughout, as in ADM
    assert p32[0, 0] == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = (p32 * (np.log(p32) - np.log(p32.mean(axis=0, keepdims=True)))).sum(axis=1)
    assert np.isnan(np.exp(kl.mean()))

    assert adm.inception_score(logits) == pytest.approx(softmax_is(logits, 5000), rel=1e-10)
    logits[0, 0] = -1e4  # underflows in float64 too: the limit 0 log 0 = 0, not NaN
    beyond = adm.inception_score(logits)
    assert np.isfinite(beyond) and beyond == pytest.approx(softmax_is(logits.clip(-300), 5000), rel=1e-12)


@pytest.mark.parametrize("block", [10000, 7])
def test_precision_recall_equal_brute_force_in_float32(block):
    ref, smp = features(150, 16, seed=4), features(120, 16, seed=5, shift=0.3)
    assert adm.precision_recall(ref, smp, block=block) == brute_force_pr(ref, smp)


@pytest.mark.parametrize("block", [10000, 7])
def test_float64_mode_equals_brute_force_where_float32_loses_the_distances(block):
    """Points of squared norm 3e4 a small distance apart: float32's |u|^2 - 2 u.v + |v|^2 keeps about two
    digits of each distance there (its counts depend on the BLAS kernel); float64 blocks give the
    well-conditioned (u - v)^2 computation's counts whatever the block layout."""
    centre = np.full(16, np.sqrt(3e4 / 16), np.float32)
    ref = centre + 0.05 * features(150, 16, seed=4)
    smp = centre + 0.05 * features(120, 16, seed=5, shift=0.3)
    assert (ref.astype(np.float64) ** 2).sum(1).min() > 2.9e4
    assert adm.precision_recall(ref, smp, block=block, mode="float64") == brute_force_pr(ref, smp)
    with pytest.raises(ValueError, match="mode must be one of"):
        adm.precision_recall(ref, smp, mode="exact")


def spy_on_distance_blocks(monkeypatch) -> list[tuple[int, int, np.ndarray]]:
    """Record (rows, columns, block) for every distance block the suite computes."""
    blocks: list[tuple[int, int, np.ndarray]] = []
    compute = adm._squared_distances

    def spy(u, v):
        d = compute(u, v)
        blocks.append((len(u), len(v), d.numpy().copy()))
        return d

    monkeypatch.setattr(adm, "_squared_distances", spy)
    return blocks


@pytest.mark.parametrize("block", [10000, 64, 7])
def test_one_reference_by_sample_block_read_both_ways_equals_float64(block, monkeypatch):
    """ADM's orientation: one block per reference x sample pair, reference as rows; precision reads it
    along columns, recall along rows. Checked against a float64 NumPy computation of both directions."""
    ref, smp = features(150, 16, seed=4), features(120, 16, seed=5, shift=0.3)
    r, s = ref.astype(np.float64), smp.astype(np.float64)

    def sq(a, b):
        return (a * a).sum(1)[:, None] - 2 * a @ b.T + (b * b).sum(1)[None, :]

    cross = sq(r, s)  # [reference, samples]
    ref_radii, smp_radii = np.sort(sq(r, r), 1)[:, 3], np.sort(sq(s, s), 1)[:, 3]
    precision = (cross <= ref_radii[:, None]).any(axis=0).mean()
    recall = (cross <= smp_radii[None, :]).any(axis=1).mean()

    blocks = spy_on_distance_blocks(monkeypatch)
    assert adm.precision_recall(ref, smp, block=block) == (precision, recall)
    n_ref, n_smp = -(-150 // block), -(-120 // block)
    assert len(blocks) == n_ref**2 + n_smp**2 + n_ref * n_smp  # each cross block once, not once per direction
    if block >= 150:
        assert [(rows, cols) for rows, cols, _ in blocks] == [(150, 150), (120, 120), (150, 120)]
        np.testing.assert_allclose(blocks[-1][2], cross, rtol=0, atol=1e-5 * cross.max())


def half(a) -> np.ndarray:
    return np.asarray(a, np.float32).astype(np.float16).astype(np.float32)


def tf_half_norms(x: np.ndarray) -> np.ndarray:
    """|x|^2 as TensorFlow's CPU float16 reduce_sum forms it, one float16 addition at a time (over rows).
    Squares are rounded to half. Above 1600 values the row is split at the first multiple of 8 past its
    middle and the two sums added. A part of n values: value i of each group of 32 goes to accumulator
    i // 8 % 4, lane i % 8; accumulators merged 0+1+2+3; the rest of the multiples of 8 lane by lane; the
    last n % 8 values one by one, plus the 8 lanes added exactly (float64) and rounded once."""
    squares = (half(x) ** 2).astype(np.float16)

    def part(lo: int, hi: int) -> np.ndarray:
        n = hi - lo
        if n > 1600:  # rows start on a packet boundary here (2048 values per row)
            mid = lo + -(-(n // 2 + n % 2) // 8) * 8
            return part(lo, mid) + part(mid, hi)
        lanes = np.zeros((len(x), 8), np.float16)
        done = n // 32 * 32
        if done:
            acc = np.zeros((len(x), 4, 8), np.float16)
            for i in range(done):
                acc[:, i % 32 // 8, i % 8] += squares[:, lo + i]  # float16 += float16: rounded to half
            lanes = acc[:, 0] + acc[:, 1] + acc[:, 2] + acc[:, 3]
        for i in range(done, n // 8 * 8):
            lanes[:, i % 8] += squares[:, lo + i]
        tail = np.zeros(len(x), np.float16)
        for i in range(n // 8 * 8, n):
            tail += squares[:, lo + i]
        return tail + lanes.astype(np.float64).sum(1).astype(np.float16)

    total = part(0, x.shape[1])
    assert total.dtype == np.float16
    return total.astype(np.float32)


# TensorFlow 2.21 (CPU) reduce_sum(square(cast(x, float16)), axis=1) of GOLDEN_X below.
GOLDEN_X = (np.random.default_rng(0).integers(0, 1024, size=(16, 2048)) / 1024).astype(np.float32)
GOLDEN_TF_NORMS = [704.0, 682.0, 662.0, 674.0, 702.0, 679.5, 672.0, 669.0]
GOLDEN_TF_NORMS += [693.5, 666.0, 677.5, 673.5, 693.5, 687.0, 666.0, 680.5]


@pytest.mark.parametrize("d", [2048, 64, 40, 7])
def test_float16_norms_are_summed_in_half_precision_as_tensorflow_does(d):
    x = features(300, 2048, seed=11)[:, :d]
    ours = adm.squared_norms(torch.from_numpy(x), float16=True).numpy()
    np.testing.assert_array_equal(ours, tf_half_norms(x))
    if d == 2048:  # summing in float32 and rounding once is a different result (the model before)
        assert (ours != half((half(x) ** 2).astype(np.float16).astype(np.float32).sum(1))).mean() > 0.1


def test_float16_norms_equal_tensorflows_own_output():
    golden = adm.squared_norms(torch.from_numpy(GOLDEN_X), float16=True).numpy()
    np.testing.assert_array_equal(golden, np.float32(GOLDEN_TF_NORMS))
    rounded_once = half((half(GOLDEN_X) ** 2).astype(np.float16).astype(np.float32).sum(1))
    assert (rounded_once != np.float32(GOLDEN_TF_NORMS)).sum() >= 4


def sq16(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """ADM's float16 block with u as rows: each op rounded to half, the matmul accumulated in float32."""
    d = half(tf_half_norms(u)[:, None] - half(2 * half(half(u) @ half(v).T)))
    return np.maximum(half(d + tf_half_norms(v)[None, :]), 0)


def test_float16_blocks_follow_adms_half_precision_graph_in_its_orientation(monkeypatch):
    """Values on a 1/16 grid make every float32 matmul exact, so the blocks can be compared bit for bit."""
    rng = np.random.default_rng(6)
    ref = (rng.integers(0, 40, size=(150, 64)) / 16).astype(np.float32)
    smp = (rng.integers(0, 40, size=(130, 64)) / 16 + 0.25).astype(np.float32)
    cross = sq16(ref, smp)
    assert (cross != sq16(smp, ref).T).any()  # the other orientation rounds differently: the check can tell
    ref_r, smp_r = np.sort(sq16(ref, ref), 1)[:, 3], np.sort(sq16(smp, smp), 1)[:, 3]
    expected = (cross <= ref_r[:, None]).any(0).mean(), (cross <= smp_r[None, :]).any(1).mean()

    blocks = spy_on_distance_blocks(monkeypatch)
    assert adm.precision_recall(ref, smp, mode="float16") == expected
    assert [(rows, cols) for rows, cols, _ in blocks] == [(150, 150), (130, 130), (150, 130)]
    np.testing.assert_array_equal(blocks[-1][2], cross)
    assert adm.precision_recall(ref, smp, mode="float16", block=50) == expected

    a, b = features(150, 64, seed=6), features(130, 64, seed=7, shift=0.1)  # continuous values
    ra, rb = np.sort(sq16(a, a), 1)[:, 3], np.sort(sq16(b, b), 1)[:, 3]
    ab = sq16(a, b)
    assert adm.precision_recall(a, b, mode="float16", block=50) == (
        (ab <= ra[:, None]).any(0).mean(),
        (ab <= rb[None, :]).any(1).mean(),
    )
    huge = a * 300  # squared norms above float16's range: ADM falls back to float32
    assert adm.precision_recall(huge, b * 300, mode="float16") == adm.precision_recall(huge, b * 300)


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


def naeem_density_coverage(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float]:
    """Naeem et al. 2020 (``prdc``) written out in float64 with all pairwise distances: each real point's
    ball reaches its k-th nearest real neighbour (itself excluded); density counts, per fake point, the
    balls that contain it, over k M; coverage is the share of balls that contain some fake point."""
    real, fake = real.astype(np.float64), fake.astype(np.float64)
    rr = np.sqrt(((real[:, None] - real[None]) ** 2).sum(-1))
    radii = np.sort(rr, axis=1)[:, k]  # column 0 is the point itself
    rf = np.sqrt(((real[:, None] - fake[None]) ** 2).sum(-1))  # [N_real, M_fake]
    inside = rf <= radii[:, None]
    return inside.sum() / (k * fake.shape[0]), inside.any(axis=1).mean()


@pytest.mark.parametrize("block", [10000, 7])
def test_density_and_coverage_equal_naeems_definitions(block):
    ref, smp = features(150, 16, seed=4), features(120, 16, seed=5, shift=0.3)
    density, coverage = adm.density_coverage(ref, smp, k=5, block=block, mode="float64")
    expected = naeem_density_coverage(ref, smp, 5)
    assert density == pytest.approx(expected[0], abs=1e-12) and coverage == pytest.approx(
        expected[1], abs=1e-12
    )
    assert 0 < coverage < 1 and density > 0
    values = compute_metrics(
        FeatureSet(smp), FeatureSet(ref), ("density", "coverage"), pr=PRSettings(mode="float64")
    )
    assert (values["density"], values["coverage"]) == (density, coverage)
    collapsed = np.repeat(ref[:2], 60, axis=0)  # every sample on two reference points: few balls covered
    _, low = adm.density_coverage(ref, collapsed, k=5, mode="float64")
    assert low == pytest.approx(naeem_density_coverage(ref, collapsed, 5)[1]) and low < 0.2
