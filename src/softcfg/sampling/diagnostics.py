"""Per-step diagnostics the paper plots: normalized entropies and SoftCFG weight statistics.

``entropy_signal`` is the normalized entropy of the guidance signal, softmax((l_c - l_u) / T): the
direction guidance amplifies. It is high (uninformative) where the two branches agree, which the SoftCFG
paper shows happening for CFG as decoding proceeds (its Figs. 3 and 7).

Accumulated on the device as batch sums, so leaving them on adds no host synchronisation to the loop.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from softcfg.guidance.confidence import StepLogits
from softcfg.guidance.entropy import normalized_entropy

DIAGNOSTICS = (
    "entropy_cond", "entropy_uncond", "entropy_guided", "entropy_signal", "weight_min", "weight_mean",
)  # fmt: skip


class StepDiagnostics:
    """Batch-averaged per-step statistics over any number of batches; NaN where a quantity is absent."""

    def __init__(self, num_steps: int, device: torch.device | str = "cpu") -> None:
        self.sums = torch.zeros(num_steps, len(DIAGNOSTICS), dtype=torch.float64, device=device)
        self.present = [[False] * len(DIAGNOSTICS) for _ in range(num_steps)]  # known on the host
        self.count = 0

    def __call__(self, step: int, logits: StepLogits, weights: Tensor | None) -> None:
        t = max(logits.temperature, 1e-5)
        if logits.uncond is not None:
            branches = [logits.cond, logits.uncond, logits.guided, logits.cond - logits.uncond]
            columns = [0, 1, 2, 3]
        else:
            branches, columns = [logits.cond, logits.guided], [0, 2]
        values = [normalized_entropy(torch.stack(branches) / t).sum(-1)]  # [branches]
        if weights is not None:
            values.append(torch.stack([weights.amin(dim=-1).sum(), weights.mean(dim=-1).sum()]))
            columns += [4, 5]
        self.sums[step, columns] += torch.cat(values).double()
        for col in columns:
            self.present[step][col] = True
        if step == 0:
            self.count += logits.cond.shape[0]

    def as_dict(self) -> dict[str, list[float]]:
        """Per-step means as plain lists (NaN where absent), for manifests and tables."""
        means = (self.sums / max(self.count, 1)).cpu().tolist()
        return {
            name: [means[s][c] if self.present[s][c] else math.nan for s in range(len(means))]
            for c, name in enumerate(DIAGNOSTICS)
        }
