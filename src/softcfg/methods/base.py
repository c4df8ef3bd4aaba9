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

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from softcfg.methods.guidance import CachePerturbation, Combination, Guidance, Refinement
from softcfg.methods.ssg import SSG
from softcfg.options import MIN_TEMPERATURE, Field, Float, Options

if TYPE_CHECKING:
    import torch

    from softcfg.models.base import ARModel

__all__ = [
    "SSG", "CachePerturbation", "Combination", "Guidance", "GuidanceMethod", "Refinement", "build_guidance",
]  # fmt: skip


class GuidanceMethod(Options):
    """Options every method has (how tokens are drawn from the guided logits) and its behaviour."""

    name: str
    temperature: Float = Field(
        1.0, ge=MIN_TEMPERATURE, description="divides the guided logits before sampling"
    )
    top_k: int = Field(0, ge=0, description="keep the k most likely tokens; 0 = off")
    top_p: Float = Field(1.0, gt=0, le=1, description="nucleus mass; 1 = off")
    top_p_rule: Literal["ascending", "descending"] | None = Field(
        None,
        description="how the nucleus is cut on ties (softcfg.guidance.cfg); default: the family's upstream",
    )
    ssg: SSG | None = Field(None, description="scaled spatial guidance on top (next-scale models only)")

    uses_uncond: ClassVar[bool] = False
    """Whether the unconditional rows run (the doubled ``[cond; uncond]`` batch)."""
    perturbs_cache: ClassVar[bool] = False
    """Whether its guidance weights the unconditional rows' cache slots (a ``CachePerturbation``)."""

    def axes(self) -> dict[str, Any]:
        """The method's own options that a sweep varies and that name a run (e.g. gamma and k), in
        run-id order."""
        return {}

    def sweep_axes(self) -> dict[str, Any]:
        """``axes()`` followed by the SSG options a sweep varies (beta, prior) when SSG is on."""
        return {**self.axes(), **(self.ssg.axes() if self.ssg is not None else {})}

    def guidance(self, model: ARModel, batch: int, device: torch.device) -> Guidance:
        """The behaviour for one generation of ``batch`` samples."""
        raise NotImplementedError


def build_guidance(method: GuidanceMethod, model: ARModel, batch: int, device: torch.device) -> Guidance:
    """The method's guidance for one generation, with SSG added when the method asks for it."""
    guidance = method.guidance(model, batch, device)
    if method.ssg is not None:
        method.ssg.attach(guidance, model)
    return guidance
