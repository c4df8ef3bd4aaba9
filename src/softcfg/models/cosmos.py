"""The decoder of Cosmos' discrete video tokenizer DV8x16x16, SimpleAR's image tokenizer, in the official
weight layout.

Facts from SimpleAR's vendored Cosmos tokenizer (``simpar/model/tokenizer/cosmos_tokenizer/``:
``networks/configs.py``, ``networks/discrete_video.py``, ``modules/layers3d.py``, ``modules/patching.py``,
``modules/quantizers.py``, ``modules/utils.py``, ``utils.py``, ``video_lib.py``) and ``generate.py``:
SimpleAR decodes one frame (T = 1) of 16 x 16 px codes with the ``DV`` config at 16x spatial and 8x
temporal compression; ``decoder.jit``'s state dict loads into ``nn.Sequential(inv_quant,
post_quant_conv, decoder)``, cast to bfloat16. FSQ levels (8, 8, 8, 5, 5, 5): digit d of an index
(least significant first) gives ``(digit - L // 2) / (L // 2)``. Every convolution is causal in time
(the first frame repeated in front, zero padding in space) and factorized, (1, 3, 3) then (3, 1, 1);
GroupNorms have one group, per frame; attention is spatial, then causal temporal; the hybrid upsamplers
repeat nearest-neighbour and add a convolution's residual, then a 1 x 1 x 1 convolution; the output goes
through two levels of the inverse 3D Haar transform (patch size 4) and keeps the frames from the fourth.
The widths, block counts and attention levels are read from the weights; the compressions, patch size
and FSQ levels are DV8x16x16's.
"""

from __future__ import annotations

import math
import re
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from softcfg.models.base import load_state_dict_strict, read_checkpoint
from softcfg.options import UserError

LEVELS = (8, 8, 8, 5, 5, 5)  # FSQ: 64000 codes
PATCH_SIZE, SPATIAL_UPS, TEMPORAL_UPS = 4, 2, 1  # patch 4; 16x spatial, 8x temporal compression
HAAR = 0.7071067811865476
NOT_LEARNED = ("inv_quant.", "decoder.unpatcher3d.")  # buffers a TorchScript file may hold


@dataclass(frozen=True)
class CosmosConfig:
    """``channels[i]``: up level i's width; ``attention``: the up levels with attention blocks."""

    channels: tuple[int, ...] = (256, 512, 512)  # 128 x (2, 4, 4)
    num_res_blocks: int = 2
    attention: tuple[int, ...] = ()  # attn_resolutions [32] at 1024 px: no up level is at 32
    z_channels: int = 16
    embedding_dim: int = 6

    @classmethod
    def from_state(cls, state: dict[str, Tensor], source: str | Path) -> CosmosConfig:
        try:
            levels = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"decoder\.up\.(\d+)\.", k)))
            channels = tuple(
                state[f"decoder.up.{i}.block.0.conv1.0.conv3d.weight"].shape[0] for i in range(levels)
            )
            blocks = 1 + max(
                int(m.group(1)) for k in state if (m := re.match(r"decoder\.up\.0\.block\.(\d+)\.", k))
            )
            attention = tuple(i for i in range(levels) if f"decoder.up.{i}.attn.0.0.q.conv3d.weight" in state)
            z_channels, embedding_dim = state["post_quant_conv.conv3d.weight"].shape[:2]
            out = state["decoder.conv_out.1.conv3d.weight"].shape[0]
        except (KeyError, ValueError) as exc:
            raise UserError(f"model.tokenizer: {source} is not a Cosmos DV decoder (no {exc})") from exc
        if levels != 3 or out != 3 * PATCH_SIZE**3 or embedding_dim != len(LEVELS):
            raise UserError(
                f"model.tokenizer: {source} is not a DV8x16x16 decoder ({levels} levels, {out} output "
                f"channels, {embedding_dim}-dim codes; expected 3, {3 * PATCH_SIZE**3}, {len(LEVELS)})"
            )
        return cls(channels, blocks - 1, attention, z_channels, embedding_dim)


class CausalConv3d(nn.Module):
    """Conv3d whose time padding repeats the first frame ``kernel_t - 1`` times; zero padding in space."""

    def __init__(self, c_in: int, c_out: int, kernel: tuple[int, int, int] = (1, 1, 1), padding: int = 0):
        super().__init__()
        self.time_pad, self.padding = kernel[0] - 1, padding
        self.conv3d = nn.Conv3d(c_in, c_out, kernel)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.cat([x[:, :, :1].repeat(1, 1, self.time_pad, 1, 1), x], dim=2)
        return self.conv3d(F.pad(x, (self.padding,) * 4 + (0, 0)))


def swish(x: Tensor) -> Tensor:
    """x sigmoid(x), written as upstream does (not ``F.silu``, which rounds once in bf16)."""
    return x * torch.sigmoid(x)


def factorized(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(CausalConv3d(c_in, c_out, (1, 3, 3), 1), CausalConv3d(c_out, c_out, (3, 1, 1)))


def frames_to_batch(x: Tensor) -> Tensor:
    return x.permute(0, 2, 1, 3, 4).flatten(0, 1)  # [B, C, T, H, W] -> [B T, C, H, W]


def batch_to_frames(x: Tensor, batch: int) -> Tensor:
    return x.unflatten(0, (batch, -1)).permute(0, 2, 1, 3, 4)


class FrameNorm(nn.Module):
    """GroupNorm with one group (eps 1e-6, affine), frame by frame."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(1, channels, eps=1e-6, affine=True)

    def forward(self, x: Tensor) -> Tensor:
        return batch_to_frames(self.norm(frames_to_batch(x)), x.shape[0])


class ResnetBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = FrameNorm(c_in), factorized(c_in, c_out)
        self.norm2, self.conv2 = FrameNorm(c_out), factorized(c_out, c_out)
        self.nin_shortcut = CausalConv3d(c_in, c_out) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(swish(self.norm1(x)))
        return self.nin_shortcut(x) + self.conv2(swish(self.norm2(h)))


class Attention(nn.Module):
    """Single-head attention in upstream's order and layouts, which can change a matmul's rounding
    (q k^T, x c^-1/2, softmax; then v w^T over each frame's pixels, or causally w v over each pixel's
    frames, q k v first copied as ``(B H W), C, T``)."""

    def __init__(self, channels: int, temporal: bool) -> None:
        super().__init__()
        self.temporal = temporal
        self.norm = FrameNorm(channels)
        self.q, self.k, self.v, self.proj_out = (CausalConv3d(channels, channels) for _ in range(4))

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm(x)
        q, k, v = self.q(h), self.k(h), self.v(h)
        b, c, t, height, width = q.shape
        if self.temporal:  # [(B H W), C, T]
            q, k, v = (y.permute(0, 3, 4, 1, 2).reshape(-1, c, t) for y in (q, k, v))
        else:  # [(B T), C, H W]
            q, k, v = (frames_to_batch(y).flatten(2) for y in (q, k, v))
        w = torch.bmm(q.transpose(1, 2), k) * c**-0.5
        if self.temporal:
            w = w.masked_fill(torch.ones_like(w).tril() == 0, float("-inf"))
            out = torch.bmm(torch.softmax(w, dim=2), v.transpose(1, 2)).transpose(1, 2).reshape(-1, c, t)
            out = out.reshape(b, height, width, c, t).permute(0, 3, 4, 1, 2)
        else:
            out = torch.bmm(v, torch.softmax(w, dim=2).transpose(1, 2))
            out = batch_to_frames(out.reshape(b * t, c, height, width), b)
        return x + self.proj_out(out)


def attention_pair(channels: int) -> nn.Sequential:
    return nn.Sequential(Attention(channels, temporal=False), Attention(channels, temporal=True))


class HybridUpsample(nn.Module):
    """Temporal (x2 where there is more than one frame) and spatial nearest-neighbour upsampling, each
    plus its convolution's residual, then a 1 x 1 x 1 convolution."""

    def __init__(self, channels: int, spatial: bool, temporal: bool) -> None:
        super().__init__()
        self.conv1 = CausalConv3d(channels, channels, (3, 1, 1))
        self.conv2 = CausalConv3d(channels, channels, (1, 3, 3), 1)
        self.conv3 = CausalConv3d(channels, channels)
        self.spatial, self.temporal = spatial, temporal

    def forward(self, x: Tensor) -> Tensor:
        if not (self.spatial or self.temporal):
            return x
        if self.temporal:
            factor = 2 if x.shape[2] > 1 else 1
            x = x.repeat_interleave(factor, dim=2)[:, :, factor - 1 :]
            x = self.conv1(x) + x
        if self.spatial:
            x = x.repeat_interleave(2, dim=3).repeat_interleave(2, dim=4)
            x = self.conv2(x) + x
        return self.conv3(x)


class UpLevel(nn.Module):
    def __init__(self, c_in: int, c_out: int, blocks: int, attention: bool, upsample: HybridUpsample | None):
        super().__init__()
        self.block = nn.ModuleList(ResnetBlock(c_in if j == 0 else c_out, c_out) for j in range(blocks))
        self.attn = nn.ModuleList(attention_pair(c_out) for _ in range(blocks if attention else 0))
        if upsample is not None:
            self.upsample = upsample


def inverse_haar_3d(x: Tensor) -> Tensor:
    """One level of the inverse 3D Haar transform: 8 sub-bands of C channels -> C channels, each of T,
    H, W doubled (width, then height, then time), rescaled by 2 sqrt(2)."""
    g = x.shape[1] // 8
    low = torch.tensor([HAAR, HAAR], dtype=x.dtype, device=x.device).view(1, 1, 2).repeat(g, 1, 1)
    high = torch.tensor([HAAR, -HAAR], dtype=x.dtype, device=x.device).view(1, 1, 2).repeat(g, 1, 1)

    def up(a: Tensor, b: Tensor, axis: int) -> Tensor:  # axis 2, 3, 4: time, height, width
        shape, stride = [g, 1, 1, 1, 1], [1, 1, 1]
        shape[axis], stride[axis - 2] = 2, 2
        out = F.conv_transpose3d(a, low.reshape(shape), groups=g, stride=stride)
        return out + F.conv_transpose3d(b, high.reshape(shape), groups=g, stride=stride)

    bands = torch.chunk(x, 8, dim=1)  # lll, llh, lhl, lhh, hll, hlh, hhl, hhh
    pairs = [up(bands[i], bands[i + 1], 4) for i in range(0, 8, 2)]  # width
    halves = [up(pairs[0], pairs[1], 3), up(pairs[2], pairs[3], 3)]  # height
    return up(halves[0], halves[1], 2) * (2 * torch.sqrt(torch.tensor(2.0)))  # time


class CosmosDecoder(nn.Module):
    """FSQ indices [N, h, w] (one frame) -> images [N, 3, 16h, 16w] in about [-1, 1]."""

    def __init__(self, config: CosmosConfig) -> None:
        super().__init__()
        self.config = config
        channels, top = config.channels, config.channels[-1]
        self.post_quant_conv = CausalConv3d(config.embedding_dim, config.z_channels)
        self.decoder = nn.Module()
        d = self.decoder
        d.conv_in = nn.Sequential(
            CausalConv3d(config.z_channels, top, (1, 3, 3), 1), CausalConv3d(top, top, (3, 1, 1))
        )
        d.mid = nn.Module()
        d.mid.block_1, d.mid.attn_1, d.mid.block_2 = (
            ResnetBlock(top, top),
            attention_pair(top),
            ResnetBlock(top, top),
        )
        ins, levels = (*channels[1:], top), len(channels)
        ups = []
        for i, c in enumerate(channels):
            upsample = None
            if i != 0:
                reverse = levels - 1 - i  # upstream's non-legacy rule for which levels upsample what
                temporal = 0 < reverse < TEMPORAL_UPS + 1
                spatial = temporal or (reverse < SPATIAL_UPS and SPATIAL_UPS > TEMPORAL_UPS)
                upsample = HybridUpsample(c, spatial, temporal)
            ups.append(UpLevel(ins[i], c, config.num_res_blocks + 1, i in config.attention, upsample))
        d.up = nn.ModuleList(ups)
        d.norm_out = FrameNorm(channels[0])
        d.conv_out = factorized(channels[0], 3 * PATCH_SIZE**3)

    def codes(self, indices: Tensor) -> Tensor:
        """FSQ: indices [N, T, h, w] -> codes [N, 6, T, h, w] in [-1, 1], in the decoder's dtype."""
        levels = torch.tensor(LEVELS, device=indices.device)
        basis = torch.cumprod(torch.tensor((1, *LEVELS[:-1]), device=indices.device), 0)
        digits = (indices[..., None] // basis) % levels
        half = levels // 2
        return ((digits - half) / half).permute(0, 4, 1, 2, 3).to(self.post_quant_conv.conv3d.weight.dtype)

    def forward(self, indices: Tensor) -> Tensor:
        d = self.decoder
        h = d.conv_in(self.post_quant_conv(self.codes(indices[:, None])))
        h = d.mid.block_2(d.mid.attn_1(d.mid.block_1(h)))
        for level in reversed(d.up):
            for j, block in enumerate(level.block):
                h = block(h)
                if len(level.attn):
                    h = level.attn[j](h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        h = d.conv_out(swish(d.norm_out(h)))
        for _ in range(int(math.log2(PATCH_SIZE))):
            h = inverse_haar_3d(h)
        return h[:, :, PATCH_SIZE - 1 :][:, :, 0]  # the frame of a one-frame latent


def read_cosmos_state(path: str | Path) -> dict[str, Tensor]:
    """The state dict of ``decoder.jit`` (a TorchScript archive, whose code is never run) or of a plain
    ``torch.save`` file."""
    path = Path(path)
    if (
        path.is_file()
        and zipfile.is_zipfile(path)
        and any(n.endswith("constants.pkl") for n in zipfile.ZipFile(path).namelist())
    ):
        try:
            with warnings.catch_warnings():  # TorchScript is deprecated, and the official format
                warnings.simplefilter("ignore", FutureWarning)
                return dict(torch.jit.load(path, map_location="cpu").state_dict())
        except Exception as exc:
            raise UserError(f"model.tokenizer: {path} is an unreadable TorchScript file: {exc}") from exc
    return read_checkpoint(path)


def load_cosmos_decoder(path: str | Path, dtype: torch.dtype = torch.bfloat16) -> CosmosDecoder:
    """The decoder of ``decoder.jit``, strictly on its learned weights, in ``dtype`` (SimpleAR: bf16)."""
    state = {k: v for k, v in read_cosmos_state(path).items() if not k.startswith(NOT_LEARNED)}
    decoder = CosmosDecoder(CosmosConfig.from_state(state, path))
    load_state_dict_strict(decoder, state, path)
    return decoder.to(dtype).eval()


def cosmos_images_to_uint8(images: Tensor) -> Tensor:
    """[N, 3, H, W] in about [-1, 1] -> uint8 [N, H, W, 3] as ``torchvision.utils.save_image(...,
    normalize=True, value_range=(-1, 1))`` writes them, in the images' dtype: clamp to [-1, 1], + 1,
    / 2, x 255, + 0.5, clamp to [0, 255], truncating cast."""
    x = images.clamp(-1, 1).sub(-1).div(2)
    return x.mul(255).add(0.5).clamp(0, 255).permute(0, 2, 3, 1).to(torch.uint8).contiguous()
