"""The batched Inception path (whole uint8 batches to the device, resized there) against torch-fidelity's
per-image loop, on the CPU where no GPU is present: the tolerance of the extractor's own tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import generated_images
from softcfg.metrics.inception import POOL, SPATIAL
from softcfg.metrics.inception_features import extract, extract_batched


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.concatenate(
        [generated_images(3, 64, seed=1), generated_images(2, 64, seed=2, palette_shift=90)]
    )


def test_batched_features_equal_torch_fidelitys_loop(inception_weights, images):
    reference = extract(images, inception_weights, batch_size=2, device="cpu")
    for batch_size in (5, 3):  # one batch; a last batch shorter than the others
        got = extract_batched(images, inception_weights, batch_size=batch_size, device="cpu")
        assert sorted(got) == sorted(reference)
        for name in (POOL, SPATIAL):
            assert got[name].dtype == np.float32 and got[name].shape == reference[name].shape
            assert np.abs(got[name] - reference[name]).max() <= 1e-4, name
    assert np.abs(reference[POOL][0] - reference[POOL][3]).max() > 1e-2  # rows differ: order is checked


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_features_equal_the_cpu_ones(inception_weights, images):
    cpu = extract(images, inception_weights, batch_size=2, device="cpu")
    gpu = extract(images, inception_weights, batch_size=4, device="cuda")
    for name in (POOL, SPATIAL):
        assert np.abs(gpu[name] - cpu[name]).max() <= 1e-4, name
