"""The static-shape decode step (``softcfg.models.static_decode``) against the eager one, per family:
the same tokens for a fixed seed, the same logits within float tolerance, and the masked whole-cache
attention against attention over an explicitly weighted copy of the visible slots."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import random_digits_model
from softcfg.conditioning import ClassLabels
from softcfg.config import parse_model
from softcfg.methods import parse_method
from softcfg.models.alitok import AliTok, AliTokConfig
from softcfg.models.attention import static_decode_attention
from softcfg.models.base import ARModel
from softcfg.models.digits import save_digits_ar
from softcfg.models.llamagen import LlamaGen, LlamaGenConfig
from softcfg.models.loading import load_model
from softcfg.models.rar import RAR, RARConfig
from softcfg.models.static_decode import enable_static_decode
from softcfg.options import ConfigError
from softcfg.sampling.loop import generate
from softcfg.sampling.replay import replay


def tiny(family: str) -> ARModel:
    """A small random model of each family with static decode, sharpened heads (peaked distributions)."""
    torch.manual_seed(0)
    if family == "digits":
        return random_digits_model()
    model = {
        "alitok": lambda: AliTok(AliTokConfig(64, 2, 4)),
        "llamagen": lambda: LlamaGen(LlamaGenConfig(96, 2, 12, image_size=128, codebook=512)),
        "rar": lambda: RAR(RARConfig(64, 2, 128, 4)),
    }[family]()
    with torch.no_grad():
        if family == "rar":  # upstream initialises the modulations and cls token to zero: randomise all
            for p in model.parameters():
                p.normal_(0, 0.05)
        head = {"alitok": "output", "llamagen": "output", "rar": "lm_head"}[family]
        getattr(model.generator, head).weight.mul_(20.0)
    return model.eval()


METHODS = {
    "cfg": {"name": "cfg", "gamma": 3.0, "k": 1.0},
    "softcfg-v": {"name": "softcfg", "gamma": 3.0, "k": 1.0},
    "softcfg-kv-unnormalized": {"name": "softcfg", "gamma": 3.0, "target": "kv", "step_norm": False},
}


@pytest.mark.parametrize("family", ["digits", "alitok", "llamagen", "rar"])
@pytest.mark.parametrize("method", list(METHODS))
def test_static_step_samples_the_eager_tokens(family, method):
    m = parse_method(METHODS[method])
    labels = ClassLabels(torch.tensor([1, 7, 3]))
    eager = generate(tiny(family), labels, m, torch.Generator().manual_seed(5))
    static = generate(
        enable_static_decode(tiny(family), "static"), labels, m, torch.Generator().manual_seed(5)
    )
    assert torch.equal(static, eager)
    assert len(torch.unique(eager)) > 3  # a real sample, not one repeated token


@pytest.mark.parametrize("bucket", [1, 7, 1000])
def test_any_slot_bucket_gives_the_eager_tokens(bucket):
    """Attention over exactly the visible slots (1), odd buckets (7), the whole cache (1000 > 64)."""
    m = parse_method(METHODS["softcfg-kv-unnormalized"])
    labels = ClassLabels(torch.tensor([4, 9]))
    eager = generate(tiny("digits"), labels, m, torch.Generator().manual_seed(2))
    static = enable_static_decode(tiny("digits"), "static", bucket)
    assert torch.equal(generate(static, labels, m, torch.Generator().manual_seed(2)), eager)


@pytest.mark.parametrize("family", ["digits", "alitok", "rar"])
def test_static_step_gives_the_eager_logits_and_weights(family):
    """Teacher-forced replay of random tokens: every step's logits within float32 rounding of eager."""
    model = tiny(family)
    labels = ClassLabels(torch.tensor([0, 4]))
    tokens = torch.randint(
        0, model.vocab_size, (2, model.num_tokens), generator=torch.Generator().manual_seed(1)
    )
    m = parse_method({**METHODS["softcfg-v"], "target": "k"})
    a = replay(model, m, labels, tokens)
    b = replay(enable_static_decode(tiny(family), "static"), m, labels, tokens)
    for key in ("cond", "uncond", "guided"):
        np.testing.assert_allclose(b[key], a[key], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(b["weights"], a["weights"], rtol=1e-5)  # from the confidences


@pytest.mark.parametrize("target", ["v", "k", "kv"])
def test_masked_attention_equals_attention_over_a_weighted_copy_of_the_visible_slots(target):
    """The reference: scale a copy of the visible keys / values of the weighted rows, then plain softmax
    attention; slots past the visible ones hold garbage that must not matter."""
    gen = torch.Generator().manual_seed(0)
    n, h, slots, hd, visible, weighted = 4, 2, 9, 8, 5, 2
    q, k, v = (torch.randn(n, h, s, hd, generator=gen) for s in (1, slots, slots))
    k[:, :, visible:], v[:, :, visible:] = 1e4, 7e3
    w = torch.rand(weighted, slots, generator=gen) + 0.05
    got = static_decode_attention(q, k, v, torch.arange(slots) < visible, w, target)
    kk, vv = k[:, :, :visible].clone(), v[:, :, :visible].clone()
    scale = w[:, None, :visible, None]
    if "k" in target:
        kk[n - weighted :] *= scale
    scores = (q @ kk.transpose(-1, -2)) / math.sqrt(hd)
    probs = torch.softmax(scores, -1)
    if "v" in target:  # the probabilities weighted, not renormalised: attention to a scaled value
        vv[n - weighted :] *= scale
    torch.testing.assert_close(got, probs @ vv, rtol=1e-5, atol=1e-5)


def test_bf16_static_step_keeps_the_eager_tokens_with_float32_weights():
    """bf16 weights and cache, SoftCFG weighting in float32 on both paths: the same tokens."""
    m = parse_method(METHODS["softcfg-v"])
    labels = ClassLabels(torch.tensor([2, 5]))
    eager = generate(tiny("alitok").bfloat16(), labels, m, torch.Generator().manual_seed(3))
    static = enable_static_decode(tiny("alitok").bfloat16(), "static")
    assert torch.equal(generate(static, labels, m, torch.Generator().manual_seed(3)), eager)


def test_compile_option_keeps_old_values_and_hashes(tmp_path):
    entry = {"family": "digits", "checkpoint": "x.pt"}
    assert parse_model({**entry, "compile": "off"}, check_files=False).compile is False
    assert parse_model({**entry, "compile": "dynamic"}, check_files=False).compile is True
    assert parse_model({**entry, "compile": True}, check_files=False).model_dump()["compile"] is True
    assert parse_model({**entry, "compile": "captured"}, check_files=False).compile == "captured"
    with pytest.raises(ConfigError, match=r"model\.compile: expected false \| true \| off"):
        parse_model({**entry, "compile": "cuda-graph"}, check_files=False)


def test_entry_modes_load_the_static_step_and_keep_the_tokens(tmp_path):
    """`compile: static` and `captured` (uncaptured without CUDA) through load_model, bf16 with float32
    unconditional rows too (each row group's step is static), and without unconditional rows."""
    path = tmp_path / "digits.pt"
    save_digits_ar(random_digits_model(), path)
    labels = ClassLabels(torch.tensor([1, 2, 3]))
    for method, extra in (
        ("softcfg-v", {}),
        ("softcfg-v", {"dtype": "bf16", "uncond_fp32": True}),
        ("none", {}),
    ):
        m = parse_method(METHODS.get(method, {"name": method}))
        entry = {"family": "digits", "checkpoint": str(path), **extra}
        eager = generate(load_model(parse_model(entry)), labels, m, torch.Generator().manual_seed(0))
        for mode in ("static", "captured"):
            model = load_model(parse_model({**entry, "compile": mode}))
            assert torch.equal(generate(model, labels, m, torch.Generator().manual_seed(0)), eager)


def test_a_family_without_static_step_is_refused_by_name():
    class Plain(ARModel):
        pass

    with pytest.raises(ConfigError, match=r"model\.compile: Plain has no static decode step"):
        enable_static_decode(Plain(), "captured")


@pytest.mark.slow
@pytest.mark.parametrize("family", ["digits", "llamagen"])
def test_compiled_static_step_samples_the_eager_tokens(family):
    """torch.compile of the static step (inductor on CPU, ~1 min per family here)."""
    m = parse_method(METHODS["softcfg-kv-unnormalized"])
    labels = ClassLabels(torch.tensor([1, 2]))
    eager = generate(tiny(family), labels, m, torch.Generator().manual_seed(0))
    compiled = enable_static_decode(tiny(family), "compiled")
    assert torch.equal(generate(compiled, labels, m, torch.Generator().manual_seed(0)), eager)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
@pytest.mark.parametrize("mode", ["captured", "compiled"])
def test_captured_step_on_cuda_samples_the_eager_tokens_and_reuses_its_graph(mode):
    m = parse_method(METHODS["softcfg-v"])
    labels = ClassLabels(torch.tensor([1, 2, 3], device="cuda"))
    eager = generate(tiny("alitok").cuda(), labels, m, torch.Generator("cuda").manual_seed(0))
    model = enable_static_decode(tiny("alitok").cuda(), mode)
    for _ in range(2):  # the second generation replays the first one's graph on the same cache
        assert torch.equal(generate(model, labels, m, torch.Generator("cuda").manual_seed(0)), eager)
    assert len(model.decode.graphs) == 9  # slot buckets 32, 64, .., 256 and the cache length 273
