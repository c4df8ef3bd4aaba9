"""SoftCFG per-slot weights on the unconditional branch's attention cache.

``q`` holds the confidences of the generated tokens visible at the current step (tokens 1..t-1; token 0's
confidence is discarded and its slot keeps weight 1). The weights multiply the uncond rows' cached values
(or keys) at attention time; prefix slots and the slot being appended keep weight 1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor

TARGETS = ("v", "k", "kv")


def step_normalized_weights(
    q: Tensor, floor: float = 0.05, eps: float = 1e-5, strength: float = 1.0
) -> Tensor:
    """``max(floor, (1 - q_i / (sum_j q_j + eps)) ** strength)`` over the last dimension.

    Recomputed from all visible confidences at every step, so the total perturbation ``sum(1 - w)`` stays
    about 1 whatever the step (the paper's unit budget). This equals the effective factor of the authors'
    in-place telescoping product. strength = 0 gives weights of exactly 1, i.e. plain CFG.
    """
    base = 1.0 - q / (q.sum(dim=-1, keepdim=True) + eps)
    return (base if strength == 1.0 else base.pow(strength)).clamp_min(floor)


def unnormalized_weights(q: Tensor, strength: float = 1.0) -> Tensor:
    """``(1 - q_i) ** strength``, fixed once per token; strength 1 is the authors' ``1 - q`` (no floor)."""
    return 1.0 - q if strength == 1.0 else (1.0 - q).pow(strength)
