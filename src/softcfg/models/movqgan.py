"""MoVQGAN's decoder (Lumina-mGPT 2.0's image tokenizer), in the official weight layout.

Facts from Lumina-mGPT 2.0's ``lumina_mgpt/movqgan/`` (``__init__.py``, ``models/vqgan.py``,
``modules/vqvae/movq_modules.py``): ``get_movqgan_model('270M')`` loads ``movqgan_270M.ckpt`` (a raw
state dict) non-strictly into ``MOVQ``; codes go through ``quantize.embedding`` (16384 x 4),
``post_quant_conv`` (1 x 1) and ``MOVQDecoder(z, zq)`` whose every norm is a spatially conditioned
GroupNorm (32 groups, eps 1e-6, affine) scaled by ``conv_y(zq)`` and shifted by ``conv_b(zq)``, the codes'
embedding zq resized (nearest) to the feature map. The 270M decoder: channels 256 x (1, 2, 2, 4), two
residual blocks + 1 per level, attention at the lowest resolution, three nearest-neighbour x2 upsamplings
(8 px per code). The architecture is read from the checkpoint's shapes, so the official file gives the
official decoder; decoder-side keys (``decoder.``, ``post_quant_conv.``, ``quantize.embedding.``) load
strictly, the encoder side is not needed and left out (as upstream's non-strict load leaves any extra).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from softcfg.models.base import load_state_dict_strict, read_checkpoint, unwrap_state_dict
from softcfg.options import UserError

DECODER_SIDE = ("decoder.", "post_quant_conv.", "quantize.embedding.")


@dataclass(frozen=True)
class MoVQConfig:
    """``channels[i]``: level i's width (``ch * ch_mult[i]``); attention in the levels ``attention``."""

    channels: tuple[int, ...] = (256, 512, 512, 1024)
    num_res_blocks: int = 2
    attention: tuple[int, ...] = (3,)
    z_channels: int = 4
    embed_dim: int = 4
    n_embed: int = 16384
    out_channels: int = 3

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.channels) - 1)

    @classmethod
    def from_state(cls, state: dict[str, Tensor], source: str | Path) -> MoVQConfig:
        """The decoder's architecture from its weights' names and shapes."""
        try:
            n_embed, embed_dim = state["quantize.embedding.weight"].shape
            levels = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"decoder\.up\.(\d+)\.", k)))
            channels = tuple(state[f"decoder.up.{i}.block.0.conv1.weight"].shape[0] for i in range(levels))
            blocks = 1 + max(
                int(m.group(1)) for k in state if (m := re.match(r"decoder\.up\.0\.block\.(\d+)\.", k))
            )
            attention = tuple(i for i in range(levels) if f"decoder.up.{i}.attn.0.q.weight" in state)
            return cls(
                channels, blocks - 1, attention, state["decoder.conv_in.weight"].shape[1], embed_dim, n_embed,
                state["decoder.conv_out.weight"].shape[0],
            )  # fmt: skip
        except (KeyError, ValueError) as exc:
            raise UserError(f"model.tokenizer: {source} is not a MoVQGAN checkpoint (no {exc})") from exc


def swish(x: Tensor) -> Tensor:
    """x sigmoid(x), upstream's ``nonlinearity`` as written (``F.silu`` rounds differently in bf16)."""
    return x * torch.sigmoid(x)


class SpatialNorm(nn.Module):
    """GroupNorm(f) * conv_y(zq) + conv_b(zq), zq resized (nearest) to f's size."""

    def __init__(self, channels: int, zq_channels: int) -> None:
        super().__init__()
        self.norm_layer = nn.GroupNorm(32, channels, eps=1e-6, affine=True)
        self.conv_y = nn.Conv2d(zq_channels, channels, 1)
        self.conv_b = nn.Conv2d(zq_channels, channels, 1)

    def forward(self, f: Tensor, zq: Tensor) -> Tensor:
        zq = F.interpolate(zq, size=f.shape[-2:], mode="nearest")
        return self.norm_layer(f) * self.conv_y(zq) + self.conv_b(zq)


class ResnetBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, zq: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = SpatialNorm(c_in, zq), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2, self.conv2 = SpatialNorm(c_out, zq), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else None

    def forward(self, x: Tensor, zq: Tensor) -> Tensor:
        h = self.conv1(swish(self.norm1(x, zq)))
        h = self.conv2(swish(self.norm2(h, zq)))
        return (x if self.nin_shortcut is None else self.nin_shortcut(x)) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the map, in upstream's order: q k^T, then x c^-1/2, softmax."""

    def __init__(self, channels: int, zq: int) -> None:
        super().__init__()
        self.norm = SpatialNorm(channels, zq)
        self.q, self.k, self.v = (nn.Conv2d(channels, channels, 1) for _ in range(3))
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor, zq: Tensor) -> Tensor:
        h = self.norm(x, zq)
        b, c, height, width = h.shape
        q = self.q(h).reshape(b, c, -1).permute(0, 2, 1)
        w = torch.softmax(torch.bmm(q, self.k(h).reshape(b, c, -1)) * c**-0.5, dim=2)
        out = torch.bmm(self.v(h).reshape(b, c, -1), w.permute(0, 2, 1)).reshape(b, c, height, width)
        return x + self.proj_out(out)


class Upsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UpLevel(nn.Module):
    def __init__(self, c_in: int, c_out: int, config: MoVQConfig, attention: bool, upsample: bool) -> None:
        super().__init__()
        zq, n = config.embed_dim, config.num_res_blocks + 1
        self.block = nn.ModuleList(ResnetBlock(c_in if j == 0 else c_out, c_out, zq) for j in range(n))
        self.attn = nn.ModuleList(AttnBlock(c_out, zq) for _ in range(n if attention else 0))
        self.upsample = Upsample(c_out) if upsample else None


class MoVQDecoder(nn.Module):
    """Codes [N, h, w] -> images [N, 3, 8h, 8w] in about [-1, 1] (the 270M layout)."""

    def __init__(self, config: MoVQConfig) -> None:
        super().__init__()
        self.config = config
        zq, top = config.embed_dim, config.channels[-1]
        self.quantize = nn.Module()
        self.quantize.embedding = nn.Embedding(config.n_embed, config.embed_dim)
        self.post_quant_conv = nn.Conv2d(config.embed_dim, config.z_channels, 1)
        self.decoder = nn.Module()
        self.decoder.conv_in = nn.Conv2d(config.z_channels, top, 3, padding=1)
        self.decoder.mid = nn.Module()
        self.decoder.mid.block_1 = ResnetBlock(top, top, zq)
        self.decoder.mid.attn_1 = AttnBlock(top, zq)
        self.decoder.mid.block_2 = ResnetBlock(top, top, zq)
        ins = (*config.channels[1:], top)  # level i takes level i + 1's width (the lowest takes its own)
        self.decoder.up = nn.ModuleList(
            UpLevel(ins[i], c, config, i in config.attention, upsample=i != 0)
            for i, c in enumerate(config.channels)
        )
        self.decoder.norm_out = SpatialNorm(config.channels[0], zq)
        self.decoder.conv_out = nn.Conv2d(config.channels[0], config.out_channels, 3, padding=1)

    def forward(self, codes: Tensor) -> Tensor:
        quant = self.quantize.embedding(codes).permute(0, 3, 1, 2).contiguous()  # zq [N, 4, h, w]
        d = self.decoder
        h = d.conv_in(self.post_quant_conv(quant))
        h = d.mid.block_2(d.mid.attn_1(d.mid.block_1(h, quant), quant), quant)
        for level in reversed(d.up):
            for j, block in enumerate(level.block):
                h = block(h, quant)
                if len(level.attn):
                    h = level.attn[j](h, quant)
            if level.upsample is not None:
                h = level.upsample(h)
        return d.conv_out(swish(d.norm_out(h, quant)))


def load_movq_decoder(path: str | Path) -> MoVQDecoder:
    """The decoder of a MoVQGAN checkpoint (raw, as ``movqgan_270M.ckpt``, or under ``state_dict``)."""
    state = unwrap_state_dict(read_checkpoint(path), path, "quantize.embedding.weight", ("state_dict",))
    decoder = MoVQDecoder(MoVQConfig.from_state(state, path))
    load_state_dict_strict(decoder, {k: v for k, v in state.items() if k.startswith(DECODER_SIDE)}, path)
    return decoder.eval()


def movq_images_to_uint8(images: Tensor) -> Tensor:
    """[N, 3, H, W] in about [-1, 1] -> uint8 [N, H, W, 3] as the official ``show_images``:
    ((x + 1) * 127.5), rounded, clamped to [0, 255]."""
    return (
        ((images.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
    )
