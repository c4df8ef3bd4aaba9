"""SoftCFG in bf16: the weights multiply in float32, and the perturbation of the unconditional logits
stays close to its float32 value once the unconditional rows run in float32 (``UncondFloat32``)."""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import pytest
import torch
from torch.overrides import TorchFunctionMode

from softcfg.conditioning import ClassLabels
from softcfg.models.alitok import AliTok, AliTokConfig
from softcfg.models.attention import SlotWeights, decode_attention
from softcfg.models.precision import UncondFloat32

MULTIPLICATIONS = {"mul", "mul_", "__mul__", "__rmul__", "__imul__"}


class WeightSpy(TorchFunctionMode):
    """Records the operands of every multiplication by a tensor shaped like the broadcast weights."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = shape
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in MULTIPLICATIONS and len(args) == 2:
            a, b = args
            if isinstance(b, torch.Tensor) and tuple(b.shape) == self.shape:
                self.seen.append((a, b))
            elif isinstance(a, torch.Tensor) and tuple(a.shape) == self.shape:
                self.seen.append((b, a))
        return func(*args, **(kwargs or {}))


def late_weights(batch: int, slots: int, generator: torch.Generator) -> torch.Tensor:
    """Step-normalized weights of ~270 visible tokens: all within 2^-8 of 1, where bf16 is coarsest."""
    q = torch.rand(batch, slots, generator=generator, dtype=torch.float64) * 0.8 + 0.1
    w = 1 - q / (q.sum(-1, keepdim=True) + 1e-5)
    w[:, 0] = 1.0  # the class slot
    return w.float()


@pytest.mark.parametrize("target", ["v", "k", "kv"])
def test_bf16_weights_multiply_in_float32(target):
    g = torch.Generator().manual_seed(0)
    batch, heads, slots, hd = 2, 3, 272, 16
    q, k, v = (torch.randn(2 * batch, heads, n, hd, generator=g).bfloat16() for n in (1, slots, slots))
    w = late_weights(batch, slots, g)
    budget = (1 - w.double()).sum(-1)  # about 1 per row
    assert (w.bfloat16().float() != w).float().mean() > 0.9  # a cast would change nearly every weight
    cast_budget = (1 - w.bfloat16().double()).sum(-1)
    assert ((cast_budget - budget).abs() / budget).max() > 0.01  # ... and the budget by more than 1 %

    spy = WeightSpy((batch, 1, 1, slots))
    with spy:
        out = decode_attention(q, k, v, SlotWeights(w, target))
    assert len(spy.seen) == len(target)  # once on the scores (k), once on the probabilities (v)
    for operand, applied in spy.seen:
        applied_budget = (1 - applied[:, 0, 0].double()).sum(-1)
        torch.testing.assert_close(applied_budget, budget, rtol=0, atol=1e-6)
        assert operand.dtype == torch.float32 and applied.dtype == torch.float32

    # the output: float32 attention on the upcast bf16 inputs, over an explicitly scaled cache copy
    q32, k32, v32 = q.double(), k.double(), v.double()
    scale = w.double()[:, None, :, None]
    if "k" in target:
        k32[batch:] *= scale
    if "v" in target:
        v32[batch:] *= scale
    expected = torch.softmax(q32 @ k32.transpose(-1, -2) / math.sqrt(hd), -1) @ v32
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.double(), expected, rtol=0, atol=2e-2)


def _uncond_logits(model, labels: torch.Tensor, tokens: torch.Tensor, soft: bool) -> torch.Tensor:
    """Teacher-forced [cond; uncond] pass with step-normalized SoftCFG weights on values (cond_max
    confidences, floor 0.05, eps 1e-5) or none (CFG); returns the uncond logits [B, T, V] in float32."""
    batch, steps = tokens.shape
    cache = model.new_cache(2 * batch)
    logits = model.prefill(ClassLabels(torch.cat([labels, torch.full_like(labels, model.null_class)])), cache)
    conf = torch.zeros(batch, steps)
    out = torch.empty(batch, steps, model.vocab_size)
    for step in range(steps):
        if step > 0:
            weights = None
            if soft:
                slots = torch.ones(batch, step + 1)  # class slot, then the slots of tokens 0..step-1
                if step >= 2:  # the slot of token i is i + 1; token 0 keeps weight 1
                    c = conf[:, 1:step]
                    slots[:, 2 : step + 1] = (1 - c / (c.sum(-1, keepdim=True) + 1e-5)).clamp_min(0.05)
                weights = SlotWeights(slots, "v")
            logits = model.decode(tokens[:, step - 1].repeat(2), step - 1, cache, weights)
        cond, uncond = logits.float().chunk(2)
        conf[:, step] = torch.softmax(cond, -1).max(-1).values
        out[:, step] = uncond
    return out


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: a few hundred tiny decode steps, where thread hand-offs (on a busy machine,
    spinning) would cost far more than the arithmetic."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def sharp_alitok():
    """A small random AliTok (dims 64 / depth 2 / heads 2, the real 273 tokens and 4096 codes) in bf16,
    its head scaled up so confidences are far from uniform, and a float32 copy of the same weights."""
    torch.manual_seed(0)
    model = AliTok(AliTokConfig(dim=64, depth=2, heads=2))
    with torch.no_grad():
        model.generator.output.weight.mul_(8.0)
    low = model.bfloat16().eval()
    return low, copy.deepcopy(low).float()


@torch.inference_mode()
def test_bf16_perturbation_close_to_float32_with_float32_uncond_rows(sharp_alitok):
    low, reference = sharp_alitok
    g = torch.Generator().manual_seed(1)
    labels = torch.tensor([3, 512])
    tokens = torch.randint(0, low.vocab_size, (2, low.num_tokens), generator=g)

    def error(model) -> torch.Tensor:  # ||D - D_fp32|| / ||D_fp32|| per step, D = SoftCFG - CFG uncond
        delta = _uncond_logits(model, labels, tokens, True) - _uncond_logits(model, labels, tokens, False)
        return (delta - ref).norm(dim=(0, 2)) / ref.norm(dim=(0, 2))

    ref = _uncond_logits(reference, labels, tokens, True) - _uncond_logits(reference, labels, tokens, False)
    fixed, plain = error(UncondFloat32(low))[2:], error(low)[2:]
    # measured: fixed at most ~1 % at any step (q comes from bf16 cond logits); plain bf16 ~100 % late
    assert fixed.max() < 0.05, fixed.max()
    assert plain[-32:].mean() > 0.3, plain[-32:].mean()  # the plain bf16 model loses it


@torch.inference_mode()
def test_float32_uncond_rows_split_the_batch(sharp_alitok):
    low, reference = sharp_alitok
    model = UncondFloat32(low)
    labels = torch.tensor([3, 7, low.null_class, low.null_class])
    tokens = torch.randint(0, low.vocab_size, (4, 5), generator=torch.Generator().manual_seed(2))
    cache, low_cache, ref_cache = model.new_cache(4), low.new_cache(2), reference.new_cache(2)
    got = [model.prefill(ClassLabels(labels), cache)]
    cond = [low.prefill(ClassLabels(labels[:2]), low_cache)]
    uncond = [reference.prefill(ClassLabels(labels[2:]), ref_cache)]
    w = SlotWeights(torch.tensor([[1.0, 0.9], [1.0, 0.7]]), "kv")
    got.append(model.decode(tokens[:, 0], 0, cache, w))
    cond.append(low.decode(tokens[:2, 0], 0, low_cache))
    uncond.append(reference.decode(tokens[2:, 0], 0, ref_cache, w))
    for g, c, u in zip(got, cond, uncond, strict=True):
        assert g.dtype == torch.float32
        torch.testing.assert_close(g[:2], c.float(), rtol=0, atol=0)  # conditional rows: the bf16 model
        torch.testing.assert_close(g[2:], u, rtol=1e-5, atol=1e-5)  # unconditional rows: float32
    with pytest.raises(ValueError, match="must come last"):
        model.prefill(ClassLabels(labels.flip(0)), model.new_cache(4))


def test_load_model_runs_uncond_rows_in_float32_when_asked(tmp_path):
    from softcfg.models.loading import load_model

    torch.manual_seed(0)
    checkpoint = tmp_path / "alitok.bin"
    torch.save(AliTok(AliTokConfig(dim=32, depth=1, heads=2)).generator.state_dict(), checkpoint)
    fields = dict(family="alitok", checkpoint=str(checkpoint), size=None, tokenizer=None, device="cpu",
                  dim=32, depth=1, heads=2, compile=False)  # fmt: skip
    split = load_model(SimpleNamespace(**fields, dtype="bf16", uncond_fp32=True))
    assert isinstance(split, UncondFloat32)
    assert split.model.generator.output.weight.dtype == torch.bfloat16
    assert split.uncond_model.generator.output.weight.dtype == torch.float32
    assert split.num_tokens == 273 and split.null_class == 1000 and split.conditioning == "class"
    assert not isinstance(
        load_model(SimpleNamespace(**fields, dtype="bf16", uncond_fp32=False)), UncondFloat32
    )
    assert not isinstance(
        load_model(SimpleNamespace(**fields, dtype="fp32", uncond_fp32=None)), UncondFloat32
    )
