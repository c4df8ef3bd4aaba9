"""The MaskGIT-VQ image decoder (``maskgit-vqgan-imagenet-f16-256.bin``), used by RAR.

Facts kept from upstream: channels 128 x (1, 1, 2, 2, 4), z 256, two residual blocks per level, two mid
blocks, no attention; every conv pads like TensorFlow's "SAME"; residual convs have no bias; when a
block changes width its shortcut is a 1x1 conv of the block's *output* (an upstream quirk, kept);
nearest upsampling then a conv; codebook 1024 x 256 without normalisation; output clamped to [0, 1].
"""

from __future__ import annotations

import math
from pathlib import Path

import torch.nn.functional as F
from torch import Tensor, nn

from softcfg.models.base import load_state_dict_strict, read_checkpoint
from softcfg.options import UserError

MULT = (1, 1, 2, 2, 4)


class SameConv2d(nn.Conv2d):
    """Conv2d padded like TensorFlow's "SAME" (the extra pixel of an odd total goes after)."""

    def forward(self, x: Tensor) -> Tensor:
        pads = []
        for size, k, s in (
            (x.shape[-1], self.kernel_size[1], self.stride[1]),
            (x.shape[-2], self.kernel_size[0], self.stride[0]),
        ):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads) if any(pads) else x)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(32, c_in, eps=1e-6)
        self.conv1 = SameConv2d(c_in, c_out, 3, bias=False)
        self.norm2 = nn.GroupNorm(32, c_out, eps=1e-6)
        self.conv2 = SameConv2d(c_out, c_out, 3, bias=False)
        self.changes_width = c_in != c_out
        if self.changes_width:
            self.nin_shortcut = SameConv2d(c_out, c_out, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return h + (self.nin_shortcut(h) if self.changes_width else x)


class UpLevel(nn.Module):
    def __init__(self, c_in: int, c_out: int, upsample: bool) -> None:
        super().__init__()
        self.block = nn.ModuleList([ResBlock(c_in, c_out), ResBlock(c_out, c_out)])
        if upsample:
            self.upsample_conv = SameConv2d(c_out, c_out, 3)

    def forward(self, x: Tensor) -> Tensor:
        for block in self.block:
            x = block(x)
        if hasattr(self, "upsample_conv"):
            x = self.upsample_conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return x


class MaskGitDecoder(nn.Module):
    """Tokens [N, h*w] -> images in [0, 1] [N, 3, 16h, 16w]; keys as the official tokenizer's decoder."""

    def __init__(self, channels: int = 128, z_channels: int = 256, codebook: int = 1024) -> None:
        super().__init__()
        self.quantize = nn.Module()
        self.quantize.embedding = nn.Embedding(codebook, z_channels)
        d = nn.Module()
        top = channels * MULT[-1]
        d.conv_in = SameConv2d(z_channels, top, 3)
        d.mid = nn.ModuleList([ResBlock(top, top), ResBlock(top, top)])
        # up[i] is level i; it runs from the lowest resolution (4) to the highest (0)
        d.up = nn.ModuleList(
            UpLevel(channels * MULT[min(i + 1, len(MULT) - 1)], channels * MULT[i], upsample=i != 0)
            for i in range(len(MULT))
        )
        d.norm_out = nn.GroupNorm(32, channels * MULT[0], eps=1e-6)
        d.conv_out = SameConv2d(channels * MULT[0], 3, 3)
        self.decoder = d

    def forward(self, tokens: Tensor) -> Tensor:
        n, length = tokens.shape
        side = math.isqrt(length)
        x = self.quantize.embedding(tokens).view(n, side, side, -1).permute(0, 3, 1, 2)
        d = self.decoder
        x = d.conv_in(x)
        for block in d.mid:
            x = block(x)
        for level in reversed(d.up):
            x = level(x)
        return d.conv_out(F.silu(d.norm_out(x))).clamp(0.0, 1.0)


def load_maskgit_decoder(path: str | Path) -> MaskGitDecoder:
    """The decoder and codebook of the tokenizer checkpoint; encoder keys are read past, others must match."""
    state = read_checkpoint(path)
    if "decoder.conv_in.weight" not in state or "quantize.embedding.weight" not in state:
        raise UserError(f"tokenizer {path} is not a MaskGIT-VQ checkpoint (no decoder.conv_in / quantize)")
    codebook, z = state["quantize.embedding.weight"].shape
    channels = state["decoder.conv_out.weight"].shape[1] // MULT[0]
    decoder = MaskGitDecoder(channels=channels, z_channels=z, codebook=codebook)
    load_state_dict_strict(decoder, {k: v for k, v in state.items() if not k.startswith("encoder.")}, path)
    return decoder.eval()
