"""Janus-Pro's image decode against DeepSeek's own (``janus/models/vq_model.py``, ``VQModel.decode_code``,
and ``generation_inference.py``), recomputed here op by op in DeepSeek's order with the tiny random
model's VQ weights: transformers' ``JanusVQVAE.decode`` must give the same floats bit for bit, and
``JanusPro.decode_images`` the same uint8 pixels as DeepSeek's numpy conversion."""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

os.environ["HF_HUB_OFFLINE"] = "1"
pytest.importorskip("transformers")
from janus_tiny import BOI, BOS, CODEBOOK, GRID, PAD, tiny_janus
from softcfg.models.janus import JanusPro


@pytest.fixture(scope="module")
def model() -> JanusPro:
    return JanusPro(tiny_janus(), None, BOS, PAD, BOI)


def tokens(batch: int = 3, seed: int = 1) -> Tensor:
    """Random image tokens, int32 as DeepSeek's ``generated_tokens.to(dtype=torch.int)``."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, CODEBOOK, (batch, GRID**2), generator=generator, dtype=torch.int32)


def swish(x: Tensor) -> Tensor:
    """DeepSeek's ``nonlinearity``: x * sigmoid(x), not F.silu."""
    return x * torch.sigmoid(x)


def conv(module: nn.Conv2d, x: Tensor) -> Tensor:
    return F.conv2d(x, module.weight, module.bias, module.stride, module.padding)


def group_norm(module: nn.GroupNorm, x: Tensor) -> Tensor:
    """DeepSeek's ``Normalize``: GroupNorm, 32 groups, eps 1e-6, affine."""
    return F.group_norm(x, 32, module.weight, module.bias, 1e-6)


def resnet(block: nn.Module, x: Tensor) -> Tensor:
    """norm1, swish, conv1, norm2, swish, (dropout), conv2; the shortcut (1x1 nin) when widths differ;
    then x + h, the residual first."""
    h = conv(block.conv1, swish(group_norm(block.norm1, x)))
    h = conv(block.conv2, swish(group_norm(block.norm2, h)))
    if block.in_channels != block.out_channels:
        x = conv(block.nin_shortcut, x)
    return x + h


def attention(block: nn.Module, x: Tensor) -> Tensor:
    """One head over the h*w positions: w = bmm(q^T, k), then * c^-0.5, softmax over keys; then
    bmm(v, w^T), proj_out, x + h. No SDPA."""
    h = group_norm(block.norm, x)
    q, k, v = conv(block.q, h), conv(block.k, h), conv(block.v, h)
    b, c, height, width = q.shape
    q = q.reshape(b, c, height * width).permute(0, 2, 1)
    w = torch.bmm(q, k.reshape(b, c, height * width))
    w = F.softmax(w * (int(c) ** (-0.5)), dim=2)
    out = torch.bmm(v.reshape(b, c, height * width), w.permute(0, 2, 1)).reshape(b, c, height, width)
    return x + conv(block.proj_out, out)


def upsample(block: nn.Module, x: Tensor) -> Tensor:
    """Nearest x2, in float32 for a non-float32 input then cast to bfloat16, then the 3x3 conv."""
    if x.dtype != torch.float32:
        x = F.interpolate(x.float(), scale_factor=2.0, mode="nearest").to(torch.bfloat16)
    else:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
    return conv(block.conv, x)


def deepseek_decode_code(vq: nn.Module, code: Tensor) -> Tensor:
    """``decode_code``: the whole codebook l2-normalised first, rows gathered, reshaped (b, h, w, c) and
    made channel-first contiguous; post_quant_conv; decoder conv_in, mid (res, attn, res), per level
    num_res_blocks + 1 res blocks (each followed by attention at the lowest resolution), upsample
    between levels; norm_out, swish, conv_out."""
    embedding = F.normalize(vq.quantize.embedding.weight, p=2, dim=-1)
    z = embedding[code]
    z = z.reshape(code.shape[0], GRID, GRID, z.shape[-1]).permute(0, 3, 1, 2).contiguous()
    h = conv(vq.post_quant_conv, z)
    decoder = vq.decoder
    h = conv(decoder.conv_in, h)
    h = resnet(decoder.mid.block_1, h)
    h = attention(decoder.mid.attn_1, h)
    h = resnet(decoder.mid.block_2, h)
    for i_level, level in enumerate(decoder.up):
        for i_block, block in enumerate(level.block):
            h = resnet(block, h)
            if len(level.attn) > 0:
                h = attention(level.attn[i_block], h)
        if i_level != len(decoder.up) - 1:
            h = upsample(level.upsample, h)
    return conv(decoder.conv_out, swish(group_norm(decoder.norm_out, h)))


def deepseek_pixels(dec: Tensor) -> np.ndarray:
    """``generation_inference.py``: float32 numpy, NHWC, clip((x + 1) / 2 * 255, 0, 255), assigned into a
    uint8 array (a truncating cast)."""
    dec = dec.to(torch.float32).cpu().numpy().transpose(0, 2, 3, 1)
    dec = np.clip((dec + 1) / 2 * 255, 0, 255)
    pixels = np.zeros(dec.shape, dtype=np.uint8)
    pixels[:] = dec
    return pixels


@torch.no_grad()
def test_vq_decode_equals_deepseek_order(model: JanusPro) -> None:
    """transformers' decode (float32) is DeepSeek's decode_code, bit for bit."""
    vq = model.hf.model.vqmodel
    code = tokens()
    ours = vq.decode(code.long())
    expected = deepseek_decode_code(vq, code)
    assert ours.dtype == torch.float32 and ours.shape == (3, 3, 32, 32)
    assert torch.equal(ours, expected), (ours - expected).abs().max()


@torch.no_grad()
def test_vq_decode_bfloat16_equals_deepseek_order(model: JanusPro) -> None:
    """In bfloat16, as DeepSeek runs it (``vl_gpt.to(torch.bfloat16)``): still bit for bit."""
    vq = copy.deepcopy(model.hf.model.vqmodel).to(torch.bfloat16)
    code = tokens(seed=2)
    ours = vq.decode(code.long())
    expected = deepseek_decode_code(vq, code)
    assert ours.dtype == torch.bfloat16
    assert torch.equal(ours, expected), (ours.float() - expected.float()).abs().max()


@torch.no_grad()
def test_decode_images_equals_deepseek_pixels(model: JanusPro) -> None:
    """decode_images' uint8 NHWC pixels are DeepSeek's numpy conversion of the same decode."""
    code = tokens(seed=3)
    images = model.decode_images(code.long())
    expected = deepseek_pixels(deepseek_decode_code(model.hf.model.vqmodel, code))
    assert images.dtype == torch.uint8 and images.shape == (3, 32, 32, 3)
    assert np.array_equal(images.numpy(), expected), int((images.numpy() != expected).sum())


def test_pixel_conversion_equals_deepseek_on_a_wide_range(
    model: JanusPro, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The conversion alone on values over [-1.5, 1.5] (clipping both ends) and at the uint8 boundaries
    of the 255/2 grid: clamp-then-scale gives DeepSeek's scale-then-clip."""
    generator = torch.Generator().manual_seed(4)
    x = torch.rand(2, 3, 32, 32, generator=generator) * 3 - 1.5
    grid = torch.arange(256, dtype=torch.float32) * 2 / 255 - 1  # (x + 1) / 2 * 255 about k, and neighbours
    x.view(-1)[: 3 * 256] = torch.cat([grid, grid.nextafter(grid - 1), grid.nextafter(grid + 1)])
    monkeypatch.setattr(model.hf.model.vqmodel, "decode", lambda _: x)
    images = model.decode_images(tokens(batch=2))
    assert np.array_equal(images.numpy(), deepseek_pixels(x))
