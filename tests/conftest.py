"""Shared fixtures: a small random-weight digits generator and its checkpoint."""

from __future__ import annotations

from pathlib import Path

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
