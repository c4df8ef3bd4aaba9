"""FID, sFID, IS, precision/recall and KID as ADM's evaluator (guided-diffusion) computes them.

Statistics are kept as float64 sums and outer-product sums so that per-shard results merge exactly;
mean and covariance (``np.cov``'s unbiased estimate) are derived only at the end. FID goes through
torch-fidelity's eigenvalue form, which equals ADM's ``sqrtm`` trace; IS uses ADM's splits (consecutive
chunks of 5000, no shuffling); precision/recall use ADM's manifold estimate, in blocks.
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

IS_SPLIT_SIZE = 5000
PR_NEIGHBOURS = 3
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


def _squared_distances(u: Tensor, v: Tensor, float16: bool) -> Tensor:
    """ADM's ||u||^2 - 2 u.v + ||v||^2, clamped at 0. With ``float16``, as its TF graph: every op's
    result rounded to half (matmul accumulated in float32); a block that overflows falls back to float32."""
    if float16:
        uh, vh = u.half().float(), v.half().float()
        nu = (uh * uh).half().float().sum(dim=1).half().float()
        nv = (vh * vh).half().float().sum(dim=1).half().float()
        prod = (uh @ vh.T).half().float()
        d = (nu[:, None] - (2 * prod).half().float()).half().float()
        d = (d + nv[None, :]).half().float().clamp_min(0)
        if torch.isfinite(d).all():
            return d
    nu, nv = (u * u).sum(dim=1), (v * v).sum(dim=1)
    return (nu[:, None] - 2 * (u @ v.T) + nv[None, :]).clamp_min(0)


def manifold_radii(
    features: Tensor, k: int = PR_NEIGHBOURS, block: int = PR_BLOCK, float16: bool = False
) -> Tensor:
    """Squared distance of each point to its k-th nearest neighbour (the point itself not counted),
    keeping only the k + 1 smallest distances per row across column blocks."""
    if features.shape[0] <= k:
        raise ValueError(f"precision/recall with k = {k} needs more than {k} points, got {features.shape[0]}")
    radii = torch.empty(features.shape[0], dtype=torch.float32, device=features.device)
    for r in range(0, features.shape[0], block):
        rows = features[r : r + block]
        best = None
        for c in range(0, features.shape[0], block):
            d = _squared_distances(rows, features[c : c + block], float16)
            best = d if best is None else torch.cat([best, d], dim=1)
            best = best.topk(min(k + 1, best.shape[1]), dim=1, largest=False).values
        radii[r : r + block] = best[:, k]  # index 0 is (normally) the point itself
    return radii


def inside_manifold(
    queries: Tensor, points: Tensor, radii: Tensor, block: int = PR_BLOCK, float16: bool = False
) -> Tensor:
    """For each query, whether it lies in some ball (points[j], radii[j]) (distance <= radius)."""
    inside = torch.zeros(queries.shape[0], dtype=torch.bool, device=queries.device)
    for r in range(0, queries.shape[0], block):
        for c in range(0, points.shape[0], block):
            d = _squared_distances(queries[r : r + block], points[c : c + block], float16)
            inside[r : r + block] |= (d <= radii[None, c : c + block]).any(dim=1)
    return inside


def precision_recall(
    reference: np.ndarray,
    samples: np.ndarray,
    k: int = PR_NEIGHBOURS,
    block: int = PR_BLOCK,
    float16: bool = False,
    device: str | torch.device = "cpu",
) -> tuple[float, float]:
    """ADM's convention: precision = share of samples inside the reference manifold; recall = share of
    reference points inside the sample manifold. Memory is O(block^2), never O(N_ref x N_samples)."""
    ref = torch.as_tensor(np.asarray(reference, np.float32), device=device)
    smp = torch.as_tensor(np.asarray(samples, np.float32), device=device)
    ref_radii = manifold_radii(ref, k, block, float16)
    smp_radii = manifold_radii(smp, k, block, float16)
    precision = inside_manifold(smp, ref, ref_radii, block, float16).double().mean().item()
    recall = inside_manifold(ref, smp, smp_radii, block, float16).double().mean().item()
    return precision, recall


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
