"""LlamaGen c2i and its VQ-16 decoder on random weights in the official layouts, against the upstream facts
and a second, plain implementation of the forward pass written here."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from softcfg.conditioning import ClassLabels
from softcfg.config import parse_model
from softcfg.methods import parse_method
from softcfg.models.base import TokenGrid, resize_images, signed_images_to_uint8
from softcfg.models.llamagen import (
    SIZES,
    LlamaGen,
    LlamaGenConfig,
    LlamaGenGenerator,
    llamagen_rope_table,
    load_llamagen,
)
from softcfg.models.llamagen_vq import VQ16Decoder, load_vq16_decoder
from softcfg.models.loading import load_model
from softcfg.models.registry import get_family
from softcfg.options import ConfigError
from softcfg.sampling.loop import generate

# tiny models with B's and XL's head counts (12 and 20), head dim 8
TINY = {"B": LlamaGenConfig(dim=96, depth=2, heads=12), "XL": LlamaGenConfig(dim=160, depth=3, heads=20)}


def official_keys(c: LlamaGenConfig, ffn: int) -> dict[str, tuple[int, ...]]:
    """The key layout of c2i_*.pt, written out from the upstream notes."""
    d = c.dim
    keys = {
        "cls_embedding.embedding_table.weight": (1001, d),
        "tok_embeddings.weight": (16384, d),
        "norm.weight": (d,),
        "output.weight": (16384, d),
    }
    for i in range(c.depth):
        b = f"layers.{i}."
        keys |= {
            b + "attention.wqkv.weight": (3 * d, d), b + "attention.wo.weight": (d, d),
            b + "feed_forward.w1.weight": (ffn, d), b + "feed_forward.w3.weight": (ffn, d),
            b + "feed_forward.w2.weight": (d, ffn),
            b + "attention_norm.weight": (d,), b + "ffn_norm.weight": (d,),
        }  # fmt: skip
    return keys


@pytest.mark.parametrize(
    ("size", "ffn"), [("B", 2048), ("L", 2816), ("XL", 3584), ("XXL", 4096), ("3B", 8704)]
)
def test_official_sizes_have_the_official_layout(size, ffn):
    with torch.device("meta"):
        gen = LlamaGenGenerator(SIZES[size])
    assert {k: tuple(v.shape) for k, v in gen.state_dict().items()} == official_keys(SIZES[size], ffn)


def random_llamagen(
    size: str = "B", image_size: int = 256, seed: int = 0, tokenizer=None, eval_size=None, codebook=16384
):
    """Random weights everywhere (upstream zero-initialises ``output``), a sharpened head for peaked
    distributions."""
    torch.manual_seed(seed)
    config = LlamaGenConfig(TINY[size].dim, TINY[size].depth, TINY[size].heads, image_size, codebook)
    model = LlamaGen(config, tokenizer, eval_size).eval()
    with torch.no_grad():
        model.generator.output.weight.normal_(0, 0.5)
    return model


def _tokens(num_tokens: int, batch: int = 2, seed: int = 0, codebook: int = 16384):
    g = torch.Generator().manual_seed(seed)
    labels = ClassLabels(torch.tensor([7, 999, 0])[:batch])
    return torch.randint(0, codebook, (batch, num_tokens), generator=g), labels


def reference_logits(state: dict, heads: int, labels: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """LlamaGen's forward written out plainly from the notes: [class, tokens], RMSNorm, q | k | v rows,
    2D RoPE as complex rotations (q, k of the class token zeroed), causal softmax attention, SwiGLU."""
    x = torch.cat([state["cls_embedding.embedding_table.weight"][labels][:, None],
                   state["tok_embeddings.weight"][tokens[:, :-1]]], dim=1)  # fmt: skip
    n, length, d = x.shape
    hd = d // heads
    side = math.isqrt(length)
    f = 10000.0 ** (-torch.arange(hd // 4, dtype=torch.float64) * 2 / (hd // 2))
    angles = torch.zeros(length, hd // 2, dtype=torch.float64)
    for p in range(1, length):
        r, c = divmod(p - 1, side)
        angles[p] = torch.cat([r * f, c * f])
    rotation = torch.polar(torch.ones_like(angles), angles)
    rotation[0] = 0  # the class slot

    def rms(v, w):
        return v / torch.sqrt(v.pow(2).mean(-1, keepdim=True) + 1e-5) * w

    def rotate(v):  # [N, L, H, hd]
        z = torch.view_as_complex(v.double().reshape(n, length, heads, hd // 2, 2).contiguous())
        return torch.view_as_real(z * rotation[None, :, None]).reshape(n, length, heads, hd).float()

    depth = len({k.split(".")[1] for k in state if k.startswith("layers.")})
    mask = torch.ones(length, length, dtype=torch.bool).tril()
    for i in range(depth):
        p = f"layers.{i}."
        h = rms(x, state[p + "attention_norm.weight"])
        qkv = h @ state[p + "attention.wqkv.weight"].T
        q, k, v = (qkv[..., j * d : (j + 1) * d].reshape(n, length, heads, hd) for j in range(3))
        q, k = rotate(q), rotate(k)
        scores = torch.einsum("nqhd,nkhd->nhqk", q, k) / math.sqrt(hd)
        attn = scores.masked_fill(~mask, float("-inf")).softmax(-1)
        out = torch.einsum("nhqk,nkhd->nqhd", attn, v).reshape(n, length, d)
        x = x + out @ state[p + "attention.wo.weight"].T
        h = rms(x, state[p + "ffn_norm.weight"])
        gate = F.silu(h @ state[p + "feed_forward.w1.weight"].T) * (h @ state[p + "feed_forward.w3.weight"].T)
        x = x + gate @ state[p + "feed_forward.w2.weight"].T
    return rms(x, state["norm.weight"]) @ state["output.weight"].T


@pytest.mark.parametrize("size", ["B", "XL"])
def test_forward_matches_a_plain_implementation(size):
    model = random_llamagen(size, image_size=96, codebook=256)  # 6 x 6 tokens: a 2D grid, small
    tokens, labels = _tokens(36, codebook=256)
    with torch.no_grad():
        ours = model(labels, tokens)
    expected = reference_logits(
        model.generator.state_dict(), model.generator.config.heads, labels.labels, tokens
    )
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("image_size", "grid"), [(256, 16), (384, 24)])
def test_token_grid_and_null_class(image_size, grid):
    model = LlamaGen(LlamaGenConfig(TINY["B"].dim, 1, TINY["B"].heads, image_size, codebook=16))
    assert model.num_tokens == model.num_slots == grid**2 and model.token_grid() == TokenGrid(0, grid, grid)
    assert model.generator.rope.shape[0] == 1 + grid**2  # the class slot, then the grid
    assert model.unconditional(ClassLabels(torch.tensor([3, 7]))).labels.tolist() == [1000, 1000]


@pytest.mark.parametrize("head_dim", [8, 64, 100])  # 100: LlamaGen-3B
def test_rope_table_matches_the_upstream_formula(head_dim):
    grid = 24
    table = llamagen_rope_table(head_dim, grid)
    assert table.shape == (1 + grid * grid, head_dim // 2, 2) and table[0].abs().sum() == 0
    half = head_dim // 2
    for r, c in [(0, 0), (3, 17), (23, 23)]:
        row = table[1 + grid * r + c]
        for j in range(half // 2):
            f = 10000 ** (-2 * j / half)
            assert row[j].tolist() == pytest.approx([math.cos(r * f), math.sin(r * f)], abs=1e-5)
            assert row[half // 2 + j].tolist() == pytest.approx([math.cos(c * f), math.sin(c * f)], abs=1e-5)


def test_strict_loading_of_ddp_and_fsdp_files(tmp_path):
    model = random_llamagen("XL")
    config, state = model.generator.config, model.generator.state_dict()
    ddp = {"model": state, "optimizer": {"state": {}, "param_groups": []}, "steps": 10,
           "args": argparse.Namespace(gpt_model="GPT-XL", image_size=256)}  # fmt: skip
    torch.save(ddp, tmp_path / "ddp.pt")
    torch.save(state, tmp_path / "fsdp.pt")
    for name in ("ddp.pt", "fsdp.pt"):
        loaded = load_llamagen(tmp_path / name, config)
        assert all(torch.equal(v, state[k]) for k, v in loaded.generator.state_dict().items())

    freqs = {**state, "freqs_cis": torch.zeros(257, 4, 2)}  # older files: the grid the model was trained on
    torch.save({"model": freqs}, tmp_path / "freqs.pt")
    load_llamagen(tmp_path / "freqs.pt", config)
    with pytest.raises(ValueError, match=r"freqs\.pt: freqs_cis has 257 rows, a 384 px model needs 577"):
        load_llamagen(tmp_path / "freqs.pt", LlamaGenConfig(config.dim, config.depth, config.heads, 384))

    bad = {**state, "layers.1.attention.wqkv.bias": torch.zeros(3 * config.dim)}
    del bad["layers.0.ffn_norm.weight"]
    torch.save({"model": bad}, tmp_path / "bad.pt")
    with pytest.raises(
        ValueError, match=r"bad\.pt does not match.*missing keys \['layers\.0\.ffn_norm\.weight'\]"
    ):
        load_llamagen(tmp_path / "bad.pt", config)
    with pytest.raises(ValueError, match=r"unexpected keys \['layers\.1\.attention\.wqkv\.bias'\]"):
        load_llamagen(tmp_path / "bad.pt", config)
    with pytest.raises(
        ValueError,
        match=r"shape mismatch.*embedding_table\.weight: checkpoint \(1001, 160\) vs model \(1001, 96\)",
    ):
        load_llamagen(tmp_path / "ddp.pt", TINY["B"])
    torch.save({"ema": state}, tmp_path / "ema_only.pt")
    with pytest.raises(ValueError, match=r"ema_only\.pt holds no state dict with 'tok_embeddings\.weight'"):
        load_llamagen(tmp_path / "ema_only.pt", config)
    torch.save(state, tmp_path / "c2i_XL_384.pt")
    with pytest.raises(ValueError, match="named for 384 px, the model entry's image_size is 256"):
        load_llamagen(tmp_path / "c2i_XL_384.pt", config)


def test_presets_are_upstreams_defaults_and_constant():
    expected = {"B-384": 2.0, "L-384": 2.0, "XL-384": 1.75, "XXL-384": 1.75, "3B-384": 1.65,
                "B-256": 1.5, "L-256": 1.5}  # fmt: skip
    assert {k: v["gamma"] for k, v in get_family("llamagen").presets.items()} == expected
    m = parse_method({"name": "softcfg", "preset": "llamagen-XXL-384"})
    assert (m.temperature, m.top_k, m.top_p, m.interval) == (1.0, 0, 1.0, None)
    assert set(m.scales(576)) == {1.75}


def vq16_keys(ch: int = 128, z: int = 256) -> dict[str, tuple[int, ...]]:
    """The decoder side of vq_ds16_c2i.pt, written out from the upstream notes."""
    keys = {"quantize.embedding.weight": (16384, 8), "post_quant_conv.weight": (z, 8, 1, 1),
            "post_quant_conv.bias": (z,), "decoder.conv_in.weight": (4 * ch, z, 3, 3),
            "decoder.conv_in.bias": (4 * ch,), "decoder.norm_out.weight": (ch,),
            "decoder.norm_out.bias": (ch,), "decoder.conv_out.weight": (3, ch, 3, 3),
            "decoder.conv_out.bias": (3,)}  # fmt: skip

    def res(prefix, c_in, c_out):
        keys.update({f"{prefix}.norm1.weight": (c_in,), f"{prefix}.norm1.bias": (c_in,),
                     f"{prefix}.conv1.weight": (c_out, c_in, 3, 3), f"{prefix}.conv1.bias": (c_out,),
                     f"{prefix}.norm2.weight": (c_out,), f"{prefix}.norm2.bias": (c_out,),
                     f"{prefix}.conv2.weight": (c_out, c_out, 3, 3),
                     f"{prefix}.conv2.bias": (c_out,)})  # fmt: skip
        if c_in != c_out:
            keys.update(
                {
                    f"{prefix}.nin_shortcut.weight": (c_out, c_in, 1, 1),
                    f"{prefix}.nin_shortcut.bias": (c_out,),
                }
            )

    def attn(prefix, c):
        keys.update({f"{prefix}.norm.weight": (c,), f"{prefix}.norm.bias": (c,)})
        for conv in ("q", "k", "v", "proj_out"):
            keys.update({f"{prefix}.{conv}.weight": (c, c, 1, 1), f"{prefix}.{conv}.bias": (c,)})

    res("decoder.mid.0", 4 * ch, 4 * ch)
    attn("decoder.mid.1", 4 * ch)
    res("decoder.mid.2", 4 * ch, 4 * ch)
    width = 4 * ch
    for i, mult in enumerate([4, 2, 2, 1, 1]):  # channel multipliers reversed: lowest resolution first
        for j in range(3):
            res(f"decoder.conv_blocks.{i}.res.{j}", width, mult * ch)
            width = mult * ch
            if i == 0:
                attn(f"decoder.conv_blocks.{i}.attn.{j}", width)
        if i < 4:
            keys.update({f"decoder.conv_blocks.{i}.upsample.conv.weight": (width, width, 3, 3),
                         f"decoder.conv_blocks.{i}.upsample.conv.bias": (width,)})  # fmt: skip
    return keys


def test_vq16_decoder_has_the_official_layout():
    with torch.device("meta"):
        decoder = VQ16Decoder()
    assert {k: tuple(v.shape) for k, v in decoder.state_dict().items()} == vq16_keys()


def tiny_vq16(seed: int = 0) -> VQ16Decoder:
    torch.manual_seed(seed)
    return VQ16Decoder(channels=32, z_channels=32).eval()


def upstream_vq16(decoder: VQ16Decoder, tokens: torch.Tensor) -> torch.Tensor:
    """tokenizer/tokenizer_image/vq_model.py's decode_code, op for op: the L2-normalised codebook entries
    reshaped channel-last, permuted and made contiguous, post_quant_conv, then the decoder with
    ``nonlinearity`` = x sigmoid(x) and bmm attention scaled after q k^T."""
    F = torch.nn.functional

    def swish(x):
        return x * torch.sigmoid(x)

    def res(block, x):
        h = block.conv2(swish(block.norm2(block.conv1(swish(block.norm1(x))))))
        return (block.nin_shortcut(x) if hasattr(block, "nin_shortcut") else x) + h

    def attn(block, x):
        y = block.norm(x)
        q, k, v = block.q(y), block.k(y), block.v(y)
        b, c, h, w = q.shape
        w_ = torch.bmm(q.reshape(b, c, h * w).permute(0, 2, 1), k.reshape(b, c, h * w))
        w_ = F.softmax(w_ * (int(c) ** (-0.5)), dim=2)
        h_ = torch.bmm(v.reshape(b, c, h * w), w_.permute(0, 2, 1)).reshape(b, c, h, w)
        return x + block.proj_out(h_)

    n, length = tokens.shape
    side = int(length**0.5)
    z_q = F.normalize(decoder.quantize.embedding.weight, p=2, dim=-1)[tokens]
    z_q = z_q.reshape(n, side, side, -1).permute(0, 3, 1, 2).contiguous()
    d = decoder.decoder
    h = d.conv_in(decoder.post_quant_conv(z_q))
    h = res(d.mid[2], attn(d.mid[1], res(d.mid[0], h)))
    for i, level in enumerate(d.conv_blocks):
        for j, block in enumerate(level.res):
            h = res(block, h)
            if len(level.attn):
                h = attn(level.attn[j], h)
        if i != len(d.conv_blocks) - 1:
            h = level.upsample.conv(F.interpolate(h, scale_factor=2.0, mode="nearest"))
    return d.conv_out(swish(d.norm_out(h)))


@torch.no_grad()
def test_vq16_decoder_equals_upstreams_operation_order_bit_for_bit():
    decoder = tiny_vq16()
    tokens = torch.randint(0, 16384, (2, 16), generator=torch.Generator().manual_seed(2))
    assert torch.equal(decoder(tokens), upstream_vq16(decoder, tokens))


def test_vq16_decoder_loads_a_full_tokenizer_file_and_decodes_uint8(tmp_path):
    decoder = tiny_vq16()
    assert {k: tuple(v.shape) for k, v in decoder.state_dict().items()} == vq16_keys(32, 32)
    encoder_side = {"encoder.conv_in.weight": torch.zeros(32, 3, 3, 3),
                    "quant_conv.weight": torch.zeros(8, 32, 1, 1),
                    "quantize.codebook_used": torch.zeros(65536)}  # fmt: skip
    full = {**decoder.state_dict(), **encoder_side}
    torch.save({"model": full, "args": argparse.Namespace(vq_model="VQ-16"), "steps": 1}, tmp_path / "vq.pt")
    model = random_llamagen(tokenizer=load_vq16_decoder(tmp_path / "vq.pt"))
    tokens = _tokens(256)[0]
    images = model.decode_images(tokens)
    assert images.dtype == torch.uint8 and images.shape == (2, 256, 256, 3)
    with torch.no_grad():  # the codebook is L2-normalised at lookup: row norms do not matter
        floats = model.tokenizer(tokens)
        model.tokenizer.quantize.embedding.weight.mul_(torch.rand(16384, 1) + 0.5)
        torch.testing.assert_close(model.tokenizer(tokens), floats, rtol=0, atol=1e-4)
    del full["decoder.mid.1.proj_out.bias"]
    torch.save({"model": full}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=r"bad\.pt does not match.*decoder\.mid\.1\.proj_out\.bias"):
        load_vq16_decoder(tmp_path / "bad.pt")


def test_384_px_decoding_and_the_resize_to_256():
    model = random_llamagen(image_size=384, tokenizer=tiny_vq16())
    tokens = _tokens(576, batch=1)[0]
    full = model.decode_images(tokens)
    model.eval_size = 256
    resized = model.decode_images(tokens)
    assert (
        full.shape == (1, 384, 384, 3) and resized.shape == (1, 256, 256, 3) and resized.dtype == torch.uint8
    )
    with torch.no_grad():
        floats = model.tokenizer(tokens)
    expected = signed_images_to_uint8(resize_images(floats, 256))
    assert torch.equal(resized, expected)


def test_uint8_conversion_is_the_sampling_scripts():
    x = torch.tensor([-1.5, -1.0, -0.004, 0.0, 0.5, 0.99, 1.0, 2.0]).view(1, 1, 1, 8).expand(1, 3, 1, 8)
    # clamp(127.5 x + 128, 0, 255), truncated: 0.5 -> 0, 127.49 -> 127, 191.75 -> 191, 254.2 -> 254
    assert signed_images_to_uint8(x)[0, 0, :, 0].tolist() == [0, 0, 127, 128, 191, 254, 255, 255]


def _bicubic_reference(image: np.ndarray, size: int) -> np.ndarray:
    """Separable bicubic (a = -0.75), half-pixel centres, edge pixels repeated, no antialiasing."""

    def weights(t):
        t = abs(t)
        a = -0.75
        if t <= 1:
            return (a + 2) * t**3 - (a + 3) * t**2 + 1
        return a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a if t < 2 else 0.0

    def along(arr, axis):
        n = arr.shape[axis]
        out = []
        for i in range(size):
            x = (i + 0.5) * n / size - 0.5
            x0 = math.floor(x)
            taps = [(min(max(x0 + m, 0), n - 1), weights(x - (x0 + m))) for m in (-1, 0, 1, 2)]
            out.append(sum(w * np.take(arr, j, axis=axis) for j, w in taps))
        return np.stack(out, axis=axis)

    return along(along(image, 1), 2)


def test_resize_is_bicubic_without_antialiasing():
    image = torch.randn(1, 3, 24, 24)
    expected = _bicubic_reference(image[0].double().numpy(), 16)
    np.testing.assert_allclose(resize_images(image, 16)[0].numpy(), expected, rtol=1e-5, atol=1e-5)


def test_model_entry_image_sizes():
    base = {"family": "llamagen", "checkpoint": "c.pt", "size": "L"}
    assert parse_model({**base, "image_size": 384, "eval_size": 256}, check_files=False).eval_size == 256
    with pytest.raises(ConfigError, match=r"image_size: family 'llamagen' needs one of \[256, 384\]"):
        parse_model(base, check_files=False)
    with pytest.raises(ConfigError, match=r"image_size: expected one of \[256, 384\].*got 512"):
        parse_model({**base, "image_size": 512}, check_files=False)
    with pytest.raises(ConfigError, match="eval_size: 384 is larger than image_size 256"):
        parse_model({**base, "image_size": 256, "eval_size": 384}, check_files=False)
    with pytest.raises(ConfigError, match="eval_size: family 'rar' generates one image size only"):
        parse_model({"family": "rar", "checkpoint": "c", "size": "B", "eval_size": 256}, check_files=False)


def test_bf16_entry_keeps_the_decoder_in_float32(tmp_path):
    model = random_llamagen("B", tokenizer=tiny_vq16())
    torch.save({"model": model.generator.state_dict()}, tmp_path / "g.pt")
    torch.save({"model": model.tokenizer.state_dict()}, tmp_path / "vq.pt")
    c = TINY["B"]
    entry = {"family": "llamagen", "checkpoint": str(tmp_path / "g.pt"), "tokenizer": str(tmp_path / "vq.pt"),
             "dim": c.dim, "depth": c.depth, "heads": c.heads, "image_size": 256}  # fmt: skip
    bf16 = load_model(parse_model({**entry, "dtype": "bf16", "uncond_fp32": True}))
    fp32 = load_model(parse_model(entry))
    assert bf16.model.generator.output.weight.dtype == torch.bfloat16
    assert bf16.model.tokenizer.decoder.conv_in.weight.dtype == torch.float32
    tokens = _tokens(256)[0]
    assert torch.equal(bf16.decode_images(tokens), fp32.decode_images(tokens))
    method = parse_method({"name": "softcfg", "preset": "llamagen-B-256"})
    assert generate(bf16, ClassLabels(torch.tensor([0, 1])), method).shape == (2, 256)


def upstream_cached_logits(model: LlamaGen, labels: torch.Tensor, tokens: torch.Tensor) -> list[torch.Tensor]:
    """gpt.py's cached generation op for op, in the model's dtype: ``setup_caches``' static caches of
    find_multiple(1 + T, 8) slots and ``causal_mask``; per step, q | k | v split, pairs rotated in float32
    and cast back, k and v written at ``input_pos``, ``scaled_dot_product_attention`` over the whole cache
    with ``causal_mask[:, None, input_pos]``, heads merged, ``wo``; RMSNorm, SwiGLU and the head are the
    model's own modules. Returns the logits of tokens 0..T-1."""
    g, c = model.generator, model.generator.config
    batch, hd, dtype = labels.shape[0], c.dim // c.heads, g.output.weight.dtype
    slots = (1 + model.num_tokens + 7) // 8 * 8
    caches = [
        (
            torch.zeros(batch, c.heads, slots, hd, dtype=dtype),
            torch.zeros(batch, c.heads, slots, hd, dtype=dtype),
        )
        for _ in g.layers
    ]
    causal = torch.tril(torch.ones(slots, slots, dtype=torch.bool)).unsqueeze(0).repeat(batch, 1, 1)

    def rotate(x, freqs):  # x [B, S, H, hd]
        xs = x.float().reshape(*x.shape[:-1], -1, 2)
        freqs = freqs.view(1, xs.size(1), 1, xs.size(3), 2)
        out = torch.stack(
            [xs[..., 0] * freqs[..., 0] - xs[..., 1] * freqs[..., 1],
             xs[..., 1] * freqs[..., 0] + xs[..., 0] * freqs[..., 1]], dim=-1
        )  # fmt: skip
        return out.flatten(3).type_as(x)

    def step(x, pos):
        input_pos = torch.tensor([pos])
        for block, (k_cache, v_cache) in zip(g.layers, caches, strict=True):
            xq, xk, xv = block.attention.wqkv(block.attention_norm(x)).split([c.dim] * 3, dim=-1)
            xq, xk, xv = (t.view(batch, 1, c.heads, hd) for t in (xq, xk, xv))
            xq, xk = rotate(xq, g.rope[input_pos]), rotate(xk, g.rope[input_pos])
            xq, xk, xv = (t.transpose(1, 2) for t in (xq, xk, xv))
            k_cache[:, :, input_pos], v_cache[:, :, input_pos] = xk, xv
            out = F.scaled_dot_product_attention(
                xq, k_cache, v_cache, attn_mask=causal[:, None, input_pos], is_causal=False
            )
            x = x + block.attention.wo(out.transpose(1, 2).contiguous().view(batch, 1, c.dim))
            x = x + block.feed_forward(block.ffn_norm(x))
        return g.output(g.norm(x))[:, -1]

    logits = [step(g.cls_embedding.embedding_table(labels)[:, None], 0)]
    for j in range(tokens.shape[1] - 1):
        logits.append(step(g.tok_embeddings(tokens[:, j])[:, None], 1 + j))
    return logits


@torch.no_grad()
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_cached_cfg_logits_equal_upstreams_sdpa_over_its_static_cache_bit_for_bit(dtype):
    """Unweighted steps (CFG, none, SoftCFG before its first weight or at strength 0) attend in upstream's
    order, so a bf16 CFG run has upstream's bf16 logits; SoftCFG's weighted steps keep float32 scores."""
    from softcfg.models.attention import SlotWeights

    torch.manual_seed(0)
    model = LlamaGen(LlamaGenConfig(dim=64, depth=2, heads=4)).eval().to(dtype)
    labels = torch.tensor([3, 7, 1000, 1000])  # a CFG batch: conditional rows, then the null class
    tokens = torch.randint(0, 16384, (4, model.num_tokens), generator=torch.Generator().manual_seed(1))
    expected = upstream_cached_logits(model, labels, tokens)
    for weights in (None, "uniform"):
        cache = model.new_cache(4)
        ours = [model.prefill(ClassLabels(labels), cache)]
        for j in range(model.num_tokens - 1):
            ones = SlotWeights(torch.ones(2, 2 + j), "v", uniform=True) if weights else None
            ours.append(model.decode(tokens[:, j], j, cache, ones))
        assert all(torch.equal(a, b) for a, b in zip(ours, expected, strict=True)), weights
