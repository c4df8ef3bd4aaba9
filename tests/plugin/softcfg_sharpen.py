"""A guidance method from outside the package: CFG whose guided logits are multiplied by ``sharpen``;
also a model family and a metric, each one record and an entry point.

The README's example of a user's method, installed by the tests through the ``softcfg.methods`` entry
point. Sharpening by s is sampling at temperature T / s, which the tests use as an independent check.
"""

from __future__ import annotations

from typing import Literal

from softcfg.methods import CFG, Guidance, Refinement
from softcfg.metrics import Metric
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


def mean_distance(samples, reference, names, settings) -> dict[str, float]:
    """The distance between the two sets' mean features (float64)."""
    import numpy as np

    gap = samples.features.astype(np.float64).mean(0) - reference.features.astype(np.float64).mean(0)
    return {"mean_distance": float(np.linalg.norm(gap))}


# A metric from outside the package: read from any extractor's pooled features.
MEAN_DISTANCE = Metric("mean_distance", "MeanΔ ↓", True, "softcfg_sharpen:mean_distance")
