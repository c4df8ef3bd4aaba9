"""A plain decoder-only transformer (GPT-style) driven through ``ARModel``, class-conditional here.

The sequence is [class, x_0 .. x_{T-2}]: one prefix slot, learned absolute positions, pre-LayerNorm
blocks. The embedded digits model is one configuration of it; the sampler benchmark uses another.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from softcfg.conditioning import ClassLabels, Conditions
from softcfg.models.attention import KVCache, SlotWeights, StaticStep, attend
from softcfg.models.base import ARModel


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int
    num_tokens: int
    num_classes: int
    dim: int = 96
    depth: int = 3
    heads: int = 4
    dropout: float = 0.1


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        layer: int,
        cache: KVCache | StaticStep | None,
        slot_weights: SlotWeights | None,
    ) -> Tensor:
        n, length, dim = x.shape
        # q, k, v: [N, H, L, hd]
        q, k, v = self.qkv(self.norm1(x)).view(n, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        attn = attend(q, k, v, layer, cache, slot_weights)
        x = x + self.drop(self.proj(attn.transpose(1, 2).reshape(n, length, dim)))
        return x + self.drop(self.mlp(self.norm2(x)))


class PrefixGPT(ARModel):
    """The decoder shared by the GPT-style models: a prefix of embedded conditions, then image tokens,
    learned absolute positions over every slot. Subclasses embed the prefix (``prefix``) and build their
    embedding before ``_build_decoder``, so parameters are created (and drawn) in one fixed order."""

    def _build_decoder(self, dim: int, depth: int, heads: int, dropout: float) -> None:
        self.token_embedding = nn.Embedding(self.vocab_size, dim)
        self.position_embedding = nn.Parameter(torch.randn(self.num_slots, dim) * 0.02)
        self.blocks = nn.ModuleList(Block(dim, heads, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, self.vocab_size)

    def prefix(self, conditions: Conditions) -> Tensor:
        """The embedded prefix of ``conditions``, [N, prefix_len, D]."""
        raise NotImplementedError

    def _run(
        self, x: Tensor, start: int, cache: KVCache | None, slot_weights: SlotWeights | None = None
    ) -> Tensor:
        x = x + self.position_embedding[start : start + x.shape[1]]
        for layer, block in enumerate(self.blocks):
            x = block(x, layer, cache, slot_weights)
        if cache is not None:
            cache.advance(x.shape[1])
        return self.head(self.norm(x))

    def new_cache(self, batch: int) -> KVCache:
        p = next(self.parameters())
        c = self.config
        return KVCache(c.depth, batch, c.heads, self.num_slots, c.dim // c.heads, p.dtype, p.device)

    def prefill(self, conditions: Conditions, cache: KVCache) -> Tensor:
        return self._run(self.prefix(conditions), 0, cache)[:, -1]

    def decode(
        self, tokens: Tensor, index: int, cache: KVCache, slot_weights: SlotWeights | None = None
    ) -> Tensor:
        x = self.token_embedding(tokens)[:, None]
        return self._run(x, self.prefix_len + index, cache, slot_weights)[:, -1]

    def static_decode(self, tokens: Tensor, step: StaticStep) -> Tensor:
        """``decode`` with static shapes (``softcfg.models.static_decode``): position by tensor."""
        x = self.token_embedding(tokens)[:, None] + self.position_embedding[step.position]
        for layer, block in enumerate(self.blocks):
            x = block(x, layer, step, None)
        return self.head(self.norm(x))[:, -1]

    def forward(self, conditions: Conditions, tokens: Tensor) -> Tensor:
        x = torch.cat([self.prefix(conditions), self.token_embedding(tokens[:, :-1])], dim=1)
        return self._run(x, 0, None)[:, self.prefix_len - 1 :]


class ClassConditionalGPT(PrefixGPT):
    prefix_len = 1

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.vocab_size, self.num_tokens = config.vocab_size, config.num_tokens
        self.num_classes, self.null_class = config.num_classes, config.num_classes
        self.class_embedding = nn.Embedding(config.num_classes + 1, config.dim)
        self._build_decoder(config.dim, config.depth, config.heads, config.dropout)

    def prefix(self, conditions: ClassLabels) -> Tensor:
        return self.class_embedding(conditions.labels)[:, None]
