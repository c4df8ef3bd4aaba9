"""The contract every model family keeps with the generation loop, on a tiny model of each registered
family (``tests/families.py``): cached steps equal the teacher-forced pass, CFG is ``l_u + s (l_c - l_u)``
of those passes, SoftCFG at strength 0 is CFG bit for bit and at strength 1 is not, SoftCFG equals the
authors' in-place scaling of the stored unconditional cache, and every guidance method samples valid,
seed-determined tokens: the checks of ``softcfg.testing``, which a plugin family's tests call too.
Family files keep what is their own (key layouts, upstream formulas, decoders)."""

from __future__ import annotations

import pytest

from families import BUILDERS, Tiny
from softcfg import testing
from softcfg.models.registry import _BUILTIN


def test_every_builtin_family_has_a_tiny_model():
    assert set(BUILDERS) == {family.name for family in _BUILTIN}


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def tiny(request, tmp_path_factory) -> Tiny:
    return BUILDERS[request.param](tmp_path_factory.mktemp(request.param))


def test_cached_steps_equal_the_teacher_forced_pass_and_cfg_combines_them(tiny):
    testing.check_cached_steps(
        tiny.model, tiny.conditions, testing.random_tokens(tiny.model, len(tiny.conditions))
    )


@pytest.mark.parametrize("target", ["v", "k", "kv"])
def test_softcfg_at_strength_zero_is_cfg_bit_for_bit(tiny, target):
    testing.check_softcfg_strength_zero(tiny.model, tiny.conditions, target)


@pytest.mark.parametrize("target", ["v", "kv"])
def test_softcfg_equals_the_authors_in_place_cache_scaling(tiny, target):
    """Next-token families on the package's cache (Lumina's is sized in prefill: ``cache.kv``); Janus's hook
    is checked against transformers' SDPA on a scaled cache (``test_janus``), next-scale weights against
    their formula (``test_next_scale``)."""
    if not testing.has_package_cache(tiny.model):
        pytest.skip(f"{type(tiny.model).__name__}: no in-place cache of the authors' layout")
    tokens = testing.random_tokens(tiny.model, len(tiny.conditions), seed=1)
    testing.check_softcfg_scaled_cache(tiny.model, tiny.conditions, tokens, target)


@pytest.mark.parametrize("method", list(testing.METHODS))
def test_every_guidance_method_samples_valid_seed_determined_tokens(tiny, method):
    testing.check_methods_sample(tiny.model, tiny.conditions, {method: testing.METHODS[method]})
