"""Preallocated KV cache and the attention where SoftCFG's per-slot weights enter.

Every model family calls these helpers, so the weighting is written once: the cache is never modified,
the weights act on the attention of the unconditional rows only (the last rows of the doubled batch).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor


class KVCache:
    """Keys and values of every layer, ``[layers, N, H, max_len, hd]``, written by slot index.

    Allocated once before prefill, so decoding never concatenates; ``length`` counts filled slots.
    """

    def __init__(
        self,
        num_layers: int,
        batch: int,
        heads: int,
        max_len: int,
        head_dim: int,
        dtype: torch.dtype,
        device: torch.device | str,
    ) -> None:
        shape = (num_layers, batch, heads, max_len, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.length = 0
        self.context: dict[str, Tensor] = {}  # per-row state a family keeps from prefill (e.g. RAR's class)

    @property
    def max_len(self) -> int:
        return self.k.shape[3]

    def write(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store ``k, v`` [N, H, n, hd] at slots ``length .. length+n`` and return all visible slots."""
        end = self.length + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache overflow: {end} slots needed, {self.max_len} allocated")
        self.k[layer, :, :, self.length : end] = k
        self.v[layer, :, :, self.length : end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def advance(self, n: int) -> None:
        """Mark ``n`` more slots as filled once every layer has written them."""
        self.length += n


@dataclass(frozen=True)
class SlotWeights:
    """SoftCFG weights for the unconditional rows: ``weights`` [B_u, S] over the visible slots.

    ``target`` is ``v`` (scale the attention probabilities, i.e. the values' contribution), ``k`` (scale
    the pre-softmax scores, i.e. q.(w k)) or ``kv`` (both).
    """

    weights: Tensor
    target: str = "v"
    uniform: bool = False
    """Every weight is 1 (SoftCFG before its first weighted step, or at strength 0): a family may then
    attend as without weights, in its upstream's operation order, so that such a step is CFG's."""

    @property
    def on_keys(self) -> bool:
        return "k" in self.target

    @property
    def on_values(self) -> bool:
        return "v" in self.target


def causal_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Causal self-attention for prefill and full forward passes, where no slot is weighted.

    ``q`` [N, H, Q, hd] are the last Q positions of ``k, v`` [N, H, S, hd].
    """
    num_q, num_s = q.shape[2], k.shape[2]
    if num_q == 1:
        return F.scaled_dot_product_attention(q, k, v)
    mask = torch.ones(num_q, num_s, dtype=torch.bool, device=q.device).tril(num_s - num_q)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def masked_cache_attention(q: Tensor, k: Tensor, v: Tensor, layer: int, cache: KVCache) -> Tensor:
    """Unweighted attention as LlamaGen's upstream computes it with its static cache: store ``k, v``,
    then ``scaled_dot_product_attention`` of the step's queries over the whole preallocated cache with a
    bool causal mask [1, 1, Q, max_len] (the unfilled slots hidden). On CPU and in bf16 its numbers
    differ from attention over the filled slots alone, and from ``decode_attention``'s bf16 scores."""
    start = cache.length
    cache.write(layer, k, v)
    position = torch.arange(start, start + q.shape[2], device=q.device)[:, None]
    mask = torch.arange(cache.max_len, device=q.device)[None, :] <= position
    return F.scaled_dot_product_attention(q, cache.k[layer], cache.v[layer], attn_mask=mask[None, None])


def block_causal_mask(block_sizes: Sequence[int], device: torch.device | str = "cpu") -> Tensor:
    """[L, L] bool, True where a position may attend: every position of its own and earlier blocks (the
    next-scale models' mask, one block per scale; blocks of size 1 give the causal mask)."""
    block = torch.repeat_interleave(torch.arange(len(block_sizes)), torch.tensor(list(block_sizes)))
    return (block[None, :] <= block[:, None]).to(device)


def attend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    layer: int,
    cache: KVCache | StaticStep | None,
    slot_weights: SlotWeights | None,
    all_visible: bool = False,
) -> Tensor:
    """The attention every family calls: store ``k, v`` in the cache (when given), then attend.

    A single query (a decode step), or several that may each see every visible slot (``all_visible``: a
    next-scale step, whose scale attends to itself and all earlier scales), go through ``decode_attention``
    with the SoftCFG weights; several causal queries (prefill, a full forward) through causal attention,
    where no slot is weighted. A static decode step (``StaticStep``, whose weights ride in the step) goes
    through ``attend_static``.
    """
    if isinstance(cache, StaticStep):
        return attend_static(q, k, v, layer, cache)
    if cache is not None:
        k, v = cache.write(layer, k, v)
    if q.shape[2] == 1 or all_visible:
        return decode_attention(q, k, v, slot_weights)
    assert slot_weights is None, "slot weights apply to single-token decode steps only"
    return causal_attention(q, k, v)


def _softmax(scores: Tensor) -> Tensor:
    """Softmax in at least float32, so bf16/fp16 models keep exact-enough attention probabilities."""
    return torch.softmax(scores, dim=-1, dtype=torch.promote_types(scores.dtype, torch.float32))


def _hide(scores: Tensor, mask: Tensor | None) -> Tensor:
    """``scores`` with the slots where ``mask`` is False at -inf (probability exactly 0)."""
    return scores if mask is None else scores.masked_fill(~mask, float("-inf"))


def decode_attention(
    q: Tensor, k: Tensor, v: Tensor, slot_weights: SlotWeights | None = None, mask: Tensor | None = None
) -> Tensor:
    """Attention of the step's queries over all visible slots, with SoftCFG weights on the uncond rows.

    Values: ``out = sum_j softmax(s)_j w_j v_j``; keys: ``s_j = w_j (q . k_j) / sqrt(hd)``. Both equal
    attention over an explicitly scaled copy of the cache, at O(slots) instead of O(slots * hd).
    The weights multiply float32 scores and probabilities and are never cast to the cache dtype: late
    weights lie within 2^-8 of 1, bf16's spacing there, so a cast would collapse them onto one or two
    values and bias the perturbation budget sum(1 - w) by per cents. The weighted probabilities are cast
    once, for the product with ``v``. ``q`` [N, H, Q, hd] (Q = 1 for a next-token step, p_k^2 for a
    next-scale one), ``k, v`` [N, H, S, hd]; returns [N, H, Q, hd]. ``mask`` (bool, broadcastable to
    the scores [N, H, Q, S], True where a slot may be attended; e.g. a batch's left padding is False)
    hides slots after the key weighting and before the softmax, so they get probability exactly 0.
    """
    scores = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))  # [N, H, Q, S]
    if slot_weights is None:
        return _softmax(_hide(scores, mask)).to(v.dtype) @ v
    exact = torch.promote_types(scores.dtype, torch.float32)
    scores = scores.to(exact)
    w = slot_weights.weights[:, None, None, :].to(exact)  # [B_u, 1, 1, S]
    first_uncond = scores.shape[0] - w.shape[0]
    if slot_weights.on_keys:
        scores[first_uncond:] *= w
    probs = _softmax(_hide(scores, mask))
    if slot_weights.on_values:
        probs[first_uncond:] *= w
    return probs.to(v.dtype) @ v


@dataclass(frozen=True)
class StaticStep:
    """One decode step with static shapes (``softcfg.models.static_decode``): the first S slots of the
    preallocated cache, ``k, v`` [layers, N, H, S, hd] (views; S a fixed bucket >= position + 1), the
    slot written as a device tensor ``position`` [1], SoftCFG's ``weights`` padded to ``[B_u, S]``
    (values past ``position`` are never read), and the per-row state a family keeps from prefill. Only
    S depends on the step number, so one CUDA graph serves every step of a bucket."""

    k: Tensor
    v: Tensor
    position: Tensor
    weights: Tensor | None = None
    target: str = "v"
    context: dict[str, Tensor] = field(default_factory=dict)


def static_decode_attention(
    q: Tensor, k: Tensor, v: Tensor, visible: Tensor, weights: Tensor | None, target: str = "v"
) -> Tensor:
    """``decode_attention`` over all S slots of ``k, v``, those where ``visible`` [S] is False masked out
    after the key weighting and before the softmax, so they get probability exactly 0: the same numbers
    as attending over the visible slots alone, up to the order of the sums. Weights in float32, as there.
    """
    scores = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))  # [N, H, 1, S]
    exact = torch.promote_types(scores.dtype, torch.float32)
    scores = scores.to(exact)
    w = None if weights is None else weights[:, None, None, :].to(exact)  # [B_u, 1, 1, S]
    first_uncond = scores.shape[0] - (0 if w is None else w.shape[0])
    if w is not None and "k" in target:
        scores[first_uncond:] *= w
    probs = _softmax(scores.masked_fill(~visible, float("-inf")))
    if w is not None and "v" in target:
        probs[first_uncond:] *= w
    return probs.to(v.dtype) @ v


def attend_static(q: Tensor, k: Tensor, v: Tensor, layer: int, step: StaticStep) -> Tensor:
    """Write this step's ``k, v`` [N, H, 1, hd] at ``step.position`` by index, then attend over all of
    ``step``'s slots with those past ``position`` masked."""
    step.k[layer].index_copy_(2, step.position, k)
    step.v[layer].index_copy_(2, step.position, v)
    visible = torch.arange(step.k.shape[3], device=q.device) <= step.position
    return static_decode_attention(q, step.k[layer], step.v[layer], visible, step.weights, step.target)
