"""AliTok: the class-conditional AR generator and its tokenizer's decoder, key-compatible with the
official ``alitok_{b,l,xl}.bin`` and ``AliTok.pth`` (raw state dicts).

Generator facts (see the project's upstream notes): one shared embedding table of 4096 image tokens,
a mask id, 1000 classes and a null class (5098 rows; class c is row 4097 + c, null is 5097); 273 image
tokens (17 1D tokens then a 16x16 grid); LLaMA-style blocks (RMSNorm, qk-RMSNorm before RoPE, SwiGLU,
biased qkv and proj); RoPE row 0 (the class slot) is all zeros, so the class token's q and k vanish;
rows 1..17 are 1D positions 0..16, rows 18..273 2D positions (17 + r, 17 + c).
Slot layout: slot 0 holds the class; image token j sits at slot 1 + j.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from softcfg.conditioning import ClassLabels
from softcfg.models.attention import KVCache, SlotWeights, StaticStep, attend
from softcfg.models.base import ARModel, images_to_uint8, load_state_dict_strict, read_checkpoint
from softcfg.models.layers import RMSNorm, SwiGLU, apply_rope, rope_1d, rope_grid
from softcfg.options import UserError

CODEBOOK = 4096
NUM_CLASSES = 1000
NUM_1D = 17
GRID = 16


@dataclass(frozen=True)
class AliTokConfig:
    dim: int
    depth: int
    heads: int = 16


SIZES = {"B": AliTokConfig(768, 24), "L": AliTokConfig(1024, 24), "XL": AliTokConfig(1280, 32)}


def alitok_rope_table(head_dim: int) -> Tensor:
    """[274, head_dim / 2, 2]: a zero row for the class slot, 17 1D rows, 256 2D rows."""
    zero = torch.zeros(1, head_dim // 2, 2)
    return torch.cat([zero, rope_1d(torch.arange(NUM_1D), head_dim), rope_grid(GRID, head_dim, NUM_1D)])


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.q_norm = RMSNorm(dim // heads)
        self.k_norm = RMSNorm(dim // heads)
        self.proj = nn.Linear(dim, dim)

    def forward(
        self,
        x: Tensor,
        rope: Tensor,
        layer: int,
        cache: KVCache | StaticStep | None,
        slot_weights: SlotWeights | None,
    ) -> Tensor:
        n, length, dim = x.shape
        q, k, v = self.qkv(x).view(n, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)  # [N, H, L, hd]
        q, k = apply_rope(self.q_norm(q), rope), apply_rope(self.k_norm(k), rope)
        out = attend(q, k, v, layer, cache, slot_weights)
        return self.proj(out.transpose(1, 2).reshape(n, length, dim))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = RMSNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = RMSNorm(dim)
        self.mlp = SwiGLU(dim)

    def forward(self, x, rope, layer, cache, slot_weights) -> Tensor:
        x = x + self.attn(self.norm1(x), rope, layer, cache, slot_weights)
        return x + self.mlp(self.norm2(x))


class TokenizerBlock(nn.Module):
    """The tokenizer's pre-LayerNorm ViT block (bidirectional, attention in float32, GELU MLP)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.Module()
        self.attn.in_proj = nn.Linear(width, 3 * width)
        self.attn.out_proj = nn.Linear(width, width)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(width, 4 * width))
        self.mlp.add_module("gelu", nn.GELU())
        self.mlp.add_module("c_proj", nn.Linear(4 * width, width))

    def forward(self, x: Tensor) -> Tensor:
        n, length, width = x.shape
        q, k, v = self.attn.in_proj(self.ln_1(x)).view(n, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q.float(), k.float(), v.float())
        x = x + self.attn.out_proj(out.transpose(1, 2).reshape(n, length, width).type_as(x))
        return x + self.mlp(self.ln_2(x))


class AliTokDecoder(nn.Module):
    """Tokens [N, 273] -> images in [0, 1] [N, 3, 256, 256], keys as ``AliTok.pth``'s decoder + codebook."""

    def __init__(self, width: int = 1024, layers: int = 24, heads: int = 16, token_size: int = 32) -> None:
        super().__init__()
        self.quantize = nn.Module()
        self.quantize.embedding = nn.Embedding(CODEBOOK, token_size)
        d = nn.Module()
        d.decoder_embed = nn.Linear(token_size, width)
        d.class_embedding = nn.Parameter(torch.zeros(32, width))
        d.latent_token_positional_embedding = nn.Parameter(torch.zeros(32 + NUM_1D + GRID * GRID, width))
        d.ln_pre = nn.LayerNorm(width)
        d.transformer = nn.ModuleList(TokenizerBlock(width, heads) for _ in range(layers))
        d.ln_post = nn.LayerNorm(width)
        d.ffn = nn.Sequential(nn.Conv2d(width, GRID * GRID * 3, 1))
        d.conv_out = nn.Conv2d(3, 3, 1)
        self.decoder = d

    def forward(self, tokens: Tensor) -> Tensor:
        d = self.decoder
        x = d.decoder_embed(self.quantize.embedding(tokens))  # [N, 273, W]
        x = torch.cat([d.class_embedding.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)
        x = d.ln_pre(x + d.latent_token_positional_embedding)
        for block in d.transformer:
            x = block(x)
        x = d.ln_post(x[:, -GRID * GRID :])  # the grid tokens
        # contiguous, as upstream: the transposed view has channels-last strides, and a convolution of
        # those rounds differently
        x = x.transpose(1, 2).reshape(x.shape[0], -1, GRID, GRID).contiguous()
        return torch.sigmoid(d.conv_out(unpatchify(d.ffn(x))))


def unpatchify(x: Tensor, patch: int = GRID) -> Tensor:
    """[N, p*p*3, h, w] with channels ordered (p1, p2, c) -> [N, 3, h*p, w*p]."""
    n, _, h, w = x.shape
    return x.view(n, patch, patch, 3, h, w).permute(0, 3, 4, 1, 5, 2).reshape(n, 3, h * patch, w * patch)


class AliTokGenerator(nn.Module):
    """The generator with the official key layout (``alitok_*.bin``)."""

    def __init__(self, config: AliTokConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = nn.Embedding(CODEBOOK + 1 + NUM_CLASSES + 1, config.dim)
        self.blocks = nn.ModuleList(Block(config.dim, config.heads) for _ in range(config.depth))
        self.norm = RMSNorm(config.dim)
        self.output = nn.Linear(config.dim, CODEBOOK, bias=True)
        # a plain float32 attribute, like upstream's freqs_cis: never cast to bf16/fp16 with the weights
        self.rope = alitok_rope_table(config.dim // config.heads)

    def forward(
        self, ids: Tensor, start: int, cache: KVCache | None, slot_weights: SlotWeights | None = None
    ) -> Tensor:
        """Embedding ids [N, L] at slots start..start+L -> logits [N, L, V]."""
        x = self.embeddings(ids)
        self.rope = self.rope.to(x.device)  # no-op after the first call on a device
        rope = self.rope[start : start + ids.shape[1]]
        for layer, block in enumerate(self.blocks):
            x = block(x, rope, layer, cache, slot_weights)
        if cache is not None:
            cache.advance(ids.shape[1])
        return self.output(self.norm(x))


class AliTok(ARModel):
    """The adapter: generator slots and ids, and the tokenizer's decoder for images."""

    vocab_size = CODEBOOK
    num_tokens = NUM_1D + GRID * GRID
    num_classes = NUM_CLASSES
    null_class = NUM_CLASSES  # embedding row 4097 + 1000 = 5097
    prefix_len = 1

    def __init__(self, config: AliTokConfig, tokenizer: AliTokDecoder | None = None) -> None:
        super().__init__()
        self.generator = AliTokGenerator(config)
        self.tokenizer = tokenizer

    @staticmethod
    def _class_ids(labels: Tensor) -> Tensor:
        return labels + CODEBOOK + 1

    def new_cache(self, batch: int) -> KVCache:
        c, p = self.generator.config, self.generator.output.weight
        return KVCache(c.depth, batch, c.heads, self.num_slots, c.dim // c.heads, p.dtype, p.device)

    def prefill(self, conditions: ClassLabels, cache: KVCache) -> Tensor:
        return self.generator(self._class_ids(conditions.labels)[:, None], 0, cache)[:, -1]

    def decode(
        self, tokens: Tensor, index: int, cache: KVCache, slot_weights: SlotWeights | None = None
    ) -> Tensor:
        return self.generator(tokens[:, None], self.prefix_len + index, cache, slot_weights)[:, -1]

    def static_decode(self, tokens: Tensor, step: StaticStep) -> Tensor:
        """``decode`` with static shapes (``softcfg.models.static_decode``): RoPE row by tensor."""
        g = self.generator
        x = g.embeddings(tokens[:, None])
        rope = g.rope.to(x.device)[step.position]
        for layer, block in enumerate(g.blocks):
            x = block(x, rope, layer, step, None)
        return g.output(g.norm(x))[:, -1]

    def forward(self, conditions: ClassLabels, tokens: Tensor) -> Tensor:
        prefix = self._class_ids(conditions.labels)[:, None]
        return self.generator(torch.cat([prefix, tokens[:, :-1]], dim=1), 0, None)

    @torch.no_grad()
    def decode_images(self, tokens: Tensor) -> Tensor:
        if self.tokenizer is None:
            raise UserError(
                "alitok: decoding tokens to images needs the model entry's tokenizer (AliTok.pth)"
            )
        return images_to_uint8(self.tokenizer(tokens))


def load_alitok_decoder(path: str | Path) -> AliTokDecoder:
    """The decoder and codebook of ``AliTok.pth``; encoder keys are read past, all others must match."""
    state = read_checkpoint(path)
    if "decoder.decoder_embed.weight" not in state:
        raise UserError(f"tokenizer {path} is not an AliTok tokenizer (no decoder.decoder_embed.weight)")
    width = state["decoder.decoder_embed.weight"].shape[0]
    layers = len({k.split(".")[2] for k in state if k.startswith("decoder.transformer.")})
    decoder = AliTokDecoder(width=width, layers=layers)
    kept = {k: v for k, v in state.items() if not (k.startswith("encoder.") or k == "latent_tokens")}
    load_state_dict_strict(decoder, kept, path)
    return decoder.eval()


def load_alitok(checkpoint: str | Path, config: AliTokConfig, tokenizer: str | Path | None = None) -> AliTok:
    model = AliTok(config, load_alitok_decoder(tokenizer) if tokenizer else None)
    load_state_dict_strict(model.generator, read_checkpoint(checkpoint), checkpoint)
    return model.eval()
