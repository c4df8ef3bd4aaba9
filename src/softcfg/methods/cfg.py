"""Classifier-free guidance: ``l_u + s_t (l_c - l_u)`` with a per-step scale from a schedule (a step is
a token, or a scale of a next-scale model).

``gamma`` is the scale s of the samplers (RAR, AliTok, LlamaGen); the SoftCFG paper's g is s - 1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import field_validator

from softcfg.guidance.schedules import SCHEDULES, schedule_scales
from softcfg.methods.base import Guidance, GuidanceMethod
from softcfg.options import Field, Float, Scale

if TYPE_CHECKING:
    import torch
    from torch import Tensor

    from softcfg.models.base import ARModel

ScheduleName = Literal[tuple(SCHEDULES)]  # type: ignore[valid-type]


class ScheduledCombination:
    """The CFG combination at the precomputed scale of each step (Python floats: no device sync)."""

    def __init__(self, scales: list[float]) -> None:
        from softcfg.guidance.cfg import cfg_combine

        self.scales, self.combine = scales, cfg_combine

    def __call__(self, step: int, cond: Tensor, uncond: Tensor | None) -> Tensor:
        return self.combine(cond, uncond, self.scales[step])


class CFG(GuidanceMethod):
    """Classifier-free guidance with the cosine-power (RAR/AliTok), constant or linear schedule."""

    name: Literal["cfg"] = "cfg"
    gamma: Scale = Field(1.0, description="guidance scale s in l_u + s (l_c - l_u)")
    k: Float = Field(0.0, ge=0, description="cosine power of the schedule; 0 = constant scale")
    schedule: ScheduleName = Field(
        "cosine", description="cosine | constant | linear | ramp (VAR's per-scale ramp, gamma = 1 + cfg)"
    )
    interval: tuple[Float, Float] | None = Field(
        None, strict=False, description="guide only for t/T in [lo, hi); elsewhere the scale is 1"
    )  # not strict: YAML gives a list

    uses_uncond: ClassVar[bool] = True

    @field_validator("interval")
    @classmethod
    def _ordered(cls, interval: tuple[float, float] | None) -> tuple[float, float] | None:
        if interval is not None and not 0 <= interval[0] < interval[1] <= 1:
            raise ValueError("must satisfy 0 <= lo < hi <= 1")
        return interval

    def axes(self) -> dict[str, Any]:
        """gamma always; k only for the schedule that reads it."""
        return {"gamma": self.gamma, "k": self.k} if self.schedule == "cosine" else {"gamma": self.gamma}

    def scales(self, num_steps: int) -> list[float]:
        return schedule_scales(self.schedule, self.gamma, num_steps, self.k, self.interval)

    def guidance(self, model: ARModel, batch: int, device: torch.device) -> Guidance:
        return Guidance(True, ScheduledCombination(self.scales(model.num_steps)), self.temperature)
