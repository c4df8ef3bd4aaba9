"""One generation's guidance as the loops see it: a combination, an optional cache perturbation and
refinements of the guided logits, each observing every step once its tokens are chosen.

``GuidanceMethod.guidance`` builds it per generation (``softcfg.methods.base``); the loops and replay only
talk to ``Guidance``, so they never branch on method names. Tensors are typed here but torch is imported
only by the code that runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor

    from softcfg.guidance.confidence import StepLogits
    from softcfg.models.attention import SlotWeights

# (step, cond [B, ..., V], uncond or None) -> guided logits
Combination = Callable[[int, "Tensor", "Tensor | None"], "Tensor"]


class CachePerturbation:
    """Per-slot weights on the unconditional rows' attention cache, recomputed every step."""

    target: str = "v"

    def slot_weights(self, step: int) -> SlotWeights | None:
        """Weights over the visible slots for the decode that predicts ``step`` (None: all 1)."""
        raise NotImplementedError

    def observe(self, step: int, seen: StepLogits) -> None:
        """Record what the step's logits and chosen token say (e.g. the token's confidence)."""

    @property
    def current(self) -> Tensor | None:
        """The weights applied at the last step on the generated slots, for diagnostics (None: none)."""
        return None


class Refinement:
    """A transformation of the guided logits of a step, after the combination."""

    def __call__(self, step: int, guided: Tensor) -> Tensor:
        raise NotImplementedError

    def observe(self, step: int, seen: StepLogits) -> None:
        """Record the chosen step (e.g. the logits a later step refines against)."""


@dataclass
class Guidance:
    """One generation's guidance: combination, optional cache perturbation, refinements."""

    uses_uncond: bool
    combine: Combination
    temperature: float = 1.0
    perturbation: CachePerturbation | None = None
    refinements: Sequence[Refinement] = field(default_factory=tuple)

    def slot_weights(self, step: int) -> SlotWeights | None:
        return self.perturbation.slot_weights(step) if self.perturbation is not None else None

    def guide(self, step: int, logits: Tensor) -> tuple[Tensor, Tensor | None, Tensor]:
        """Model logits of all rows ``[rows, ..., V]`` -> (cond, uncond or None, guided), in float32.

        Rows are ``[cond; uncond]`` when the unconditional branch runs, the conditional rows otherwise.
        """
        cond, uncond = logits.float().chunk(2) if self.uses_uncond else (logits.float(), None)
        guided = self.combine(step, cond, uncond)
        for refine in self.refinements:
            guided = refine(step, guided)
        return cond, uncond, guided

    def observe(self, step: int, seen: StepLogits) -> None:
        if self.perturbation is not None:
            self.perturbation.observe(step, seen)
        for refinement in self.refinements:
            refinement.observe(step, seen)

    @property
    def weights(self) -> Tensor | None:
        return self.perturbation.current if self.perturbation is not None else None
