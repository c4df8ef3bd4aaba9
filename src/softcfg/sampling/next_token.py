"""The next-token loop: prefill, then one-token decode steps with the guidance in the middle.

One loop serves sampling and teacher-forced replay; only the way the next token is chosen differs.
The guidance (``softcfg.methods``) splits the rows, combines, refines and observes; the loop only feeds
tokens and the per-slot weights the guidance asks for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from softcfg.conditioning import Conditions
from softcfg.guidance.cfg import sample_tokens, sampling_logits
from softcfg.guidance.confidence import StepLogits
from softcfg.methods import GuidanceMethod
from softcfg.models.base import ARModel

# (step, logits of the step, cache weights on the slots of tokens 1..step-1, or None)
StepObserver = Callable[[int, StepLogits, Tensor | None], None]
TokenChooser = Callable[[int, Tensor], Tensor]


def guided_loop(
    model: ARModel,
    conditions: Conditions,
    method: GuidanceMethod,
    choose: TokenChooser,
    observers: Sequence[StepObserver] = (),
) -> Tensor:
    """Generate ``model.num_tokens`` tokens for ``conditions`` (B rows); returns tokens [B, T]."""
    batch, num_steps = len(conditions), model.num_tokens
    device = next(model.parameters()).device
    guidance = method.guidance(model, batch, device)
    # rows 0..B-1 conditional, B..2B-1 unconditional
    rows = conditions.cat(model.unconditional(conditions)) if guidance.uses_uncond else conditions
    cache = model.new_cache(len(rows))
    tokens = torch.empty(batch, num_steps, dtype=torch.long, device=device)

    logits = model.prefill(rows, cache)  # [rows, V], predicts token 0
    for step in range(num_steps):
        if step > 0:  # feed token step-1 into its slot, get the prediction of token `step`
            fed = tokens[:, step - 1]
            fed = fed.repeat(2) if guidance.uses_uncond else fed
            logits = model.decode(fed, step - 1, cache, guidance.slot_weights(step))
        cond, uncond, guided = guidance.guide(step, logits)
        tokens[:, step] = token = choose(step, guided)
        seen = StepLogits(cond, uncond, guided, token, guidance.temperature)
        guidance.observe(step, seen)
        for observe in observers:
            observe(step, seen, guidance.weights)
    return tokens


def sampler(method: GuidanceMethod, generator: torch.Generator | None) -> TokenChooser:
    """Draw from the guided logits after temperature, top-k and top-p."""

    def choose(step: int, guided: Tensor) -> Tensor:
        return sample_tokens(
            sampling_logits(guided, method.temperature, method.top_k, method.top_p), generator
        )

    return choose


@torch.inference_mode()
def generate(
    model: ARModel,
    conditions: Conditions,
    method: GuidanceMethod,
    generator: torch.Generator | None = None,
    observers: Sequence[StepObserver] = (),
) -> Tensor:
    """Sample tokens [B, T] for ``conditions`` with the given guidance method."""
    return guided_loop(model, conditions, method, sampler(method, generator), observers)
