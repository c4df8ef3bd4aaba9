"""SSG as an option of any method (``ssg:`` in a none, cfg or softcfg entry): scaled spatial guidance on
next-scale models, ``l_k + beta_k (l_k - l_prior)`` with the prior from the previous scale's logits.

It reuses logits the loop already has, so it adds no forward pass. Where it acts is an option: on the
guided logits (``apply_to: guided``, the reading of the method's pipeline figure: the prior is the previous
scale's guided logits before SSG) or on each branch before CFG combines them (``apply_to: branches``, each
branch refined against its own previous logits). Scale 0 has no prior and is left alone; so is a scale
whose beta is 0, which makes ``beta: 0`` reproduce the base method's tokens byte for byte.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import model_validator

from softcfg.methods.guidance import Combination, Guidance, Refinement
from softcfg.options import ConfigError, Field, Options, Scale

if TYPE_CHECKING:
    from torch import Tensor

    from softcfg.models.base import ARModel

PRIORS = ("dse", "bilinear", "nearest")  # softcfg.guidance.ssg.PRIORS, without importing torch
SWEPT = ("beta", "prior")  # the options a sweep may give as lists


class SSG(Options):
    """Scaled spatial guidance with a DSE (or plain interpolation) prior; every uncertain choice an option."""

    beta: Scale = Field(1.0, description="beta_k at the first scale with a prior (all, if constant)")
    prior: Literal[PRIORS] = Field("dse", description="dse | bilinear | nearest")  # type: ignore[valid-type]
    schedule: Literal["constant", "linear", "list"] = Field(
        "constant", description="constant beta | linear from beta to beta_end | the per-scale list betas"
    )
    beta_end: Scale = Field(0.0, description="linear schedule: beta_k at the last scale")
    betas: list[Scale] | None = Field(
        None, description="list schedule: beta_k for scales 1 .. K-1 (scale 0 has no prior)"
    )
    interpolation: Literal["bilinear", "bicubic", "nearest"] = Field(
        "bilinear", description="how DSE brings the previous scale to the new grid before its DCT fusion"
    )
    band_scale: Literal["rescale", "copy"] = Field(
        "rescale",
        description="DSE: scale the copied low DCT band by p_k / p_{k-1} (keeps the mean) or copy it as is",
    )
    apply_to: Literal["guided", "branches"] = Field(
        "guided", description="refine the guided logits, or each branch before CFG combines them"
    )

    @model_validator(mode="after")
    def _list_needs_betas(self) -> SSG:
        if (self.schedule == "list") != (self.betas is not None):
            raise ValueError("betas: give betas exactly when schedule is 'list'")
        return self

    def axes(self) -> dict[str, Any]:
        """What names a run: beta (or the list) and the prior."""
        beta = self.beta if self.betas is None else "_".join(f"{b:g}" for b in self.betas)
        return {"beta": beta, "prior": self.prior}

    def betas_for(self, num_scales: int) -> list[float]:
        from softcfg.guidance.ssg import beta_schedule

        try:
            return beta_schedule(self.schedule, self.beta, num_scales, self.beta_end, self.betas or ())
        except ValueError as exc:
            raise ConfigError(f"method.ssg.{exc}") from None

    def attach(self, guidance: Guidance, model: ARModel) -> None:
        """Add SSG to one generation's guidance; refuses a model without scales."""
        patch_nums = getattr(model, "patch_nums", None)
        if patch_nums is None:
            raise ConfigError(
                f"method.ssg: {type(model).__name__} is a next-token model; SSG needs a next-scale one"
            )
        betas = self.betas_for(len(patch_nums))
        if self.apply_to == "guided":
            guidance.refinements = (SpatialRefinement(self, patch_nums, betas), *guidance.refinements)
        else:
            guidance.combine = branch_refined(guidance.combine, self, patch_nums, betas)


class SpatialRefinement(Refinement):
    """SSG on one stream of logits: remembers each scale's input as the next scale's prior source."""

    def __init__(self, options: SSG, patch_nums: tuple[int, ...], betas: list[float]) -> None:
        self.options, self.patch_nums, self.betas = options, patch_nums, betas
        self.previous: Tensor | None = None

    def __call__(self, step: int, logits: Tensor) -> Tensor:
        from softcfg.guidance.ssg import spatial_prior, ssg_update

        previous, self.previous = self.previous, logits  # the prior of the next scale: before SSG
        if step == 0 or self.betas[step] == 0.0:
            return logits
        o = self.options
        prior = spatial_prior(previous, self.patch_nums[step], o.prior, o.interpolation, o.band_scale)
        return ssg_update(logits, prior.to(logits.dtype), self.betas[step])


def branch_refined(
    combine: Combination, options: SSG, patch_nums: tuple[int, ...], betas: list[float]
) -> Combination:
    """``combine`` applied to each branch after its own SSG refinement."""
    cond_ssg = SpatialRefinement(options, patch_nums, betas)
    uncond_ssg = SpatialRefinement(options, patch_nums, betas)

    def combined(step: int, cond: Tensor, uncond: Tensor | None) -> Tensor:
        return combine(step, cond_ssg(step, cond), uncond_ssg(step, uncond) if uncond is not None else None)

    return combined
