"""Train the embedded text-conditioned model on captioned digit scenes, on CPU, from a seed.

Scenes are drawn from the grammar (``softcfg.data.captions``) with digit images of a stratified train
split; the held-out scenes use the held-out digit images and their own draws, so the held-out loss
measures generalisation to unseen digits and unseen scene/caption pairs. The parameters of the lowest
held-out loss are kept (early stopping), as for the class-conditional digits model.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from softcfg.conditioning import Prompts
from softcfg.data.captions import Example, draw_examples
from softcfg.data.scenes import DIGIT_NAMES, fit_codebook, image_codes, load_digit_images, scene_tokens
from softcfg.models.digits_text import DigitsTextConfig, DigitsTextGPT
from softcfg.training import TrainedGenerator


@dataclass(frozen=True)
class TextTraining:
    steps: int = 1000
    batch_size: int = 32
    lr: float = 4e-3
    weight_decay: float = 0.05
    prompt_dropout: float = 0.1  # rows shown the empty prompt, so the model is also unconditional
    train_scenes: int = 12000
    heldout_scenes: int = 600
    eval_every: int = 100


@dataclass(frozen=True)
class SceneSet:
    """Prompt ids [N, prefix_len] (fixed-length, left-padded) and scene tokens [N, 256]."""

    prompt_ids: Tensor
    tokens: Tensor


def digit_pools(seed: int, heldout_fraction: float = 0.2) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per digit class, the scikit-learn rows of the train and held-out splits (stratified, from seed)."""
    _, labels = load_digit_images()
    rng = np.random.default_rng(seed)
    train, heldout = [], []
    for digit in range(len(DIGIT_NAMES)):
        rows = np.flatnonzero(labels == digit)
        out = rng.choice(rows, size=round(len(rows) * heldout_fraction), replace=False)
        heldout.append(np.sort(out))
        train.append(np.setdiff1d(rows, out))
    return train, heldout


def scene_set(model: DigitsTextGPT, examples: list[Example], images: np.ndarray) -> SceneSet:
    prompts = model.prompts([e.caption for e in examples])
    ids = model.prefix_ids(prompts)
    codes = image_codes(images, model.codebook.numpy())
    tokens = torch.from_numpy(np.stack([scene_tokens(e.scene, codes) for e in examples]))
    return SceneSet(ids, tokens)


def _prompts(ids: Tensor) -> Prompts:
    return Prompts(ids, ids != 0, ("",) * ids.shape[0])


@torch.no_grad()
def text_loss(model: DigitsTextGPT, data: SceneSet, batch_size: int = 200) -> float:
    """Mean per-token cross-entropy (nats) of the conditional model, in eval mode."""
    was_training = model.training
    model.eval()
    total = 0.0
    for start in range(0, data.tokens.shape[0], batch_size):
        ids, tokens = data.prompt_ids[start : start + batch_size], data.tokens[start : start + batch_size]
        logits = model(_prompts(ids), tokens)
        total += F.cross_entropy(logits.flatten(0, 1), tokens.flatten(), reduction="sum").item()
    model.train(was_training)
    return total / data.tokens.numel()


def train_digits_text(
    config: DigitsTextConfig, training: TextTraining, seed: int
) -> tuple[DigitsTextGPT, dict]:
    """AdamW with cosine decay over scenes of the train digits; returns the best held-out model."""
    torch.manual_seed(seed)
    model = DigitsTextGPT(config)
    images, _ = load_digit_images()
    train_pools, heldout_pools = digit_pools(seed)
    model.codebook.copy_(torch.from_numpy(fit_codebook(images[np.concatenate(train_pools)], seed)))
    train = scene_set(model, draw_examples(training.train_scenes, seed, train_pools), images)
    heldout = scene_set(model, draw_examples(training.heldout_scenes, seed + 1, heldout_pools), images)
    empty = model.prefix_ids(model.prompts([""]))
    opt = torch.optim.AdamW(model.parameters(), lr=training.lr, weight_decay=training.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / training.steps))
    )
    gen = torch.Generator().manual_seed(seed)
    best = (math.inf, 0, copy.deepcopy(model.state_dict()))
    curve = []
    start = time.perf_counter()
    model.train()
    for step in range(1, training.steps + 1):
        idx = torch.randint(0, train.tokens.shape[0], (training.batch_size,), generator=gen)
        ids, tokens = train.prompt_ids[idx], train.tokens[idx]
        drop = torch.rand(ids.shape[0], generator=gen) < training.prompt_dropout
        ids = torch.where(drop[:, None], empty, ids)
        logits = model(_prompts(ids), tokens)
        loss = F.cross_entropy(logits.flatten(0, 1), tokens.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % training.eval_every == 0 or step == training.steps:
            loss_heldout = text_loss(model, heldout)
            curve.append({"step": step, "heldout_loss": loss_heldout})
            if loss_heldout < best[0]:
                best = (loss_heldout, step, copy.deepcopy(model.state_dict()))
    model.load_state_dict(best[2])
    model.eval()
    report = {
        "config": asdict(config),
        "training": asdict(training),
        "best_step": best[1],
        "train_loss": text_loss(model, SceneSet(train.prompt_ids[:600], train.tokens[:600])),
        "heldout_loss": best[0],
        "heldout_curve": curve,
        "seconds": time.perf_counter() - start,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    return model, report


def train_generator(steps: int | None, seed: int) -> TrainedGenerator:
    """The ``digits_text`` family's trainer: scenes of digits drawn from ``seed`` (its own digit split)."""
    from softcfg.models.digits_text import save_digits_text

    training = TextTraining() if steps is None else TextTraining(steps=steps)
    model, report = train_digits_text(DigitsTextConfig(), training, seed)
    return TrainedGenerator(model, report, training.steps, save_digits_text)
