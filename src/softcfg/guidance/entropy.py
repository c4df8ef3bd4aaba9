"""Normalized entropy, the quantity the SoftCFG paper plots per decoding step."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor


def normalized_entropy(logits: Tensor) -> Tensor:
    """H(softmax(logits)) / log V over the last dimension, in [0, 1]; -inf logits count as p = 0."""
    log_p = logits.float().log_softmax(dim=-1)
    plogp = (log_p.exp() * log_p).nan_to_num_(0.0)  # 0 * -inf -> 0
    return plogp.sum(dim=-1) / -math.log(logits.shape[-1])
