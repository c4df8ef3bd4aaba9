"""One shard of one run: labels by the documented scheme, seeds derived per batch, images decoded.

Labels: sample number n of a run (counting across shards) has class ``n % num_classes``, i.e. classes
round-robin as in the ImageNet sampling scripts (50 per class for 50k samples when the run size is a
multiple of the class count). Batch b of shard i draws from a generator seeded by
``SeedSequence([seed, i, b])``, so a shard is deterministic from (seed, shard index, shard size, batch
size) and independent of other shards.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from softcfg.config import RunConfig
from softcfg.models.base import ARModel
from softcfg.sampling.diagnostics import StepDiagnostics
from softcfg.sampling.next_token import generate


def shard_labels(shard_index: int, shard_size: int, num_classes: int) -> np.ndarray:
    """Class ids of the samples of one shard, int64 [shard_size]."""
    first = shard_index * shard_size
    return np.arange(first, first + shard_size, dtype=np.int64) % num_classes


def batch_seed(seed: int, shard_index: int, batch_index: int) -> int:
    return int(np.random.SeedSequence([seed, shard_index, batch_index]).generate_state(1, np.uint64)[0])


@dataclass
class Shard:
    images: np.ndarray  # uint8 [N, H, W, 3]
    labels: np.ndarray  # int64 [N]
    batch_seeds: list[int]
    diagnostics: StepDiagnostics | None


def sample_shard(model: ARModel, run: RunConfig, shard_index: int, progress: bool = True) -> Shard:
    """Sample every batch of shard ``shard_index`` and decode it to uint8 images."""
    s = run.sampling
    device = next(model.parameters()).device
    labels = shard_labels(shard_index, s.shard_size, model.num_classes)
    diagnostics = StepDiagnostics(model.num_tokens, device) if s.diagnostics else None
    images, seeds = [], []
    starts = range(0, s.shard_size, s.batch_size)
    for b, start in enumerate(tqdm(starts, desc=f"shard {shard_index}", unit="batch", disable=not progress)):
        seeds.append(batch_seed(s.seed, shard_index, b))
        generator = torch.Generator(device=device).manual_seed(seeds[-1])
        batch_labels = torch.from_numpy(labels[start : start + s.batch_size]).to(device)
        observers = [diagnostics] if diagnostics is not None else []
        tokens = generate(model, batch_labels, run.method, generator, observers)
        images.append(model.decode_images(tokens).cpu().numpy())
    return Shard(np.concatenate(images), labels, seeds, diagnostics)
