"""A guidance method from outside the package: CFG whose guided logits are multiplied by ``sharpen``.

The README's example of a user's method, installed by the tests through the ``softcfg.methods`` entry
point. Sharpening by s is sampling at temperature T / s, which the tests use as an independent check.
"""

from __future__ import annotations

from typing import Literal

from softcfg.methods import CFG, Guidance, Refinement
from softcfg.models.registry import Family
from softcfg.options import Field, Float


class Sharpen(Refinement):
    def __init__(self, factor: float) -> None:
        self.factor = factor

    def __call__(self, step, guided):
        return guided * self.factor


class SharpenedCFG(CFG):
    """CFG, then the guided logits times ``sharpen`` (a logits refinement)."""

    name: Literal["sharpened_cfg"] = "sharpened_cfg"
    sharpen: Float = Field(1.0, gt=0, description="factor on the guided logits")

    def guidance(self, model, batch, device) -> Guidance:
        guidance = super().guidance(model, batch, device)
        guidance.refinements = (Sharpen(self.sharpen),)
        return guidance


# A model family from outside the package: the embedded digits model under another name, trainable by
# the workflow through the digits trainer (its record names it).
DIGITS_COPY = Family(
    "digits_copy",
    "softcfg.models.loading:load_digits",
    extractor="digits",
    trainer="softcfg.training.digits:train_generator",
)
