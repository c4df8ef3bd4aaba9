"""The generation loop: prefill, then one forward pass per step with the guidance in the middle.

A step is one token of a next-token model or one scale's whole token map of a next-scale (VAR) model
(``model.step_span``); logits of a step are [rows, V] or [rows, p_k^2, V]. One loop serves both kinds and
teacher-forced replay; only the way a step's tokens are chosen differs. The guidance
(``softcfg.methods``) splits the rows, combines, refines and observes; the loop only feeds tokens and the
per-slot weights the guidance asks for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from softcfg.conditioning import Conditions
from softcfg.guidance.cfg import sample_tokens, sampling_logits
from softcfg.guidance.confidence import StepLogits
from softcfg.methods import GuidanceMethod, build_guidance
from softcfg.models.base import ARModel

# (step, logits of the step, cache weights on the slots of tokens 1..start-1, or None)
StepObserver = Callable[[int, StepLogits, Tensor | None], None]
# (step, guided logits [B, V] or [B, n, V]) -> the step's tokens [B] or [B, n]
TokenChooser = Callable[[int, Tensor], Tensor]


def guided_loop(
    model: ARModel,
    conditions: Conditions,
    method: GuidanceMethod,
    choose: TokenChooser,
    observers: Sequence[StepObserver] = (),
) -> Tensor:
    """Generate ``model.num_tokens`` tokens for ``conditions`` (B rows); returns tokens [B, T]."""
    batch = len(conditions)
    device = next(model.parameters()).device
    # rows 0..B-1 conditional, B..2B-1 unconditional
    rows = conditions.cat(model.unconditional(conditions)) if method.uses_uncond else conditions
    cache = model.new_cache(len(rows))
    tokens = torch.empty(batch, model.num_tokens, dtype=torch.long, device=device)

    logits = model.prefill(rows, cache)  # predicts step 0 (the model may size its prefix here)
    guidance = build_guidance(method, model, batch, device)
    for step in range(model.num_steps):
        start, end = model.step_span(step)
        if step > 0:  # feed the previous step's tokens, get the logits of this step
            fed = tokens[:, model.step_span(step - 1)[0] : start]  # [B, n_{step-1}]
            fed = fed.repeat(2, 1) if method.uses_uncond else fed
            logits = model.feed(fed, step, cache, guidance.slot_weights(step))
        cond, uncond, guided = guidance.guide(step, logits)
        token = choose(step, guided)
        tokens[:, start:end] = token.view(batch, end - start)
        seen = StepLogits(cond, uncond, guided, token, guidance.temperature)
        guidance.observe(step, seen)
        for observe in observers:
            observe(step, seen, guidance.weights)
    return tokens


def sampler(method: GuidanceMethod, generator: torch.Generator | None) -> TokenChooser:
    """Draw from the guided logits after temperature, top-k and top-p."""

    def choose(step: int, guided: Tensor) -> Tensor:
        return sample_tokens(
            sampling_logits(
                guided, method.temperature, method.top_k, method.top_p, method.top_p_rule or "ascending"
            ),
            generator,
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
