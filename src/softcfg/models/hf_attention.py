"""SoftCFG inside any ``transformers`` decoder: one function on the library's pluggable attention interface.

Registered as ``ATTENTION`` with ``AttentionInterface`` (and ``sdpa_mask`` under the same name with
``AttentionMaskInterface``, so the model still builds its causal and padding masks). Several queries
(prefill, a teacher-forced pass) go to transformers' own SDPA attention: no slot is weighted there. A
single-query decode step goes through ``softcfg.models.attention.decode_attention``, the project's one
implementation of the weighting, so CFG and SoftCFG share every operation but the weighting itself (and
SoftCFG at strength 0 reproduces CFG bit for bit). The cache (HF's, e.g. a ``StaticCache``) is never
modified. The caller passes two keyword arguments through the model's forward, which transformers hands
to the attention function untouched:

- ``slot_weights``: ``SlotWeights`` ``[B_u, S]`` for the unconditional rows (the last B_u rows); slot j
  is cache position j, so a caller whose prompt fills positions 0..P-1 and whose image tokens follow
  passes the sampler's per-slot weights as they are.
- ``visible_slots``: S, the filled cache positions including the one written this step. A static cache
  hands over all ``max_cache_len`` positions; attending over the filled ones only keeps a step O(S).
  Defaults to the weights' length, else to every position (the mask hides the unfilled ones).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from transformers import AttentionInterface, PreTrainedConfig, PreTrainedModel, StaticCache
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from softcfg.models.attention import SlotWeights, decode_attention

ATTENTION = "softcfg"


def softcfg_attention(
    module: nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    slot_weights: SlotWeights | None = None,
    visible_slots: int | None = None,
    **kwargs,
) -> tuple[Tensor, None]:
    """transformers' attention signature: ``query`` [N, H, Q, hd], ``key, value`` [N, H_kv, S, hd] (the
    whole cache), ``attention_mask`` bool [N or 1, 1, Q, S] or None; returns ([N, Q, H, hd], None)."""
    if query.shape[2] != 1:
        if slot_weights is not None:
            raise ValueError("slot weights apply to single-token decode steps only")
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    if visible_slots is None:
        visible_slots = key.shape[2] if slot_weights is None else slot_weights.weights.shape[-1]
    if slot_weights is not None and slot_weights.weights.shape[-1] != visible_slots:
        raise ValueError(
            f"slot weights cover {slot_weights.weights.shape[-1]} slots, the step sees {visible_slots}"
        )
    key, value = key[:, :, :visible_slots], value[:, :, :visible_slots]
    mask = None if attention_mask is None else attention_mask[..., :visible_slots]
    if mask is not None and mask.dtype != torch.bool:
        raise ValueError(f"{ATTENTION} attention takes boolean masks (sdpa_mask), got {mask.dtype}")
    rows, heads, _, head_dim = query.shape
    if scaling is not None and not math.isclose(scaling, head_dim**-0.5, rel_tol=1e-12):
        query = query * (scaling * math.sqrt(head_dim))  # decode_attention scales by 1/sqrt(hd)
    # grouped-query attention: each key/value head's query heads become that head's queries
    kv_heads = key.shape[1]
    grouped = query.reshape(rows, kv_heads, heads // kv_heads, head_dim)
    out = decode_attention(grouped, key, value, slot_weights, mask)
    return out.reshape(rows, heads, 1, head_dim).transpose(1, 2), None


def register() -> str:
    """Register the attention function and its mask builder (idempotent); returns their name."""
    AttentionInterface.register(ATTENTION, softcfg_attention)
    AttentionMaskInterface.register(ATTENTION, sdpa_mask)
    return ATTENTION


def use_softcfg_attention(model: PreTrainedModel) -> None:
    """Route ``model``'s attention (every sub-model it dispatches to) through ``softcfg_attention``."""
    model.set_attn_implementation(register())


@dataclass
class StaticRows:
    """The rows' static cache for a transformers decoder run by the project's loop, allocated by the
    family's ``prefill`` once the padded prompt length P is known (``allocate``): ``mask`` [rows, P + T - 1]
    (the prompts' mask, then ones over the image slots; future slots are the causal mask's business) and
    ``positions`` [1, P + T - 1], the cache positions, as in transformers' loop (left padding shifts a
    row's positions uniformly, which RoPE does not see). A decode step writes slot ``P + index``."""

    rows: int
    static: StaticCache | None = None
    mask: Tensor | None = None
    positions: Tensor | None = None

    def allocate(self, config: PreTrainedConfig, mask: Tensor, length: int) -> None:
        if mask.shape[0] != self.rows:
            raise ValueError(f"cache for {self.rows} rows, prefill of {mask.shape[0]}")
        self.static = StaticCache(config=config, max_cache_len=length)
        self.mask = torch.cat([mask.long(), mask.new_ones(self.rows, length - mask.shape[1]).long()], dim=1)
        self.positions = torch.arange(length, device=mask.device)[None]

    def prefill_inputs(self, prompt_len: int) -> dict[str, Any]:
        """The decoder's keyword arguments for the prompt's pass."""
        return {"attention_mask": self.mask, "position_ids": self.positions[:, :prompt_len],
                "cache": self.static, "use_cache": True}  # fmt: skip

    def decode_inputs(self, slot: int, slot_weights: SlotWeights | None) -> dict[str, Any]:
        """The decoder's keyword arguments for the step that writes ``slot``, SoftCFG's weights included."""
        return {"attention_mask": self.mask, "position_ids": self.positions[:, slot : slot + 1],
                "cache": self.static, "use_cache": True, "slot_weights": slot_weights,
                "visible_slots": slot + 1}  # fmt: skip


def teacher_forced_mask(prompt_mask: Tensor, fed: int) -> Tensor:
    """The mask of an uncached pass over a prompt and ``fed`` image tokens: the prompt's, then ones."""
    return torch.cat([prompt_mask.long(), prompt_mask.new_ones(prompt_mask.shape[0], fed).long()], dim=1)
