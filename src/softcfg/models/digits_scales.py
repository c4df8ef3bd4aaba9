"""The embedded next-scale model: a class-conditional VAR-style transformer over scikit-learn's digits.

Each 8x8 digit becomes four token maps, scales 1, 2, 4 and 8 (85 tokens): the digit area-averaged to
p x p and rounded half up to the 17 intensity levels, so the last map is the digit itself and coarser
maps are what the digit looks like from afar. Quantised area averages rather than VAR's residual maps:
every token stays an intensity, so each map can be checked by hand and decoding is the last map alone.
Step k predicts scale k's whole map at once. The input of scale k is the token embedding of scale
k-1's map upsampled by nearest neighbour (each token copied onto the 2x2 block it covers) plus a level
embedding (one per scale) and a position embedding (one per slot); the start slot is the class
embedding (null class 10 for the unconditional rows). Size and training length were chosen by held-out
loss (``benchmarks/digits_scales_model_selection.py``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from softcfg.conditioning import ClassLabels
from softcfg.data.digits import DIGITS_LEVELS, IMAGE_SIDE, NUM_CLASSES, tokens_to_uint8_images
from softcfg.models.attention import KVCache, SlotWeights, attend, block_causal_mask
from softcfg.models.base import NextScaleModel, load_state_dict_strict, read_checkpoint
from softcfg.models.gpt import Block
from softcfg.options import UserError

PATCH_NUMS = (1, 2, 4, 8)


def scale_maps(tokens: Tensor, patch_nums: tuple[int, ...] = PATCH_NUMS) -> Tensor:
    """Digit tokens [N, 64] to the scales' maps concatenated row-major, [N, sum(p^2)] int64.

    Scale p is the mean of each (8/p)^2 block, rounded half up (floor(mean + 1/2)); the means of
    integers over power-of-two blocks are exact in float32, so no rounding tie is decided by noise.
    """
    images = tokens.view(-1, 1, IMAGE_SIDE, IMAGE_SIDE).float()
    maps = [torch.floor(F.avg_pool2d(images, IMAGE_SIDE // p) + 0.5).flatten(1) for p in patch_nums]
    return torch.cat(maps, dim=1).long()


@dataclass(frozen=True)
class DigitsScalesConfig:
    dim: int = 48
    depth: int = 2
    heads: int = 4
    dropout: float = 0.1


class ScaleBlock(Block):
    """``gpt.Block`` whose queries see whole scales: through ``attend`` (SoftCFG's weights) on cached
    steps, through an explicit block-causal mask on the uncached forward."""

    def forward(
        self,
        x: Tensor,
        layer: int,
        cache: KVCache | None,
        slot_weights: SlotWeights | None,
        mask: Tensor | None = None,
    ) -> Tensor:
        n, length, dim = x.shape
        # q, k, v: [N, H, L, hd]
        q, k, v = self.qkv(self.norm1(x)).view(n, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        if mask is None:
            attn = attend(q, k, v, layer, cache, slot_weights, all_visible=True)
        else:
            attn = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.drop(self.proj(attn.transpose(1, 2).reshape(n, length, dim)))
        return x + self.drop(self.mlp(self.norm2(x)))


class DigitsScales(NextScaleModel):
    patch_nums = PATCH_NUMS

    def __init__(self, config: DigitsScalesConfig) -> None:
        super().__init__()
        self.digits_config = config
        self.vocab_size, self.num_classes, self.null_class = DIGITS_LEVELS, NUM_CLASSES, NUM_CLASSES
        dim = config.dim
        self.class_embedding = nn.Embedding(NUM_CLASSES + 1, dim)
        self.token_embedding = nn.Embedding(DIGITS_LEVELS, dim)
        self.level_embedding = nn.Parameter(torch.randn(len(self.patch_nums), dim) * 0.02)
        self.position_embedding = nn.Parameter(torch.randn(self.num_slots, dim) * 0.02)
        self.blocks = nn.ModuleList(
            ScaleBlock(dim, config.heads, config.dropout) for _ in range(config.depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, DIGITS_LEVELS)
        sizes = torch.tensor([p * p for p in self.patch_nums])
        self.register_buffer("slot_level", torch.repeat_interleave(torch.arange(len(sizes)), sizes), False)

    def _scale_input(self, previous: Tensor, step: int) -> Tensor:
        """Scale ``step - 1``'s map [N, p^2] embedded and upsampled to scale ``step``: [N, p_step^2, D]."""
        side, target = self.patch_nums[step - 1], self.patch_nums[step]
        x = self.token_embedding(previous).transpose(1, 2).reshape(previous.shape[0], -1, side, side)
        return F.interpolate(x, size=(target, target), mode="nearest").flatten(2).transpose(1, 2)

    def _run(
        self,
        x: Tensor,
        start: int,
        cache: KVCache | None,
        slot_weights: SlotWeights | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        end = start + x.shape[1]
        x = x + self.level_embedding[self.slot_level[start:end]] + self.position_embedding[start:end]
        for layer, block in enumerate(self.blocks):
            x = block(x, layer, cache, slot_weights, mask)
        if cache is not None:
            cache.advance(x.shape[1])
        return self.head(self.norm(x))

    def new_cache(self, batch: int) -> KVCache:
        p = next(self.parameters())
        c = self.digits_config
        return KVCache(c.depth, batch, c.heads, self.num_slots, c.dim // c.heads, p.dtype, p.device)

    def prefill(self, conditions: ClassLabels, cache: KVCache) -> Tensor:
        return self._run(self.class_embedding(conditions.labels)[:, None], 0, cache)

    def feed(
        self, tokens: Tensor, step: int, cache: KVCache, slot_weights: SlotWeights | None = None
    ) -> Tensor:
        if not 0 < step < self.num_steps:
            raise ValueError(f"feed: step {step} is not one of 1..{self.num_steps - 1}")
        start, _ = self.step_span(step)
        if cache.length != start:
            raise ValueError(f"feed: step {step} needs a cache filled to slot {start}, it has {cache.length}")
        return self._run(self._scale_input(tokens, step), start, cache, slot_weights)

    def forward(self, conditions: ClassLabels, tokens: Tensor) -> Tensor:
        inputs = [self.class_embedding(conditions.labels)[:, None]]
        for step in range(1, self.num_steps):
            start, end = self.step_span(step - 1)
            inputs.append(self._scale_input(tokens[:, start:end], step))
        mask = block_causal_mask([p * p for p in self.patch_nums], tokens.device)
        return self._run(torch.cat(inputs, dim=1), 0, None, None, mask)

    def decode_images(self, tokens: Tensor) -> Tensor:
        """The last scale is the digit: decoded as the next-token digits model's tokens are."""
        return tokens_to_uint8_images(tokens[:, -IMAGE_SIDE * IMAGE_SIDE :])


def save_digits_scales(model: DigitsScales, path: str | Path | BinaryIO, extra: dict | None = None) -> None:
    torch.save(
        {"config": asdict(model.digits_config), "state_dict": model.state_dict(), **(extra or {})}, path
    )


def load_digits_scales(path: str | Path) -> DigitsScales:
    """Rebuild the model from the dimensions stored in its checkpoint and load it strictly."""
    ckpt = read_checkpoint(path)
    if not isinstance(ckpt, dict) or "config" not in ckpt or "state_dict" not in ckpt:
        raise UserError(
            f"checkpoint {path} is not a digits_scales checkpoint (needs 'config' and 'state_dict')"
        )
    try:
        config = DigitsScalesConfig(**ckpt["config"])
    except TypeError as exc:
        raise UserError(f"checkpoint {path}: bad 'config' entry: {exc}") from exc
    model = DigitsScales(config)
    load_state_dict_strict(model, ckpt["state_dict"], path)
    return model.eval()
