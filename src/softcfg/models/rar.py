"""RAR: the class-conditional AR generator key-compatible with the official ``rar_{b,l,xl,xxl}.bin``.

Facts kept from upstream: one shared embedding table (1024 image tokens, a mask id, 1000 classes, a null
class: 2026 rows; class c is row 1025 + c, null 2025); the sequence is [learned cls token, class,
x_0 ..]; position p adds ``pos_embed[p]`` and a target-aware embedding (0 at p = 0, ``ta[p + 1]`` for
p >= 1); every block and the final layer are modulated (adaLN-Zero) by the class embedding plus
``timesteps_embeddings[p]``; LayerNorm eps 1e-6; qk-LayerNorm; GELU MLP; the final layer's modulation
chunks are (scale, shift). Slot layout: 0 = cls, 1 = class, image token j at slot 2 + j.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from softcfg.conditioning import ClassLabels
from softcfg.models.attention import KVCache, SlotWeights, StaticStep, attend
from softcfg.models.base import ARModel, images_to_uint8, load_state_dict_strict, read_checkpoint
from softcfg.models.maskgit_vq import MaskGitDecoder, load_maskgit_decoder
from softcfg.options import UserError

CODEBOOK = 1024
NUM_CLASSES = 1000
NUM_TOKENS = 256


@dataclass(frozen=True)
class RARConfig:
    dim: int
    depth: int
    mlp: int
    heads: int = 16


SIZES = {
    "B": RARConfig(768, 24, 3072),
    "L": RARConfig(1024, 24, 4096),
    "XL": RARConfig(1280, 32, 5120),
    "XXL": RARConfig(1408, 40, 6144),
}


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale) + shift


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.q_norm = nn.LayerNorm(dim // heads, eps=1e-6)
        self.k_norm = nn.LayerNorm(dim // heads, eps=1e-6)
        self.proj = nn.Linear(dim, dim)

    def forward(
        self, x: Tensor, layer: int, cache: KVCache | StaticStep | None, slot_weights: SlotWeights | None
    ) -> Tensor:
        n, length, dim = x.shape
        q, k, v = self.qkv(x).view(n, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)  # [N, H, L, hd]
        q, k = self.q_norm(q), self.k_norm(k)
        out = attend(q, k, v, layer, cache, slot_weights)
        return self.proj(out.transpose(1, 2).reshape(n, length, dim))


class Block(nn.Module):
    def __init__(self, config: RARConfig) -> None:
        super().__init__()
        dim = config.dim
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, config.heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Module()
        self.mlp.fc1 = nn.Linear(dim, config.mlp)
        self.mlp.act = nn.GELU()
        self.mlp.fc2 = nn.Linear(config.mlp, dim)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x, c, layer, cache, slot_weights) -> Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN_modulation(c).chunk(6, dim=-1)
        x = x + gate1 * self.attn(modulate(self.norm1(x), shift1, scale1), layer, cache, slot_weights)
        h = modulate(self.norm2(x), shift2, scale2)
        return x + gate2 * self.mlp.fc2(self.mlp.act(self.mlp.fc1(h)))


class FinalLayer(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm_final = nn.LayerNorm(dim, eps=1e-6, elementwise_affine=False)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        scale, shift = self.adaLN_modulation(c).chunk(2, dim=-1)
        return modulate(self.norm_final(x), shift, scale)


class RARGenerator(nn.Module):
    """The generator with the official key layout (``rar_*.bin``)."""

    def __init__(self, config: RARConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.dim
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.embeddings = nn.Embedding(CODEBOOK + 1 + NUM_CLASSES + 1, dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, NUM_TOKENS + 1024, dim))
        self.target_aware_pos_embed = nn.Parameter(torch.zeros(1, NUM_TOKENS + 1024, dim))
        self.timesteps_embeddings = nn.Parameter(torch.zeros(1, NUM_TOKENS + 100, dim))
        self.adaln_before_head = FinalLayer(dim)
        self.lm_head = nn.Linear(dim, CODEBOOK)

    def positions(self, start: int, length: int) -> tuple[Tensor, Tensor]:
        """Absolute + target-aware position embeddings [L, D] and timestep embeddings [L, D] of slots."""
        return self.positions_at(torch.arange(start, start + length, device=self.pos_embed.device))

    def positions_at(self, slots: Tensor) -> tuple[Tensor, Tensor]:
        """``positions`` of the slots in the long tensor ``slots`` [L] (static decode steps)."""
        target_aware = self.target_aware_pos_embed[0, (slots + 1).clamp_max(NUM_TOKENS + 1)]
        target_aware = target_aware * ((slots >= 1) & (slots <= NUM_TOKENS))[:, None]
        return self.pos_embed[0, slots] + target_aware, self.timesteps_embeddings[0, slots]

    def forward(
        self,
        x: Tensor,
        class_emb: Tensor,
        start: int,
        cache: KVCache | None,
        slot_weights: SlotWeights | None = None,
    ) -> Tensor:
        """Input embeddings ``x`` [N, L, D] at slots start..start+L, class embeddings [N, D] -> logits."""
        pos, steps = self.positions(start, x.shape[1])
        x = x + pos
        c = class_emb[:, None] + steps  # [N, L, D]
        for layer, block in enumerate(self.blocks):
            x = block(x, c, layer, cache, slot_weights)
        if cache is not None:
            cache.advance(x.shape[1])
        return self.lm_head(self.adaln_before_head(x, c))


class RAR(ARModel):
    vocab_size = CODEBOOK
    num_tokens = NUM_TOKENS
    num_classes = NUM_CLASSES
    null_class = NUM_CLASSES  # embedding row 1025 + 1000 = 2025
    prefix_len = 2

    def __init__(self, config: RARConfig, tokenizer: MaskGitDecoder | None = None) -> None:
        super().__init__()
        self.generator = RARGenerator(config)
        self.tokenizer = tokenizer

    def _class_embedding(self, conditions: ClassLabels) -> Tensor:
        return self.generator.embeddings(conditions.labels + CODEBOOK + 1)

    def new_cache(self, batch: int) -> KVCache:
        c, p = self.generator.config, self.generator.lm_head.weight
        return KVCache(c.depth, batch, c.heads, self.num_slots, c.dim // c.heads, p.dtype, p.device)

    def prefill(self, conditions: ClassLabels, cache: KVCache) -> Tensor:
        class_emb = self._class_embedding(conditions)
        cache.context["class_emb"] = class_emb
        x = torch.cat([self.generator.cls_token.expand(len(conditions), -1, -1), class_emb[:, None]], dim=1)
        return self.generator(x, class_emb, 0, cache)[:, -1]

    def decode(
        self, tokens: Tensor, index: int, cache: KVCache, slot_weights: SlotWeights | None = None
    ) -> Tensor:
        x = self.generator.embeddings(tokens)[:, None]
        return self.generator(x, cache.context["class_emb"], self.prefix_len + index, cache, slot_weights)[
            :, -1
        ]

    def static_decode(self, tokens: Tensor, step: StaticStep) -> Tensor:
        """``decode`` with static shapes (``softcfg.models.static_decode``): positions by tensor, the
        class embedding from the step's context (a captured step reads a fixed copy of it)."""
        g = self.generator
        pos, steps = g.positions_at(step.position)
        x = g.embeddings(tokens)[:, None] + pos
        c = step.context["class_emb"][:, None] + steps  # [N, 1, D]
        for layer, block in enumerate(g.blocks):
            x = block(x, c, layer, step, None)
        return g.lm_head(g.adaln_before_head(x, c))[:, -1]

    def forward(self, conditions: ClassLabels, tokens: Tensor) -> Tensor:
        class_emb = self._class_embedding(conditions)
        cls = self.generator.cls_token.expand(len(conditions), -1, -1)
        x = torch.cat([cls, class_emb[:, None], self.generator.embeddings(tokens[:, :-1])], dim=1)
        return self.generator(x, class_emb, 0, None)[:, 1:]  # slot 1 (class) predicts token 0

    @torch.no_grad()
    def decode_images(self, tokens: Tensor) -> Tensor:
        if self.tokenizer is None:
            raise UserError("rar: decoding tokens to images needs the model entry's tokenizer (MaskGIT-VQ)")
        return images_to_uint8(self.tokenizer(tokens))


def load_rar(checkpoint: str | Path, config: RARConfig, tokenizer: str | Path | None = None) -> RAR:
    model = RAR(config, load_maskgit_decoder(tokenizer) if tokenizer else None)
    load_state_dict_strict(model.generator, read_checkpoint(checkpoint), checkpoint)
    return model.eval()
