"""LlamaGen's VQ-16 image decoder (``vq_ds16_c2i.pt``, state dict under ``"model"``).

Facts kept from upstream: a taming-style CNN, channels 128 x (1, 1, 2, 2, 4), z 256, GroupNorm(32, eps 1e-6)
and swish; the decoder has a mid block (res, attention, res), then one level per resolution from the
lowest up (``conv_blocks.0`` is the 512-channel, lowest-resolution level), three residual blocks each,
an attention block after every residual block of the lowest level, nearest-neighbour upsampling then a
3x3 conv on every level but the last; a width change inside a residual block goes through a 1x1
``nin_shortcut`` of its input. The codebook (16384 x 8) is L2-normalised at lookup, then a 1x1
``post_quant_conv`` maps 8 -> 256 channels. The output lies in about [-1, 1] and is not clamped.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from softcfg.models.base import load_state_dict_strict, read_checkpoint, unwrap_state_dict
from softcfg.options import UserError

MULT = (1, 1, 2, 2, 4)
BLOCKS_PER_LEVEL = 3  # upstream's num_res_blocks + 1 in the decoder


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6)


def swish(x: Tensor) -> Tensor:
    """x sigmoid(x) as upstream writes it (``F.silu`` rounds differently)."""
    return x * torch.sigmoid(x)


class ResnetBlock(nn.Module):
    """GroupNorm, activation, conv, twice, plus the (1x1-projected) input; the activation as the upstream
    writes it (LlamaGen: x sigmoid(x); VAR: ``F.silu``), since the two round differently."""

    def __init__(self, c_in: int, c_out: int, activation: Callable[[Tensor], Tensor] = swish) -> None:
        super().__init__()
        self.activation = activation
        self.norm1 = group_norm(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2 = group_norm(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        if c_in != c_out:
            self.nin_shortcut = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(self.activation(self.norm1(x)))
        h = self.conv2(self.activation(self.norm2(h)))
        return (self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x) + h


class AttnBlock(nn.Module):
    """Single-head attention over the pixels of a feature map (1x1 conv projections), plus the input, in
    upstream's order: q k^T by bmm, times c^-1/2, softmax, then v by bmm (SDPA rounds differently)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = group_norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        y = self.norm(x)
        q = self.q(y).reshape(n, c, h * w).permute(0, 2, 1)  # [N, HW, C]
        weights = F.softmax(torch.bmm(q, self.k(y).reshape(n, c, h * w)) * (int(c) ** (-0.5)), dim=2)
        out = torch.bmm(self.v(y).reshape(n, c, h * w), weights.permute(0, 2, 1)).reshape(n, c, h, w)
        return x + self.proj_out(out)


class UpLevel(nn.Module):
    def __init__(self, c_in: int, c_out: int, attention: bool, upsample: bool) -> None:
        super().__init__()
        self.res = nn.ModuleList(
            ResnetBlock(c_in if j == 0 else c_out, c_out) for j in range(BLOCKS_PER_LEVEL)
        )
        self.attn = nn.ModuleList(AttnBlock(c_out) for _ in range(BLOCKS_PER_LEVEL if attention else 0))
        if upsample:
            self.upsample = nn.Module()
            self.upsample.conv = nn.Conv2d(c_out, c_out, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        for j, block in enumerate(self.res):
            x = block(x)
            if len(self.attn):
                x = self.attn[j](x)
        if hasattr(self, "upsample"):
            x = self.upsample.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return x


class VQ16Decoder(nn.Module):
    """Tokens [N, h*w] -> images in about [-1, 1], [N, 3, 16h, 16w]; keys as ``vq_ds16_c2i.pt``'s."""

    def __init__(
        self, channels: int = 128, z_channels: int = 256, codebook: int = 16384, embed_dim: int = 8
    ) -> None:
        super().__init__()
        self.quantize = nn.Module()
        self.quantize.embedding = nn.Embedding(codebook, embed_dim)
        self.post_quant_conv = nn.Conv2d(embed_dim, z_channels, 1)
        d = nn.Module()
        top = channels * MULT[-1]
        d.conv_in = nn.Conv2d(z_channels, top, 3, padding=1)
        d.mid = nn.ModuleList([ResnetBlock(top, top), AttnBlock(top), ResnetBlock(top, top)])
        levels, width = [], top
        for i, mult in enumerate(reversed(MULT)):  # lowest resolution first
            levels.append(UpLevel(width, channels * mult, attention=i == 0, upsample=i < len(MULT) - 1))
            width = channels * mult
        d.conv_blocks = nn.ModuleList(levels)
        d.norm_out = group_norm(width)
        d.conv_out = nn.Conv2d(width, 3, 3, padding=1)
        self.decoder = d

    def forward(self, tokens: Tensor) -> Tensor:
        n, length = tokens.shape
        side = math.isqrt(length)
        codes = F.normalize(self.quantize.embedding.weight, p=2, dim=-1)[tokens]  # [N, h*w, e]
        x = self.post_quant_conv(codes.reshape(n, side, side, -1).permute(0, 3, 1, 2).contiguous())
        d = self.decoder
        x = d.conv_in(x)
        for block in d.mid:
            x = block(x)
        for level in d.conv_blocks:
            x = level(x)
        return d.conv_out(swish(d.norm_out(x)))


READ_PAST = ("encoder.", "quant_conv.", "quantize.codebook_used")  # the encoder side and usage statistics


def load_vq16_decoder(path: str | Path) -> VQ16Decoder:
    """The decoder and codebook of ``vq_ds16_c2i.pt``; the encoder side is read past, all else must match."""
    state = unwrap_state_dict(
        read_checkpoint(path), path, marker="decoder.conv_out.weight", wrappers=("model",)
    )
    for key in ("quantize.embedding.weight", "post_quant_conv.weight"):
        if key not in state:
            raise UserError(f"tokenizer {path} is not a LlamaGen VQ checkpoint (no {key})")
    codebook, embed_dim = state["quantize.embedding.weight"].shape
    decoder = VQ16Decoder(
        channels=state["decoder.conv_out.weight"].shape[1] // MULT[0],
        z_channels=state["post_quant_conv.weight"].shape[0],
        codebook=codebook,
        embed_dim=embed_dim,
    )
    kept = {k: v for k, v in state.items() if not k.startswith(READ_PAST)}
    load_state_dict_strict(decoder, kept, path)
    return decoder.eval()
