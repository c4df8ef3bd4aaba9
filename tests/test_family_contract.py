"""The contract every model family keeps with the generation loop, on a tiny model of each registered
family (``tests/families.py``): cached steps equal the teacher-forced pass, CFG is ``l_u + s (l_c - l_u)``
of those passes, SoftCFG at strength 0 is CFG bit for bit and at strength 1 is not, SoftCFG equals the
authors' in-place scaling of the stored unconditional cache, and every guidance method samples valid,
seed-determined tokens. Family files keep what is their own (key layouts, upstream formulas, decoders)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from families import BUILDERS, Tiny
from softcfg.methods import parse_method
from softcfg.models.attention import KVCache
from softcfg.models.base import NextScaleModel
from softcfg.models.registry import _BUILTIN
from softcfg.sampling.loop import generate
from softcfg.sampling.replay import replay
from test_sampler import _authors_in_place_replay

CFG = {"name": "cfg", "gamma": 3.0, "k": 1.0}
SOFT = {"name": "softcfg", "gamma": 3.0, "k": 1.0}


def test_every_builtin_family_has_a_tiny_model():
    assert set(BUILDERS) == {family.name for family in _BUILTIN}


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def tiny(request, tmp_path_factory) -> Tiny:
    return BUILDERS[request.param](tmp_path_factory.mktemp(request.param))


def forced_tokens(tiny: Tiny, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, tiny.model.vocab_size, (len(tiny.conditions), tiny.model.num_tokens), generator=g)


def sample(tiny: Tiny, method: dict, seed: int = 0) -> torch.Tensor:
    with torch.inference_mode():
        return generate(
            tiny.model, tiny.conditions, parse_method(method), torch.Generator().manual_seed(seed)
        )


def test_cached_steps_equal_the_teacher_forced_pass_and_cfg_combines_them(tiny):
    model, conditions = tiny.model, tiny.conditions
    tokens = forced_tokens(tiny)
    method = parse_method(CFG)
    out = replay(model, method, conditions, tokens)
    with torch.inference_mode():
        cond = model(conditions, tokens).float().numpy()
        uncond = model(model.unconditional(conditions), tokens).float().numpy()
    np.testing.assert_allclose(out["cond"], cond, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out["uncond"], uncond, rtol=1e-4, atol=1e-4)
    scales = np.ones(model.num_tokens)
    for step, scale in enumerate(method.scales(model.num_steps)):  # one scale per step (a scale in VAR)
        start, end = model.step_span(step)
        scales[start:end] = scale
    expected = uncond + scales[None, :, None] * (cond - uncond)
    np.testing.assert_allclose(out["guided"], expected, rtol=1e-4, atol=2e-4)


@pytest.mark.parametrize("target", ["v", "k", "kv"])
def test_softcfg_at_strength_zero_is_cfg_bit_for_bit(tiny, target):
    tokens = sample(tiny, CFG, seed=1)
    soft = {**SOFT, "strength": 0.0, "target": target}
    assert torch.equal(sample(tiny, soft, seed=1), tokens)
    forced = replay(tiny.model, parse_method(soft), tiny.conditions, tokens)
    cfg = replay(tiny.model, parse_method(CFG), tiny.conditions, tokens)
    assert np.array_equal(forced["guided"], cfg["guided"])
    perturbed = replay(tiny.model, parse_method({**SOFT, "target": target}), tiny.conditions, tokens)
    assert np.abs(perturbed["guided"] - cfg["guided"]).max() > 1e-3  # the perturbation does something


@pytest.mark.parametrize("target", ["v", "kv"])
def test_softcfg_equals_the_authors_in_place_cache_scaling(tiny, target):
    """Next-token families on the package's cache (Lumina's is sized in prefill: ``cache.kv``); Janus's hook
    is checked against transformers' SDPA on a scaled cache (``test_janus``), next-scale weights against
    their formula (``test_next_scale``)."""
    model = tiny.model
    cache = model.new_cache(1)
    if isinstance(model, NextScaleModel) or not (isinstance(cache, KVCache) or hasattr(cache, "kv")):
        pytest.skip(f"{type(model).__name__}: no in-place cache of the authors' layout")
    tokens = forced_tokens(tiny, seed=1)
    method = parse_method({**SOFT, "target": target})
    ours = replay(model, method, tiny.conditions, tokens)
    with torch.inference_mode():
        cond, guided = _authors_in_place_replay(model, tiny.conditions, tokens, method)
    np.testing.assert_allclose(ours["cond"], cond.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ours["guided"], guided.numpy(), rtol=1e-4, atol=2e-4)


METHODS = {
    "none": {"name": "none"},
    "none-top_k": {"name": "none", "top_k": 8, "temperature": 0.7},
    "cfg-constant": {"name": "cfg", "gamma": 4.0, "schedule": "constant", "top_p": 0.9},
    "cfg-linear": {"name": "cfg", "gamma": 2.0, "schedule": "linear"},
    "cfg-cosine-interval": {**CFG, "interval": [0.0, 0.5]},
    "softcfg-stepnorm": SOFT,
    "softcfg-k-sampled": {**SOFT, "target": "k", "confidence": "cond_sampled"},
    "softcfg-kv-unnormalized": {**SOFT, "target": "kv", "step_norm": False, "strength": 2.0},
}


@pytest.mark.parametrize("method", list(METHODS))
def test_every_guidance_method_samples_valid_seed_determined_tokens(tiny, method):
    tokens = sample(tiny, METHODS[method], seed=2)
    assert tokens.shape == (len(tiny.conditions), tiny.model.num_tokens) and tokens.dtype == torch.long
    assert int(tokens.min()) >= 0 and int(tokens.max()) < tiny.model.vocab_size
    assert torch.equal(sample(tiny, METHODS[method], seed=2), tokens)
    assert not torch.equal(sample(tiny, METHODS[method], seed=3), tokens)
