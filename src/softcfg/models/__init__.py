"""Model families, each an adapter to ``ARModel``, looked up by the config's ``family``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from softcfg.models.base import ARModel
from softcfg.models.digits import load_digits_ar

if TYPE_CHECKING:
    from softcfg.config import ModelEntry

FAMILIES: dict[str, Callable[[str | Path], ARModel]] = {
    "digits": load_digits_ar,
}

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def load_model(entry: ModelEntry) -> ARModel:
    """Build the family's model from its checkpoint, in eval mode, on the entry's device and dtype."""
    model = FAMILIES[entry.family](entry.checkpoint)
    return model.to(device=entry.device, dtype=DTYPES[entry.dtype]).eval()
