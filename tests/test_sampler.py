"""The KV-cached next-token loop on a random-weight digits model, against independent computations."""

import numpy as np
import pytest
import torch

from softcfg.conditioning import ClassLabels
from softcfg.methods import parse_method
from softcfg.sampling.diagnostics import StepDiagnostics
from softcfg.sampling.loop import generate
from softcfg.sampling.replay import replay
from softcfg.testing import authors_in_place_replay, paper_weights

SOFT = {"name": "softcfg", "gamma": 3.0, "k": 1.0}


def _tokens(model, batch=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, model.vocab_size, (batch, model.num_tokens), generator=g)
    return tokens, ClassLabels(torch.arange(batch) % 10)


def test_cached_decode_equals_full_forward(model):
    tokens, labels = _tokens(model)
    full = model(labels, tokens)
    out = replay(model, parse_method({"name": "none"}), labels, tokens)
    np.testing.assert_allclose(out["cond"], full.detach().numpy(), rtol=1e-4, atol=1e-4)
    assert np.isnan(out["uncond"]).all()


def test_cfg_replay_is_the_cfg_of_uncached_passes(model):
    tokens, labels = _tokens(model)
    method = parse_method({"name": "cfg", "gamma": 2.5, "k": 1.5})
    out = replay(model, method, labels, tokens)
    cond = model(labels, tokens).detach().numpy()
    uncond = model(ClassLabels(torch.full_like(labels.labels, model.null_class)), tokens).detach().numpy()
    scales = np.array(method.scales(model.num_tokens))[None, :, None]
    np.testing.assert_allclose(out["uncond"], uncond, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out["guided"], uncond + scales * (cond - uncond), rtol=1e-4, atol=2e-4)


def test_softcfg_strength_zero_reproduces_cfg_exactly(model):
    tokens, labels = _tokens(model)
    cfg = replay(model, parse_method({"name": "cfg", "gamma": 3.0, "k": 1.0}), labels, tokens)
    for target in ("v", "k", "kv"):
        soft = replay(model, parse_method({**SOFT, "strength": 0.0, "target": target}), labels, tokens)
        for name in ("cond", "uncond", "guided"):
            assert np.array_equal(soft[name], cfg[name]), (target, name)


@pytest.mark.parametrize(
    ("target", "confidence", "step_norm", "strength"),
    [
        ("v", "cond_max", True, 1.0),
        ("k", "cond_max", True, 1.0),
        ("kv", "cond_sampled", True, 1.0),
        ("v", "cond_sampled", True, 0.5),
        ("v", "cond_max", False, 1.0),
        ("kv", "cond_sampled", False, 2.0),
    ],
)
def test_softcfg_equals_authors_in_place_cache_scaling(model, target, confidence, step_norm, strength):
    tokens, labels = _tokens(model, batch=3, seed=1)
    options = {"target": target, "confidence": confidence, "step_norm": step_norm, "strength": strength}
    method = parse_method({**SOFT, **options})
    ours = replay(model, method, labels, tokens)
    with torch.inference_mode():
        cond, guided = authors_in_place_replay(model, labels, tokens, method)
    np.testing.assert_allclose(ours["guided"], guided.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ours["cond"], cond.numpy(), rtol=1e-4, atol=1e-4)
    cfg = replay(model, parse_method({"name": "cfg", "gamma": 3.0, "k": 1.0}), labels, tokens)
    assert np.abs(ours["guided"] - cfg["guided"]).max() > 1e-2  # the perturbation does something


def test_replay_weights_follow_step_normalization(model):
    tokens, labels = _tokens(model, batch=2)
    out = replay(model, parse_method(SOFT), labels, tokens)
    cond = torch.from_numpy(out["cond"])
    q = torch.softmax(cond, -1).amax(-1)  # cond_max, computed here from the replayed logits
    for t in (2, 10, 63):
        expected = paper_weights(q[:, 1:t], parse_method(SOFT))
        np.testing.assert_allclose(out["weights"][:, t, 1:t], expected.numpy(), rtol=1e-5)
        assert (out["weights"][:, t, t:] == 1).all() and (out["weights"][:, t, 0] == 1).all()


def test_none_runs_a_single_batch(model):
    seen = []
    original = model.decode

    def spy(tokens, index, cache, slot_weights=None):
        seen.append(tokens.shape[0])
        return original(tokens, index, cache, slot_weights)

    model.decode = spy
    generate(
        model, ClassLabels(torch.arange(5)), parse_method({"name": "none"}), torch.Generator().manual_seed(0)
    )
    assert set(seen) == {5}
    seen.clear()
    generate(model, ClassLabels(torch.arange(5)), parse_method(SOFT), torch.Generator().manual_seed(0))
    assert set(seen) == {10}


def test_sampling_is_deterministic_and_diagnostics_are_consistent(model):
    labels = ClassLabels(torch.arange(6) % 10)
    diag = StepDiagnostics(model.num_tokens)
    method = parse_method(SOFT)
    a = generate(model, labels, method, torch.Generator().manual_seed(7), [diag])
    b = generate(model, labels, method, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    d = diag.as_dict()
    assert all(0 <= x <= 1 for x in d["entropy_cond"] + d["entropy_uncond"] + d["entropy_guided"])
    assert np.isnan(d["weight_min"][:2]).all() and not np.isnan(d["weight_min"][2:]).any()
    assert all(lo <= m <= 1 for lo, m in zip(d["weight_min"][2:], d["weight_mean"][2:], strict=True))
    # the guided entropy recomputed from a teacher-forced replay of the sampled tokens
    out = replay(model, method, labels, a)
    g = torch.from_numpy(out["guided"])
    ent = (torch.special.entr(torch.softmax(g, -1)).sum(-1) / np.log(model.vocab_size)).mean(0)
    np.testing.assert_allclose(d["entropy_guided"], ent.numpy(), rtol=1e-4, atol=1e-5)
    signal = torch.from_numpy(out["cond"] - out["uncond"])  # the guidance signal's distribution
    ent = (torch.special.entr(torch.softmax(signal, -1)).sum(-1) / np.log(model.vocab_size)).mean(0)
    np.testing.assert_allclose(d["entropy_signal"], ent.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_compiled_decode_step_gives_the_eager_logits(tmp_path, checkpoint):
    """`compile: true` wraps the decode step in torch.compile (dynamic shapes); same numbers, CPU too."""
    from softcfg.config import parse_model
    from softcfg.models.loading import load_model

    entry = {"family": "digits", "checkpoint": str(checkpoint)}
    eager, compiled = load_model(parse_model(entry)), load_model(parse_model({**entry, "compile": True}))
    labels = ClassLabels(torch.tensor([1, 2]))
    tokens = torch.randint(0, 17, (2, 64), generator=torch.Generator().manual_seed(0))
    method = parse_method({"name": "softcfg", "gamma": 3.0, "k": 1.0})
    a, b = replay(eager, method, labels, tokens), replay(compiled, method, labels, tokens)
    for key in ("cond", "uncond", "guided"):
        np.testing.assert_allclose(b[key], a[key], rtol=1e-4, atol=1e-4)
