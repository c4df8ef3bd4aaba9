import math

import numpy as np
import pytest
import torch

from softcfg.guidance.confidence import CONFIDENCES, StepLogits
from softcfg.guidance.entropy import normalized_entropy


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.fixture
def step() -> StepLogits:
    g = torch.Generator().manual_seed(0)
    lc, lu = (
        torch.randn(4, 30, generator=g, dtype=torch.float64) * 3,
        torch.randn(4, 30, generator=g, dtype=torch.float64),
    )
    return StepLogits(lc, lu, lu + 3 * (lc - lu), torch.tensor([0, 5, 7, 29]), temperature=1.3)


def test_confidences_against_numpy(step):
    t = step.temperature
    pc, pu, pg = (_softmax(x.numpy() / t) for x in (step.cond, step.uncond, step.guided))
    expected = {
        "cond_max": pc.max(-1),
        "cond_sampled": pc[np.arange(4), step.token.numpy()],
        "guided_max": pg.max(-1),
        "uncond_max": pu.max(-1),
        "neg_entropy": 1 + (pc * np.log(pc)).sum(-1) / math.log(30),
    }
    assert set(CONFIDENCES) == set(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(CONFIDENCES[name](step).numpy(), value, rtol=1e-6, err_msg=name)


def test_normalized_entropy_bounds():
    assert normalized_entropy(torch.zeros(1, 64)).item() == pytest.approx(1.0)
    peaked = torch.full((1, 64), float("-inf"))
    peaked[0, 3] = 0.0
    assert normalized_entropy(peaked).item() == 0.0
