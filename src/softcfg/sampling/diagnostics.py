"""Per-step diagnostics the paper plots: normalized entropies, SoftCFG weight statistics, and the
per-token confidences of a few samples (``ConfidenceMaps``).

``entropy_signal`` is the normalized entropy of the guidance signal, softmax((l_c - l_u) / T): the
direction guidance amplifies. It is high (uninformative) where the two branches agree, which the SoftCFG
paper shows happening for CFG as decoding proceeds (its Figs. 3 and 7).

Accumulated on the device as batch sums, so leaving them on adds no host synchronisation to the loop.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from softcfg.guidance.confidence import CONFIDENCES, StepLogits
from softcfg.guidance.entropy import normalized_entropy

if TYPE_CHECKING:
    from softcfg.methods import GuidanceMethod
    from softcfg.models.base import ARModel

DIAGNOSTICS = (
    "entropy_cond", "entropy_uncond", "entropy_guided", "entropy_signal", "weight_min", "weight_mean",
)  # fmt: skip


class StepDiagnostics:
    """Batch-averaged per-step statistics over any number of batches; NaN where a quantity is absent.

    A next-scale step's entropies are first averaged over the scale's positions."""

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
        entropy = normalized_entropy(torch.stack(branches) / t)  # [branches, B] or [branches, B, n]
        values = [entropy.flatten(2).mean(-1).sum(-1) if entropy.dim() > 2 else entropy.sum(-1)]
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


class ConfidenceMaps:
    """Per-token confidences of the first ``samples`` rows of a batch, for the confidence heatmaps (Fig. 5).

    Always ``cond_max`` (the paper's Eq. 3), whatever the method, so runs compare on one definition; a
    SoftCFG run whose own ``confidence`` differs records that one too. Kept on the device until read.
    """

    def __init__(
        self, model: ARModel, method: GuidanceMethod, samples: int, device: torch.device | str
    ) -> None:
        own = getattr(method, "confidence", "cond_max")
        self.definitions = ("cond_max",) if own == "cond_max" else ("cond_max", own)
        self.model, self.samples = model, samples
        self.values = torch.zeros(len(self.definitions), samples, model.num_tokens, device=device)

    def __call__(self, step: int, logits: StepLogits, weights: Tensor | None) -> None:
        start, end = self.model.step_span(step)
        n, uncond = self.samples, logits.uncond
        rows = StepLogits(
            logits.cond[:n], None if uncond is None else uncond[:n], logits.guided[:n], logits.token[:n],
            logits.temperature,
        )  # fmt: skip
        for d, name in enumerate(self.definitions):
            self.values[d, :, start:end] = CONFIDENCES[name](rows).reshape(n, end - start)

    def as_arrays(self) -> dict[str, np.ndarray]:
        """Definition -> float32 [samples, tokens]."""
        values = self.values.cpu().numpy()
        return {name: values[d] for d, name in enumerate(self.definitions)}
