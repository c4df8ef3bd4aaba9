"""One conditioning interface: a text-conditioned model goes through the sampler, replay and shards that
class-conditional models use. The model here is a test-only GPT whose prefix is the prompt's tokens."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from softcfg.conditioning import ClassLabels, Prompts, Unconditional
from softcfg.methods import parse_method
from softcfg.models.attention import KVCache, SlotWeights
from softcfg.models.base import ARModel
from softcfg.models.gpt import Block
from softcfg.sampling.loop import generate
from softcfg.sampling.replay import replay

PROMPT_LEN, PAD = 3, 0


class PromptGPT(ARModel):
    """Prefix: the prompt's tokens (fixed length); unconditional prompt: all padding (id 0)."""

    conditioning = "text"
    prefix_len = PROMPT_LEN

    def __init__(self, vocab: int = 9, text_vocab: int = 7, num_tokens: int = 6, dim: int = 16) -> None:
        super().__init__()
        self.vocab_size, self.num_tokens, self.num_classes, self.null_class = vocab, num_tokens, 0, -1
        self.text = nn.Embedding(text_vocab, dim)
        self.tokens = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(self.num_slots, dim))
        self.blocks = nn.ModuleList(Block(dim, 2, 0.0) for _ in range(2))
        self.head = nn.Linear(dim, vocab)
        with torch.no_grad():
            self.head.weight.mul_(20)

    def unconditional(self, conditions: Prompts) -> Prompts:
        empty = torch.full_like(conditions.ids, PAD)
        return Prompts(empty, torch.zeros_like(conditions.mask), ("",) * len(conditions))

    def _run(self, x, start, cache, weights=None):
        x = x + self.pos[start : start + x.shape[1]]
        for layer, block in enumerate(self.blocks):
            x = block(x, layer, cache, weights)
        if cache is not None:
            cache.advance(x.shape[1])
        return self.head(x)

    def new_cache(self, batch: int) -> KVCache:
        return KVCache(2, batch, 2, self.num_slots, 8, torch.float32, "cpu")

    def prefill(self, conditions: Prompts, cache: KVCache):
        return self._run(self.text(conditions.ids), 0, cache)[:, -1]

    def decode(self, tokens, index: int, cache: KVCache, slot_weights: SlotWeights | None = None):
        return self._run(self.tokens(tokens)[:, None], self.prefix_len + index, cache, slot_weights)[:, -1]

    def forward(self, conditions: Prompts, tokens):
        x = torch.cat([self.text(conditions.ids), self.tokens(tokens[:, :-1])], dim=1)
        return self._run(x, 0, None)[:, PROMPT_LEN - 1 :]


def prompts() -> Prompts:
    ids = torch.tensor([[1, 2, 3], [4, 5, 6], [3, 3, 1]])
    return Prompts(ids, torch.ones_like(ids, dtype=torch.bool), ("a b c", "d e f", "c c a"))


def test_a_text_model_runs_the_same_sampler_and_replay():
    torch.manual_seed(0)
    model = PromptGPT().eval()
    soft = {"name": "softcfg", "gamma": 3.0, "k": 1.0}
    conditions, tokens = prompts(), torch.randint(0, 9, (3, 6), generator=torch.Generator().manual_seed(1))
    out = replay(model, parse_method(soft), conditions, tokens)
    with torch.no_grad():
        cond = model(conditions, tokens)
        uncond = model(model.unconditional(conditions), tokens)
    # cached cond rows equal the uncached forward on the prompt; the first uncond step too (no weights yet)
    np.testing.assert_allclose(out["cond"], cond.numpy(), atol=1e-5)
    np.testing.assert_allclose(out["uncond"][:, :2], uncond[:, :2].numpy(), atol=1e-5)
    assert not np.allclose(out["uncond"][:, 3:], uncond[:, 3:].numpy(), atol=1e-3)  # SoftCFG perturbs
    zero = replay(model, parse_method({**soft, "strength": 0.0}), conditions, tokens)
    cfg = replay(model, parse_method({"name": "cfg", "gamma": 3.0, "k": 1.0}), conditions, tokens)
    np.testing.assert_array_equal(zero["guided"], cfg["guided"])
    a = generate(model, conditions, parse_method(soft), torch.Generator().manual_seed(3))
    b = generate(model, conditions, parse_method(soft), torch.Generator().manual_seed(3))
    assert a.shape == (3, 6) and torch.equal(a, b)


def test_conditions_concatenate_slice_and_record():
    p = prompts()
    q = Prompts(torch.tensor([[5, 5]]), torch.tensor([[True, True]]), ("e e",))
    both = p.cat(q)  # shorter prompts are left-padded, so last tokens align
    assert both.ids.tolist()[-1] == [0, 5, 5] and both.mask.tolist()[-1] == [False, True, True]
    assert both[1:3].texts == ("d e f", "c c a")
    arrays, facts = both.record()
    assert arrays["prompt_ids"].shape == (4, 3) and facts["prompts"][-1] == "e e"
    labels = ClassLabels(torch.tensor([3, 1]))
    arrays, _ = labels.cat(ClassLabels(torch.tensor([7]))).record()
    assert arrays["arr_1"].tolist() == [3, 1, 7]
    assert len(Unconditional(5)[1:4]) == 3 and Unconditional(5).record()[0] == {}
