"""Per-step diagnostics the paper plots: normalized entropies and SoftCFG weight statistics.

Accumulated on the device as batch sums, so leaving them on adds no host synchronisation to the loop.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from softcfg.guidance import StepLogits, normalized_entropy

DIAGNOSTICS = ("entropy_cond", "entropy_uncond", "entropy_guided", "weight_min", "weight_mean")


class StepDiagnostics:
    """Batch-averaged per-step statistics over any number of batches; NaN where a quantity is absent."""

    def __init__(self, num_steps: int, device: torch.device | str = "cpu") -> None:
        self.sums = torch.zeros(num_steps, len(DIAGNOSTICS), dtype=torch.float64, device=device)
        self.present = torch.zeros(num_steps, len(DIAGNOSTICS), dtype=torch.bool, device=device)
        self.count = 0

    def __call__(self, step: int, logits: StepLogits, weights: Tensor | None) -> None:
        t = max(logits.temperature, 1e-5)
        values = [
            normalized_entropy(logits.cond / t),
            None,
            normalized_entropy(logits.guided / t),
            None,
            None,
        ]
        if logits.uncond is not None:
            values[1] = normalized_entropy(logits.uncond / t)
        if weights is not None:
            values[3], values[4] = weights.amin(dim=-1), weights.mean(dim=-1)
        for col, value in enumerate(values):
            if value is not None:
                self.sums[step, col] += value.sum()
                self.present[step, col] = True
        if step == 0:
            self.count += logits.cond.shape[0]

    def merge(self, other: StepDiagnostics) -> None:
        self.sums += other.sums
        self.present |= other.present
        self.count += other.count

    def as_dict(self) -> dict[str, list[float]]:
        """Per-step means as plain lists (NaN where absent), for manifests and tables."""
        means = (self.sums / max(self.count, 1)).cpu()
        present = self.present.cpu()
        return {
            name: [float(means[s, c]) if present[s, c] else math.nan for s in range(means.shape[0])]
            for c, name in enumerate(DIAGNOSTICS)
        }
