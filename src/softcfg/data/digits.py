"""scikit-learn's bundled digits (1797 images, 8x8, intensities 0..16) as tokens and uint8 images."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

DIGITS_LEVELS = 17
IMAGE_SIDE = 8
NUM_CLASSES = 10


@dataclass(frozen=True)
class DigitsSplit:
    """Tokens [N, 64] int64 and labels [N] int64 of the train and held-out parts."""

    train_tokens: Tensor
    train_labels: Tensor
    heldout_tokens: Tensor
    heldout_labels: Tensor


def load_digits_tokens() -> tuple[Tensor, Tensor]:
    """All 1797 images as tokens [N, 64] (row-major intensities 0..16) and labels [N]."""
    from sklearn.datasets import load_digits

    data = load_digits()
    tokens = torch.from_numpy(data.data.astype(np.int64))
    labels = torch.from_numpy(data.target.astype(np.int64))
    return tokens, labels


def split_digits(seed: int, heldout_fraction: float = 0.2) -> DigitsSplit:
    """A stratified train / held-out split drawn from ``seed``, the same for the generator and classifier."""
    tokens, labels = load_digits_tokens()
    rng = np.random.default_rng(seed)
    heldout = []
    for c in range(NUM_CLASSES):
        idx = np.flatnonzero(labels.numpy() == c)
        heldout.extend(rng.choice(idx, size=round(len(idx) * heldout_fraction), replace=False).tolist())
    mask = torch.zeros(len(labels), dtype=torch.bool)
    mask[torch.tensor(sorted(heldout))] = True
    return DigitsSplit(tokens[~mask], labels[~mask], tokens[mask], labels[mask])


def tokens_to_uint8_images(tokens: Tensor) -> Tensor:
    """Tokens [N, 64] to uint8 RGB [N, 8, 8, 3]: round(v * 255 / 16), gray replicated (16 -> 255)."""
    gray = (tokens.long() * 255 + 8) // 16
    images = gray.view(-1, IMAGE_SIDE, IMAGE_SIDE, 1).expand(-1, -1, -1, 3)
    return images.to(torch.uint8).contiguous()


def uint8_images_to_gray(images: Tensor) -> Tensor:
    """uint8 [N, H, W, 3] to float [N, 1, H, W] in [0, 1] (channel mean), the classifier's input."""
    return images.float().mean(dim=-1, keepdim=True).permute(0, 3, 1, 2) / 255.0
