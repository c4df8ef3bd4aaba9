"""The generation loop on a next-scale model: SSG and SoftCFG on scales, against independent computations
(explicit CFG/SSG formulas on replayed logits, scipy's DCT, the step-normalized weight formula)."""

import numpy as np
import pytest
import scipy.fft
import torch
import torch.nn.functional as F

from softcfg.conditioning import ClassLabels
from softcfg.methods import parse_method
from softcfg.models.digits import DigitsAR, DigitsARConfig
from softcfg.models.digits_scales import DigitsScales, DigitsScalesConfig
from softcfg.options import ConfigError
from softcfg.sampling.diagnostics import StepDiagnostics
from softcfg.sampling.loop import generate
from softcfg.sampling.replay import replay

CFG = {"name": "cfg", "gamma": 3.0, "k": 1.0}
SOFT = {"name": "softcfg", "gamma": 3.0, "k": 1.0}
LABELS = ClassLabels(torch.tensor([0, 3, 7]))


@pytest.fixture(scope="module")
def model() -> DigitsScales:
    torch.manual_seed(0)
    m = DigitsScales(DigitsScalesConfig(dim=32, depth=2, heads=2)).eval()
    with torch.no_grad():  # sharper logits than the initialisation's, so guidance changes tokens
        m.head.weight.mul_(20)
    return m


def sample(model, method: dict, seed: int = 0) -> torch.Tensor:
    return generate(model, LABELS, parse_method(method), torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("base", [{"name": "none"}, CFG, SOFT])
@pytest.mark.parametrize("apply_to", ["guided", "branches"])
def test_ssg_with_beta_zero_gives_the_base_methods_tokens(model, base, apply_to):
    ssg = {**base, "ssg": {"beta": 0.0, "apply_to": apply_to}}
    assert torch.equal(sample(model, ssg), sample(model, base))
    assert not torch.equal(sample(model, {**base, "ssg": {"beta": 2.0}}), sample(model, base))


def test_ssg_adds_no_forward_pass(model):
    calls = []
    original_feed, original_prefill = model.feed, model.prefill
    model.feed = lambda *a, **k: calls.append("feed") or original_feed(*a, **k)
    model.prefill = lambda *a, **k: calls.append("prefill") or original_prefill(*a, **k)
    try:
        sample(model, CFG)
        with_cfg = list(calls)
        calls.clear()
        sample(model, {**SOFT, "ssg": {"beta": 1.0, "prior": "dse"}})
    finally:
        del model.feed, model.prefill
    assert with_cfg == ["prefill"] + ["feed"] * (model.num_steps - 1) == calls


def test_softcfg_with_strength_zero_is_cfg_on_scales(model):
    assert torch.equal(sample(model, {**SOFT, "strength": 0.0}), sample(model, CFG))
    assert not torch.equal(sample(model, SOFT), sample(model, CFG))


def test_softcfg_weights_each_earlier_scales_tokens_by_the_step_normalized_formula(model):
    tokens = sample(model, CFG, seed=1)
    out = replay(model, parse_method({**SOFT, "floor": 0.2}), LABELS, tokens)
    q = torch.from_numpy(out["cond"]).softmax(-1).amax(-1)  # cond_max, recomputed from the logits
    spans = [model.step_span(s) for s in range(model.num_steps)]
    for step, (start, _) in enumerate(spans):
        expected = np.ones((len(LABELS), model.num_tokens), np.float32)
        if start >= 2:
            seen = q[:, 1:start]
            w = (1 - seen / (seen.sum(-1, keepdim=True) + 1e-5)).clamp_min(0.2)
            expected[:, 1:start] = w.numpy()
        np.testing.assert_allclose(out["weights"][:, step], expected, rtol=1e-5, atol=1e-6)
    # the weights reach the unconditional rows only
    plain = replay(model, parse_method(CFG), LABELS, tokens)
    np.testing.assert_array_equal(out["cond"], plain["cond"])
    last = slice(*spans[-1])
    assert not np.allclose(out["uncond"][:, last], plain["uncond"][:, last])
    np.testing.assert_array_equal(out["uncond"][:, slice(*spans[1])], plain["uncond"][:, slice(*spans[1])])


def _grid(logits: np.ndarray, p: int) -> torch.Tensor:
    """[B, p^2, V] row-major -> [B, V, p, p], written out independently of the package's reshaping."""
    b, _, v = logits.shape
    out = np.zeros((b, v, p, p), logits.dtype)
    for r in range(p):
        for c in range(p):
            out[:, :, r, c] = logits[:, r * p + c]
    return torch.from_numpy(out)


def _dse(coarse: torch.Tensor, size: int) -> np.ndarray:
    p = coarse.shape[-1]
    up = F.interpolate(coarse.double(), size=(size, size), mode="bilinear", align_corners=False).numpy()
    spectrum = scipy.fft.dctn(up, type=2, norm="ortho", axes=(-2, -1))
    band = scipy.fft.dctn(coarse.double().numpy(), type=2, norm="ortho", axes=(-2, -1))
    spectrum[..., :p, :p] = band * size / p
    return scipy.fft.idctn(spectrum, type=2, norm="ortho", axes=(-2, -1))


@pytest.mark.parametrize("prior", ["dse", "nearest"])
def test_ssg_guided_logits_are_l_plus_beta_residual_of_the_previous_scale(model, prior):
    tokens = sample(model, CFG, seed=2)
    beta = 0.75
    plain = replay(model, parse_method(CFG), LABELS, tokens)["guided"]
    method = parse_method({**CFG, "ssg": {"beta": beta, "prior": prior}})
    ssg = replay(model, method, LABELS, tokens)["guided"]
    spans = [model.step_span(s) for s in range(model.num_steps)]
    np.testing.assert_array_equal(ssg[:, : spans[0][1]], plain[:, : spans[0][1]])  # scale 0: no prior
    for step in range(1, model.num_steps):
        p, size = model.patch_nums[step - 1], model.patch_nums[step]
        coarse = _grid(plain[:, slice(*spans[step - 1])], p)  # the previous scale's guided logits
        if prior == "nearest":
            maps = F.interpolate(coarse, size=(size, size), mode="nearest").numpy()
        else:
            maps = _dse(coarse, size)
        l_prior = maps.reshape(len(LABELS), -1, size * size).transpose(0, 2, 1)
        logits = plain[:, slice(*spans[step])]
        np.testing.assert_allclose(ssg[:, slice(*spans[step])], logits + beta * (logits - l_prior), atol=2e-4)


def test_ssg_on_branches_refines_each_branch_before_cfg(model):
    tokens = sample(model, CFG, seed=3)
    plain = replay(model, parse_method(CFG), LABELS, tokens)
    method = parse_method({**CFG, "ssg": {"beta": 0.5, "prior": "nearest", "apply_to": "branches"}})
    out = replay(model, method, LABELS, tokens)
    step = 2
    (start, end), (p_start, p_end) = model.step_span(step), model.step_span(step - 1)
    scales = method.scales(model.num_steps)
    refined = {}
    for branch in ("cond", "uncond"):
        coarse = _grid(plain[branch][:, p_start:p_end], model.patch_nums[step - 1])
        size = model.patch_nums[step]
        l_prior = F.interpolate(coarse, size=(size, size), mode="nearest").numpy()
        l_prior = l_prior.reshape(len(LABELS), -1, size * size).transpose(0, 2, 1)
        logits = plain[branch][:, start:end]
        refined[branch] = logits + 0.5 * (logits - l_prior)
    expected = refined["uncond"] + scales[step] * (refined["cond"] - refined["uncond"])
    np.testing.assert_allclose(out["guided"][:, start:end], expected, atol=2e-4)


def test_ssg_is_refused_on_a_next_token_model():
    digits = DigitsAR(DigitsARConfig(dim=16, depth=1, heads=2)).eval()
    with pytest.raises(ConfigError, match=r"method\.ssg: DigitsAR is a next-token model"):
        generate(digits, LABELS, parse_method({**CFG, "ssg": {"beta": 1.0}}))


def test_diagnostics_have_one_row_per_scale(model):
    diag = StepDiagnostics(model.num_steps)
    generate(model, LABELS, parse_method(SOFT), torch.Generator().manual_seed(0), [diag])
    entropies = diag.as_dict()
    assert len(entropies["entropy_cond"]) == model.num_steps
    assert all(0 < e <= 1 for e in entropies["entropy_cond"])
    assert np.isnan(entropies["weight_min"][1]) and entropies["weight_min"][2] < 1


def test_float32_unconditional_rows_are_refused_for_next_scale_families():
    from softcfg.config import parse_model

    entry = {"family": "var", "size": "d16", "checkpoint": "v.pt", "tokenizer": "vae.pt", "dtype": "bf16"}
    with pytest.raises(ConfigError, match=r"model\.uncond_fp32: not available for next-scale families"):
        parse_model({**entry, "uncond_fp32": True}, check_files=False)
    assert parse_model({**entry, "uncond_fp32": False}, check_files=False).uncond_fp32 is False
