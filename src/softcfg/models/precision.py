"""Unconditional rows in float32 for bf16/fp16 models, so SoftCFG's perturbation survives the arithmetic.

SoftCFG changes only the unconditional rows, and past the first few dozen steps the change of their
logits is a few tenths of a per cent of the logits: about the rounding step of bf16 (2^-8 relative), which
every activation of a bf16 forward pass is rounded to. Computed in bf16 the perturbation is then mostly
rounding noise (``benchmarks/bf16_perturbation.py``, a random AliTok: 30 % off at steps 2-31, 170 % at
121-152, 250 % at 241-272; fp16 43 % late), and no partial upcast helps (attention in float32: no change;
with float32 final logits too: 210 % late), because any bf16 rounding of an activation downstream of the
first weighted attention loses it. Running the unconditional rows in float32, on a float32 copy of the
same bf16-valued weights, brings the error to about 1 % (the rest: confidences from the bf16 conditional
rows); the conditional rows, whose signal is not a small difference, keep the model's dtype. CFG runs the
same split, so SoftCFG and CFG (and SoftCFG at strength 0) stay comparable. On a GPU the float32 matmuls
must stay IEEE float32 (torch's default "highest" matmul precision): TF32 rounds their inputs to 2^-11.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor

from softcfg.conditioning import ClassLabels, Conditions
from softcfg.models.attention import KVCache, SlotWeights
from softcfg.models.base import ARModel


class SplitCache:
    """The caches of both row groups: the model's dtype for conditional rows, float32 for unconditional.

    Allocated at prefill, once the conditions say which rows are unconditional.
    """

    def __init__(self, batch: int) -> None:
        self.batch = batch
        self.num_cond = batch
        self.cond: KVCache | None = None
        self.uncond: KVCache | None = None


class UncondFloat32(ARModel):
    """``model`` (bf16/fp16) for the conditional rows, a float32 copy of it for the unconditional rows.

    The unconditional rows are the trailing rows whose class is the null class (the samplers' doubled
    [cond; uncond] batch). Logits come back in float32. The copy leaves out the image decoder
    (``tokenizer``), which only ``decode_images`` uses, through ``model``.
    """

    def __init__(self, model: ARModel) -> None:
        super().__init__()
        self.model = model
        self.uncond_model = _float32_copy(model)
        for name in ARModel.__annotations__:  # the interface's facts: vocabulary, tokens, classes, ...
            setattr(self, name, getattr(model, name))

    def unconditional(self, conditions: Conditions) -> Conditions:
        return self.model.unconditional(conditions)

    def new_cache(self, batch: int) -> SplitCache:  # type: ignore[override]
        return SplitCache(batch)

    def _num_cond(self, conditions: Conditions) -> int:
        """Rows before the trailing block of null-class rows; refuses null rows elsewhere."""
        if not isinstance(conditions, ClassLabels):
            raise TypeError(f"float32 unconditional rows need class labels, got {type(conditions).__name__}")
        null = (conditions.labels == self.null_class).cpu()
        num_cond = len(conditions) - int(null.flip(0).long().cumprod(0).sum())
        if bool(null[:num_cond].any()):
            raise ValueError("null-class rows must come last (the [cond; uncond] batch)")
        return num_cond

    def prefill(self, conditions: Conditions, cache: SplitCache) -> Tensor:  # type: ignore[override]
        n = cache.num_cond = self._num_cond(conditions)
        parts = []
        if n > 0:
            cache.cond = self.model.new_cache(n)
            parts.append(self.model.prefill(conditions[:n], cache.cond).float())
        if n < len(conditions):
            cache.uncond = self.uncond_model.new_cache(len(conditions) - n)
            parts.append(self.uncond_model.prefill(conditions[n:], cache.uncond))
        return torch.cat(parts)

    def decode(  # type: ignore[override]
        self, tokens: Tensor, index: int, cache: SplitCache, slot_weights: SlotWeights | None = None
    ) -> Tensor:
        """The weights act on the last rows, so all of them fall on the float32 (unconditional) part."""
        n = cache.num_cond
        if slot_weights is not None and slot_weights.weights.shape[0] > tokens.shape[0] - n:
            raise ValueError("slot weights reach conditional rows; they apply to unconditional rows only")
        parts = []
        if cache.cond is not None:
            parts.append(self.model.decode(tokens[:n], index, cache.cond).float())
        if cache.uncond is not None:
            parts.append(self.uncond_model.decode(tokens[n:], index, cache.uncond, slot_weights))
        return torch.cat(parts)

    def forward(self, conditions: Conditions, tokens: Tensor) -> Tensor:
        n = self._num_cond(conditions)
        parts = []
        if n > 0:
            parts.append(self.model(conditions[:n], tokens[:n]).float())
        if n < len(conditions):
            parts.append(self.uncond_model(conditions[n:], tokens[n:]))
        return torch.cat(parts)

    def decode_images(self, tokens: Tensor) -> Tensor:
        return self.model.decode_images(tokens)


def _float32_copy(model: ARModel) -> ARModel:
    """A float32 deep copy of ``model`` without its image decoder (bf16 values are exact in float32)."""
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is not None:
        model.tokenizer = None
    try:
        return copy.deepcopy(model).float().eval()
    finally:
        if tokenizer is not None:
            model.tokenizer = tokenizer
