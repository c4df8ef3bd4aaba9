"""Train the digits generator and classifier from a seed on CPU.

The digits set is small enough to memorise, so both models are selected on a held-out split: the
generator keeps the parameters of its lowest held-out loss (early stopping), and both report train and
held-out figures.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor

from softcfg.conditioning import ClassLabels
from softcfg.data.digits import DigitsSplit, tokens_to_uint8_images, uint8_images_to_gray
from softcfg.models.base import ARModel
from softcfg.models.digits import DigitsAR, DigitsARConfig
from softcfg.models.digits_classifier import DigitsClassifier
from softcfg.training import TrainedGenerator

Model = TypeVar("Model", bound=ARModel)


@dataclass(frozen=True)
class ARTraining:
    steps: int = 1300
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    label_dropout: float = 0.1
    eval_every: int = 100


@torch.no_grad()
def ar_loss(model: ARModel, tokens: Tensor, labels: Tensor) -> float:
    """Mean per-token cross-entropy (nats) of the conditional model, in eval mode."""
    was_training = model.training
    model.eval()
    logits = model(ClassLabels(labels), tokens)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens.reshape(-1)).item()
    model.train(was_training)
    return loss


def train_digits_ar(
    split: DigitsSplit, config: DigitsARConfig, training: ARTraining, seed: int
) -> tuple[DigitsAR, dict]:
    """AdamW with cosine decay; labels replaced by the null class with probability ``label_dropout``."""
    torch.manual_seed(seed)
    return fit_generator(DigitsAR(config), split, training, seed, asdict(config))


def fit_generator(
    model: Model, split: DigitsSplit, training: ARTraining, seed: int, config: dict
) -> tuple[Model, dict]:
    """Train ``model`` (freshly built after ``torch.manual_seed(seed)``) on the tokens of ``split``, which
    its teacher-forced forward predicts; keeps the parameters of the lowest held-out loss. Shared by the
    next-token and the next-scale digits models (``training.digits_scales``)."""
    opt = torch.optim.AdamW(model.parameters(), lr=training.lr, weight_decay=training.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / training.steps))
    )
    gen = torch.Generator().manual_seed(seed)
    n = split.train_tokens.shape[0]
    best = (math.inf, 0, copy.deepcopy(model.state_dict()))
    curve = []
    start = time.perf_counter()
    model.train()
    for step in range(1, training.steps + 1):
        idx = torch.randint(0, n, (training.batch_size,), generator=gen)
        tokens, labels = split.train_tokens[idx], split.train_labels[idx]
        drop = torch.rand(labels.shape, generator=gen) < training.label_dropout
        labels = labels.masked_fill(drop, model.null_class)
        logits = model(ClassLabels(labels), tokens)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % training.eval_every == 0 or step == training.steps:
            heldout = ar_loss(model, split.heldout_tokens, split.heldout_labels)
            curve.append({"step": step, "heldout_loss": heldout})
            if heldout < best[0]:
                best = (heldout, step, copy.deepcopy(model.state_dict()))
    model.load_state_dict(best[2])
    model.eval()
    report = {
        "config": config,
        "best_step": best[1],
        "train_loss": ar_loss(model, split.train_tokens, split.train_labels),
        "heldout_loss": best[0],
        "heldout_curve": curve,
        "seconds": time.perf_counter() - start,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    return model, report


@torch.no_grad()
def classifier_accuracy(model: DigitsClassifier, images_uint8: Tensor, labels: Tensor) -> float:
    model.eval()
    return (model(uint8_images_to_gray(images_uint8)).argmax(-1) == labels).float().mean().item()


def train_digits_classifier(
    split: DigitsSplit, seed: int, epochs: int = 30, batch_size: int = 64, lr: float = 1e-3
) -> tuple[DigitsClassifier, dict]:
    """Adam on the train split's images as written to disk (uint8 RGB); reports held-out accuracy."""
    torch.manual_seed(seed)
    model = DigitsClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    train_x = tokens_to_uint8_images(split.train_tokens)
    heldout_x = tokens_to_uint8_images(split.heldout_tokens)
    inputs = uint8_images_to_gray(train_x)
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(inputs.shape[0], generator=gen).split(batch_size):
            loss = F.cross_entropy(model(inputs[idx]), split.train_labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()
    report = {
        "epochs": epochs,
        "train_accuracy": classifier_accuracy(model, train_x, split.train_labels),
        "heldout_accuracy": classifier_accuracy(model, heldout_x, split.heldout_labels),
        "seconds": time.perf_counter() - start,
    }
    return model, report


def train_generator(steps: int | None, seed: int) -> TrainedGenerator:
    """The ``digits`` family's trainer: the digit split of ``seed``, the tuned schedule (or ``steps``)."""
    from softcfg.data.digits import split_digits
    from softcfg.models.digits import save_digits_ar

    training = ARTraining() if steps is None else ARTraining(steps=steps)
    model, report = train_digits_ar(split_digits(seed), DigitsARConfig(), training, seed)
    return TrainedGenerator(model, report, training.steps, save_digits_ar)
