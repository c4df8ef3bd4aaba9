"""SoftCFG confidences: how sure the model was about each generated token.

Each function maps the logits of one decode step to a confidence per sample in [0, 1]. The choice is the
config key ``confidence``; ``cond_max`` (the paper's Eq. 3) is the default.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from softcfg.guidance.entropy import normalized_entropy

if TYPE_CHECKING:
    from torch import Tensor


@dataclass(frozen=True)
class StepLogits:
    """The logits of one step, [B, V] each ([B, n, V] for a next-scale step), and the tokens taken, [B]
    ([B, n]); a confidence is read per token, [B] ([B, n])."""

    cond: Tensor
    uncond: Tensor | None
    guided: Tensor
    token: Tensor
    temperature: float = 1.0

    def probs(self, logits: Tensor) -> Tensor:
        scaled = logits if self.temperature == 1.0 else logits / max(self.temperature, 1e-5)
        return scaled.float().softmax(dim=-1)


def cond_max(step: StepLogits) -> Tensor:
    """max_v softmax(l_c / T): the paper's Eq. 3 and the authors' RAR fork."""
    return step.probs(step.cond).amax(dim=-1)


def cond_sampled(step: StepLogits) -> Tensor:
    """softmax(l_c / T) at the token actually taken: the authors' AliTok fork."""
    return step.probs(step.cond).gather(-1, step.token[..., None]).squeeze(-1)


def guided_max(step: StepLogits) -> Tensor:
    """max of the guided distribution (the paper's Fig. 7 caption)."""
    return step.probs(step.guided).amax(dim=-1)


def uncond_max(step: StepLogits) -> Tensor:
    """max of softmax(l_u / T) (the paper's Sec. 3.1 wording)."""
    return step.probs(step.uncond).amax(dim=-1)


def neg_entropy(step: StepLogits) -> Tensor:
    """1 - H(p_c)/log V of the conditional distribution at temperature T."""
    return 1.0 - normalized_entropy(step.cond.float() / max(step.temperature, 1e-5))


CONFIDENCES: dict[str, Callable[[StepLogits], Tensor]] = {
    "cond_max": cond_max,
    "cond_sampled": cond_sampled,
    "guided_max": guided_max,
    "uncond_max": uncond_max,
    "neg_entropy": neg_entropy,
}
