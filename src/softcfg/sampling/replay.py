"""Teacher-forced replay: the guided computation on given tokens, returning every step's logits.

This is how parity with other implementations is checked and how entropy curves are drawn for fixed
sequences; the interface (``softcfg replay``) is stable.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from softcfg.conditioning import Conditions
from softcfg.guidance.confidence import StepLogits
from softcfg.methods import GuidanceMethod
from softcfg.models.base import ARModel
from softcfg.options import UserError
from softcfg.sampling.loop import guided_loop


@torch.inference_mode()
def replay(
    model: ARModel, method: GuidanceMethod, conditions: Conditions, tokens: Tensor
) -> dict[str, np.ndarray]:
    """Per-token logits for ``conditions`` (B rows) and forced ``tokens`` [B, T].

    Returns float32 ``cond``, ``uncond``, ``guided`` [B, T, V] (guided after the schedule, before
    temperature; uncond is NaN without an unconditional branch; a next-scale step fills its scale's
    tokens) and, for methods that weight the unconditional cache, ``weights`` [B, steps, T]:
    ``weights[b, s, i]`` is the factor, during the forward pass of step s, on the slot that predicted
    token i (for next-token models the slot holding token i - 1); 1 for i = 0 and for the tokens of step s
    and later.
    """
    batch, num_tokens, vocab = tokens.shape[0], model.num_tokens, model.vocab_size
    if tokens.shape[1] != num_tokens:
        raise UserError(f"tokens have {tokens.shape[1]} positions, the model generates {num_tokens}")
    if int(tokens.min()) < 0 or int(tokens.max()) >= vocab:
        raise UserError(f"tokens must lie in [0, {vocab}), got [{int(tokens.min())}, {int(tokens.max())}]")
    out = {
        name: np.full((batch, num_tokens, vocab), np.nan, np.float32) for name in ("cond", "uncond", "guided")
    }
    weights = np.ones((batch, model.num_steps, num_tokens), np.float32) if method.perturbs_cache else None

    def record(step: int, logits: StepLogits, w: Tensor | None) -> None:
        start, end = model.step_span(step)
        for name in ("cond", "uncond", "guided"):
            value = getattr(logits, name)
            if value is not None:
                out[name][:, start:end] = value.reshape(batch, end - start, vocab).cpu().numpy()
        if weights is not None and w is not None:
            weights[:, step, 1:start] = w.cpu().numpy()

    def forced(step: int, guided: Tensor) -> Tensor:
        start, end = model.step_span(step)
        return tokens[:, start:end].reshape(guided.shape[:-1])

    guided_loop(model, conditions, method, forced, [record])
    if weights is not None:
        out["weights"] = weights
    return out
