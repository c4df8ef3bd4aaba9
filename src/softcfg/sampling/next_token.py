"""The next-token loop: prefill, then one-token decode steps with guidance in the middle.

One loop serves sampling and teacher-forced replay; only the way the next token is chosen differs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from softcfg.config import MethodEntry
from softcfg.guidance import (
    CONFIDENCES,
    StepLogits,
    cfg_combine,
    sample_tokens,
    sampling_logits,
    step_normalized_weights,
    unnormalized_weights,
)
from softcfg.models.attention import SlotWeights
from softcfg.models.base import ARModel

# (step, logits of the step, SoftCFG weights on slots of tokens 1..step-1 or None)
StepObserver = Callable[[int, StepLogits, Tensor | None], None]
TokenChooser = Callable[[int, Tensor], Tensor]


class SoftCFGState:
    """Confidences of the generated tokens and the per-slot weights they give at each step."""

    def __init__(self, method: MethodEntry, model: ARModel, batch: int, device: torch.device) -> None:
        self.method = method
        self.confidence = CONFIDENCES[method.confidence]
        self.q = torch.zeros(batch, model.num_tokens, device=device)  # q[:, i]: confidence of token i
        self.first_slot = model.prediction_slot(1)
        self.model = model
        self.slots = torch.ones(batch, model.num_slots, device=device)  # weight per cache slot, 1 by default
        self.current: Tensor | None = None

    def slot_weights(self, step: int) -> SlotWeights:
        """Weights for the decode that predicts token ``step``: tokens 1..step-1 weighted, rest 1."""
        if step >= 2:
            q = self.q[:, 1:step]
            m = self.method
            w = (
                step_normalized_weights(q, m.floor, m.eps, m.strength)
                if m.step_norm
                else unnormalized_weights(q, m.strength)
            )
            self.slots[:, self.first_slot : self.first_slot + step - 1] = w
            self.current = w
        visible = self.model.prediction_slot(step) + 1  # includes the slot appended at this step
        return SlotWeights(self.slots[:, :visible], self.method.target)

    def observe(self, step: int, logits: StepLogits) -> None:
        self.q[:, step] = self.confidence(logits)


def guided_loop(
    model: ARModel,
    labels: Tensor,
    method: MethodEntry,
    choose: TokenChooser,
    observers: Sequence[StepObserver] = (),
) -> Tensor:
    """Generate ``model.num_tokens`` tokens for class ids ``labels`` [B]; returns tokens [B, T]."""
    batch, num_steps, device = labels.shape[0], model.num_tokens, labels.device
    doubled = method.uses_uncond
    # rows 0..B-1 conditional, B..2B-1 unconditional (null class)
    rows = torch.cat([labels, torch.full_like(labels, model.null_class)]) if doubled else labels
    cache = model.new_cache(rows.shape[0])
    scales = method.scales(num_steps)
    soft = SoftCFGState(method, model, batch, device) if method.perturbs_cache else None
    tokens = torch.empty(batch, num_steps, dtype=torch.long, device=device)

    logits = model.prefill(rows, cache)  # [rows, V], predicts token 0
    for step in range(num_steps):
        if step > 0:  # feed token step-1 into its slot, get the prediction of token `step`
            fed = tokens[:, step - 1]
            weights = soft.slot_weights(step) if soft is not None else None
            logits = model.decode(fed.repeat(2) if doubled else fed, step - 1, cache, weights)
        cond, uncond = logits.float().chunk(2) if doubled else (logits.float(), None)
        guided = cfg_combine(cond, uncond, scales[step]) if doubled else cond
        tokens[:, step] = token = choose(step, guided)
        seen = StepLogits(cond, uncond, guided, token, method.temperature)
        if soft is not None:
            soft.observe(step, seen)
        for observe in observers:
            observe(step, seen, soft.current if soft is not None and step >= 2 else None)
    return tokens


def sampler(method: MethodEntry, generator: torch.Generator | None) -> TokenChooser:
    """Draw from the guided logits after temperature, top-k and top-p."""

    def choose(step: int, guided: Tensor) -> Tensor:
        return sample_tokens(
            sampling_logits(guided, method.temperature, method.top_k, method.top_p), generator
        )

    return choose


@torch.inference_mode()
def generate(
    model: ARModel,
    labels: Tensor,
    method: MethodEntry,
    generator: torch.Generator | None = None,
    observers: Sequence[StepObserver] = (),
) -> Tensor:
    """Sample tokens [B, T] for class ids ``labels`` [B] with the given guidance method."""
    return guided_loop(model, labels, method, sampler(method, generator), observers)
