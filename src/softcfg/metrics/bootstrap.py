"""Confidence intervals on FID, sFID, IS, precision and recall, and paired differences between two runs.

What varies is the sample set; the reference set is fixed (its statistics, radii and features are those
of the full reference, never resampled), so an interval says how far another sample set of the same size
could move the number against this reference.

Units are ``blocks`` consecutive groups of samples (sizes differing by at most one). Sample n has class
n % num_classes, so a block of a multiple of num_classes samples (1000 at 50k with 50 blocks, ImageNet)
holds every class equally often, and two runs on the same model, seed and sampling sizes hold the same
labels and seeds block by block: the same block counts applied to both give a paired comparison.

- FID/sFID: per-block float64 moments are computed once (rows read block by block) and merged exactly for
  each multinomial draw of block counts; with A = sqrt(reference covariance) and the products A T_b A of
  every block's scatter precomputed, Tr sqrt(S R) = sum sqrt(eig(A S A)), so one draw costs one symmetric
  eigenvalue decomposition of D x D.
- IS: log-softmax rows computed once; a draw lays its blocks end to end in block order and cuts ADM's
  consecutive chunks of 5000 from that sequence (all counts one: ADM's own chunks).
- Precision: per-sample membership of the reference manifold computed once, resampled.
- Bootstrap intervals are basic intervals about the bootstrap mean: the estimate minus the quantiles of
  the draws' deviations from their mean. They target the metric's expected value at this sample count:
  FID is biased upwards in finite samples, and at 50k x 2048 the bias exceeds the spread, so a percentile
  interval (centred on estimate + bias) could exclude the estimate itself.
- Recall is a union of balls of the sample set with the samples' own k-NN radii; a bootstrap draw with
  repeated samples covers less (repeats add no ball) and recomputed radii collapse on repeats, so both
  bootstrap variants are biased. Recall gets a delete-one-block jackknife (radii fixed at the full set's)
  and a normal interval. It is conservative (jackknife variances overestimate, Efron-Stein): in
  tests/test_bootstrap.py its standard error is about 1.6 x the true spread, coverage 0.99 at 0.90.
- Paired differences (softcfg.metrics.compare): the same draws for both runs, B - A replicate by
  replicate; the probability of the observed sign is the share of reflected draws on that side of 0.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

import numpy as np
import torch
from scipy import linalg

from softcfg.config import BootstrapEntry
from softcfg.metrics import INTERVAL_METRICS, adm
from softcfg.metrics.suite import FeatureSet, PRSettings

DEFAULTS = BootstrapEntry()
# The (resample x D^2) float64 stack merged at once for FID: bounds memory whatever D.
MERGE_BYTES = 256 * 2**20


@dataclass(frozen=True)
class Resampling:
    """How intervals are drawn: number of bootstrap draws, confidence level, seed, blocks of samples
    (defaults: config.yaml's ``metrics.bootstrap``)."""

    resamples: int = DEFAULTS.resamples
    level: float = DEFAULTS.level
    seed: int = DEFAULTS.seed
    blocks: int = DEFAULTS.blocks

    def plan(self, n: int) -> Plan:
        """Block bounds of n samples (at most one block per sample) and the draws' block counts, the same
        for any two runs of n samples: that is the pairing."""
        if self.resamples < 1 or not 0 < self.level < 1 or self.blocks < 2:
            raise ValueError(f"resampling needs resamples >= 1, 0 < level < 1 and blocks >= 2: {self}")
        if n < 2:
            raise ValueError(f"an interval needs at least 2 samples, got {n}")
        m = min(self.blocks, n)
        bounds = np.array([i * n // m for i in range(m + 1)])
        counts = np.random.default_rng(self.seed).multinomial(m, np.full(m, 1 / m), size=self.resamples)
        return Plan(self, bounds, counts)


@dataclass(frozen=True)
class Plan:
    settings: Resampling
    bounds: np.ndarray  # [m + 1] sample index where each block starts, then n
    counts: np.ndarray  # [resamples, m] times each block is drawn

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(self.bounds)

    def describe(self, kind: Kind) -> str:
        m, n = len(self.sizes), int(self.bounds[-1])
        blocks = f"{m} blocks of {n // m}{f'-{n // m + 1}' if n % m else ''} samples"
        if kind == "jackknife":
            return f"jackknife-normal, {m} delete-one-block replicates ({blocks}), reference fixed"
        return f"bootstrap-basic, {len(self.counts)} resamples of {blocks}, reference fixed"


Kind = Literal["bootstrap", "jackknife"]


@dataclass(frozen=True)
class Replicates:
    """A metric of the full sample set and its draws: one per bootstrap resample, or (jackknife) one per
    block left out. Two runs' replicates under one plan subtract into their paired difference's."""

    value: float
    draws: np.ndarray
    kind: Kind

    def __sub__(self, other: Replicates) -> Replicates:
        if self.kind != other.kind or self.draws.shape != other.draws.shape:
            raise ValueError("replicates of different plans cannot be paired")
        return Replicates(self.value - other.value, self.draws - other.draws, self.kind)

    def _reflected(self) -> np.ndarray:
        """Bootstrap: the estimate minus each draw's deviation from the draws' mean."""
        return self.value + self.draws.mean() - self.draws

    def _standard_error(self) -> float:
        """Jackknife: sqrt((m - 1) / m sum (draw - mean draw)^2)."""
        m = len(self.draws)
        return float(np.sqrt((m - 1) / m * np.square(self.draws - self.draws.mean()).sum()))

    def interval(self, level: float) -> tuple[float, float]:
        if self.kind == "jackknife":
            half = NormalDist().inv_cdf(0.5 + level / 2) * self._standard_error()
            return self.value - half, self.value + half
        low, high = np.quantile(self._reflected(), [(1 - level) / 2, (1 + level) / 2])
        return float(low), float(high)

    def sign_probability(self) -> float:
        """Probability that the quantity has the sign of ``value`` (0.5 when the value is 0): the share of
        reflected bootstrap draws on that side of 0, or the normal probability from the jackknife error.
        The level-``level`` interval excludes 0 exactly when this exceeds (1 + level) / 2."""
        if self.value == 0:
            return 0.5
        if self.kind == "jackknife":
            error = self._standard_error()
            return 1.0 if error == 0 else NormalDist().cdf(abs(self.value) / error)
        return float((np.sign(self._reflected()) == np.sign(self.value)).mean())


def block_rows(parts: Iterable[np.ndarray], bounds: np.ndarray) -> Iterator[np.ndarray]:
    """Rows of consecutive parts (e.g. shards read one at a time) regrouped into the plan's blocks."""
    pending: list[np.ndarray] = []
    have, block = 0, 0
    for part in parts:
        while len(part):
            need = int(bounds[block + 1] - bounds[block]) - have
            pending.append(part[:need])
            have += len(pending[-1])
            part = part[need:]
            if have == bounds[block + 1] - bounds[block]:
                yield np.concatenate(pending)
                pending, have, block = [], 0, block + 1
                if block == len(bounds) - 1 and len(part):
                    raise ValueError(f"more rows than the {bounds[-1]} samples planned")
    if block != len(bounds) - 1:
        raise ValueError(f"{bounds[block] + have} rows, the plan has {bounds[-1]} samples")


@dataclass(frozen=True)
class FrechetReference:
    """The fixed side of FID: mean, Tr(covariance) and its symmetric square root (negative eigenvalues of
    a rank-deficient covariance clamped to 0), computed once for any number of runs and draws."""

    mu: np.ndarray
    trace: float
    root: np.ndarray

    @classmethod
    def of(cls, mu: np.ndarray, sigma: np.ndarray) -> FrechetReference:
        sigma = np.asarray(sigma, np.float64)
        w, v = np.linalg.eigh(sigma)
        root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
        return cls(np.asarray(mu, np.float64), float(np.trace(sigma)), root)


@dataclass(frozen=True)
class FrechetBlocks:
    """One sample set's blocks in the form a draw merges exactly: with g the full set's mean, per block
    its size, sum (x - g), Tr of the scatter T_b = sum (x - g)(x - g)^T, and A T_b A."""

    mean: np.ndarray  # g [D]
    sizes: np.ndarray  # [m]
    offsets: np.ndarray  # [m, D]
    traces: np.ndarray  # [m]
    sandwiched: np.ndarray  # [m, D, D]
    reference: FrechetReference

    @classmethod
    def of(
        cls, parts: Iterable[np.ndarray], bounds: np.ndarray, reference: FrechetReference
    ) -> FrechetBlocks:
        """Each block centred on its own mean first (no sum x x^T cancellation), then moved to g."""
        sizes = np.diff(bounds).astype(np.float64)
        block_means: list[np.ndarray] = []
        stack = np.empty(0)
        for b, rows in enumerate(block_rows(parts, bounds)):
            x = rows.astype(np.float64)
            block_means.append(x.mean(axis=0))
            x -= block_means[-1]
            if b == 0:
                stack = np.empty((len(sizes), x.shape[1], x.shape[1]))
            np.matmul(x.T, x, out=stack[b])
        mean = sizes @ np.stack(block_means) / sizes.sum()
        offsets = (np.stack(block_means) - mean) * sizes[:, None]
        traces = np.empty(len(sizes))
        for b, scatter in enumerate(stack):  # in place: one D x D temporary whatever the number of blocks
            scatter += np.outer(offsets[b], offsets[b]) / sizes[b]
            traces[b] = np.trace(scatter)
            stack[b] = reference.root @ scatter @ reference.root
        return cls(mean, sizes, offsets, traces, stack, reference)

    def values(self, counts: np.ndarray) -> np.ndarray:
        """FID of each row of block counts: |mu* - mu_r|^2 + Tr S* + Tr R - 2 sum sqrt(eig(A S* A))."""
        n = counts @ self.sizes
        shift = counts @ self.offsets / n[:, None]  # mu* - g
        mean_term = np.square(self.mean - self.reference.mu + shift).sum(axis=1)
        trace = (counts @ self.traces - n * np.square(shift).sum(axis=1)) / (n - 1)
        d = self.sandwiched.shape[1]
        flat = self.sandwiched.reshape(len(self.sizes), d * d)
        roots = np.empty(len(counts))
        step = max(1, MERGE_BYTES // (8 * d * d))
        for start in range(0, len(counts), step):
            merged = (counts[start : start + step] @ flat).reshape(-1, d, d)
            for i, matrix in enumerate(merged, start):
                a_shift = self.reference.root @ shift[i]
                matrix -= n[i] * np.outer(a_shift, a_shift)
                eig = linalg.eigvalsh(matrix, driver="evr", overwrite_a=True, check_finite=False)
                roots[i] = np.sqrt(np.clip(eig / (n[i] - 1), 0, None)).sum()
        return mean_term + trace + self.reference.trace - 2 * roots


@dataclass(frozen=True)
class ScoreRows:
    """IS inputs computed once: per-sample class probabilities p and sum_k p log p (float64)."""

    probs: np.ndarray
    neg_entropy: np.ndarray

    @classmethod
    def of(cls, logits: np.ndarray) -> ScoreRows:
        log_p = torch.from_numpy(np.asarray(logits, np.float64)).log_softmax(dim=1)
        p = log_p.exp()
        return cls(p.numpy(), (p * log_p).sum(dim=1).numpy())

    def values(self, bounds: np.ndarray, counts: np.ndarray, split: int = adm.IS_SPLIT_SIZE) -> np.ndarray:
        """IS of each draw: mean over chunks of exp(mean sum p log p - sum pbar log pbar), i.e. ADM's
        exp(E KL(p || pbar)) per chunk of the drawn blocks laid end to end in block order."""
        ranges = [np.arange(lo, hi) for lo, hi in itertools.pairwise(bounds)]
        out = np.empty(len(counts))
        for i, c in enumerate(counts):
            rows = np.concatenate([ranges[b] for b in np.repeat(np.arange(len(c)), c)])
            scores = []
            for start in range(0, len(rows), split):
                chunk = rows[start : start + split]
                marginal = self.probs[chunk].mean(axis=0)
                kl = self.neg_entropy[chunk].mean() - marginal @ np.log(marginal)
                scores.append(np.exp(kl))
            out[i] = np.mean(scores)
        return out


def frechet_replicates(blocks: FrechetBlocks, plan: Plan) -> Replicates:
    everything = np.ones((1, len(plan.sizes)), dtype=np.int64)
    return Replicates(float(blocks.values(everything)[0]), blocks.values(plan.counts), "bootstrap")


def inception_score_replicates(logits: np.ndarray, plan: Plan) -> Replicates:
    rows = ScoreRows.of(logits)
    full = rows.values(plan.bounds, np.ones((1, len(plan.sizes)), dtype=np.int64))
    return Replicates(float(full[0]), rows.values(plan.bounds, plan.counts), "bootstrap")


def precision_replicates(inside: np.ndarray, plan: Plan) -> Replicates:
    """Precision is a mean of per-sample indicators: a draw's is its counted blocks' share inside."""
    hits = np.add.reduceat(inside.astype(np.float64), plan.bounds[:-1])
    draws = plan.counts @ hits / (plan.counts @ plan.sizes)
    return Replicates(float(inside.mean()), draws, "bootstrap")


def recall_replicates(cover: np.ndarray, plan: Plan) -> Replicates:
    """Recall without each block in turn (radii fixed): a reference point leaves when that block's balls
    were its only cover. ``cover`` [N_ref, m]: point inside some ball of block b."""
    covered = cover.sum(axis=1)
    only = cover & (covered == 1)[:, None]
    value = float((covered > 0).mean())
    return Replicates(value, value - only.mean(axis=0), "jackknife")


def _frechet_rows(name: str, samples: FeatureSet) -> Iterable[np.ndarray]:
    if name == "fid":
        return [samples.features]
    if samples.spatial is None:
        raise ValueError("an sFID interval needs the samples' spatial features (mixed_6/conv)")
    return samples.spatial()


def replicates(
    runs: list[FeatureSet], reference: FeatureSet, names: Iterable[str], plan: Plan, pr: PRSettings
) -> Iterator[tuple[str, list[Replicates]]]:
    """For each metric of ``names`` that has an interval (``INTERVAL_METRICS``), the replicates of every
    run under one plan: one run for its intervals, two for a paired comparison. One metric's block data
    is in memory at a time (FID and sFID blocks take m D^2 float64 each per run)."""
    membership: list[tuple[np.ndarray, np.ndarray]] = []
    for name in (n for n in names if n in INTERVAL_METRICS):
        if name in ("fid", "sfid"):
            stats = reference.fid_statistics if name == "fid" else reference.sfid
            if stats is None:
                raise ValueError("an sFID interval needs the reference's spatial statistics")
            fixed = FrechetReference.of(stats.mu, stats.sigma)
            blocks = (FrechetBlocks.of(_frechet_rows(name, s), plan.bounds, fixed) for s in runs)
            yield name, [frechet_replicates(b, plan) for b in blocks]
        elif name == "is":
            if any(s.logits is None for s in runs):
                raise ValueError(f"Inception Score unavailable: {runs[0].unavailable or 'no logits'}")
            yield name, [inception_score_replicates(s.logits, plan) for s in runs]  # type: ignore[arg-type]
        else:
            if not membership:
                membership = [
                    adm.manifold_membership(
                        reference.features, s.features, pr.k, pr.block, pr.mode, pr.device, plan.bounds
                    )
                    for s in runs
                ]
            if name == "precision":
                yield name, [precision_replicates(inside, plan) for inside, _ in membership]
            else:
                yield name, [recall_replicates(cover, plan) for _, cover in membership]


def interval_record(replicate: Replicates, plan: Plan) -> dict[str, float | int | str]:
    """What a metric record (and a Parquet row) keeps of an interval."""
    low, high = replicate.interval(plan.settings.level)
    return {
        "ci_low": low,
        "ci_high": high,
        "ci_level": plan.settings.level,
        "ci_method": plan.describe(replicate.kind),
        "ci_resamples": len(replicate.draws),
    }


def intervals(
    samples: FeatureSet, reference: FeatureSet, names: Iterable[str], settings: Resampling, pr: PRSettings
) -> dict[str, dict[str, float | int | str]]:
    """Metric -> its interval record, for the metrics of ``names`` that have one."""
    plan = settings.plan(samples.features.shape[0])
    return {
        name: interval_record(r, plan) for name, (r,) in replicates([samples], reference, names, plan, pr)
    }
