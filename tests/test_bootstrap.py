"""Intervals and paired comparisons (softcfg.metrics.bootstrap, softcfg compare) against independent
computations: scipy's sqrtm FID, numpy's IS and brute-force precision/recall, and Monte Carlo coverage on
Gaussians whose FID has a closed form.

Coverage tests draw R = 200 independent sample sets; an interval of level L covers the target in a share
of them whose binomial standard error is sqrt(L (1 - L) / R) (0.021 at L = 0.9), and the tolerance is three
of those."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import linalg
from scipy.special import log_softmax

from softcfg.cli import main
from softcfg.config import MetricsEntry
from softcfg.metrics import adm
from softcfg.metrics import bootstrap as bs
from softcfg.metrics.suite import FeatureSet, PRSettings
from softcfg.options import ConfigError, validate

REPS, LEVEL = 200, 0.9
TOLERANCE = 3 * np.sqrt(LEVEL * (1 - LEVEL) / REPS)


@pytest.fixture(autouse=True)
def one_thread():
    """Small distance blocks: two torch threads on a shared machine only wait for each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def fid(x: np.ndarray, mu_r: np.ndarray, sigma_r: np.ndarray) -> float:
    """ADM's formula with scipy's sqrtm."""
    mu, sigma = x.mean(0), np.cov(x, rowvar=False)
    root = linalg.sqrtm(sigma @ sigma_r).real
    return float(np.square(mu - mu_r).sum() + np.trace(sigma) + np.trace(sigma_r) - 2 * np.trace(root))


def inception_score(logits: np.ndarray, split: int = 5000) -> float:
    scores = []
    for start in range(0, len(logits), split):
        log_p = log_softmax(logits[start : start + split].astype(np.float64), axis=1)
        p = np.exp(log_p)
        scores.append(np.exp((p * (log_p - np.log(p.mean(0)))).sum(1).mean()))
    return float(np.mean(scores))


def brute_force_pr(reference: np.ndarray, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sample inside the reference manifold, reference point inside the sample manifold), k = 3."""
    r, s = reference.astype(np.float64), samples.astype(np.float64)

    def radii(a: np.ndarray) -> np.ndarray:
        return np.sort(np.square(a[:, None] - a[None]).sum(-1), axis=1)[:, 3]

    d = np.square(r[:, None] - s[None]).sum(-1)  # [reference, samples]
    return (d <= radii(r)[:, None]).any(0), (d <= radii(s)[None]).any(1)


def drawn_rows(plan: bs.Plan, draw: int) -> np.ndarray:
    """The sample indices of one draw: its blocks, each as often as drawn, in block order."""
    bounds, counts = plan.bounds, plan.counts[draw]
    return np.concatenate(
        [np.arange(bounds[b], bounds[b + 1]) for b in np.repeat(np.arange(len(counts)), counts)]
    )


def test_full_set_and_each_draw_equal_the_metrics_of_their_rows():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((503, 12)) * rng.uniform(0.5, 2, 12) + 0.3).astype(np.float32)
    y = rng.standard_normal((400, 12)).astype(np.float32)
    mu_r, sigma_r = y.mean(0).astype(np.float64), np.cov(y.astype(np.float64), rowvar=False)
    plan = bs.Resampling(resamples=5, blocks=7, seed=3).plan(len(x))  # uneven blocks (71 and 72 samples)
    reference = bs.FrechetReference.of(mu_r, sigma_r)
    blocks = bs.FrechetBlocks.of([x[:100], x[100:101], x[101:]], plan.bounds, reference)  # shards cut blocks
    frechet = bs.frechet_replicates(blocks, plan)
    x64 = x.astype(np.float64)
    assert frechet.value == pytest.approx(fid(x64, mu_r, sigma_r), rel=1e-6)
    assert frechet.value == pytest.approx(
        adm.frechet_distance(x64.mean(0), np.cov(x64, rowvar=False), mu_r, sigma_r), rel=1e-6
    )
    for i in range(len(plan.counts)):
        assert frechet.draws[i] == pytest.approx(fid(x64[drawn_rows(plan, i)], mu_r, sigma_r), rel=1e-6)

    logits = rng.standard_normal((12000, 20)) * 3
    is_plan = bs.Resampling(resamples=3, blocks=9).plan(len(logits))
    score = bs.inception_score_replicates(logits, is_plan)
    assert score.value == pytest.approx(inception_score(logits), rel=1e-10)
    assert score.value == pytest.approx(adm.inception_score(logits), rel=1e-10)
    for i in range(3):
        assert score.draws[i] == pytest.approx(inception_score(logits[drawn_rows(is_plan, i)]), rel=1e-10)

    inside, covered = brute_force_pr(y, x)
    smp_inside, cover = adm.manifold_membership(y, x, block=128, groups=plan.bounds)
    np.testing.assert_array_equal(smp_inside, inside)
    for b in range(len(plan.sizes)):  # each block's balls (radii of the full set), by brute force
        lo, hi = plan.bounds[b], plan.bounds[b + 1]
        d = np.square(y[:, None].astype(np.float64) - x[None, lo:hi]).sum(-1)
        radii = np.sort(np.square(x[:, None].astype(np.float64) - x[None]).sum(-1), axis=1)[lo:hi, 3]
        np.testing.assert_array_equal(cover[:, b], (d <= radii[None]).any(1))
    precision, recall = bs.precision_replicates(smp_inside, plan), bs.recall_replicates(cover, plan)
    assert (precision.value, recall.value) == (inside.mean(), covered.mean())
    assert (precision.value, recall.value) == adm.precision_recall(y, x)
    for i in range(len(plan.counts)):
        assert precision.draws[i] == pytest.approx(inside[drawn_rows(plan, i)].mean(), rel=1e-12)
    for b in range(len(plan.sizes)):  # recall without block b, radii fixed
        keep = np.delete(np.arange(len(plan.sizes)), b)
        assert recall.draws[b] == pytest.approx(cover[:, keep].any(1).mean(), rel=1e-12)


def gaussian_case(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A sample Gaussian (mu, Cholesky factor) and a reference Gaussian (mu_r, sigma_r), D = 4."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((4, 4)) * 0.3 + np.eye(4)
    return (
        np.array([0.5, 0.0, -0.3, 0.2]),
        np.linalg.cholesky(a @ a.T),
        np.zeros(4),
        np.diag([1.0, 0.5, 2, 1]),
    )


def test_fid_interval_covers_the_expected_fid_at_its_sample_size_at_the_nominal_rate():
    """The target is E[FID of N samples] (Monte Carlo over 4000 sets, FID's closed form shown beside it
    for scale): the interval is about another sample set of this size, and FID's finite-sample bias is
    part of what every such set gives."""
    n, rng = 400, np.random.default_rng(1)
    mu, chol, mu_r, sigma_r = gaussian_case(0)
    sigma = chol @ chol.T
    population = float(
        np.square(mu - mu_r).sum()
        + np.trace(sigma)
        + np.trace(sigma_r)
        - 2 * np.trace(linalg.sqrtm(sigma @ sigma_r).real)
    )
    expected = np.mean([fid(mu + rng.standard_normal((n, 4)) @ chol.T, mu_r, sigma_r) for _ in range(4000)])
    assert expected > population  # the bias the target includes
    reference = bs.FrechetReference.of(mu_r, sigma_r)
    hits = 0
    for rep in range(REPS):
        x = mu + rng.standard_normal((n, 4)) @ chol.T
        plan = bs.Resampling(resamples=200, level=LEVEL, seed=rep).plan(n)
        low, high = bs.frechet_replicates(bs.FrechetBlocks.of([x], plan.bounds, reference), plan).interval(
            LEVEL
        )
        hits += low <= expected <= high
    assert abs(hits / REPS - LEVEL) <= TOLERANCE, hits / REPS


def test_precision_interval_is_nominal_and_recall_interval_conservative():
    """Precision's bootstrap covers E[precision] at the nominal rate; recall's jackknife (radii fixed) is
    conservative (its standard error about 1.6 x the true spread here): coverage at least nominal."""
    n, rng = 200, np.random.default_rng(2)
    reference = rng.standard_normal((n, 3)).astype(np.float32)

    def draw() -> np.ndarray:
        return (rng.standard_normal((n, 3)) * 1.1 + 0.4).astype(np.float32)

    expected = np.mean([[m.mean() for m in brute_force_pr(reference, draw())] for _ in range(600)], axis=0)
    hits = np.zeros(2)
    for rep in range(REPS):
        plan = bs.Resampling(resamples=200, level=LEVEL, seed=rep).plan(n)
        inside, cover = adm.manifold_membership(reference, draw(), groups=plan.bounds)
        for j, r in enumerate((bs.precision_replicates(inside, plan), bs.recall_replicates(cover, plan))):
            low, high = r.interval(LEVEL)
            hits[j] += low <= expected[j] <= high
    coverage = hits / REPS
    assert abs(coverage[0] - LEVEL) <= TOLERANCE, coverage
    assert LEVEL - TOLERANCE <= coverage[1] < 1, coverage


def paired_fid(x_a: np.ndarray, x_b: np.ndarray, seed: int, reference: bs.FrechetReference) -> bs.Replicates:
    plan = bs.Resampling(resamples=200, level=LEVEL, seed=seed).plan(len(x_a))
    a, b = (bs.frechet_replicates(bs.FrechetBlocks.of([x], plan.bounds, reference), plan) for x in (x_a, x_b))
    return b - a


def test_paired_comparison_detects_a_planted_difference_and_flags_a_null_one_at_its_rate():
    """Planted: B is A's features shifted by 0.1 in one coordinate (FID up by about 0.11), detected every
    time with the paired interval. Null: B has A's law, correlated with A (0.8) as runs sharing seeds are,
    and is flagged (its interval excludes 0) at the rate 1 - level."""
    n, rng = 400, np.random.default_rng(3)
    mu, chol, mu_r, sigma_r = gaussian_case(0)
    reference = bs.FrechetReference.of(mu_r, sigma_r)
    shift = np.array([0.1, 0, 0, 0])
    flagged = 0
    for rep in range(REPS):
        z = rng.standard_normal((n, 4))
        z_b = 0.8 * z + 0.6 * rng.standard_normal((n, 4))  # same law, correlated as paired runs are
        x_a, x_b = mu + z @ chol.T, mu + z_b @ chol.T
        null = paired_fid(x_a, x_b, rep, reference)
        low, high = null.interval(LEVEL)
        flagged += not low <= 0 <= high
        assert (null.sign_probability() > (1 + LEVEL) / 2) == (not low <= 0 <= high)
        if rep < 20:
            planted = paired_fid(x_a, x_a + shift, rep, reference)
            low, high = planted.interval(LEVEL)
            assert planted.value > 0 and low > 0 and planted.sign_probability() > 0.99
    assert abs(flagged / REPS - (1 - LEVEL)) <= TOLERANCE, flagged / REPS


def test_intervals_are_deterministic_and_named_in_the_record():
    rng = np.random.default_rng(4)
    samples = FeatureSet(rng.standard_normal((300, 6)).astype(np.float32), rng.standard_normal((300, 10)))
    reference = FeatureSet(rng.standard_normal((200, 6)).astype(np.float32))
    names = ("fid", "is", "kid", "precision", "recall")
    settings = bs.Resampling(resamples=30, level=0.9, seed=7, blocks=20)
    first = bs.intervals(samples, reference, names, settings, PRSettings())
    assert first == bs.intervals(samples, reference, names, settings, PRSettings())
    assert set(first) == {"fid", "is", "precision", "recall"}  # KID has its own subsets' spread
    assert (
        first["fid"]["ci_method"]
        == "bootstrap-basic, 30 resamples of 20 blocks of 15 samples, reference fixed"
    )
    assert first["recall"]["ci_resamples"] == 20 and first["recall"]["ci_method"].startswith(
        "jackknife-normal"
    )
    assert all(r["ci_low"] < r["ci_high"] and r["ci_level"] == 0.9 for r in first.values())
    with pytest.raises(ValueError, match="sFID interval"):
        bs.intervals(samples, reference, ("sfid",), settings, PRSettings())


@pytest.mark.parametrize(
    "entry, message",
    [({"level": 1.0}, "metrics.bootstrap.level"), ({"blocks": 1}, "metrics.bootstrap.blocks"),
     ({"resamples": -1}, "metrics.bootstrap.resamples"), ({"draws": 5}, "metrics.bootstrap.draws")],
)  # fmt: skip
def test_bootstrap_options_are_validated(entry, message):
    assert MetricsEntry().bootstrap.resamples == 200 and MetricsEntry().bootstrap.level == 0.95
    with pytest.raises(ConfigError, match=message):
        validate(MetricsEntry, {"bootstrap": entry}, "metrics")


def write_digits_run(results, run: str, features: np.ndarray, seed: int) -> None:
    """A run as the digits workflow leaves it: its features file and its metrics record."""
    n = len(features)
    meta = json.dumps({"extractor": "digits-classifier", "extractor_sha256": "0" * 64})
    logits = np.tile(np.eye(10, dtype=np.float32) * 4, (n // 10, 1))
    (results / "features").mkdir(parents=True, exist_ok=True)
    np.savez(
        results / "features" / f"{run}.npz",
        features=features,
        logits=logits,
        labels=np.arange(n) % 10,
        meta=meta,
    )
    record = {
        "run": {
            "model": {"family": "digits", "checkpoint": "tiny.pt"},
            "method": {"name": "none"},
            "sampling": {"seed": seed, "shard_size": 100, "batch_size": 50, "diagnostics": True},
            "run": {"id": run, "model": "tiny", "method": "none"},
        },
        "metrics": {"fid": 0.0, "precision": 0.0, "accuracy": 1.0},
        "num_samples": n,
        "reference": "digits (300 images)",
    }
    (results / "metrics").mkdir(exist_ok=True)
    (results / "metrics" / f"{run}.json").write_text(json.dumps(record))


def test_compare_prints_the_paired_difference_and_refuses_unpaired_runs(tmp_path, capsys):
    rng = np.random.default_rng(5)
    results = tmp_path / "results"
    (results / "reference").mkdir(parents=True)
    y = rng.standard_normal((300, 5)).astype(np.float32)
    meta = json.dumps({"extractor": "digits-classifier", "extractor_sha256": "0" * 64})
    np.savez(
        results / "reference" / "features.npz",
        features=y,
        logits=y[:, :5],
        labels=np.arange(300) % 10,
        meta=meta,
    )
    x = rng.standard_normal((300, 5)).astype(np.float32)
    write_digits_run(results, "a", x, seed=0)
    write_digits_run(results, "b", x + np.float32(0.5), seed=0)
    write_digits_run(results, "c", x, seed=1)
    args = ["compare", "--results", str(results), "--bootstrap-resamples", "50", "--bootstrap-blocks", "20"]
    assert main([*args, "a", "b"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "A = a, B = b: 300 samples each, paired by seed and label"
    assert [line.split()[0] for line in lines[2:]] == ["fid", "precision"]
    fid_line = lines[2].split()
    a, b = (
        fid(x.astype(np.float64), y.mean(0), np.cov(y, rowvar=False)),
        fid(x + 0.5, y.mean(0), np.cov(y, rowvar=False)),
    )
    assert float(fid_line[1]) == pytest.approx(a, rel=1e-4) and float(fid_line[2]) == pytest.approx(
        b, rel=1e-4
    )
    assert float(fid_line[3]) == pytest.approx(b - a, rel=1e-4) and float(fid_line[6]) == 1.0
    assert main([*args, "a", "b"]) == 0 and capsys.readouterr().out.splitlines() == lines  # same draws
    assert main([*args, "a", "c"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("softcfg: error: compare: runs 'a' and 'c' do not share model, seed and sampling")
    assert len(err.splitlines()) == 1
    assert main([*args, "a", "missing"]) == 2
    assert "no metrics of run 'missing'" in capsys.readouterr().err
