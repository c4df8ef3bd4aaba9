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
from softcfg.sampling.next_token import guided_loop


@torch.inference_mode()
def replay(
    model: ARModel, method: GuidanceMethod, conditions: Conditions, tokens: Tensor
) -> dict[str, np.ndarray]:
    """Per-step logits for ``conditions`` (B rows) and forced ``tokens`` [B, T].

    Returns float32 ``cond``, ``uncond``, ``guided`` [B, T, V] (guided after the schedule, before
    temperature; uncond is NaN without an unconditional branch) and, for methods that weight the
    unconditional cache, ``weights`` [B, T, T]: ``weights[b, t, i]`` is the factor, during the decode that
    predicts token t, on the slot that predicted token i (the slot holding token i - 1); 1 for i = 0 and
    for i >= t.
    """
    batch, num_steps, vocab = tokens.shape[0], model.num_tokens, model.vocab_size
    if tokens.shape[1] != num_steps:
        raise UserError(f"tokens have {tokens.shape[1]} steps, the model generates {num_steps}")
    if int(tokens.min()) < 0 or int(tokens.max()) >= vocab:
        raise UserError(f"tokens must lie in [0, {vocab}), got [{int(tokens.min())}, {int(tokens.max())}]")
    out = {
        name: np.full((batch, num_steps, vocab), np.nan, np.float32) for name in ("cond", "uncond", "guided")
    }
    weights = np.ones((batch, num_steps, num_steps), np.float32) if method.perturbs_cache else None

    def record(step: int, logits: StepLogits, w: Tensor | None) -> None:
        out["cond"][:, step] = logits.cond.cpu().numpy()
        out["guided"][:, step] = logits.guided.cpu().numpy()
        if logits.uncond is not None:
            out["uncond"][:, step] = logits.uncond.cpu().numpy()
        if weights is not None and w is not None:
            weights[:, step, 1:step] = w.cpu().numpy()

    guided_loop(model, conditions, method, lambda step, _: tokens[:, step], [record])
    if weights is not None:
        out["weights"] = weights
    return out
