"""Attention-time SoftCFG weighting equals attention over an explicitly scaled copy of the cache."""

import math

import pytest
import torch

from softcfg.models.attention import KVCache, SlotWeights, decode_attention


def _plain_attention(q, k, v):
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    return torch.softmax(scores, -1) @ v


@pytest.mark.parametrize("target", ["v", "k", "kv"])
def test_weighting_equals_scaled_cache_copy(target):
    g = torch.Generator().manual_seed(0)
    batch, heads, slots, hd = 3, 4, 20, 16
    q = torch.randn(2 * batch, heads, 1, hd, generator=g, dtype=torch.float64)
    k = torch.randn(2 * batch, heads, slots, hd, generator=g, dtype=torch.float64)
    v = torch.randn(2 * batch, heads, slots, hd, generator=g, dtype=torch.float64)
    w = torch.rand(batch, slots, generator=g, dtype=torch.float64)

    k_scaled, v_scaled = k.clone(), v.clone()
    scale = w[:, None, :, None]  # uncond rows only, every head, per slot
    if "k" in target:
        k_scaled[batch:] *= scale
    if "v" in target:
        v_scaled[batch:] *= scale
    expected = _plain_attention(q, k_scaled, v_scaled)

    got = decode_attention(q, k, v, SlotWeights(w, target))
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got[:batch], _plain_attention(q, k, v)[:batch])  # cond rows untouched


def test_no_weights_is_plain_attention():
    q, k, v = torch.randn(2, 2, 1, 8), torch.randn(2, 2, 5, 8), torch.randn(2, 2, 5, 8)
    torch.testing.assert_close(decode_attention(q, k, v), _plain_attention(q, k, v))


def test_cache_writes_by_slot_and_refuses_overflow():
    cache = KVCache(1, 2, 1, 3, 4, torch.float32, "cpu")
    k = torch.ones(2, 1, 2, 4)
    keys, _ = cache.write(0, k, k)
    cache.advance(2)
    assert keys.shape == (2, 1, 2, 4) and cache.k[0, :, :, 2].abs().sum() == 0
    with pytest.raises(ValueError, match="overflow"):
        cache.write(0, k, k)
