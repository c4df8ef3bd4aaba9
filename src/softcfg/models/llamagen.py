"""LlamaGen class-conditional (c2i): the generator key-compatible with the official ``c2i_*.pt`` and the
VQ-16 decoder (``llamagen_vq``) for its images.

Generator facts (see the project's upstream notes): a class table ``cls_embedding.embedding_table`` of
1001 rows (1000 classes, the null class 1000), image tokens from ``tok_embeddings`` (16384 codes);
LLaMA blocks (pre-RMSNorm eps 1e-5, bias-free ``wqkv`` with rows q | k | v and heads contiguous, no
qk-norm, SwiGLU); 2D RoPE over the token grid, with an all-zero row for the class slot, so the class
token's q and k vanish in every layer. One class token: slot 0 holds it, image token j sits at slot
1 + j. The grid is 16 x 16 at 256 px and 24 x 24 at 384 px; no weight depends on it, so a checkpoint's
resolution must be given (``image_size``), and ``eval_size`` resizes the decoded images (LlamaGen
evaluates its 384 px models at 256). Upstream's ``cfg_interval`` c (guide while decode step i <= c) is
the CFG ``interval`` [0, (c + 2) / T) here; its default -1 is no interval.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from softcfg.conditioning import ClassLabels
from softcfg.models.attention import KVCache, SlotWeights, StaticStep, attend, masked_cache_attention
from softcfg.models.base import (
    ARModel,
    load_state_dict_strict,
    read_checkpoint,
    resize_images,
    signed_images_to_uint8,
    unwrap_state_dict,
)
from softcfg.models.layers import RMSNorm, SwiGLU, apply_rope, rope_grid
from softcfg.models.llamagen_vq import VQ16Decoder, load_vq16_decoder
from softcfg.options import UserError

CODEBOOK = 16384
NUM_CLASSES = 1000
DOWNSAMPLE = 16  # VQ-16: one token per 16 x 16 pixels
IMAGE_SIZES = (256, 384)


@dataclass(frozen=True)
class LlamaGenConfig:
    dim: int
    depth: int
    heads: int
    image_size: int = 256
    codebook: int = CODEBOOK  # upstream's ModelArgs.vocab_size; every released c2i model uses 16384

    @property
    def grid(self) -> int:
        return self.image_size // DOWNSAMPLE


SIZES = {  # upstream's GPT_models
    "B": LlamaGenConfig(768, 12, 12),
    "L": LlamaGenConfig(1024, 24, 16),
    "XL": LlamaGenConfig(1280, 36, 20),
    "XXL": LlamaGenConfig(1536, 48, 24),
    "3B": LlamaGenConfig(3200, 24, 32),
}


def llamagen_rope_table(head_dim: int, grid: int) -> Tensor:
    """[1 + grid^2, head_dim / 2, 2]: a zero row for the class slot, then the grid row-major."""
    return torch.cat([torch.zeros(1, head_dim // 2, 2), rope_grid(grid, head_dim)])


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.wqkv = nn.Linear(dim, 3 * dim, bias=False)
        self.wo = nn.Linear(dim, dim, bias=False)

    def forward(
        self,
        x: Tensor,
        rope: Tensor,
        layer: int,
        cache: KVCache | StaticStep | None,
        slot_weights: SlotWeights | None,
    ) -> Tensor:
        n, length, dim = x.shape
        q, k, v = self.wqkv(x).view(n, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)  # [N, H, L, hd]
        q, k = apply_rope(q, rope), apply_rope(k, rope)
        if isinstance(cache, KVCache) and (slot_weights is None or slot_weights.uniform):
            out = masked_cache_attention(q, k, v, layer, cache)  # upstream's order: CFG's bf16 logits
        else:
            out = attend(q, k, v, layer, cache, slot_weights)
        return self.wo(out.transpose(1, 2).reshape(n, length, dim))


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.attention_norm = RMSNorm(dim)
        self.attention = Attention(dim, heads)
        self.ffn_norm = RMSNorm(dim)
        self.feed_forward = SwiGLU(dim)

    def forward(self, x, rope, layer, cache, slot_weights) -> Tensor:
        x = x + self.attention(self.attention_norm(x), rope, layer, cache, slot_weights)
        return x + self.feed_forward(self.ffn_norm(x))


class LlamaGenGenerator(nn.Module):
    """The generator with the official key layout (``c2i_*.pt``)."""

    def __init__(self, config: LlamaGenConfig) -> None:
        super().__init__()
        self.config = config
        self.cls_embedding = nn.Module()
        self.cls_embedding.embedding_table = nn.Embedding(NUM_CLASSES + 1, config.dim)
        self.tok_embeddings = nn.Embedding(config.codebook, config.dim)
        self.layers = nn.ModuleList(TransformerBlock(config.dim, config.heads) for _ in range(config.depth))
        self.norm = RMSNorm(config.dim)
        self.output = nn.Linear(config.dim, config.codebook, bias=False)
        # a plain float32 attribute, like upstream's freqs_cis: never cast to bf16/fp16 with the weights
        self.rope = llamagen_rope_table(config.dim // config.heads, config.grid)

    def forward(
        self, x: Tensor, start: int, cache: KVCache | None, slot_weights: SlotWeights | None = None
    ) -> Tensor:
        """Input embeddings [N, L, D] at slots start..start+L -> logits [N, L, V]."""
        self.rope = self.rope.to(x.device)  # no-op after the first call on a device
        rope = self.rope[start : start + x.shape[1]]
        for layer, block in enumerate(self.layers):
            x = block(x, rope, layer, cache, slot_weights)
        if cache is not None:
            cache.advance(x.shape[1])
        return self.output(self.norm(x))


class LlamaGen(ARModel):
    """The adapter: the class token and image-token slots, and the VQ-16 decoder for images."""

    num_classes = NUM_CLASSES
    null_class = NUM_CLASSES
    prefix_len = 1

    def __init__(
        self, config: LlamaGenConfig, tokenizer: VQ16Decoder | None = None, eval_size: int | None = None
    ) -> None:
        super().__init__()
        self.generator = LlamaGenGenerator(config)
        self.vocab_size = config.codebook
        self.tokenizer = tokenizer
        self.num_tokens = config.grid**2
        self.eval_size = eval_size

    def new_cache(self, batch: int) -> KVCache:
        """Upstream's static cache length: the class token and every image token, rounded up to 8
        (``setup_caches``' ``find_multiple``), which ``masked_cache_attention`` attends over."""
        c, p = self.generator.config, self.generator.output.weight
        slots = -(-(self.prefix_len + self.num_tokens) // 8) * 8
        return KVCache(c.depth, batch, c.heads, slots, c.dim // c.heads, p.dtype, p.device)

    def _class_token(self, conditions: ClassLabels) -> Tensor:
        return self.generator.cls_embedding.embedding_table(conditions.labels)[:, None]  # [N, 1, D]

    def prefill(self, conditions: ClassLabels, cache: KVCache) -> Tensor:
        return self.generator(self._class_token(conditions), 0, cache)[:, -1]

    def decode(
        self, tokens: Tensor, index: int, cache: KVCache, slot_weights: SlotWeights | None = None
    ) -> Tensor:
        x = self.generator.tok_embeddings(tokens)[:, None]
        return self.generator(x, self.prefix_len + index, cache, slot_weights)[:, -1]

    def static_decode(self, tokens: Tensor, step: StaticStep) -> Tensor:
        """``decode`` with static shapes (``softcfg.models.static_decode``): RoPE row by tensor."""
        g = self.generator
        x = g.tok_embeddings(tokens)[:, None]
        rope = g.rope.to(x.device)[step.position]
        for layer, block in enumerate(g.layers):
            x = block(x, rope, layer, step, None)
        return g.output(g.norm(x))[:, -1]

    def forward(self, conditions: ClassLabels, tokens: Tensor) -> Tensor:
        x = torch.cat([self._class_token(conditions), self.generator.tok_embeddings(tokens[:, :-1])], dim=1)
        return self.generator(x, 0, None)

    @torch.no_grad()
    def decode_images(self, tokens: Tensor) -> Tensor:
        """uint8 images as upstream's sampling script writes them: decode, optionally resize, convert."""
        if self.tokenizer is None:
            raise UserError("llamagen: decoding tokens to images needs the model entry's tokenizer (VQ-16)")
        images = self.tokenizer(tokens)
        if self.eval_size is not None and self.eval_size != images.shape[-1]:
            images = resize_images(images, self.eval_size)
        return signed_images_to_uint8(images)


def read_generator_state(path: str | Path, config: LlamaGenConfig) -> dict[str, Tensor]:
    """The generator's state dict from a ``c2i_*.pt`` file: under ``model`` (DDP; ``module``/``state_dict``
    as upstream also accepts) or raw (FSDP). A ``freqs_cis`` entry (older files) names the grid the weights
    were trained on: it must match ``config`` and is then dropped, as upstream's sampler drops it."""
    state = unwrap_state_dict(read_checkpoint(path), path, marker="tok_embeddings.weight")
    named = re.search(r"_(256|384)(?![0-9])", Path(path).name)
    if named is not None and int(named.group(1)) != config.image_size:
        raise UserError(
            f"checkpoint {path} is named for {named.group(1)} px, the model entry's image_size is "
            f"{config.image_size}"
        )
    if "freqs_cis" in state:
        state = dict(state)
        rows = state.pop("freqs_cis").shape[0]
        if rows != 1 + config.grid**2:
            raise UserError(
                f"checkpoint {path}: freqs_cis has {rows} rows, a {config.image_size} px model "
                f"needs {1 + config.grid**2} (1 class slot + {config.grid}x{config.grid} tokens)"
            )
    return state


def load_llamagen(
    checkpoint: str | Path,
    config: LlamaGenConfig,
    tokenizer: str | Path | None = None,
    eval_size: int | None = None,
) -> LlamaGen:
    model = LlamaGen(config, load_vq16_decoder(tokenizer) if tokenizer else None, eval_size)
    load_state_dict_strict(model.generator, read_generator_state(checkpoint, config), checkpoint)
    return model.eval()
