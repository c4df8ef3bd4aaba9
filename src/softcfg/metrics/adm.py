"""FID, sFID, IS, precision/recall and KID as ADM's evaluator (guided-diffusion) computes them.

Statistics are kept as float64 sums and outer-product sums so that per-shard results merge exactly;
mean and covariance (``np.cov``'s unbiased estimate) are derived only at the end. FID goes through
torch-fidelity's eigenvalue form, which equals ADM's ``sqrtm`` trace; IS uses ADM's splits (consecutive
chunks of 5000, no shuffling); precision/recall use ADM's manifold estimate, in blocks, each reference x
sample block computed once and read both ways.
"""

from __future__ import annotations

import functools
import math
import operator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch_fidelity.metric_fid import fid_statistics_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric

from softcfg.metrics import PR_MODES

IS_SPLIT_SIZE = 5000
PR_NEIGHBOURS = 3
DC_NEIGHBOURS = 5  # density and coverage (Naeem et al. 2020)
PR_BLOCK = 10000


@dataclass(frozen=True)
class MomentSums:
    """n, sum x and sum x x^T in float64: the mergeable form of FID statistics."""

    n: int
    sum: np.ndarray  # [D]
    outer: np.ndarray  # [D, D]

    @classmethod
    def of(cls, features: np.ndarray) -> MomentSums:
        x = np.asarray(features, dtype=np.float64)
        return cls(x.shape[0], x.sum(axis=0), x.T @ x)

    def __add__(self, other: MomentSums) -> MomentSums:
        if self.sum.shape != other.sum.shape:
            raise ValueError(f"cannot merge statistics of dimension {self.sum.shape} and {other.sum.shape}")
        return MomentSums(self.n + other.n, self.sum + other.sum, self.outer + other.outer)

    @property
    def mean(self) -> np.ndarray:
        return self.sum / self.n

    @property
    def covariance(self) -> np.ndarray:
        """Unbiased, as ``np.cov(x, rowvar=False)``."""
        if self.n < 2:
            raise ValueError(f"a covariance needs at least 2 samples, got {self.n}")
        return (self.outer - np.outer(self.sum, self.sum) / self.n) / (self.n - 1)


def merge(parts: list[MomentSums]) -> MomentSums:
    return functools.reduce(operator.add, parts)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """|mu1 - mu2|^2 + Tr(s1) + Tr(s2) - 2 Tr(sqrt(s1 s2)), all in float64."""
    stats = [
        {"mu": np.asarray(m, np.float64), "sigma": np.asarray(s, np.float64)}
        for m, s in ((mu1, sigma1), (mu2, sigma2))
    ]
    value = fid_statistics_to_metric(stats[0], stats[1], verbose=False)["frechet_inception_distance"]
    if not math.isfinite(value):
        raise ValueError("the Frechet distance is not finite (degenerate statistics)")
    return value


def inception_score(logits: np.ndarray, split_size: int = IS_SPLIT_SIZE) -> float:
    """Mean over consecutive chunks of exp(E[KL(p(y|x) || p(y))]), from unbiased logits (pool_3 @ W)."""
    log_p = torch.from_numpy(np.asarray(logits, np.float64)).log_softmax(dim=1)
    scores = []
    for start in range(0, log_p.shape[0], split_size):
        part = log_p[start : start + split_size]
        log_marginal = part.exp().mean(dim=0).log()
        kl = (part.exp() * (part - log_marginal)).sum(dim=1).mean()
        scores.append(math.exp(kl.item()))
    return float(np.mean(scores))


def _half(x: Tensor) -> Tensor:
    """Round to float16 and back: one TF float16 op's result, kept in float32 for the arithmetic."""
    return x.half().float()


# TensorFlow's CPU float16 reduce_sum is Eigen's inner-dimension reduction: 8-lane half packets (x86
# builds), a binary split above 8 x 200 values, four packet accumulators per leaf.
_HALF_PACKET = 8
_HALF_LEAF = _HALF_PACKET * 200


def _half_leaf_sum(squares: Tensor) -> Tensor:
    """One Eigen leaf: four 8-lane half accumulators over consecutive groups of 32 values, merged in order,
    then the rest 8 at a time; the last < 8 values one by one, plus the lanes summed in float32, rounded."""
    n, start = squares.shape[1], 0
    lanes = squares.new_zeros(squares.shape[0], _HALF_PACKET)
    if n >= 4 * _HALF_PACKET:
        start = n // (4 * _HALF_PACKET) * 4 * _HALF_PACKET
        groups = squares[:, :start].unflatten(1, (-1, 4, _HALF_PACKET))  # [N, step, accumulator, lane]
        acc = groups[:, 0]
        for step in range(1, groups.shape[1]):
            acc = acc + groups[:, step]
        lanes = acc[:, 0] + acc[:, 1] + acc[:, 2] + acc[:, 3]  # left to right, each sum rounded to half
    for j in range(start, n - _HALF_PACKET + 1, _HALF_PACKET):
        lanes = lanes + squares[:, j : j + _HALF_PACKET]
    tail = squares.new_zeros(squares.shape[0])
    for j in range(n // _HALF_PACKET * _HALF_PACKET, n):
        tail = tail + squares[:, j]
    return tail + lanes.float().sum(dim=1).half()


def _half_tree_sum(squares: Tensor, first: int) -> Tensor:
    """Row sums of float16 ``squares`` in Eigen's order; ``first`` is the flat index of the rows' first
    value modulo 8, which places the split on a packet boundary."""
    n = squares.shape[1]
    if n <= _HALF_LEAF:
        return _half_leaf_sum(squares)
    split = -(-(first + -(-n // 2)) // _HALF_PACKET) * _HALF_PACKET
    left = min(split - first, n)
    total = _half_tree_sum(squares[:, :left], first)
    return total if left == n else total + _half_tree_sum(squares[:, left:], split % _HALF_PACKET)


def squared_norms(features: Tensor, float16: bool = False) -> Tensor:
    """Row-wise |x|^2. With ``float16``, as ADM's graph gets it from TensorFlow (2.21, CPU, verified
    bit-exact on 2048-d rows): squares rounded to half and summed by ``reduce_sum`` with half-precision
    partial sums, in Eigen's blocked order. Summing in float32 and rounding once differs from TF in the
    last bit for about 27 % of pool_3-like rows; a left-to-right half sum differs in every row (3 % low)."""
    if not float16:
        return (features * features).sum(dim=1)
    squares = _half(features).square().half()
    norms = torch.empty(squares.shape[0], dtype=torch.float16, device=squares.device)
    # Row r starts at flat index r * D: with D not a multiple of 8 the split point moves with r mod 8.
    offsets = torch.arange(squares.shape[0], device=squares.device) * squares.shape[1] % _HALF_PACKET
    for first in offsets.unique().tolist():
        rows = offsets == first
        norms[rows] = _half_tree_sum(squares[rows], first)
    return norms.float()


@dataclass(frozen=True)
class _Points:
    """Features with their squared norms, computed once per set rather than once per block (a norm depends
    on its row only); in float16 mode also the features rounded to half and their TF-style norms."""

    x: Tensor
    norms: Tensor
    half: tuple[Tensor, Tensor] | None = None  # (features as float16, float16 norms as float32)

    @classmethod
    def of(cls, features: Tensor, mode: str) -> _Points:
        if mode not in PR_MODES:
            raise ValueError(f"precision/recall mode must be one of {PR_MODES}, got {mode!r}")
        if mode == "float64":
            features = features.double()
        half = (features.half(), squared_norms(features, float16=True)) if mode == "float16" else None
        return cls(features, squared_norms(features), half)

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, rows: slice) -> _Points:
        half = None if self.half is None else (self.half[0][rows], self.half[1][rows])
        return _Points(self.x[rows], self.norms[rows], half)


def _squared_distances(u: _Points, v: _Points) -> Tensor:
    """ADM's |u|^2 - 2 u.v + |v|^2 with u as rows, clamped at 0. In float16 mode every op's result is
    rounded to half and the matmul accumulates in float32, TF's default for float16 on a GPU; a block that
    is not finite (|x|^2 above 65504) falls back to float32, as ADM does."""
    if u.half is not None and v.half is not None:
        (ux, un), (vx, vn) = u.half, v.half
        d = _half(un[:, None] - _half(2 * _half(ux.float() @ vx.float().T)))
        d = _half(d + vn[None, :]).clamp_min(0)
        if torch.isfinite(d).all():
            return d
    return (u.norms[:, None] - 2 * (u.x @ v.x.T) + v.norms[None, :]).clamp_min(0)


def _radii(points: _Points, k: int, block: int) -> Tensor:
    """Squared distance of each point to its k-th nearest neighbour (the point itself not counted),
    keeping only the k + 1 smallest distances per row across column blocks."""
    if len(points) <= k:
        raise ValueError(f"precision/recall with k = {k} needs more than {k} points, got {len(points)}")
    radii = torch.empty(len(points), dtype=points.x.dtype, device=points.x.device)
    for r in range(0, len(points), block):
        rows = points[r : r + block]
        best = None
        for c in range(0, len(points), block):
            d = _squared_distances(rows, points[c : c + block])
            best = d if best is None else torch.cat([best, d], dim=1)
            best = best.topk(min(k + 1, best.shape[1]), dim=1, largest=False).values
        radii[r : r + block] = best[:, k]  # index 0 is (normally) the point itself
    return radii


def _cross_membership(
    reference: _Points, samples: _Points, ref_radii: Tensor, smp_radii: Tensor, block: int, groups: np.ndarray
) -> tuple[Tensor, Tensor]:
    """(samples inside some reference ball [N], reference points inside some ball of each group of
    samples [N_ref, G]), membership distance <= radius; ``groups`` are the G + 1 bounds of consecutive
    sample groups (one group: ADM's recall; several: what the recall interval needs). Each reference x
    sample block is computed once, reference as rows as in ADM, and read along columns for precision and
    along rows for recall. Orientation matters in float16: (|s|^2 - 2 s.r) + |r|^2 rounds differently from
    ADM's (|r|^2 - 2 r.s) + |s|^2 in some entries."""
    smp_inside = torch.zeros(len(samples), dtype=torch.bool, device=samples.x.device)
    ref_cover = torch.zeros(len(reference), len(groups) - 1, dtype=torch.bool, device=reference.x.device)
    for r in range(0, len(reference), block):
        for c in range(0, len(samples), block):
            d = _squared_distances(reference[r : r + block], samples[c : c + block])
            smp_inside[c : c + block] |= (d <= ref_radii[r : r + block, None]).any(dim=0)
            inside = d <= smp_radii[None, c : c + block]
            end = min(c + block, len(samples))
            for g in range(int(np.searchsorted(groups, c, "right")) - 1, len(groups) - 1):
                if groups[g] >= end:
                    break
                lo, hi = max(int(groups[g]), c) - c, min(int(groups[g + 1]), end) - c
                ref_cover[r : r + block, g] |= inside[:, lo:hi].any(dim=1)
    return smp_inside, ref_cover


def manifold_membership(
    reference: np.ndarray,
    samples: np.ndarray,
    k: int = PR_NEIGHBOURS,
    block: int = PR_BLOCK,
    mode: str = "float32",
    device: str | torch.device = "cpu",
    groups: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per sample: inside the reference manifold (its mean is precision); per reference point and group
    of consecutive samples (``groups``: bounds, default one group): inside some ball of that group (the
    share of reference points covered by any group is recall). Arguments as ``precision_recall``."""
    ref, smp = (
        _Points.of(torch.as_tensor(np.asarray(x, np.float32), device=device), mode)
        for x in (reference, samples)
    )
    bounds = np.array([0, len(smp)]) if groups is None else np.asarray(groups)
    ref_radii, smp_radii = _radii(ref, k, block), _radii(smp, k, block)
    smp_inside, ref_cover = _cross_membership(ref, smp, ref_radii, smp_radii, block, bounds)
    return smp_inside.cpu().numpy(), ref_cover.cpu().numpy()


def precision_recall(
    reference: np.ndarray,
    samples: np.ndarray,
    k: int = PR_NEIGHBOURS,
    block: int = PR_BLOCK,
    mode: str = "float32",
    device: str | torch.device = "cpu",
) -> tuple[float, float]:
    """ADM's convention: precision = share of samples inside the reference manifold; recall = share of
    reference points inside the sample manifold. Memory is O(block^2), never O(N_ref x N_samples).

    ``mode`` (``PR_MODES``): ``float32`` is ADM's default; ``float64`` gives counts that do not depend on
    the BLAS kernel; ``float16`` emulates ADM's float16 distance blocks as TensorFlow computes them with
    its GPU matmul (float32 accumulation) and the norms as ``squared_norms`` says (TF's CPU kernel,
    bit-exact; TF's GPU kernel also sums in half but in another order, so a norm may differ there in the
    last bit). ADM run on CPU cannot be emulated: TF's CPU float16 matmul accumulates in half, in an
    order that depends on the thread count (lattice features: precision 0.689 with 2 threads, 0.577
    with 1)."""
    smp_inside, ref_cover = manifold_membership(reference, samples, k, block, mode, device)
    return float(smp_inside.mean()), float(ref_cover.any(axis=1).mean())


def density_coverage(
    reference: np.ndarray,
    samples: np.ndarray,
    k: int = DC_NEIGHBOURS,
    block: int = PR_BLOCK,
    mode: str = "float32",
    device: str | torch.device = "cpu",
) -> tuple[float, float]:
    """Naeem et al. 2020 on the reference's k-NN balls (radius: distance to the k-th neighbour, as for
    precision): density = the number of (sample, reference ball) memberships over k N_samples, coverage =
    the share of reference balls holding at least one sample. Same blocks and ``mode`` as
    ``precision_recall``; membership is distance <= radius."""
    ref, smp = (
        _Points.of(torch.as_tensor(np.asarray(x, np.float32), device=device), mode)
        for x in (reference, samples)
    )
    radii = _radii(ref, k, block)
    memberships = 0
    covered = torch.zeros(len(ref), dtype=torch.bool, device=ref.x.device)
    for r in range(0, len(ref), block):
        for c in range(0, len(smp), block):
            inside = _squared_distances(ref[r : r + block], smp[c : c + block]) <= radii[r : r + block, None]
            memberships += int(inside.sum())
            covered[r : r + block] |= inside.any(dim=1)
    return memberships / (k * len(smp)), int(covered.sum()) / len(ref)


def kernel_inception_distance(
    samples: np.ndarray, reference: np.ndarray, subset_size: int, seed: int = 2020
) -> tuple[float, float]:
    """torch-fidelity's KID (cubic polynomial kernel, 100 subsets); mean and standard deviation."""
    kid = kid_features_to_metric(
        torch.from_numpy(np.asarray(samples, np.float32)),
        torch.from_numpy(np.asarray(reference, np.float32)),
        kid_subset_size=subset_size,
        rng_seed=seed,
        verbose=False,
    )
    return float(kid["kernel_inception_distance_mean"]), float(kid["kernel_inception_distance_std"])
