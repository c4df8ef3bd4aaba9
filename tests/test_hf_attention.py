"""The attention hook (``softcfg.models.hf_attention``) on a transformers decoder other than Janus: a tiny
random Chameleon (the architecture of Lumina-mGPT 2.0) with grouped-query attention. SoftCFG at strength 0
gives CFG's logits bit for bit through the project's loop, and a weighted decode step equals transformers'
own SDPA attention over a cache whose unconditional values / keys were scaled explicitly."""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor

os.environ["HF_HUB_OFFLINE"] = "1"
transformers = pytest.importorskip("transformers")

from softcfg.conditioning import Prompts  # noqa: E402
from softcfg.methods import parse_method  # noqa: E402
from softcfg.models.attention import SlotWeights  # noqa: E402
from softcfg.models.base import ARModel  # noqa: E402
from softcfg.models.hf_attention import softcfg_attention, use_softcfg_attention  # noqa: E402
from softcfg.sampling.loop import generate  # noqa: E402

PROMPT_LEN, NUM_TOKENS, CODEBOOK, NULL_ID = 5, 12, 24, 1


def tiny_chameleon() -> transformers.ChameleonForConditionalGeneration:
    """4 query heads over 2 key/value heads, qk-norm, no image codes in the vocabulary map."""
    torch.manual_seed(0)
    config = transformers.ChameleonConfig(
        vocab_size=40,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocabulary_map={f"tok{i}": i for i in range(40)},
        vq_config={"embed_dim": 4, "num_embeddings": 16, "base_channels": 32, "channel_multiplier": [1, 1]},
    )
    model = transformers.ChameleonForConditionalGeneration(config).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(20.0)  # peaked distributions: confidences (hence weights) far from uniform
    return model


@dataclass
class Cache:
    static: transformers.StaticCache
    mask: Tensor


class DecoderAR(ARModel):
    """A bare ARModel over a transformers causal LM: the prompt fills slots 0..P-1, the first ``CODEBOOK``
    ids of its head stand for the image codebook, the unconditional prompt is all ``NULL_ID``."""

    conditioning = "text"
    num_tokens, vocab_size, prefix_len = NUM_TOKENS, CODEBOOK, PROMPT_LEN

    def __init__(self, lm: transformers.PreTrainedModel) -> None:
        super().__init__()
        self.lm = lm

    def unconditional(self, conditions: Prompts) -> Prompts:
        return Prompts(torch.full_like(conditions.ids, NULL_ID), conditions.mask, ("",) * len(conditions))

    def new_cache(self, batch: int) -> Cache:
        static = transformers.StaticCache(config=self.lm.config, max_cache_len=self.num_slots)
        return Cache(static, torch.ones(batch, self.num_slots, dtype=torch.long))

    def _run(self, ids: Tensor, start: int, cache: Cache, **kwargs) -> Tensor:
        positions = torch.arange(start, start + ids.shape[1])[None]
        out = self.lm(
            input_ids=ids, attention_mask=cache.mask, position_ids=positions, cache=cache.static, **kwargs
        )
        return out.logits[:, -1, : self.vocab_size]

    def prefill(self, conditions: Prompts, cache: Cache) -> Tensor:
        return self._run(conditions.ids, 0, cache)

    def decode(self, tokens: Tensor, index: int, cache: Cache, slot_weights: SlotWeights | None = None):
        slot = self.prefix_len + index
        return self._run(tokens[:, None], slot, cache, slot_weights=slot_weights, visible_slots=slot + 1)


def prompts(batch: int = 2) -> Prompts:
    ids = torch.randint(4, 40, (batch, PROMPT_LEN), generator=torch.Generator().manual_seed(3))
    return Prompts(ids, torch.ones_like(ids, dtype=torch.bool), ("",) * batch)


def run(model: ARModel, method: dict, seed: int = 7) -> tuple[Tensor, list[Tensor]]:
    guided = []
    tokens = generate(
        model,
        prompts(),
        parse_method(method),
        torch.Generator().manual_seed(seed),
        observers=[lambda step, seen, weights: guided.append(seen.guided.clone())],
    )
    return tokens, guided


def test_strength_zero_is_cfg_bit_for_bit_and_strength_one_is_not() -> None:
    model = tiny_chameleon()
    use_softcfg_attention(model)
    ar = DecoderAR(model)
    cfg_tokens, cfg_logits = run(ar, {"name": "cfg", "gamma": 3.0})
    for target in ("v", "k", "kv"):
        tokens, logits = run(ar, {"name": "softcfg", "gamma": 3.0, "strength": 0.0, "target": target})
        assert torch.equal(tokens, cfg_tokens)
        assert all(torch.equal(a, b) for a, b in zip(logits, cfg_logits, strict=True))
    _, soft_logits = run(ar, {"name": "softcfg", "gamma": 3.0})
    assert not torch.allclose(soft_logits[-1], cfg_logits[-1])  # the hook does weight the cache


def scaled_copy(cache: Cache, weights: Tensor, target: str) -> Cache:
    """A copy of the cache whose unconditional rows (the last B_u) have keys / values times ``weights``."""
    scaled = copy.deepcopy(cache)
    rows, slots = weights.shape
    for layer in scaled.static.layers:
        for name, on in (("keys", "k" in target), ("values", "v" in target)):
            if on:
                getattr(layer, name)[-rows:, :, :slots] *= weights[:, None, :, None]
    return scaled


@pytest.mark.parametrize("target", ["v", "k", "kv"])
def test_weighted_step_equals_sdpa_on_a_scaled_cache(target: str) -> None:
    model = tiny_chameleon()
    use_softcfg_attention(model)
    ar = DecoderAR(model)
    conditions = prompts()
    rows = conditions.cat(ar.unconditional(conditions))
    cache = ar.new_cache(len(rows))
    fed = torch.randint(0, CODEBOOK, (len(rows), 4), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ar.prefill(rows, cache)
        for index in range(3):
            ar.decode(fed[:, index], index, cache)
        # step feeding token 3: visible slots are the prompt, tokens 0..2 and the slot written now
        visible = PROMPT_LEN + 4
        weights = torch.ones(len(conditions), visible)
        weights[:, PROMPT_LEN : visible - 1] = torch.rand(len(conditions), 3) * 0.9 + 0.05
        reference_cache = scaled_copy(cache, weights[:, :-1], target)
        plain_cache = copy.deepcopy(cache)
        hooked = ar.decode(fed[:, 3], 3, cache, SlotWeights(weights, target))
        model.set_attn_implementation("sdpa")  # transformers' own attention, no weighting
        explicit = ar.decode(fed[:, 3], 3, reference_cache)
        plain = ar.decode(fed[:, 3], 3, plain_cache)
    torch.testing.assert_close(hooked, explicit, rtol=1e-5, atol=1e-5)
    uncond = slice(len(conditions), None)
    torch.testing.assert_close(hooked[: len(conditions)], plain[: len(conditions)], rtol=1e-5, atol=1e-5)
    assert (hooked[uncond] - plain[uncond]).abs().max() > 1e-2  # the weights did change the uncond rows


@pytest.mark.parametrize("target", ["v", "k", "kv"])
def test_decode_step_equals_attention_over_a_scaled_copy(target: str) -> None:
    """The function alone: 6 query heads on 2 key/value heads, a scaling other than 1/sqrt(hd), a left-padded
    row, unfilled cache positions past the visible slots; against softmax attention written out over
    per-query-head copies of the keys and values, the unconditional rows' copies scaled by the weights."""
    gen = torch.Generator().manual_seed(0)
    rows, heads, kv_heads, head_dim, visible, allocated = 4, 6, 2, 8, 10, 13
    q = torch.randn(rows, heads, 1, head_dim, generator=gen)
    k, v = (torch.randn(rows, kv_heads, allocated, head_dim, generator=gen) for _ in range(2))
    mask = torch.ones(rows, 1, 1, allocated, dtype=torch.bool)
    mask[1, ..., :2] = mask[3, ..., :2] = False  # prompt 1 left-padded by 2, in both its rows
    weights = torch.ones(2, visible)
    weights[:, 3:-1] = torch.rand(2, visible - 4, generator=gen) * 0.9 + 0.05
    out, _ = softcfg_attention(
        torch.nn.Module(), q, k, v, mask, scaling=0.3, slot_weights=SlotWeights(weights, target)
    )

    keys = k[:, :, :visible].repeat_interleave(heads // kv_heads, dim=1)
    values = v[:, :, :visible].repeat_interleave(heads // kv_heads, dim=1)
    row_weights = torch.cat([torch.ones(2, visible), weights])[:, None, :, None]
    keys = keys * row_weights if "k" in target else keys
    values = values * row_weights if "v" in target else values
    scores = (0.3 * q @ keys.transpose(-1, -2)).masked_fill(~mask[..., :visible], float("-inf"))
    expected = (torch.softmax(scores, dim=-1) @ values).transpose(1, 2)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
