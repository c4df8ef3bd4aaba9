import math

import pytest

from softcfg.guidance.schedules import (
    constant_schedule,
    cosine_power_schedule,
    linear_schedule,
    schedule_scales,
)


def test_k_zero_is_constant_gamma():
    assert schedule_scales("cosine", 4.5, 273, k=0.0) == [4.5] * 273


@pytest.mark.parametrize("k", [0.7, 1.0, 2.75])
def test_cosine_power_matches_formula(k):
    gamma, steps = 16.0, 256
    for t in (0, 1, 100, 255):
        expected = 1 + (gamma - 1) * (1 - math.cos(math.pi * (t / steps) ** k)) / 2
        assert cosine_power_schedule(gamma, t, steps, k) == pytest.approx(expected, rel=1e-12)
    assert cosine_power_schedule(gamma, 0, steps, k) == 1.0  # starts unguided
    assert cosine_power_schedule(gamma, steps // 2, steps, 1.0) == pytest.approx(1 + (gamma - 1) / 2)


def test_linear_and_constant():
    assert linear_schedule(3.0, 0, 64) == 1.0
    assert linear_schedule(3.0, 32, 64) == pytest.approx(2.0)
    assert constant_schedule(2.0, 17, 64) == 2.0


def test_ramp_is_vars_per_scale_cfg():
    """VAR: t_k = cfg k / (K - 1) in (1 + t_k) l_c - t_k l_u, i.e. scale 1 + t_k; gamma = 1 + cfg."""
    cfg = 1.5
    scales = schedule_scales("ramp", 1 + cfg, 10)
    assert scales == pytest.approx([1 + cfg * k / 9 for k in range(10)], abs=1e-12)
    assert scales[0] == 1.0 and scales[-1] == pytest.approx(2.5)


def test_interval_switches_guidance_off_outside():
    scales = schedule_scales("constant", 3.0, 10, interval=(0.2, 0.5))
    assert scales == [1.0, 1.0, 3.0, 3.0, 3.0, 1.0, 1.0, 1.0, 1.0, 1.0]


def test_unknown_schedule():
    with pytest.raises(ValueError, match="unknown schedule"):
        schedule_scales("exp", 2.0, 10)
