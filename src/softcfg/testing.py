"""The contract a model family keeps with the generation loop, as checks a family's own tests call.

A family plugged in from outside (entry point ``softcfg.models``) runs these on a small random-weight
model of its architecture, as the package's tests do on every built-in family
(``tests/test_family_contract.py``):

- ``check_cached_steps``: cached decode steps equal the teacher-forced pass, and CFG's guided logits are
  ``l_u + s (l_c - l_u)`` of those passes, step by step;
- ``check_softcfg_strength_zero``: SoftCFG at strength 0 samples and replays exactly as CFG, and at
  strength 1 it perturbs the guided logits;
- ``check_softcfg_scaled_cache``: SoftCFG equals the authors' way, the stored unconditional cache scaled in
  place by ``W_t / W_{t-1}`` at every step (weights and confidences written here from the paper, not
  from ``softcfg.guidance``), for a family whose cache has the package's ``KVCache`` layout;
- ``check_methods_sample``: every built-in method draws valid tokens determined by the seed.

Each raises ``AssertionError`` naming what differs. Imports torch and numpy.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from softcfg.conditioning import Conditions
from softcfg.methods import parse_method
from softcfg.methods.softcfg import SoftCFG
from softcfg.models.attention import KVCache
from softcfg.models.base import ARModel, NextScaleModel
from softcfg.sampling.loop import generate
from softcfg.sampling.replay import replay

CFG = {"name": "cfg", "gamma": 3.0, "k": 1.0}
SOFT = {"name": "softcfg", "gamma": 3.0, "k": 1.0}
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


def random_tokens(model: ARModel, batch: int, seed: int = 0) -> Tensor:
    """Tokens [batch, num_tokens] uniform over the model's vocabulary, from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, model.vocab_size, (batch, model.num_tokens), generator=generator)


def sample(model: ARModel, conditions: Conditions, method: dict, seed: int = 0) -> Tensor:
    with torch.inference_mode():
        return generate(model, conditions, parse_method(method), torch.Generator().manual_seed(seed))


def check_cached_steps(model: ARModel, conditions: Conditions, tokens: Tensor, tol: float = 1e-4) -> None:
    """Cached steps (replay) equal the teacher-forced passes of both rows, and CFG combines them."""
    method = parse_method(CFG)
    out = replay(model, method, conditions, tokens)
    with torch.inference_mode():
        cond = model(conditions, tokens).float().numpy()
        uncond = model(model.unconditional(conditions), tokens).float().numpy()
    np.testing.assert_allclose(out["cond"], cond, rtol=tol, atol=tol, err_msg="cached cond != forward")
    np.testing.assert_allclose(out["uncond"], uncond, rtol=tol, atol=tol, err_msg="cached uncond != forward")
    scales = np.ones(model.num_tokens)
    for step, scale in enumerate(method.scales(model.num_steps)):  # one scale per step (a scale in VAR)
        start, end = model.step_span(step)
        scales[start:end] = scale
    expected = uncond + scales[None, :, None] * (cond - uncond)
    np.testing.assert_allclose(out["guided"], expected, rtol=tol, atol=2 * tol, err_msg="CFG combination")


def check_softcfg_strength_zero(model: ARModel, conditions: Conditions, target: str, seed: int = 1) -> None:
    """SoftCFG at strength 0 is CFG bit for bit (sampled tokens and replayed logits); at strength 1 its
    guided logits differ by more than 1e-3."""
    tokens = sample(model, conditions, CFG, seed)
    soft = {**SOFT, "strength": 0.0, "target": target}
    assert torch.equal(sample(model, conditions, soft, seed), tokens), f"strength 0 ({target}) sampled != CFG"
    forced = replay(model, parse_method(soft), conditions, tokens)
    cfg = replay(model, parse_method(CFG), conditions, tokens)
    assert np.array_equal(forced["guided"], cfg["guided"]), f"strength 0 ({target}) logits != CFG"
    perturbed = replay(model, parse_method({**SOFT, "target": target}), conditions, tokens)
    assert np.abs(perturbed["guided"] - cfg["guided"]).max() > 1e-3, f"SoftCFG ({target}) changes nothing"


def paper_weights(q: Tensor, method: SoftCFG) -> Tensor:
    """SoftCFG's weights of the visible confidences ``q`` as the paper and the authors' samplers write
    them: step-normalised ``max(floor, (1 - q / (sum q + eps)) ^ strength)``, else ``(1 - q) ^ strength``."""
    if method.step_norm:
        return torch.clamp(
            (1 - q / (q.sum(-1, keepdim=True) + method.eps)) ** method.strength, min=method.floor
        )
    return (1 - q) ** method.strength


def paper_confidence(cond: Tensor, token: Tensor, kind: str) -> Tensor:
    """The conditional distribution's top probability (``cond_max``) or that of the sampled token."""
    probs = torch.softmax(cond.double(), -1)
    return probs.amax(-1) if kind == "cond_max" else probs.gather(-1, token[:, None])[:, 0]


def authors_in_place_replay(
    model: ARModel, conditions: Conditions, tokens: Tensor, method: SoftCFG
) -> tuple[Tensor, Tensor]:
    """(cond, guided) logits [B, T, V] of a teacher-forced SoftCFG pass the authors' way: the stored
    unconditional cache scaled in place by ``W_t / W_{t-1}`` every step."""
    batch = len(conditions)
    rows = conditions.cat(model.unconditional(conditions))
    cache = model.new_cache(2 * batch)
    q = torch.zeros(batch, model.num_tokens)
    previous = torch.ones(batch, 0)
    cond_steps, guided_steps = [], []
    scales = method.scales(model.num_tokens)
    logits = model.prefill(rows, cache)
    stored = getattr(cache, "kv", cache)  # a family that sizes its KVCache in prefill keeps it as ``kv``
    for t in range(model.num_tokens):
        if t > 0:
            target = paper_weights(q[:, 1:t], method)
            ratio = target.clone()
            ratio[:, : previous.shape[1]] /= previous
            first = model.prediction_slot(1)
            slots = slice(first, first + t - 1)
            factor = ratio[None, :, None, :, None]  # [layers, B, H, slots, hd]
            if "v" in method.target:
                stored.v[:, batch:, :, slots] *= factor
            if "k" in method.target:
                stored.k[:, batch:, :, slots] *= factor
            previous = target
            logits = model.decode(tokens[:, t - 1].repeat(2), t - 1, cache)
        cond, uncond = logits.chunk(2)
        guided = uncond + scales[t] * (cond - uncond)
        q[:, t] = paper_confidence(cond, tokens[:, t], method.confidence).float()
        cond_steps.append(cond)
        guided_steps.append(guided)
    return torch.stack(cond_steps, 1), torch.stack(guided_steps, 1)


def has_package_cache(model: ARModel) -> bool:
    """Whether ``check_softcfg_scaled_cache`` applies: a next-token model whose cache is a ``KVCache``
    (or holds one as ``kv``, allocated in prefill)."""
    cache = model.new_cache(1)
    return not isinstance(model, NextScaleModel) and (isinstance(cache, KVCache) or hasattr(cache, "kv"))


def check_softcfg_scaled_cache(
    model: ARModel, conditions: Conditions, tokens: Tensor, target: str, tol: float = 1e-4
) -> None:
    """SoftCFG's replayed logits equal ``authors_in_place_replay``'s (the weights applied at attention
    time equal an explicitly scaled cache)."""
    method = parse_method({**SOFT, "target": target})
    ours = replay(model, method, conditions, tokens)
    with torch.inference_mode():
        cond, guided = authors_in_place_replay(model, conditions, tokens, method)
    np.testing.assert_allclose(ours["cond"], cond.numpy(), rtol=tol, atol=tol, err_msg="cond")
    np.testing.assert_allclose(ours["guided"], guided.numpy(), rtol=tol, atol=2 * tol, err_msg=target)


def check_methods_sample(model: ARModel, conditions: Conditions, methods: dict[str, dict] = METHODS) -> None:
    """Every method draws tokens of the right shape and range, the same for the same seed and not for
    another."""
    for name, method in methods.items():
        tokens = sample(model, conditions, method, seed=2)
        assert tokens.shape == (len(conditions), model.num_tokens) and tokens.dtype == torch.long, name
        assert int(tokens.min()) >= 0 and int(tokens.max()) < model.vocab_size, name
        assert torch.equal(sample(model, conditions, method, seed=2), tokens), f"{name}: not seed-determined"
        assert not torch.equal(sample(model, conditions, method, seed=3), tokens), f"{name}: seed ignored"
