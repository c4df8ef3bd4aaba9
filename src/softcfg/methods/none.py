"""No guidance: tokens are drawn from the conditional logits alone; no unconditional rows run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from softcfg.methods.base import Guidance, GuidanceMethod

if TYPE_CHECKING:
    import torch
    from torch import Tensor

    from softcfg.models.base import ARModel


def conditional_logits(step: int, cond: Tensor, uncond: Tensor | None) -> Tensor:
    return cond


class NoGuidance(GuidanceMethod):
    """The baseline of every table: the conditional distribution, at the method's temperature."""

    name: Literal["none"] = "none"

    def guidance(self, model: ARModel, batch: int, device: torch.device) -> Guidance:
        return Guidance(False, conditional_logits, self.temperature)
