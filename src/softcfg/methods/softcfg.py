"""SoftCFG: CFG whose unconditional branch sees the generated tokens' cache slots down-weighted by how
confident the model was about each token (the paper's Eq. 3-5), optionally step-normalized.

The per-slot weights are recomputed from all visible confidences at every step and applied at attention
time (see ``softcfg.models.attention.decode_attention``); the cache itself is never modified. Token 0's
confidence is discarded (its slot, the last prefix slot, keeps weight 1), as are prefix slots and the slot
being appended at the current step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from softcfg.guidance.confidence import CONFIDENCES
from softcfg.guidance.weights import TARGETS, step_normalized_weights, unnormalized_weights
from softcfg.methods.base import CachePerturbation, Guidance
from softcfg.methods.cfg import CFG
from softcfg.options import Field, Float

if TYPE_CHECKING:
    import torch
    from torch import Tensor

    from softcfg.guidance.confidence import StepLogits
    from softcfg.models.attention import SlotWeights
    from softcfg.models.base import ARModel


class SoftCFG(CFG):
    """CFG plus confidence-weighted perturbation of the unconditional rows' attention cache."""

    name: Literal["softcfg"] = "softcfg"
    confidence: Literal[tuple(CONFIDENCES)] = Field(  # type: ignore[valid-type]
        "cond_max", description="how a token's confidence q_i is read from its step's logits"
    )
    target: Literal[TARGETS] = Field("v", description="what the weights act on: values, keys or both")  # type: ignore[valid-type]
    step_norm: bool = Field(True, description="w_i = max(floor, (1 - q_i / (sum q + eps)) ^ strength)")
    strength: Float = Field(1.0, ge=0, description="exponent on the weights; 0 reproduces CFG exactly")
    floor: Float = Field(0.05, ge=0, le=1, description="lower bound of step-normalized weights")
    eps: Float = Field(1e-5, gt=0, description="added to the confidence sum of step normalization")

    perturbs_cache: ClassVar[bool] = True

    def weights(self, q: Tensor) -> Tensor:
        """Weights of the visible generated slots from their confidences ``q`` [B, n]."""
        if self.step_norm:
            return step_normalized_weights(q, self.floor, self.eps, self.strength)
        return unnormalized_weights(q, self.strength)

    def guidance(self, model: ARModel, batch: int, device: torch.device) -> Guidance:
        """CFG's guidance with the cache perturbation added: the combination is written once."""
        guidance = super().guidance(model, batch, device)
        guidance.perturbation = SoftCFGPerturbation(self, model, batch, device)
        return guidance


class SoftCFGPerturbation(CachePerturbation):
    """Confidences of the generated tokens and the per-slot weights they give at each step.

    Token i's weight sits on the slot that predicted it (``model.prediction_slot(i)``). Before the step
    that predicts tokens ``[start, end)`` the tokens 1..start-1 are weighted: every token of earlier
    steps, one per step on next-token models, whole scales on next-scale ones.
    """

    def __init__(self, method: SoftCFG, model: ARModel, batch: int, device: torch.device) -> None:
        import torch

        from softcfg.models.attention import SlotWeights

        self.slot_weights_type = SlotWeights  # imported here, not at every decode step
        self.method, self.model, self.target = method, model, method.target
        self.confidence = CONFIDENCES[method.confidence]
        self.q = torch.zeros(batch, model.num_tokens, device=device)  # q[:, i]: confidence of token i
        self.first_slot = model.prediction_slot(1)
        self.slots = torch.ones(batch, model.num_slots, device=device)  # weight per cache slot, 1 by default
        self._current: Tensor | None = None

    def slot_weights(self, step: int) -> SlotWeights:
        """Weights for the forward pass of ``step``: the slots of tokens 1..start-1 weighted."""
        start, end = self.model.step_span(step)
        self._current = None
        if start >= 2:
            w = self.method.weights(self.q[:, 1:start])
            self.slots[:, self.first_slot : self.first_slot + start - 1] = w
            self._current = w
        visible = self.model.prediction_slot(end - 1) + 1  # includes the slots appended at this step
        uniform = start < 2 or self.method.strength == 0  # w = 1 everywhere: no weight to apply
        return self.slot_weights_type(self.slots[:, :visible], self.target, uniform)

    def observe(self, step: int, seen: StepLogits) -> None:
        start, end = self.model.step_span(step)
        self.q[:, start:end] = self.confidence(seen).view(-1, end - start)

    @property
    def current(self) -> Tensor | None:
        return self._current
