import numpy as np
import pytest
import torch

from softcfg.guidance.cfg import TOP_P_RULES, cfg_combine, sampling_logits, top_k_filter, top_p_filter


def test_cfg_combine_is_the_papers_form():
    g = torch.Generator().manual_seed(0)
    lc, lu = torch.randn(3, 50, generator=g), torch.randn(3, 50, generator=g)
    s = 4.0
    # the paper writes (1 + w) l_c - w l_u with w = s - 1
    torch.testing.assert_close(cfg_combine(lc, lu, s), s * lc - (s - 1) * lu)
    torch.testing.assert_close(cfg_combine(lc, lu, 1.0), lc)


def _reference_top_p(logits: np.ndarray, p: float) -> np.ndarray:
    out = np.full_like(logits, -np.inf)
    for r, row in enumerate(logits):
        probs = np.exp(row - row.max())
        probs /= probs.sum()
        kept, mass = [], 0.0
        for i in np.argsort(-probs, kind="stable"):
            kept.append(i)
            mass += probs[i]
            if mass >= p:
                break
        out[r, kept] = row[kept]
    return out


@pytest.mark.parametrize("rule", TOP_P_RULES)
def test_top_p_matches_brute_force(rule):
    """Without ties or a mass exactly on p, both rules keep the smallest most-probable set reaching p."""
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 40, generator=g, dtype=torch.float64) * 2
    for p in (0.1, 0.5, 0.9, 0.99):
        kept = top_p_filter(logits, p, rule).numpy()
        np.testing.assert_array_equal(kept, _reference_top_p(logits.numpy(), p))
    assert torch.equal(top_p_filter(logits, 1.0, rule), logits)


@pytest.mark.parametrize(
    "logits, p, ascending, descending",
    [
        # probabilities .083, .083, .224, .610: VAR's running mass from below, .083 <= 0.1, drops the first
        # zero; LlamaGen's mass before the last-ranked zero, .917 > 0.9, drops the second
        ([0.0, 0.0, 1.0, 2.0], 0.9, [1, 2, 3], [0, 2, 3]),
        # .5, .5, 5e-14: from below 5e-14 and .5 are <= 0.5 (one zero kept); from above, the mass before
        # the second zero is .5, not above 0.5 (both kept)
        ([0.0, 0.0, -30.0], 0.5, [1], [0, 1]),
    ],
)
def test_top_p_rules_cut_ties_as_their_upstreams(logits, p, ascending, descending):
    row = torch.tensor([logits])
    for rule, expected in (("ascending", ascending), ("descending", descending)):
        kept = torch.isfinite(top_p_filter(row, p, rule))[0].nonzero().flatten().tolist()
        assert kept == expected, rule
    with pytest.raises(ValueError, match="top-p rule"):
        top_p_filter(row, p, "nearest")


def test_each_family_defaults_to_its_upstreams_rule_and_a_method_may_choose():
    from softcfg.config import RunConfig, parse_model
    from softcfg.methods import parse_method

    def rule(family: str, **method) -> str:
        sizes = {"llamagen": {"size": "B", "image_size": 256}, "var": {"size": "d16"}}
        entry = {"family": family, "checkpoint": "x.pt", **sizes[family]}
        model = parse_model(entry, check_files=False)
        return RunConfig(model, parse_method({"name": "cfg", "top_p": 0.9, **method})).method.top_p_rule

    assert rule("llamagen") == "descending" and rule("var") == "ascending"
    assert rule("llamagen", top_p_rule="ascending") == "ascending"


def test_top_k_keeps_k_largest():
    logits = torch.tensor([[0.1, 3.0, -1.0, 2.0, 0.5]])
    assert torch.isfinite(top_k_filter(logits, 2)).tolist() == [[False, True, False, True, False]]
    assert torch.equal(top_k_filter(logits, 0), logits)


def test_temperature_divides_before_filters():
    logits = torch.tensor([[1.0, 2.0, 4.0]])
    torch.testing.assert_close(sampling_logits(logits, 2.0), logits / 2)


def test_sample_tokens_follows_the_distribution():
    from softcfg.guidance.cfg import sample_tokens

    logits = torch.tensor([0.0, 1.0, float("-inf"), 2.0, -1.0]).log_softmax(-1)
    rows = logits.expand(200_000, -1)
    draws = sample_tokens(rows, torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=5).double() / len(draws)
    expected = torch.softmax(logits.double(), -1)
    assert freq[2] == 0  # zero probability: never drawn
    torch.testing.assert_close(freq, expected, atol=4e-3, rtol=0)  # ~4 standard errors
    again = sample_tokens(rows[:100], torch.Generator().manual_seed(0))
    assert torch.equal(again, draws[:100])
