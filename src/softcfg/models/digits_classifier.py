"""A small CNN digits classifier; its penultimate features and softmax are the digits-FID extractor.

It reads images as written to disk (uint8 NHWC), so it scores the output of any sampler.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import torch
from torch import Tensor, nn

from softcfg.data.digits import NUM_CLASSES, uint8_images_to_gray
from softcfg.models.base import load_state_dict_strict, read_checkpoint

FEATURE_DIM = 128


class DigitsClassifier(nn.Module):
    def __init__(self, dropout: float = 0.3) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, FEATURE_DIM),
            nn.ReLU(),
        )
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(FEATURE_DIM, NUM_CLASSES)

    def forward(self, images: Tensor) -> Tensor:
        """Logits [N, 10] from gray images [N, 1, 8, 8] in [0, 1]."""
        return self.head(self.drop(self.body(images)))

    @torch.no_grad()
    def features_and_logits(self, images_uint8: Tensor) -> tuple[Tensor, Tensor]:
        """Penultimate features [N, 128] and logits [N, 10] of uint8 NHWC images."""
        features = self.body(uint8_images_to_gray(images_uint8))
        return features, self.head(features)


def save_digits_classifier(
    model: DigitsClassifier, path: str | Path | BinaryIO, extra: dict | None = None
) -> None:
    torch.save({"state_dict": model.state_dict(), **(extra or {})}, path)


def load_digits_classifier(path: str | Path) -> DigitsClassifier:
    ckpt = read_checkpoint(path)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(f"checkpoint {path} is not a digits classifier checkpoint (needs 'state_dict')")
    model = DigitsClassifier()
    load_state_dict_strict(model, ckpt["state_dict"], path)
    return model.eval()
