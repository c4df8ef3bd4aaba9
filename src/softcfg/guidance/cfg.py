"""Classifier-free guidance combination and the logit filters applied before sampling."""

from __future__ import annotations

import torch
from torch import Tensor


def cfg_combine(cond: Tensor, uncond: Tensor, scale: float) -> Tensor:
    """``l_u + s (l_c - l_u)``: s = 1 gives the conditional logits, s = 0 the unconditional ones."""
    return uncond + scale * (cond - uncond)


def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """Keep the k largest logits per row (ties with the k-th kept); k <= 0 keeps all."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


TOP_P_RULES = ("ascending", "descending")
"""How the nucleus is cut, each as its upstream computes it (they differ on ties and on the edge):
``ascending``, VAR's and transformers' ``TopPLogitsWarper``: sort ascending, drop the tokens whose running
mass is at most 1 - p, keep the largest; ``descending``, LlamaGen's: sort descending, drop a token when
the mass ranked before it exceeds p. On [0, 0, 1, 2] with p = 0.9 both keep three tokens but a different
zero; on [0, 0, -30] with p = 0.5 ascending keeps one zero, descending both."""


def top_p_filter(logits: Tensor, p: float, rule: str = "ascending") -> Tensor:
    """Keep the nucleus of mass p by ``rule`` (``TOP_P_RULES``); p >= 1 keeps all. The most probable
    token always stays."""
    if p >= 1.0:
        return logits
    if rule == "ascending":
        sorted_logits, order = torch.sort(logits, dim=-1, descending=False)
        drop_sorted = sorted_logits.softmax(dim=-1).cumsum(dim=-1) <= (1 - p)
        drop_sorted[..., -1:] = False
    elif rule == "descending":
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        beyond = torch.cumsum(torch.softmax(sorted_logits, dim=-1), dim=-1) > p
        drop_sorted = torch.zeros_like(beyond)
        drop_sorted[..., 1:] = beyond[..., :-1]
    else:
        raise ValueError(f"top-p rule must be one of {TOP_P_RULES}, got {rule!r}")
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def sampling_logits(
    guided: Tensor, temperature: float, top_k: int = 0, top_p: float = 1.0, top_p_rule: str = "ascending"
) -> Tensor:
    """Temperature first, then top-k, then top-p, as in LlamaGen's and VAR's samplers."""
    logits = guided / max(temperature, 1e-5)
    return top_p_filter(top_k_filter(logits, top_k), top_p, top_p_rule)


def sample_tokens(logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One draw per row from softmax(logits) by inverting the CDF with one uniform; returns int64 [N].

    Exact like ``torch.multinomial`` and an order of magnitude cheaper for one sample over a large
    vocabulary (multinomial draws an exponential per entry). Zero-probability tokens are never chosen.
    """
    cdf = torch.softmax(logits.float(), dim=-1).cumsum(dim=-1)
    u = torch.rand((*cdf.shape[:-1], 1), generator=generator, device=cdf.device) * cdf[..., -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(-1).clamp_max_(cdf.shape[-1] - 1)
