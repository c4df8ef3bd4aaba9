"""Training of the embedded digits generators and classifier (CPU, minutes).

A family is trainable by the workflow when its record names a trainer (``Family.trainer``):
``function(steps, seed) -> TrainedGenerator``, ``steps`` None for the trainer's tuned default.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO


@dataclass(frozen=True)
class TrainedGenerator:
    """A trainer's result: the model, its report (losses, best step, seconds), the optimisation steps it
    ran, and the function that writes its checkpoint (``save(model, path, extra)``)."""

    model: Any
    report: dict[str, Any]
    steps: int
    save: Callable[[Any, BinaryIO, dict | None], None]
