"""The embedded default model: a class-conditional GPT over scikit-learn's digits.

Each 8x8 image is 64 tokens (intensities 0..16 used directly, a 17-token vocabulary), row-major; the
null class id is 10. Size and training length were chosen by held-out loss
(``benchmarks/digits_model_selection.py``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

import torch
from torch import Tensor

from softcfg.data.digits import DIGITS_LEVELS, IMAGE_SIDE, NUM_CLASSES, tokens_to_uint8_images
from softcfg.models.base import load_state_dict_strict, read_checkpoint
from softcfg.models.gpt import ClassConditionalGPT, GPTConfig
from softcfg.options import UserError


@dataclass(frozen=True)
class DigitsARConfig:
    dim: int = 64
    depth: int = 4
    heads: int = 4
    dropout: float = 0.1


class DigitsAR(ClassConditionalGPT):
    def __init__(self, config: DigitsARConfig) -> None:
        super().__init__(GPTConfig(DIGITS_LEVELS, IMAGE_SIDE * IMAGE_SIDE, NUM_CLASSES, **asdict(config)))
        self.digits_config = config

    def decode_images(self, tokens: Tensor) -> Tensor:
        return tokens_to_uint8_images(tokens)


def save_digits_ar(model: DigitsAR, path: str | Path | BinaryIO, extra: dict | None = None) -> None:
    torch.save(
        {"config": asdict(model.digits_config), "state_dict": model.state_dict(), **(extra or {})}, path
    )


def load_digits_ar(path: str | Path) -> DigitsAR:
    """Rebuild the model from the dimensions stored in its checkpoint and load it strictly."""
    ckpt = read_checkpoint(path)
    if not isinstance(ckpt, dict) or "config" not in ckpt or "state_dict" not in ckpt:
        raise UserError(f"checkpoint {path} is not a digits AR checkpoint (needs 'config' and 'state_dict')")
    try:
        config = DigitsARConfig(**ckpt["config"])
    except TypeError as exc:
        raise UserError(f"checkpoint {path}: bad 'config' entry: {exc}") from None
    bad = [f"{k}={v!r}" for k, v in asdict(config).items() if isinstance(v, int) and v < 1]
    if bad or config.dim % max(config.heads, 1):
        problem = (
            ", ".join(bad) + " (sizes must be >= 1)"
            if bad
            else f"dim {config.dim} is not a multiple of heads {config.heads}"
        )
        raise UserError(f"checkpoint {path}: bad 'config' entry: {problem}")
    model = DigitsAR(config)
    load_state_dict_strict(model, ckpt["state_dict"], path)
    return model.eval()
