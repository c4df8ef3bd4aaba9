"""RAR and its MaskGIT-VQ decoder on small random-weight models of the official architecture."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from softcfg.conditioning import ClassLabels
from softcfg.models.maskgit_vq import MaskGitDecoder, SameConv2d, load_maskgit_decoder
from softcfg.models.rar import RAR, SIZES, RARConfig, RARGenerator, load_rar

TINY = RARConfig(dim=64, depth=2, mlp=128, heads=4)


def official_keys(c: RARConfig) -> dict[str, tuple[int, ...]]:
    """The key layout of rar_*.bin, written out from the upstream notes."""
    d, hd = c.dim, c.dim // c.heads
    keys = {
        "cls_token": (1, 1, d), "embeddings.weight": (2026, d), "pos_embed": (1, 1280, d),
        "target_aware_pos_embed": (1, 1280, d), "timesteps_embeddings": (1, 356, d),
        "adaln_before_head.adaLN_modulation.1.weight": (2 * d, d),
        "adaln_before_head.adaLN_modulation.1.bias": (2 * d,),
        "lm_head.weight": (1024, d), "lm_head.bias": (1024,),
    }  # fmt: skip
    for i in range(c.depth):
        b = f"blocks.{i}."
        keys |= {
            b + "norm1.weight": (d,), b + "norm1.bias": (d,),
            b + "norm2.weight": (d,), b + "norm2.bias": (d,),
            b + "attn.qkv.weight": (3 * d, d), b + "attn.qkv.bias": (3 * d,),
            b + "attn.q_norm.weight": (hd,), b + "attn.q_norm.bias": (hd,),
            b + "attn.k_norm.weight": (hd,), b + "attn.k_norm.bias": (hd,),
            b + "attn.proj.weight": (d, d), b + "attn.proj.bias": (d,),
            b + "mlp.fc1.weight": (c.mlp, d), b + "mlp.fc1.bias": (c.mlp,),
            b + "mlp.fc2.weight": (d, c.mlp), b + "mlp.fc2.bias": (d,),
            b + "adaLN_modulation.1.weight": (6 * d, d), b + "adaLN_modulation.1.bias": (6 * d,),
        }  # fmt: skip
    return keys


@pytest.mark.parametrize("size", ["B", "L", "XL", "XXL"])
def test_official_sizes_have_the_official_layout(size):
    with torch.device("meta"):
        gen = RARGenerator(SIZES[size])
    assert {k: tuple(v.shape) for k, v in gen.state_dict().items()} == official_keys(SIZES[size])


def random_rar(seed: int = 0) -> RAR:
    """Random weights everywhere (upstream zero-initialises adaLN, which would hide most of the model)."""
    torch.manual_seed(seed)
    model = RAR(TINY).eval()
    with torch.no_grad():
        for p in model.generator.parameters():
            p.normal_(0, 0.3)
    return model


def test_tiny_round_trip_and_mismatch(tmp_path):
    model = random_rar()
    state = model.generator.state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == official_keys(TINY)
    torch.save(state, tmp_path / "rar_tiny.bin")
    loaded = load_rar(tmp_path / "rar_tiny.bin", TINY)
    assert all(torch.equal(v, state[k]) for k, v in loaded.generator.state_dict().items())
    del state["timesteps_embeddings"]
    torch.save(state, tmp_path / "bad.bin")
    with pytest.raises(ValueError, match=r"missing keys \['timesteps_embeddings'\]"):
        load_rar(tmp_path / "bad.bin", TINY)


def _tokens(batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 1024, (batch, 256), generator=g), ClassLabels(torch.tensor([5, 998])[:batch])


def test_slot_layout_and_target_aware_positions():
    model = random_rar()
    assert model.prediction_slot(0) == 1 and model.prediction_slot(5) == 6  # cls at 0, class at 1
    g = model.generator
    pos, steps = g.positions(0, 258)
    ta = g.target_aware_pos_embed[0]
    torch.testing.assert_close(pos[0], g.pos_embed[0, 0])  # no target-aware term on the cls slot
    torch.testing.assert_close(pos[1], g.pos_embed[0, 1] + ta[2])
    torch.testing.assert_close(pos[256], g.pos_embed[0, 256] + ta[257])
    torch.testing.assert_close(pos[257], g.pos_embed[0, 257])
    torch.testing.assert_close(steps, g.timesteps_embeddings[0, :258])


def test_same_padding_equals_symmetric_padding_for_odd_kernels():
    conv = SameConv2d(4, 8, 3)
    ref = nn.Conv2d(4, 8, 3, padding=1)
    ref.load_state_dict(conv.state_dict())
    x = torch.randn(2, 4, 9, 7)
    torch.testing.assert_close(conv(x), ref(x))


def test_decoder_loads_a_full_tokenizer_checkpoint_and_decodes_uint8(tmp_path):
    torch.manual_seed(0)
    decoder = MaskGitDecoder(channels=32, z_channels=8, codebook=1024)
    state = {**decoder.state_dict(), "encoder.conv_in.weight": torch.zeros(32, 3, 3, 3)}
    torch.save(state, tmp_path / "maskgit.bin")
    model = RAR(TINY, load_maskgit_decoder(tmp_path / "maskgit.bin")).eval()
    images = model.decode_images(_tokens()[0])
    assert images.dtype == torch.uint8 and images.shape == (2, 256, 256, 3)
    keys = set(decoder.state_dict())
    shortcuts = {k.split(".")[2] for k in keys if "nin_shortcut" in k}
    assert shortcuts == {"3", "1"}  # the levels whose width changes: 4ch -> 2ch and 2ch -> 1ch
    assert "decoder.up.0.upsample_conv.weight" not in keys and "decoder.up.4.upsample_conv.weight" in keys


def upstream_maskgit_decode(decoder: MaskGitDecoder, codes: torch.Tensor) -> torch.Tensor:
    """1d-tokenizer's ``PretrainedTokenizer.decode`` op for op: codebook rows reshaped channel-last and
    permuted (a non-contiguous view, as ``get_codebook_entry`` leaves it), the decoder with ``F.silu``
    and "SAME" padding from ``calc_same_pad``, a residual added after the block (``h + residual``, the
    width-changing shortcut taken of ``h``), then clamped to [0, 1]."""
    F = torch.nn.functional

    def conv(layer, x):
        pads = [max((math.ceil(i / s) - 1) * s + (k - 1) * dil + 1 - i, 0) for i, k, s, dil in
                zip(x.shape[-2:], layer.kernel_size, layer.stride, layer.dilation, strict=True)]  # fmt: skip
        if any(pads):
            x = F.pad(x, [pads[1] // 2, pads[1] - pads[1] // 2, pads[0] // 2, pads[0] - pads[0] // 2])
        return F.conv2d(x, layer.weight, layer.bias, layer.stride, 0, layer.dilation, layer.groups)

    def res(block, x):
        residual = x
        h = conv(block.conv2, F.silu(block.norm2(conv(block.conv1, F.silu(block.norm1(x))))))
        if hasattr(block, "nin_shortcut"):
            residual = conv(block.nin_shortcut, h)
        return h + residual

    n, length = codes.shape
    side = int(math.sqrt(length))
    z = decoder.quantize.embedding(codes).reshape(n, side, side, -1).permute(0, 3, 1, 2)
    d = decoder.decoder
    h = conv(d.conv_in, z)
    for block in d.mid:
        h = res(block, h)
    for level in reversed(d.up):
        for block in level.block:
            h = res(block, h)
        if hasattr(level, "upsample_conv"):
            h = conv(level.upsample_conv, F.interpolate(h, scale_factor=2.0, mode="nearest"))
    return torch.clamp(conv(d.conv_out, F.silu(d.norm_out(h))), 0.0, 1.0)


@torch.no_grad()
def test_maskgit_decoder_equals_upstreams_operation_order_bit_for_bit():
    torch.manual_seed(0)
    decoder = MaskGitDecoder(channels=32, z_channels=32, codebook=64).eval()
    codes = torch.randint(0, 64, (2, 4), generator=torch.Generator().manual_seed(1))
    assert torch.equal(decoder(codes), upstream_maskgit_decode(decoder, codes))
