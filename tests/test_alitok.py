"""AliTok on small random-weight models of the official architecture, against the upstream facts."""

from __future__ import annotations

import math

import pytest
import torch

from softcfg.conditioning import ClassLabels
from softcfg.methods import parse_method
from softcfg.models.alitok import (
    SIZES,
    AliTok,
    AliTokConfig,
    AliTokDecoder,
    AliTokGenerator,
    alitok_rope_table,
    load_alitok,
    load_alitok_decoder,
    unpatchify,
)
from softcfg.sampling.loop import generate

TINY = AliTokConfig(dim=64, depth=2, heads=4)


def official_keys(dim: int, depth: int, ffn: int, heads: int = 16) -> dict[str, tuple[int, ...]]:
    """The key layout of alitok_*.bin, written out from the upstream notes."""
    keys = {
        "embeddings.weight": (5098, dim),
        "norm.weight": (dim,),
        "output.weight": (4096, dim),
        "output.bias": (4096,),
    }
    hd = dim // heads
    for i in range(depth):
        b = f"blocks.{i}."
        keys |= {
            b + "norm1.weight": (dim,), b + "norm2.weight": (dim,),
            b + "attn.qkv.weight": (3 * dim, dim), b + "attn.qkv.bias": (3 * dim,),
            b + "attn.q_norm.weight": (hd,), b + "attn.k_norm.weight": (hd,),
            b + "attn.proj.weight": (dim, dim), b + "attn.proj.bias": (dim,),
            b + "mlp.w1.weight": (ffn, dim), b + "mlp.w3.weight": (ffn, dim), b + "mlp.w2.weight": (dim, ffn),
        }  # fmt: skip
    return keys


@pytest.mark.parametrize(("size", "ffn"), [("B", 2048), ("L", 2816), ("XL", 3584)])
def test_official_sizes_have_the_official_layout(size, ffn):
    with torch.device("meta"):
        gen = AliTokGenerator(SIZES[size])
    got = {k: tuple(v.shape) for k, v in gen.state_dict().items()}
    assert got == official_keys(SIZES[size].dim, SIZES[size].depth, ffn)


def test_tiny_layout_and_strict_round_trip(tmp_path):
    torch.manual_seed(0)
    model = AliTok(TINY)
    state = model.generator.state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == official_keys(64, 2, 256, heads=4)
    torch.save(state, tmp_path / "alitok_tiny.bin")
    loaded = load_alitok(tmp_path / "alitok_tiny.bin", TINY)
    for k, v in loaded.generator.state_dict().items():
        assert torch.equal(v, state[k]), k
    state["blocks.0.attn.q_norm.weights"] = state.pop("blocks.0.attn.q_norm.weight")
    torch.save(state, tmp_path / "bad.bin")
    with pytest.raises(ValueError, match=r"missing keys \['blocks.0.attn.q_norm.weight'\]"):
        load_alitok(tmp_path / "bad.bin", TINY)
    with pytest.raises(ValueError, match="shape mismatch"):
        load_alitok(tmp_path / "alitok_tiny.bin", AliTokConfig(dim=128, depth=2, heads=4))


def test_rope_table_matches_the_upstream_formulas():
    hd = 16
    table = alitok_rope_table(hd)
    assert table.shape == (274, hd // 2, 2) and table[0].abs().sum() == 0  # class slot: q, k zeroed
    for pos in (0, 5, 16):  # rows 1..17: 1D positions 0..16, f_j = 10000^(-2j/hd)
        for j in range(hd // 2):
            angle = pos * 10000 ** (-2 * j / hd)
            assert table[1 + pos, j].tolist() == pytest.approx([math.cos(angle), math.sin(angle)], abs=1e-6)
    r, c = 3, 11  # grid cell -> row 18 + 16 r + c, angles (17 + r) f and (17 + c) f, f_j = 10000^(-2j/(hd/2))
    for j in range(hd // 4):
        f = 10000 ** (-2 * j / (hd // 2))
        assert table[18 + 16 * r + c, j].tolist() == pytest.approx(
            [math.cos((17 + r) * f), math.sin((17 + r) * f)], abs=1e-5
        )
        assert table[18 + 16 * r + c, hd // 4 + j].tolist() == pytest.approx(
            [math.cos((17 + c) * f), math.sin((17 + c) * f)], abs=1e-5
        )


def _tokens(batch=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 4096, (batch, 273), generator=g), ClassLabels(torch.tensor([3, 999, 0])[:batch])


def test_class_ids_are_rows_of_the_shared_table():
    model = AliTok(TINY)
    assert model._class_ids(torch.tensor([0, 999, model.null_class])).tolist() == [4097, 5096, 5097]


def test_unpatchify_matches_the_index_formula():
    x = torch.randn(2, 16 * 16 * 3, 2, 3)
    out = unpatchify(x)
    assert out.shape == (2, 3, 32, 48)
    for b, c, h, w, p1, p2 in [(0, 0, 0, 0, 0, 0), (1, 2, 1, 2, 15, 3), (0, 1, 1, 0, 7, 9)]:
        assert out[b, c, h * 16 + p1, w * 16 + p2] == x[b, (p1 * 16 + p2) * 3 + c, h, w]


def test_decoder_loads_from_a_full_tokenizer_checkpoint_and_decodes_uint8(tmp_path):
    torch.manual_seed(0)
    decoder = AliTokDecoder(width=64, layers=2)
    state = {**decoder.state_dict(), "encoder.patch_embed.weight": torch.zeros(8, 3, 16, 16),
             "latent_tokens": torch.zeros(273, 8)}  # fmt: skip
    torch.save(state, tmp_path / "AliTok.pth")
    loaded = load_alitok_decoder(tmp_path / "AliTok.pth")
    model = AliTok(TINY, loaded).eval()
    images = model.decode_images(_tokens(2)[0])
    assert images.dtype == torch.uint8 and images.shape == (2, 256, 256, 3)
    del state["decoder.ln_post.bias"]
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"decoder\.ln_post\.bias"):
        load_alitok_decoder(tmp_path / "bad.pth")


def test_without_tokenizer_decoding_is_a_clear_error():
    with pytest.raises(ValueError, match="tokenizer"):
        AliTok(TINY).decode_images(torch.zeros(1, 273, dtype=torch.long))


def test_bf16_model_entry_samples_and_keeps_rope_in_float32(tmp_path):
    from softcfg.config import parse_model
    from softcfg.models.loading import load_model

    torch.manual_seed(0)
    torch.save(AliTok(TINY).generator.state_dict(), tmp_path / "g.bin")
    entry = parse_model(
        {
            "family": "alitok",
            "checkpoint": str(tmp_path / "g.bin"),
            "dim": 64,
            "depth": 2,
            "heads": 4,
            "dtype": "bf16",
        }
    )
    model = load_model(entry)
    assert (
        model.generator.output.weight.dtype == torch.bfloat16 and model.generator.rope.dtype == torch.float32
    )
    method = parse_method({"name": "softcfg", "gamma": 3.0, "k": 1.0})
    tokens = generate(model, ClassLabels(torch.tensor([0, 1])), method, torch.Generator().manual_seed(0))
    assert tokens.shape == (2, 273) and tokens.max() < 4096


def upstream_alitok_decode(decoder: AliTokDecoder, tokens: torch.Tensor, heads: int) -> torch.Tensor:
    """alitok.py's ``VAutoencoder.decode_tokens`` op for op: codebook rows [B, 1, L, C] made
    channel-first and contiguous, read back as a transposed [B, L, C] view, ``decoder_embed``, the class
    tokens prepended, positions added before ``ln_pre``; each block's attention from ``in_proj`` split
    (K H D) and cast to float32 before SDPA, merged back (H D); the last 256 tokens after ``ln_post`` made
    channel-first, the 1x1 conv, the (p1 p2 c) unpatchify, ``conv_out`` and a sigmoid."""
    F = torch.nn.functional
    b, length = tokens.shape
    z = decoder.quantize.embedding(tokens.reshape(-1)).reshape(b, 1, length, -1)
    z = z.permute(0, 3, 1, 2).contiguous()  # b c h w
    d = decoder.decoder
    x = d.decoder_embed(z.reshape(b, z.shape[1], length).permute(0, 2, 1))
    x = torch.cat([d.class_embedding.unsqueeze(0).expand(b, -1, -1).to(x.dtype), x], dim=1)
    x = d.ln_pre(x + d.latent_token_positional_embedding)
    for block in d.transformer:
        qkv = block.attn.in_proj(block.ln_1(x))
        n, seq, _ = qkv.shape
        qkv = qkv.reshape(n, seq, 3, heads, -1).permute(2, 0, 3, 1, 4).float()
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        x = x + block.attn.out_proj(out.permute(0, 2, 1, 3).reshape(n, seq, -1))
        x = x + block.mlp(block.ln_2(x))
    x = d.ln_post(x[:, -256:])
    x = d.ffn(x.permute(0, 2, 1).reshape(b, x.shape[-1], 16, 16).contiguous())
    p = 16
    x = x.reshape(b, p, p, 3, 16, 16).permute(0, 3, 4, 1, 5, 2).reshape(b, 3, 16 * p, 16 * p)
    return torch.sigmoid(d.conv_out(x))


@torch.no_grad()
def test_decoder_equals_upstreams_operation_order_bit_for_bit():
    torch.manual_seed(0)
    decoder = AliTokDecoder(width=64, layers=2, heads=4).eval()
    tokens = torch.randint(0, 4096, (2, 273), generator=torch.Generator().manual_seed(3))
    assert torch.equal(decoder(tokens), upstream_alitok_decode(decoder, tokens, heads=4))
