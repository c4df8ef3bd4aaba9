"""SSG (scaled spatial guidance) for next-scale models: ``l_k + beta_k (l_k - l_prior)``, and its priors.

At scale k the logits ``l_k`` [B, p_k^2, V] are pushed away from a prior built from the previous scale's
logits ``l_{k-1}`` [B, p_{k-1}^2, V] brought to the p_k x p_k grid; the difference is the "semantic
residual" the finer scale adds. Priors:

- ``dse`` (discrete spatial enhancement): interpolate ``l_{k-1}`` to p_k, take the 2D DCT-II of both
  maps per vocabulary channel, overwrite the interpolated spectrum's low ``p_{k-1} x p_{k-1}`` band with
  the coarse map's spectrum, invert. With orthonormal transforms the copied band carries the coarse map's
  energy over fewer pixels, so its mean shrinks by ``p_{k-1} / p_k``; ``band_scale="rescale"`` multiplies
  the band by ``p_k / p_{k-1}`` to keep the mean, ``"copy"`` copies it as is (the paper's choice is not
  known; both are options and recorded).
- ``bilinear`` / ``nearest``: plain ``F.interpolate`` of ``l_{k-1}`` (the ablation's weaker priors).

The DCT is a pair of small matrix products, so it runs on any device and dtype torch supports; since
every prior is linear in the coarse map, the sampler applies it as one precomputed matrix per scale. Written
from the method's public description (../shared/reference/ssg.md); every uncertain choice is an option.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def dct_matrix(n: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Tensor:
    """The orthonormal DCT-II matrix C [n, n]: ``X = C x`` transforms, ``x = C^T X`` inverts."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    c = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    c[0] /= math.sqrt(2.0)
    return c.to(device=device, dtype=dtype)


def dct2(x: Tensor) -> Tensor:
    """Orthonormal 2D DCT-II over the last two dimensions (``scipy.fft.dctn(x, type=2, norm='ortho')``)."""
    rows = dct_matrix(x.shape[-2], x.device, x.dtype)
    cols = dct_matrix(x.shape[-1], x.device, x.dtype)
    return rows @ x @ cols.T


def idct2(spectrum: Tensor) -> Tensor:
    """The inverse of ``dct2`` (the orthonormal DCT-III)."""
    rows = dct_matrix(spectrum.shape[-2], spectrum.device, spectrum.dtype)
    cols = dct_matrix(spectrum.shape[-1], spectrum.device, spectrum.dtype)
    return rows.T @ spectrum @ cols


def interpolate(coarse: Tensor, size: int, mode: str) -> Tensor:
    """``coarse`` [B, C, p, p] to [B, C, size, size] by ``mode`` (bilinear/bicubic without corner
    alignment, as ``F.interpolate`` does by default)."""
    if mode == "nearest":
        return F.interpolate(coarse, size=(size, size), mode="nearest")
    return F.interpolate(coarse, size=(size, size), mode=mode, align_corners=False)


def dse_prior(
    coarse: Tensor, size: int, interpolation: str = "bilinear", band_scale: str = "rescale"
) -> Tensor:
    """DSE: the interpolated map with its low ``p x p`` DCT band replaced by the coarse map's spectrum.

    ``coarse`` [B, C, p, p] -> [B, C, size, size], computed in float32 at least.
    """
    coarse = coarse.float() if coarse.dtype in (torch.float16, torch.bfloat16) else coarse
    p = coarse.shape[-1]
    spectrum = dct2(interpolate(coarse, size, interpolation))
    band = dct2(coarse)
    if band_scale == "rescale":
        band = band * (size / p)
    spectrum[..., :p, :p] = band
    return idct2(spectrum)


@functools.lru_cache(maxsize=64)
def prior_operator(
    p: int, size: int, prior: str, interpolation: str, band_scale: str, device: str, dtype: torch.dtype
) -> Tensor:
    """Every prior is linear in the coarse map: the matrix [size^2, p^2] taking a row-major p x p map to
    its prior on the size x size grid, built once (in float64, from the basis maps) per setting."""
    basis = torch.eye(p * p, dtype=torch.float64).reshape(p * p, 1, p, p)
    if prior == "dse":
        maps = dse_prior(basis, size, interpolation, band_scale)
    else:
        maps = interpolate(basis, size, prior)
    return maps.reshape(p * p, size * size).T.contiguous().to(device=device, dtype=dtype)


def spatial_prior(previous: Tensor, size: int, prior: str, interpolation: str, band_scale: str) -> Tensor:
    """The prior of a scale from the previous scale's logits: [B, p^2, V] -> [B, size^2, V].

    One matrix product over the token axis (``prior_operator``), the same for every vocabulary channel,
    so no transposition of the logits and no per-step transform.
    """
    dtype = torch.promote_types(previous.dtype, torch.float32)
    p = math.isqrt(previous.shape[1])
    operator = prior_operator(p, size, prior, interpolation, band_scale, str(previous.device), dtype)
    return operator @ previous.to(dtype)


def ssg_update(logits: Tensor, prior: Tensor, beta: float) -> Tensor:
    """``l + beta (l - l_prior)``: the logits pushed along the semantic residual."""
    return logits + beta * (logits - prior)


def beta_schedule(
    schedule: str, beta: float, num_scales: int, beta_end: float = 0.0, betas: Sequence[float] = ()
) -> list[float]:
    """beta_k for every scale; scale 0 has no prior and gets 0.

    ``constant``: beta from scale 1 on; ``linear``: from beta at scale 1 to ``beta_end`` at the last;
    ``list``: ``betas`` gives scales 1 .. K-1 explicitly.
    """
    if schedule == "list":
        if len(betas) != num_scales - 1:
            raise ValueError(f"betas: {len(betas)} values for {num_scales - 1} scales with a prior")
        return [0.0, *map(float, betas)]
    if schedule == "linear":
        span = max(num_scales - 2, 1)
        return [0.0] + [beta + (beta_end - beta) * (k - 1) / span for k in range(1, num_scales)]
    if schedule == "constant":
        return [0.0] + [float(beta)] * (num_scales - 1)
    raise ValueError(f"schedule: unknown {schedule!r}; expected constant, linear or list")
