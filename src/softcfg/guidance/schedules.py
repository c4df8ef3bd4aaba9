"""Guidance-scale schedules.

Convention used everywhere in this package: the guided logits are ``l_u + s * (l_c - l_u)``, where ``s`` is
the *scale* returned here (the RAR/AliTok/LlamaGen samplers' ``guidance_scale``). The SoftCFG paper writes
``(1 + g) l_c - g l_u``; that is the same with ``s = 1 + g``. Config values named ``gamma`` are ``s``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

SCHEDULES: dict[str, Callable[..., float]] = {}


def _register(name: str) -> Callable[[Callable[..., float]], Callable[..., float]]:
    def wrap(fn: Callable[..., float]) -> Callable[..., float]:
        SCHEDULES[name] = fn
        return fn

    return wrap


@_register("constant")
def constant_schedule(gamma: float, step: int, num_steps: int, k: float = 0.0) -> float:
    """LlamaGen's schedule: the same scale at every step."""
    return float(gamma)


@_register("cosine")
def cosine_power_schedule(gamma: float, step: int, num_steps: int, k: float = 0.0) -> float:
    """RAR/AliTok's ``1 + (gamma - 1) (1 - cos(pi (t/T)^k)) / 2``; k = 0 is constant (0^0 = 1)."""
    ramp = (1.0 - math.cos(math.pi * (step / num_steps) ** k)) / 2.0
    return 1.0 + (gamma - 1.0) * ramp


@_register("linear")
def linear_schedule(gamma: float, step: int, num_steps: int, k: float = 0.0) -> float:
    """Scale rising linearly from 1 at the first step towards gamma at the last."""
    return 1.0 + (gamma - 1.0) * step / num_steps


@_register("ramp")
def ramp_schedule(gamma: float, step: int, num_steps: int, k: float = 0.0) -> float:
    """Scale rising linearly from 1 at the first step to gamma at the last: VAR's per-scale ramp
    ``(1 + t_k) l_c - t_k l_u`` with ``t_k = cfg k / (K - 1)`` is this schedule with gamma = 1 + cfg."""
    return 1.0 + (gamma - 1.0) * step / max(num_steps - 1, 1)


def schedule_scales(
    name: str,
    gamma: float,
    num_steps: int,
    k: float = 0.0,
    interval: tuple[float, float] | None = None,
) -> list[float]:
    """Scale for every decode step; outside the optional guidance interval [lo, hi) of t/T it is 1.

    Returned as Python floats so the decode loop never has to read a tensor back from the device.
    """
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; expected one of {sorted(SCHEDULES)}")
    fn = SCHEDULES[name]
    scales = []
    for step in range(num_steps):
        inside = interval is None or interval[0] <= step / num_steps < interval[1]
        scales.append(fn(gamma, step, num_steps, k) if inside else 1.0)
    return scales
