"""Normalized entropy, the quantity the SoftCFG paper plots per decoding step."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def normalized_entropy(logits: Tensor) -> Tensor:
    """H(softmax(logits)) / log V over the last dimension, in [0, 1]; -inf logits count as p = 0."""
    probs = torch.softmax(logits.float(), dim=-1)
    return torch.special.entr(probs).sum(dim=-1) / math.log(logits.shape[-1])
