"""VAR (next-scale prediction): the transformer key-compatible with the official ``var_d{16,20,24,30}.pth``
and the multi-scale VQVAE (``var_vqvae``) that builds its inputs and its images.

Facts kept from upstream (FoundationVision/VAR): width 64 x depth, heads = depth, MLP 4x with tanh-GELU;
a class table ``class_emb`` of 1001 rows (null class 1000) whose row is both the start token and the
AdaLN condition of every block and of the head; scale k's input is ``word_embed`` (z -> D) of f_hat
area-downsampled to p_k, plus ``lvl_embed(k)`` and ``pos_1LC`` (the start slot uses class + ``pos_start``
instead); blocks are AdaLN (``ada_lin``: SiLU, Linear(D, 6D), split gamma1, gamma2, scale1, scale2, shift1,
shift2) around LayerNorm(eps 1e-6, no affine); attention has q and v biases (k's is a zero buffer) and is
L2-normalised per head, q scaled by exp(min(``scale_mul_1H11``, log 100)), with softmax scale 1; the head
has its own AdaLN (scale, shift) and its logits are float32. Within a scale the queries see each other
and every earlier scale (block-causal); the persistent ``attn_bias_for_masking`` is that mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from softcfg.conditioning import ClassLabels
from softcfg.models.attention import KVCache, SlotWeights, attend
from softcfg.models.base import (
    NextScaleModel,
    images_to_uint8,
    load_state_dict_strict,
    read_checkpoint,
    unwrap_state_dict,
)
from softcfg.models.var_vqvae import RELEASED, VQVAE, VQVAEConfig, load_var_vqvae
from softcfg.options import UserError

NUM_CLASSES = 1000
MAX_SCALE_MUL = math.log(100.0)  # upstream clamps the per-head log scale of q here


@dataclass(frozen=True)
class VARConfig:
    """The transformer's sizes; scales, codebook and latent width are its VQVAE's (``vae``)."""

    dim: int
    depth: int
    heads: int
    vae: VQVAEConfig = RELEASED
    num_classes: int = NUM_CLASSES

    @property
    def patch_nums(self) -> tuple[int, ...]:
        return self.vae.patch_nums

    @property
    def length(self) -> int:
        return sum(p * p for p in self.patch_nums)


SIZES = {f"d{d}": VARConfig(64 * d, d, d) for d in (16, 20, 24, 30)}  # upstream's build_vae_var


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.mat_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.register_buffer("zero_k_bias", torch.zeros(dim))
        self.scale_mul_1H11 = nn.Parameter(torch.full((1, heads, 1, 1), math.log(4.0)))
        self.proj = nn.Linear(dim, dim)

    def forward(
        self,
        x: Tensor,
        layer: int,
        cache: KVCache | None,
        slot_weights: SlotWeights | None,
        mask: Tensor | None,
    ) -> Tensor:
        n, length, dim = x.shape
        bias = torch.cat([self.q_bias, self.zero_k_bias, self.v_bias])
        q, k, v = (
            F.linear(x, self.mat_qkv.weight, bias).view(n, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        )
        # Softmax scale 1 on unit q, k; the shared attention divides by sqrt(hd), so q carries it back.
        scale = self.scale_mul_1H11.clamp(max=MAX_SCALE_MUL).exp() * math.sqrt(q.shape[-1])
        q, k = F.normalize(q, dim=-1) * scale, F.normalize(k, dim=-1)
        if cache is None:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            out = attend(q, k, v, layer, cache, slot_weights, all_visible=True)
        return self.proj(out.transpose(1, 2).reshape(n, length, dim))


class FFN(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


def _layer_norm(x: Tensor) -> Tensor:
    return F.layer_norm(x, x.shape[-1:], eps=1e-6)


class AdaLNSelfAttn(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.attn = SelfAttention(dim, heads)
        self.ffn = FFN(dim)
        self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x, cond, layer, cache, slot_weights, mask) -> Tensor:
        gamma1, gamma2, scale1, scale2, shift1, shift2 = (
            self.ada_lin(cond).view(-1, 1, 6, x.shape[-1]).unbind(2)
        )
        x = x + self.attn(_layer_norm(x) * (scale1 + 1) + shift1, layer, cache, slot_weights, mask) * gamma1
        return x + self.ffn(_layer_norm(x) * (scale2 + 1) + shift2) * gamma2


class AdaLNBeforeHead(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        """Float32 ``x``; the modulation in the weights' dtype, promoted (upstream runs it under autocast)."""
        scale, shift = self.ada_lin(cond).view(-1, 1, 2, x.shape[-1]).unbind(2)
        return _layer_norm(x) * (scale + 1) + shift


class VARGenerator(nn.Module):
    """The transformer with the official key layout (``var_d*.pth``); the VQVAE is not part of it."""

    def __init__(self, config: VARConfig) -> None:
        super().__init__()
        self.config = config
        d, length = config.dim, config.length
        self.word_embed = nn.Linear(config.vae.z_channels, d)
        self.class_emb = nn.Embedding(config.num_classes + 1, d)
        self.pos_start = nn.Parameter(torch.zeros(1, config.patch_nums[0] ** 2, d))
        self.pos_1LC = nn.Parameter(torch.zeros(1, length, d))
        self.lvl_embed = nn.Embedding(len(config.patch_nums), d)
        self.blocks = nn.ModuleList(AdaLNSelfAttn(d, config.heads) for _ in range(config.depth))
        self.head_nm = AdaLNBeforeHead(d)
        self.head = nn.Linear(d, config.vae.vocab_size)
        level = torch.tensor([k for k, p in enumerate(config.patch_nums) for _ in range(p * p)])
        self.register_buffer("lvl_1L", level[None])  # the scale of every position
        bias = torch.zeros(length, length).masked_fill(level[None, :] > level[:, None], -math.inf)
        self.register_buffer("attn_bias_for_masking", bias[None, None])

    def position(self, start: int, end: int) -> Tensor:
        """Scale and position embeddings of positions ``start .. end``, [1, n, D]."""
        return self.lvl_embed(self.lvl_1L[:, start:end]) + self.pos_1LC[:, start:end]

    def start_input(self, cond: Tensor) -> Tensor:
        """The start slot(s) from the class rows ``cond`` [N, D]: [N, p_0^2, D]."""
        first = self.pos_start.shape[1]
        return cond[:, None] + self.pos_start + self.position(0, first)

    def scale_input(self, f_hat_down: Tensor, scale: int) -> Tensor:
        """Scale ``scale``'s input from the downsampled f_hat [N, p^2, z] (float32)."""
        start = sum(p * p for p in self.config.patch_nums[:scale])
        x = self.word_embed(f_hat_down.to(self.word_embed.weight.dtype))
        return x + self.position(start, start + f_hat_down.shape[1])

    def forward(
        self,
        x: Tensor,
        cond: Tensor,
        cache: KVCache | None,
        slot_weights: SlotWeights | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        """Inputs [N, n, D] and class rows [N, D] -> float32 logits [N, n, V]."""
        for layer, block in enumerate(self.blocks):
            x = block(x, cond, layer, cache, slot_weights, mask)
        if cache is not None:
            cache.advance(x.shape[1])
        h = self.head_nm(x.float(), cond)
        return self.head(h.to(self.head.weight.dtype)).float()


class VAR(NextScaleModel):
    """The adapter: class conditioning, f_hat per row in ``cache.context``, and the VQVAE's images.

    The VQVAE is needed for sampling, not only for images: every scale's input comes from f_hat.
    """

    num_classes = NUM_CLASSES
    null_class = NUM_CLASSES

    def __init__(self, config: VARConfig, tokenizer: VQVAE) -> None:
        super().__init__()
        if tokenizer.config != config.vae:
            raise UserError(f"var: the VQVAE {tokenizer.config} does not fit the transformer ({config.vae})")
        self.generator = VARGenerator(config)
        self.tokenizer = tokenizer
        self.patch_nums = config.patch_nums
        self.vocab_size = config.vae.vocab_size

    def new_cache(self, batch: int) -> KVCache:
        c, p = self.generator.config, self.generator.head.weight
        return KVCache(c.depth, batch, c.heads, self.num_slots, c.dim // c.heads, p.dtype, p.device)

    def _cond(self, conditions: ClassLabels) -> Tensor:
        return self.generator.class_emb(conditions.labels)

    def prefill(self, conditions: ClassLabels, cache: KVCache) -> Tensor:
        cond = self._cond(conditions)
        side = self.patch_nums[-1]
        cache.context["cond"] = cond
        cache.context["f_hat"] = torch.zeros(
            len(conditions), self.generator.config.vae.z_channels, side, side, device=cond.device
        )
        return self.generator(self.generator.start_input(cond), cond, cache)

    def feed(
        self, tokens: Tensor, step: int, cache: KVCache, slot_weights: SlotWeights | None = None
    ) -> Tensor:
        quantize = self.tokenizer.quantize
        f_hat = quantize.add_scale(cache.context["f_hat"], tokens, step - 1)
        cache.context["f_hat"] = f_hat
        x = self.generator.scale_input(quantize.next_input(f_hat, step), step)
        return self.generator(x, cache.context["cond"], cache, slot_weights)

    def forward(self, conditions: ClassLabels, tokens: Tensor) -> Tensor:
        quantize, gen = self.tokenizer.quantize, self.generator
        cond = self._cond(conditions)
        side = self.patch_nums[-1]
        f_hat = torch.zeros(len(conditions), gen.config.vae.z_channels, side, side, device=cond.device)
        inputs, start = [gen.start_input(cond)], 0
        for scale, p in enumerate(self.patch_nums[:-1]):
            f_hat = quantize.add_scale(f_hat, tokens[:, start : start + p * p], scale)
            inputs.append(gen.scale_input(quantize.next_input(f_hat, scale + 1), scale + 1))
            start += p * p
        return gen(torch.cat(inputs, dim=1), cond, None, mask=gen.attn_bias_for_masking)

    @torch.no_grad()
    def decode_images(self, tokens: Tensor) -> Tensor:
        """uint8 images as upstream writes them: f_hat of every scale, decode, clamp, (x + 1) / 2, x255,
        truncating cast."""
        return images_to_uint8(self.tokenizer.fhat_to_images(self.tokenizer.quantize.tokens_to_fhat(tokens)))


def load_var(checkpoint: str | Path, config: VARConfig, tokenizer: str | Path) -> VAR:
    """The transformer of ``var_d*.pth`` and the VQVAE of ``vae_ch160v4096z32.pth``, both strict."""
    model = VAR(config, load_var_vqvae(tokenizer, config.vae))
    state = unwrap_state_dict(read_checkpoint(checkpoint), checkpoint, marker="class_emb.weight")
    load_state_dict_strict(model.generator, state, checkpoint)
    return model.eval()
