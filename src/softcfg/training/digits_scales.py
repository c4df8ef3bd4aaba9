"""Train the next-scale digits model from a seed on CPU, with the digits generator's loop.

The same split, optimiser, label dropout and early stopping on held-out loss as the next-token model
(``training.digits.fit_generator``); only the tokens differ: each digit's four scale maps (85 tokens),
and the loss is the mean over all of them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict

import torch

from softcfg.data.digits import DigitsSplit
from softcfg.models.digits_scales import DigitsScales, DigitsScalesConfig, scale_maps
from softcfg.training import TrainedGenerator
from softcfg.training.digits import ARTraining, fit_generator

# The training length chosen with the default DigitsScalesConfig (benchmarks/digits_scales_model_selection.py)
SCALES_TRAINING = ARTraining(steps=600)


def scale_split(split: DigitsSplit) -> DigitsSplit:
    """The split with every digit's tokens replaced by its scale maps, [N, 85]."""
    return DigitsSplit(
        scale_maps(split.train_tokens),
        split.train_labels,
        scale_maps(split.heldout_tokens),
        split.heldout_labels,
    )


def train_digits_scales(
    split: DigitsSplit, config: DigitsScalesConfig, training: ARTraining, seed: int
) -> tuple[DigitsScales, dict]:
    """The model of ``config`` trained on ``split``'s digits; the report's losses are nats per token,
    over the 85 tokens of the four scales."""
    torch.manual_seed(seed)
    return fit_generator(DigitsScales(config), scale_split(split), training, seed, asdict(config))


def train_generator(steps: int | None, seed: int) -> TrainedGenerator:
    """The ``digits_scales`` family's trainer: the digit split of ``seed`` at the scales' sizes."""
    from softcfg.data.digits import split_digits
    from softcfg.models.digits_scales import save_digits_scales

    training = SCALES_TRAINING if steps is None else dataclasses.replace(SCALES_TRAINING, steps=steps)
    model, report = train_digits_scales(split_digits(seed), DigitsScalesConfig(), training, seed)
    return TrainedGenerator(model, report, training.steps, save_digits_scales)
