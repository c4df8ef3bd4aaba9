"""What a guidance method is: its options (a config entry) and the behaviour the samplers call.

A method is a frozen ``Options`` model with a ``name`` literal, registered by that name. Per generation
it builds a ``Guidance``: a composition of three parts, each optional but the first,

- a *combination* turning the conditional (and unconditional) logits of a step into guided logits
  (none: the conditional logits; CFG: ``l_u + s_t (l_c - l_u)``),
- a *cache perturbation* giving per-slot weights on the unconditional rows' attention (SoftCFG),
- *refinements* of the guided logits (e.g. SSG's ``l + beta (l - l_prior)``),

each of which may observe every step once its token is chosen. The samplers and replay only talk to
``Guidance``, so they never branch on method names. Tensors are typed here but torch is imported only by
the code that runs: parsing a config never loads torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from softcfg.options import Field, Float, Options

if TYPE_CHECKING:
    import torch
    from torch import Tensor

    from softcfg.guidance import StepLogits
    from softcfg.models.attention import SlotWeights
    from softcfg.models.base import ARModel

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


class GuidanceMethod(Options):
    """Options every method has (how tokens are drawn from the guided logits) and its behaviour."""

    name: str
    temperature: Float = Field(1.0, gt=0, description="divides the guided logits before sampling")
    top_k: int = Field(0, ge=0, description="keep the k most likely tokens; 0 = off")
    top_p: Float = Field(1.0, gt=0, le=1, description="nucleus mass; 1 = off")

    uses_uncond: ClassVar[bool] = False
    """Whether the unconditional rows run (the doubled ``[cond; uncond]`` batch)."""
    perturbs_cache: ClassVar[bool] = False
    """Whether its guidance weights the unconditional rows' cache slots (a ``CachePerturbation``)."""

    def axes(self) -> dict[str, Any]:
        """The options that a sweep varies and that name a run (e.g. gamma and k), in run-id order."""
        return {}

    def guidance(self, model: ARModel, batch: int, device: torch.device) -> Guidance:
        """The behaviour for one generation of ``batch`` samples."""
        raise NotImplementedError
