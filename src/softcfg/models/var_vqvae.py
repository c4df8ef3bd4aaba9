"""VAR's multi-scale VQVAE (``vae_ch160v4096z32.pth``, a raw state dict, loaded strictly).

Facts kept from upstream: a taming-style CNN, channels 160 x (1, 1, 2, 2, 4), z 32, GroupNorm(32, eps 1e-6)
and swish; two residual blocks per encoder level and three per decoder level, a single-conv ``qkv``
attention block after every residual block of the lowest-resolution level and in the mid block;
``decoder.up[l]`` is level l (0 = full resolution). The quantiser holds the codebook (4096 x 32) and four
shared residual convs phi (``quantize.quant_resi.qresi_ls``: 0.5 x + 0.5 conv3x3(x)); scale si of K uses
the phi whose tick in linspace(1/12, 11/12, 4) is nearest si / (K - 1). A generation's scale maps add up
in a 16 x 16 float32 latent f_hat (each map upsampled bicubically, except the last, then phi); the decoder
turns post_quant_conv(f_hat) into an image in [-1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from softcfg.models.base import load_state_dict_strict, read_checkpoint
from softcfg.models.llamagen_vq import ResnetBlock, group_norm
from softcfg.options import UserError

PATCH_NUMS = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
NUM_PHI = 4  # upstream's share_quant_resi for the released VAE
PHI_RATIO = 0.5  # phi(x) = (1 - r) x + r conv(x)


@dataclass(frozen=True)
class VQVAEConfig:
    channels: int = 160
    mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    z_channels: int = 32
    vocab_size: int = 4096
    res_blocks: int = 2  # per encoder level; the decoder has one more
    patch_nums: tuple[int, ...] = PATCH_NUMS


RELEASED = VQVAEConfig()  # vae_ch160v4096z32.pth


def phi_index(scale: int, num_scales: int) -> int:
    """Which of the four phi convs scale ``scale`` of ``num_scales`` uses: nearest tick to scale / (K - 1),
    in float64 as upstream's numpy lookup (scales 2 and 7 of 10 are ties broken by rounding)."""
    ticks = np.linspace(1 / 3 / NUM_PHI, 1 - 1 / 3 / NUM_PHI, NUM_PHI)
    return int(np.argmin(np.abs(ticks - scale / (num_scales - 1))))


class AttnBlock(nn.Module):
    """Single-head attention over the pixels of a feature map; q, k, v from one 1x1 conv ``qkv``; in
    upstream's order: q k^T by bmm, times C^-1/2, softmax, then v by bmm (SDPA rounds differently)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3, c, h, w).unbind(1)
        q = q.reshape(n, c, h * w).permute(0, 2, 1).contiguous()  # [N, HW, C]
        weights = F.softmax(torch.bmm(q, k.reshape(n, c, h * w).contiguous()) * (int(c) ** (-0.5)), dim=2)
        out = torch.bmm(v.reshape(n, c, h * w).contiguous(), weights.permute(0, 2, 1).contiguous())
        return x + self.proj_out(out.view(n, c, h, w))


def _mid(channels: int) -> nn.Module:
    mid = nn.Module()
    mid.block_1 = ResnetBlock(channels, channels, F.silu)
    mid.attn_1 = AttnBlock(channels)
    mid.block_2 = ResnetBlock(channels, channels, F.silu)
    return mid


def _level(c_in: int, c_out: int, blocks: int, attention: bool) -> nn.Module:
    level = nn.Module()
    level.block = nn.ModuleList(ResnetBlock(c_in if j == 0 else c_out, c_out, F.silu) for j in range(blocks))
    level.attn = nn.ModuleList(AttnBlock(c_out) for _ in range(blocks if attention else 0))
    return level


class Encoder(nn.Module):
    """The encoder's weights in upstream's layout. Sampling never encodes; it is held so the released file
    loads strictly (every key accounted for)."""

    def __init__(self, c: VQVAEConfig) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(3, c.channels, 3, padding=1)
        self.down = nn.ModuleList()
        width = c.channels
        for i, mult in enumerate(c.mult):
            last = i == len(c.mult) - 1
            level = _level(width, c.channels * mult, c.res_blocks, attention=last)
            width = c.channels * mult
            if not last:
                level.downsample = nn.Module()
                level.downsample.conv = nn.Conv2d(width, width, 3, stride=2)
            self.down.append(level)
        self.mid = _mid(width)
        self.norm_out = group_norm(width)
        self.conv_out = nn.Conv2d(width, c.z_channels, 3, padding=1)


class Decoder(nn.Module):
    """z [N, z, h, w] -> images [N, 3, 2^(levels-1) h, ...] in about [-1, 1]."""

    def __init__(self, c: VQVAEConfig) -> None:
        super().__init__()
        width = c.channels * c.mult[-1]
        self.conv_in = nn.Conv2d(c.z_channels, width, 3, padding=1)
        self.mid = _mid(width)
        levels = []
        for i in reversed(range(len(c.mult))):  # built lowest resolution first, stored by level index
            level = _level(width, c.channels * c.mult[i], c.res_blocks + 1, attention=i == len(c.mult) - 1)
            width = c.channels * c.mult[i]
            if i != 0:
                level.upsample = nn.Module()
                level.upsample.conv = nn.Conv2d(width, width, 3, padding=1)
            levels.insert(0, level)
        self.up = nn.ModuleList(levels)
        self.norm_out = group_norm(width)
        self.conv_out = nn.Conv2d(width, 3, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(self.conv_in(z))))
        for i in reversed(range(len(self.up))):
            level = self.up[i]
            for j, block in enumerate(level.block):
                h = block(h)
                if len(level.attn):
                    h = level.attn[j](h)
            if i != 0:
                h = level.upsample.conv(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))


class Quantizer(nn.Module):
    """The codebook and the phi convs: how scale token maps accumulate into f_hat."""

    def __init__(self, c: VQVAEConfig) -> None:
        super().__init__()
        self.patch_nums = c.patch_nums
        self.embedding = nn.Embedding(c.vocab_size, c.z_channels)
        self.quant_resi = nn.Module()
        self.quant_resi.qresi_ls = nn.ModuleList(
            nn.Conv2d(c.z_channels, c.z_channels, 3, padding=1) for _ in range(NUM_PHI)
        )
        # training statistics of code usage per scale; kept for strict loading
        self.register_buffer("ema_vocab_hit_SV", torch.zeros(len(c.patch_nums), c.vocab_size))

    def phi(self, h: Tensor, scale: int) -> Tensor:
        conv = self.quant_resi.qresi_ls[phi_index(scale, len(self.patch_nums))]
        return (1 - PHI_RATIO) * h + PHI_RATIO * conv(h)

    def add_scale(self, f_hat: Tensor, tokens: Tensor, scale: int) -> Tensor:
        """f_hat [N, z, P, P] float32 plus scale ``scale``'s map ``tokens`` [N, p^2] (row-major): embed,
        bicubic upsample to P (not at the last scale), phi. Returns the new f_hat."""
        n, p, side = tokens.shape[0], self.patch_nums[scale], self.patch_nums[-1]
        h = self.embedding(tokens).transpose(1, 2).reshape(n, -1, p, p).float()
        if scale != len(self.patch_nums) - 1:
            h = F.interpolate(h, size=(side, side), mode="bicubic")
        return f_hat + self.phi(h, scale)

    def next_input(self, f_hat: Tensor, scale: int) -> Tensor:
        """The transformer input of scale ``scale`` (>= 1): f_hat area-downsampled to p, [N, p^2, z]."""
        p = self.patch_nums[scale]
        return F.interpolate(f_hat, size=(p, p), mode="area").flatten(2).transpose(1, 2)

    def tokens_to_fhat(self, tokens: Tensor) -> Tensor:
        """All scales' maps concatenated, [N, sum p^2] -> the final f_hat [N, z, P, P] float32."""
        side = self.patch_nums[-1]
        f_hat = torch.zeros(tokens.shape[0], self.embedding.embedding_dim, side, side, device=tokens.device)
        start = 0
        for scale, p in enumerate(self.patch_nums):
            f_hat = self.add_scale(f_hat, tokens[:, start : start + p * p], scale)
            start += p * p
        return f_hat


class VQVAE(nn.Module):
    """Keys as ``vae_ch160v4096z32.pth``'s; the weights stay float32 (the f_hat sums are float32)."""

    def __init__(self, config: VQVAEConfig = RELEASED) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.quantize = Quantizer(config)
        self.quant_conv = nn.Conv2d(config.z_channels, config.z_channels, 3, padding=1)
        self.post_quant_conv = nn.Conv2d(config.z_channels, config.z_channels, 3, padding=1)

    def fhat_to_images(self, f_hat: Tensor) -> Tensor:
        """f_hat -> images in [0, 1], [N, 3, H, W]: decode, clamp to [-1, 1], then (x + 1) / 2."""
        return (self.decoder(self.post_quant_conv(f_hat)).clamp(-1, 1) + 1) / 2


def load_var_vqvae(path: str | Path, config: VQVAEConfig = RELEASED) -> VQVAE:
    """The whole VQVAE of ``vae_ch160v4096z32.pth``, encoder included, every key checked."""
    state = read_checkpoint(path)
    if "quantize.embedding.weight" not in state:
        raise UserError(f"tokenizer {path} is not VAR's VQVAE (no quantize.embedding.weight)")
    vae = VQVAE(config)
    load_state_dict_strict(vae, state, path)
    return vae.eval()
