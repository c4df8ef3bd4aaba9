"""SimpleAR's Cosmos DV8x16x16 decode against the upstream tokenizer SimpleAR vendors
(``simpar/model/tokenizer/cosmos_tokenizer/``: ``modules/quantizers.py``, ``networks/discrete_video.py``,
``modules/layers3d.py``, ``modules/utils.py``, ``modules/patching.py``), recomputed here op by op in
upstream's order and memory layouts with the tiny random decoder's weights: ``CosmosDecoder`` must give
the same floats bit for bit, in float32 and in bfloat16 (``CausalVideoTokenizer``'s dtype).

What upstream does, in order:

- FSQ ``indices_to_codes``: digits ``(i // basis) % levels`` on a trailing axis, ``(d - L // 2) / (L // 2)``
  (float32), the code axis moved to dim 1 as a permuted view, cast to the model's dtype.
- ``CausalConv3d``: the first frame repeated ``kernel_t - 1`` times and concatenated in front (a new,
  contiguous tensor), zero padding in space (``F.pad`` constant), then the convolution.
- ``post_quant_conv`` (1x1x1), ``conv_in`` ((1, 3, 3) then (3, 1, 1)), mid ``block_1``, spatial then
  temporal attention, ``block_2``; up levels from the last: each block, then its attention pair, then the
  hybrid upsampler; ``norm_out``, ``x * sigmoid(x)`` (``nonlinearity``, not ``F.silu``), ``conv_out``.
- ``CausalNormalize`` (one group): frames into the batch, ``GroupNorm(1, C, eps=1e-6)``, back.
- ``CausalResnetBlockFactorized3d``: norm1, swish, conv1, norm2, swish, conv2; ``shortcut(x) + h``.
- ``CausalAttnBlock``: norm, q k v (1x1x1); per frame ``bmm(q [hw, c], k [c, hw]) * c**-0.5``, softmax
  in the model's dtype, then ``bmm(v [c, hw], w^T)`` (the values on the left); proj_out; ``x + h``.
- ``CausalTemporalAttnBlock``: q k v as ``(b h w) c t`` copies, ``bmm(q^T, k) * c**-0.5``, ``-inf`` above
  the diagonal, softmax, ``bmm(w, v^T)``, back through ``(b h w) c t``; proj_out; ``x + h``.
- ``CausalHybridUpsample3d``: temporally (x2 only with more than one frame) repeat_interleave, drop the
  first ``factor - 1`` frames, ``conv1(x) + x``; spatially repeat_interleave H then W,
  ``conv2(x) + x``; then conv3 (1x1x1).
- ``UnPatcher3D`` twice: chunk 8 bands; transposed convolutions with filters (h, h) and (h, -h),
  h = 0.7071067811865476 in the model's dtype, summed in pairs along width, then height, then time;
  times ``2 * sqrt(tensor(2.0))``; then frames from ``patch_size - 1`` on.

``generate.py`` decodes one prompt's image at a time (``[1, 1, h, w]`` indices), so the reference runs
image by image, and so does ``SimpleAR.decode_images`` (a batched float32 convolution rounds differently).
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simplear_tiny import IMAGE_SIZE, SIDE, tiny_cosmos, tiny_qwen2, tiny_tokenizer
from softcfg.models.cosmos import CosmosDecoder, cosmos_images_to_uint8
from softcfg.models.simplear import SimpleAR

LEVELS = (8, 8, 8, 5, 5, 5)


def fsq_codes(indices: Tensor, dtype: torch.dtype) -> Tensor:
    """[B, T, h, w] indices -> [B, 6, T, h, w] codes, a permuted view as upstream's rearrange gives."""
    levels = torch.tensor(LEVELS, dtype=torch.int32)
    basis = torch.cumprod(torch.tensor([1, *LEVELS[:-1]]), dim=0, dtype=torch.int32)
    digits = (indices[..., None] // basis) % levels
    half = levels // 2
    codes = (digits - half) / half
    return codes.permute(0, 4, 1, 2, 3).to(dtype)


def causal(module: nn.Module, x: Tensor) -> Tensor:
    """A ``CausalConv3d``: first frame repeated in front, zero spatial padding from the kernel's size."""
    conv = module.conv3d
    kt, kh = conv.weight.shape[2], conv.weight.shape[3]
    x = torch.cat([x[:, :, :1, ...].repeat(1, 1, kt - 1, 1, 1), x], dim=2)
    x = F.pad(x, (kh // 2,) * 4 + (0, 0), mode="constant", value=0.0)
    return F.conv3d(x, conv.weight, conv.bias)


def sequential(convs: nn.Sequential, x: Tensor) -> Tensor:
    for module in convs:
        x = causal(module, x)
    return x


def nonlinearity(x: Tensor) -> Tensor:
    return x * torch.sigmoid(x)


def to_batch(x: Tensor) -> Tensor:
    """``b c t h w -> (b t) c h w``."""
    b, c, t, h, w = x.shape
    return x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)


def to_time(x: Tensor, b: int) -> Tensor:
    """``(b t) c h w -> b c t h w``."""
    bt, c, h, w = x.shape
    return x.reshape(b, bt // b, c, h, w).permute(0, 2, 1, 3, 4)


def normalize(norm: nn.Module, x: Tensor) -> Tensor:
    gn = norm.norm
    return to_time(F.group_norm(to_batch(x), 1, gn.weight, gn.bias, gn.eps), x.shape[0])


def resnet(block: nn.Module, x: Tensor) -> Tensor:
    h = sequential(block.conv1, nonlinearity(normalize(block.norm1, x)))
    h = sequential(block.conv2, nonlinearity(normalize(block.norm2, h)))
    x = x if isinstance(block.nin_shortcut, nn.Identity) else causal(block.nin_shortcut, x)
    return x + h


def spatial_attention(block: nn.Module, x: Tensor) -> Tensor:
    h_ = normalize(block.norm, x)
    q, k, v = (to_batch(causal(m, h_)) for m in (block.q, block.k, block.v))
    b, c, h, w = q.shape
    q = q.reshape(b, c, h * w).permute(0, 2, 1)
    k = k.reshape(b, c, h * w)
    weights = F.softmax(torch.bmm(q, k) * (int(c) ** (-0.5)), dim=2)
    out = torch.bmm(v.reshape(b, c, h * w), weights.permute(0, 2, 1)).reshape(b, c, h, w)
    return x + causal(block.proj_out, to_time(out, x.shape[0]))


def temporal_attention(block: nn.Module, x: Tensor) -> Tensor:
    h_ = normalize(block.norm, x)
    b, c, t, h, w = h_.shape

    def to_pixels(y: Tensor) -> Tensor:  # b c t h w -> (b h w) c t
        return y.permute(0, 3, 4, 1, 2).reshape(b * h * w, c, t)

    q, k, v = (to_pixels(causal(m, h_)).permute(0, 2, 1) for m in (block.q, block.k, block.v))
    weights = torch.bmm(q, k.permute(0, 2, 1)) * (int(c) ** (-0.5))
    weights = weights.masked_fill(torch.tril(torch.ones_like(weights)) == 0, float("-inf"))
    out = torch.bmm(F.softmax(weights, dim=2), v).permute(0, 2, 1).reshape(b * h * w, c, t)
    out = out.reshape(b, h, w, c, t).permute(0, 3, 4, 1, 2)
    return x + causal(block.proj_out, out)


def attention_pair(pair: nn.Sequential, x: Tensor) -> Tensor:
    return temporal_attention(pair[1], spatial_attention(pair[0], x))


def upsample(up: nn.Module, x: Tensor) -> Tensor:
    if not (up.spatial or up.temporal):
        return x
    if up.temporal:
        factor = 2 if x.shape[2] > 1 else 1
        x = x.repeat_interleave(factor, dim=2)[..., factor - 1 :, :, :]
        x = causal(up.conv1, x) + x
    if up.spatial:
        x = x.repeat_interleave(2, dim=3).repeat_interleave(2, dim=4)
        x = causal(up.conv2, x) + x
    return causal(up.conv3, x)


def inverse_haar(x: Tensor) -> Tensor:
    g = x.shape[1] // 8
    h = torch.tensor([0.7071067811865476, 0.7071067811865476])  # float32, then the model's dtype
    lo = h.flip([0]).reshape(1, 1, -1).repeat([g, 1, 1]).to(x.dtype)
    hi = (h * (-1) ** torch.arange(2)).reshape(1, 1, -1).repeat(g, 1, 1).to(x.dtype)
    w_lo, w_hi = lo[:, :, None, None, :], hi[:, :, None, None, :]  # along width
    h_lo, h_hi = lo[:, :, None, :, None], hi[:, :, None, :, None]  # along height
    t_lo, t_hi = lo[:, :, :, None, None], hi[:, :, :, None, None]  # along time
    bands = torch.chunk(x, 8, dim=1)

    def pair(a: Tensor, b: Tensor, low: Tensor, high: Tensor, stride: tuple[int, int, int]) -> Tensor:
        y = F.conv_transpose3d(a, low, groups=g, stride=stride)
        y += F.conv_transpose3d(b, high, groups=g, stride=stride)
        return y

    xll, xlh, xhl, xhh = (pair(bands[i], bands[i + 1], w_lo, w_hi, (1, 1, 2)) for i in range(0, 8, 2))
    xl = pair(xll, xlh, h_lo, h_hi, (1, 2, 1))
    xh = pair(xhl, xhh, h_lo, h_hi, (1, 2, 1))
    return pair(xl, xh, t_lo, t_hi, (2, 1, 1)) * (2 * torch.sqrt(torch.tensor(2.0)))


def upstream_decode(decoder: CosmosDecoder, indices: Tensor) -> Tensor:
    """``decode(indices [B, 1, h, w])`` in upstream's order -> [B, 3, 1, 16h, 16w]."""
    d = decoder.decoder
    h = causal(decoder.post_quant_conv, fsq_codes(indices, decoder.post_quant_conv.conv3d.weight.dtype))
    h = sequential(d.conv_in, h)
    h = resnet(d.mid.block_2, attention_pair(d.mid.attn_1, resnet(d.mid.block_1, h)))
    for i_level in reversed(range(len(d.up))):
        level = d.up[i_level]
        for i_block, block in enumerate(level.block):
            h = resnet(block, h)
            if len(level.attn) > 0:
                h = attention_pair(level.attn[i_block], h)
        if i_level != 0:
            h = upsample(level.upsample, h)
    h = sequential(d.conv_out, nonlinearity(normalize(d.norm_out, h)))
    for _ in range(2):  # patch size 4
        h = inverse_haar(h)
    return h[:, :, 3:, ...]


@pytest.fixture(scope="module")
def decoder() -> CosmosDecoder:
    return tiny_cosmos()


def indices(batch: int, seed: int = 0) -> Tensor:
    """What ``generate.py`` feeds the decoder: int64 codes [B, 1, h, w]."""
    return torch.randint(0, 64000, (batch, 1, SIDE, SIDE), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def test_decode_is_upstreams_bit_for_bit_image_by_image(decoder, dtype):
    model = copy.deepcopy(decoder).to(dtype)
    codes = indices(3)
    with torch.inference_mode():
        for i in range(codes.shape[0]):
            ours = model(codes[i : i + 1, 0])
            ref = upstream_decode(model, codes[i : i + 1])
            assert ref.shape == (1, 3, 1, 16 * SIDE, 16 * SIDE) and ref.dtype == dtype
            assert torch.equal(ours, ref[:, :, 0]), (
                dtype,
                i,
                (ours.float() - ref[:, :, 0].float()).abs().max(),
            )


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def test_simplear_decodes_a_batch_image_by_image_as_upstream(decoder, dtype):
    """``SimpleAR.decode_images`` hands the decoder one image at a time, as ``generate.py`` does: a
    batched float32 convolution rounds differently on this project's CPUs, so only that gives upstream's
    bits."""
    text = tiny_tokenizer()
    model = SimpleAR(tiny_qwen2(len(text)), text, len(text), IMAGE_SIZE, copy.deepcopy(decoder).to(dtype))
    seen = []
    model.tokenizer.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[0]))
    codes = indices(3, seed=1)
    with torch.inference_mode():
        single = torch.cat([upstream_decode(model.tokenizer, codes[i : i + 1])[:, :, 0] for i in range(3)])
        images = model.decode_images(codes[:, 0].flatten(1))
    assert seen[:3] == [1, 1, 1] and torch.equal(images, cosmos_images_to_uint8(single))
