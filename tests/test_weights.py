"""SoftCFG weights against the authors' in-place telescoping product, simulated independently here."""

import numpy as np
import pytest
import torch

from softcfg.guidance.weights import step_normalized_weights, unnormalized_weights


def _target(q: np.ndarray, floor: float, eps: float, strength: float) -> np.ndarray:
    return np.maximum(floor, (1 - q / (q.sum() + eps)) ** strength)


def test_step_normalized_equals_in_place_telescoping_product():
    rng = np.random.default_rng(0)
    steps = 300
    q = rng.uniform(0.01, 1.0, size=steps + 1)  # q[0] is discarded, like token 0's confidence
    floor, eps, strength = 0.05, 1e-5, 1.0
    cache_scale = np.ones(steps + 1)  # the authors multiply the stored uncond values in place
    previous = np.ones(0)
    for j in range(1, steps + 1):
        target = _target(q[1 : j + 1], floor, eps, strength)
        passed = target.copy()
        passed[: j - 1] /= previous  # divide slots 1..j-1 by the previous step's weights
        cache_scale[1 : j + 1] *= passed
        previous = target
        ours = step_normalized_weights(torch.tensor(q[1 : j + 1])[None], floor, eps, strength)[0].numpy()
        np.testing.assert_allclose(ours, cache_scale[1 : j + 1], rtol=1e-6, atol=1e-6)
    assert cache_scale[0] == 1.0


def test_floor_and_exponent():
    q = torch.tensor([[0.9, 0.05, 0.05]])
    w = step_normalized_weights(q, floor=0.2, eps=0.0, strength=2.0)[0]
    expected = [max(0.2, (1 - 0.9) ** 2), (1 - 0.05) ** 2, (1 - 0.05) ** 2]
    torch.testing.assert_close(w, torch.tensor(expected))
    assert step_normalized_weights(q, floor=0.05, eps=0.0)[0, 0].item() == pytest.approx(
        0.1
    )  # above the floor


def test_unit_budget():
    q = torch.rand(4, 200, generator=torch.Generator().manual_seed(3))
    w = step_normalized_weights(q, floor=0.0, eps=0.0)
    torch.testing.assert_close((1 - w).sum(-1), torch.ones(4))


def test_strength_zero_gives_exact_ones():
    q = torch.rand(2, 50)
    assert torch.equal(step_normalized_weights(q, strength=0.0), torch.ones(2, 50))
    assert torch.equal(unnormalized_weights(q, strength=0.0), torch.ones(2, 50))


def test_unnormalized_is_one_minus_q():
    q = torch.tensor([[0.25, 0.99]])
    torch.testing.assert_close(unnormalized_weights(q), torch.tensor([[0.75, 0.01]]))
