"""VAR and its multi-scale VQVAE on random weights in the official layouts, against upstream facts and a
plain implementation of upstream's formulas written here (attention with softmax scale 1 on L2-normalised
q and k, the -inf block mask, f_hat built scale by scale)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from softcfg.conditioning import ClassLabels
from softcfg.config import parse_model
from softcfg.methods import parse_method
from softcfg.models.attention import SlotWeights, block_causal_mask
from softcfg.models.loading import load_var
from softcfg.models.registry import get_family
from softcfg.models.var import SIZES, VAR, VARConfig, VARGenerator
from softcfg.models.var import load_var as load_var_files
from softcfg.models.var_vqvae import VQVAE, AttnBlock, VQVAEConfig, phi_index
from softcfg.options import ConfigError, UserError
from softcfg.sampling.loop import guided_loop

PATCH_NUMS = (1, 2, 3, 4)
TINY_VAE = VQVAEConfig(channels=32, mult=(1, 2), z_channels=8, vocab_size=64, patch_nums=PATCH_NUMS)
TINY = VARConfig(dim=128, depth=2, heads=2, vae=TINY_VAE)
LENGTH = sum(p * p for p in PATCH_NUMS)  # 30


def random_var(seed: int = 0) -> VAR:
    """Random weights everywhere (upstream zero-initialises biases and the positions), one head's log scale
    above upstream's clamp (log 100), a sharp head."""
    torch.manual_seed(seed)
    model = VAR(TINY, VQVAE(TINY_VAE)).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0, 0.3)
        for block in model.generator.blocks:
            block.attn.scale_mul_1H11.copy_(torch.tensor([1.0, 5.0]).view(1, 2, 1, 1))
        model.generator.head.weight.normal_(0, 1.0)
        for norm in (m for m in model.tokenizer.modules() if isinstance(m, torch.nn.GroupNorm)):
            norm.weight.fill_(1.0)
    return model


def random_tokens(batch: int = 3, seed: int = 1) -> tuple[torch.Tensor, ClassLabels]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 64, (batch, LENGTH), generator=g), ClassLabels(torch.tensor([3, 999, 0])[:batch])


# ----- upstream's formulas, written out -----


def reference_fhat(vae: VQVAE, tokens: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """f_hat after each scale, and the next scale's input (area average of f_hat), as upstream computes
    them: embed, bicubic upsample to the last side (not the last scale), phi = 0.5 x + 0.5 conv(x) with the
    conv whose tick (1/12, 13/36, 23/36, 11/12) is nearest si / (K - 1), add."""
    state = vae.state_dict()
    codebook, side, num = state["quantize.embedding.weight"], PATCH_NUMS[-1], len(PATCH_NUMS)
    ticks = [1 / 12 + i * (10 / 12) / 3 for i in range(4)]
    f_hat = torch.zeros(tokens.shape[0], codebook.shape[1], side, side)
    fhats, inputs, start = [], [], 0
    for si, p in enumerate(PATCH_NUMS):
        h = codebook[tokens[:, start : start + p * p]].view(-1, p, p, codebook.shape[1]).permute(0, 3, 1, 2)
        if si < num - 1:
            h = F.interpolate(h, size=(side, side), mode="bicubic", align_corners=False)
        j = min(range(4), key=lambda i: abs(ticks[i] - si / (num - 1)))
        w, b = (
            state[f"quantize.quant_resi.qresi_ls.{j}.weight"],
            state[f"quantize.quant_resi.qresi_ls.{j}.bias"],
        )
        f_hat = f_hat + 0.5 * h + 0.5 * F.conv2d(h, w, b, padding=1)
        fhats.append(f_hat)
        if si < num - 1:
            nxt = PATCH_NUMS[si + 1]
            inputs.append(F.adaptive_avg_pool2d(f_hat, nxt).flatten(2).transpose(1, 2))
        start += p * p
    return fhats, inputs


def reference_logits(model: VAR, labels: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Upstream's teacher-forced forward from the state dict: additive -inf mask, softmax scale 1."""
    s = model.generator.state_dict()
    d, heads = TINY.dim, TINY.heads
    cond = s["class_emb.weight"][labels]
    _, inputs = reference_fhat(model.tokenizer, tokens)
    x = torch.cat(
        [
            cond[:, None] + s["pos_start"],
            torch.cat(inputs, 1) @ s["word_embed.weight"].T + s["word_embed.bias"],
        ],
        1,
    )
    level = torch.tensor([k for k, p in enumerate(PATCH_NUMS) for _ in range(p * p)])
    x = x + s["lvl_embed.weight"][level] + s["pos_1LC"]
    bias = torch.where(level[:, None] >= level[None, :], 0.0, -math.inf)
    silu = F.silu(cond)
    ln = lambda t: F.layer_norm(t, (d,), eps=1e-6)  # noqa: E731
    for i in range(TINY.depth):
        b = f"blocks.{i}."
        g1, g2, s1, s2, h1, h2 = (silu @ s[b + "ada_lin.1.weight"].T + s[b + "ada_lin.1.bias"])[
            :, None
        ].chunk(6, -1)
        y = ln(x) * (1 + s1) + h1
        qkv = y @ s[b + "attn.mat_qkv.weight"].T + torch.cat(
            [s[b + "attn.q_bias"], torch.zeros(d), s[b + "attn.v_bias"]]
        )
        q, k, v = qkv.view(*y.shape[:2], 3, heads, d // heads).permute(2, 0, 3, 1, 4)
        mul = s[b + "attn.scale_mul_1H11"].clamp(max=math.log(100)).exp()
        att = (F.normalize(q, dim=-1) * mul) @ F.normalize(k, dim=-1).transpose(-1, -2) + bias
        o = (att.softmax(-1) @ v).transpose(1, 2).reshape(*y.shape)
        x = x + (o @ s[b + "attn.proj.weight"].T + s[b + "attn.proj.bias"]) * g1
        y = ln(x) * (1 + s2) + h2
        hidden = F.gelu(y @ s[b + "ffn.fc1.weight"].T + s[b + "ffn.fc1.bias"], approximate="tanh")
        x = x + (hidden @ s[b + "ffn.fc2.weight"].T + s[b + "ffn.fc2.bias"]) * g2
    scale, shift = (silu @ s["head_nm.ada_lin.1.weight"].T + s["head_nm.ada_lin.1.bias"])[:, None].chunk(
        2, -1
    )
    return (ln(x) * (1 + scale) + shift) @ s["head.weight"].T + s["head.bias"]


def var_keys(depth: int) -> dict[str, tuple[int, ...]]:
    """var_d*.pth's keys and shapes (256 px models: no shared AdaLN), from the upstream notes."""
    d, length = 64 * depth, 680
    keys = {
        "word_embed.weight": (d, 32), "word_embed.bias": (d,), "class_emb.weight": (1001, d),
        "pos_start": (1, 1, d), "pos_1LC": (1, length, d), "lvl_embed.weight": (10, d),
        "lvl_1L": (1, length), "attn_bias_for_masking": (1, 1, length, length),
        "head_nm.ada_lin.1.weight": (2 * d, d), "head_nm.ada_lin.1.bias": (2 * d,),
        "head.weight": (4096, d), "head.bias": (4096,),
    }  # fmt: skip
    for i in range(depth):
        b = f"blocks.{i}."
        keys |= {
            b + "attn.mat_qkv.weight": (3 * d, d), b + "attn.q_bias": (d,), b + "attn.v_bias": (d,),
            b + "attn.zero_k_bias": (d,), b + "attn.scale_mul_1H11": (1, depth, 1, 1),
            b + "attn.proj.weight": (d, d), b + "attn.proj.bias": (d,),
            b + "ffn.fc1.weight": (4 * d, d), b + "ffn.fc1.bias": (4 * d,),
            b + "ffn.fc2.weight": (d, 4 * d), b + "ffn.fc2.bias": (d,),
            b + "ada_lin.1.weight": (6 * d, d), b + "ada_lin.1.bias": (6 * d,),
        }  # fmt: skip
    return keys


def vae_keys() -> dict[str, tuple[int, ...]]:
    """vae_ch160v4096z32.pth's keys and shapes, from the upstream notes (ch 160, mult 1 1 2 2 4, z 32)."""
    ch, mult, z = 160, (1, 1, 2, 2, 4), 32
    keys: dict[str, tuple[int, ...]] = {}

    def conv(name, c_in, c_out, k):
        keys.update({f"{name}.weight": (c_out, c_in, k, k), f"{name}.bias": (c_out,)})

    def norm(name, c):
        keys.update({f"{name}.weight": (c,), f"{name}.bias": (c,)})

    def res(name, c_in, c_out):
        norm(f"{name}.norm1", c_in), conv(f"{name}.conv1", c_in, c_out, 3)
        norm(f"{name}.norm2", c_out), conv(f"{name}.conv2", c_out, c_out, 3)
        if c_in != c_out:
            conv(f"{name}.nin_shortcut", c_in, c_out, 1)

    def attn(name, c):
        norm(f"{name}.norm", c), conv(f"{name}.qkv", c, 3 * c, 1), conv(f"{name}.proj_out", c, c, 1)

    def mid(name, c):
        res(f"{name}.mid.block_1", c, c), attn(f"{name}.mid.attn_1", c), res(f"{name}.mid.block_2", c, c)

    conv("encoder.conv_in", 3, ch, 3)
    c = ch
    for i, m in enumerate(mult):
        for j in range(2):
            res(f"encoder.down.{i}.block.{j}", c, ch * m)
            c = ch * m
            if i == 4:
                attn(f"encoder.down.{i}.attn.{j}", c)
        if i != 4:
            conv(f"encoder.down.{i}.downsample.conv", c, c, 3)
    mid("encoder", c), norm("encoder.norm_out", c), conv("encoder.conv_out", c, z, 3)
    conv("decoder.conv_in", z, c, 3), mid("decoder", c)
    for i in reversed(range(5)):
        for j in range(3):
            res(f"decoder.up.{i}.block.{j}", c, ch * mult[i])
            c = ch * mult[i]
            if i == 4:
                attn(f"decoder.up.{i}.attn.{j}", c)
        if i != 0:
            conv(f"decoder.up.{i}.upsample.conv", c, c, 3)
    norm("decoder.norm_out", c), conv("decoder.conv_out", c, 3, 3)
    for i in range(4):
        conv(f"quantize.quant_resi.qresi_ls.{i}", z, z, 3)
    conv("quant_conv", z, z, 3), conv("post_quant_conv", z, z, 3)
    keys |= {"quantize.embedding.weight": (4096, z), "quantize.ema_vocab_hit_SV": (10, 4096)}
    return keys


# ----- layouts and loading -----


@pytest.mark.parametrize("size", ["d16", "d20", "d24", "d30"])
def test_official_sizes_have_the_official_layout(size):
    with torch.device("meta"):
        gen = VARGenerator(SIZES[size])
    assert {k: tuple(v.shape) for k, v in gen.state_dict().items()} == var_keys(int(size[1:]))
    if size == "d16":  # upstream's table: 310M parameters
        assert round(sum(p.numel() for p in gen.parameters()) / 1e6) == 310


def test_vqvae_has_the_official_layout():
    with torch.device("meta"):
        vae = VQVAE()
    assert {k: tuple(v.shape) for k, v in vae.state_dict().items()} == vae_keys()


def test_persistent_buffers_are_upstreams():
    gen = VARGenerator(TINY)
    level = torch.tensor([0] + [1] * 4 + [2] * 9 + [3] * 16)
    assert torch.equal(gen.lvl_1L, level[None])
    bias = gen.attn_bias_for_masking[0, 0]
    assert torch.equal(bias == 0, block_causal_mask([p * p for p in PATCH_NUMS]))
    assert torch.isinf(bias[bias != 0]).all() and (bias[bias != 0] < 0).all()
    assert not gen.blocks[0].attn.zero_k_bias.any()


def test_strict_loading_and_clear_errors(tmp_path):
    model = random_var()
    gen_path, vae_path = tmp_path / "var_d2.pth", tmp_path / "vae.pth"
    torch.save(model.generator.state_dict(), gen_path)
    torch.save(model.tokenizer.state_dict(), vae_path)
    loaded = load_var_files(gen_path, TINY, vae_path)
    for a, b in ((model.generator, loaded.generator), (model.tokenizer, loaded.tokenizer)):
        assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())

    state = model.generator.state_dict()
    del state["blocks.1.attn.zero_k_bias"]
    torch.save(state, bad := tmp_path / "missing.pth")
    with pytest.raises(UserError, match=r"missing\.pth.*missing keys \['blocks\.1\.attn\.zero_k_bias'\]"):
        load_var_files(bad, TINY, vae_path)
    state = {**model.tokenizer.state_dict(), "quantize.extra": torch.zeros(1)}
    torch.save(state, bad := tmp_path / "vae_extra.pth")
    with pytest.raises(UserError, match=r"vae_extra\.pth.*unexpected keys \['quantize\.extra'\]"):
        load_var_files(gen_path, TINY, bad)
    with pytest.raises(UserError, match="does not fit the transformer"):
        VAR(
            TINY,
            VQVAE(VQVAEConfig(channels=32, mult=(1, 2), z_channels=8, vocab_size=32, patch_nums=PATCH_NUMS)),
        )


def test_family_entry_and_presets():
    family = get_family("var")
    assert family.next_scale and family.sizes == ("d16", "d20", "d24", "d30") and family.paper_name == "VAR"
    assert not get_family("llamagen").next_scale
    # upstream README: cfg 1.5 ramped over the scales, top_k 900, top_p 0.96, no temperature
    method = parse_method({"name": "cfg", "preset": "var-d16"})
    assert (method.schedule, method.top_k, method.top_p, method.temperature) == ("ramp", 900, 0.96, 1.0)
    ramp = method.scales(10)
    assert ramp == pytest.approx([1 + 1.5 * si / 9 for si in range(10)])
    entry = parse_model({"family": "var", "checkpoint": "var_d16.pth", "size": "d16"}, check_files=False)
    with pytest.raises(ConfigError, match=r"model\.tokenizer: var needs its VQVAE"):
        load_var(entry)


# ----- the VQVAE side -----


def test_phi_index_table_is_upstreams():
    assert [phi_index(si, 10) for si in range(10)] == [0, 0, 1, 1, 1, 2, 2, 3, 3, 3]
    assert [phi_index(si, 4) for si in range(4)] == [0, 1, 2, 3]


def test_fhat_accumulation_and_next_inputs():
    model = random_var()
    tokens, _ = random_tokens()
    fhats, inputs = reference_fhat(model.tokenizer, tokens)
    quantize, f_hat, start = model.tokenizer.quantize, torch.zeros(3, 8, 4, 4), 0
    for si, p in enumerate(PATCH_NUMS):
        f_hat = quantize.add_scale(f_hat, tokens[:, start : start + p * p], si)
        torch.testing.assert_close(f_hat, fhats[si], rtol=1e-5, atol=1e-5)
        if si < len(PATCH_NUMS) - 1:
            torch.testing.assert_close(quantize.next_input(f_hat, si + 1), inputs[si], rtol=1e-5, atol=1e-5)
        start += p * p
    torch.testing.assert_close(quantize.tokens_to_fhat(tokens), fhats[-1], rtol=1e-5, atol=1e-5)


def upstream_attention(block: AttnBlock, x: torch.Tensor) -> torch.Tensor:
    """models/basic_vae.py's AttnBlock.forward, op for op (contiguous copies, bmm, mul_ by C^-1/2)."""
    n, c, h, w = x.shape
    q, k, v = block.qkv(block.norm(x)).reshape(n, 3, c, h, w).unbind(1)
    q = q.view(n, c, h * w).contiguous().permute(0, 2, 1).contiguous()
    weights = torch.nn.functional.softmax(torch.bmm(q, k.view(n, c, h * w).contiguous()).mul_(c**-0.5), dim=2)
    out = torch.bmm(v.view(n, c, h * w).contiguous(), weights.permute(0, 2, 1).contiguous())
    return x + block.proj_out(out.view(n, c, h, w).contiguous())


def upstream_decoder(decoder, z: torch.Tensor) -> torch.Tensor:
    """basic_vae.py's Decoder.forward with its ResnetBlock (F.silu) and Upsample2x, written out."""
    silu = torch.nn.functional.silu

    def res(block, x):
        h = block.conv2(silu(block.norm2(block.conv1(silu(block.norm1(x))))))
        return (block.nin_shortcut(x) if hasattr(block, "nin_shortcut") else x) + h

    h = res(
        decoder.mid.block_2,
        upstream_attention(decoder.mid.attn_1, res(decoder.mid.block_1, decoder.conv_in(z))),
    )
    for i in reversed(range(len(decoder.up))):
        level = decoder.up[i]
        for j, block in enumerate(level.block):
            h = res(block, h)
            if len(level.attn):
                h = upstream_attention(level.attn[j], h)
        if i != 0:
            h = level.upsample.conv(torch.nn.functional.interpolate(h, scale_factor=2, mode="nearest"))
    return decoder.conv_out(silu(decoder.norm_out(h)))


@torch.no_grad()
def test_attention_block_is_upstreams_bmm_form_bit_for_bit():
    torch.manual_seed(0)
    block, x = AttnBlock(32), torch.randn(2, 32, 3, 5)
    assert torch.equal(block(x), upstream_attention(block, x))


@torch.no_grad()
def test_the_decoder_equals_upstreams_operation_order_bit_for_bit():
    vae = random_var().tokenizer
    f_hat = torch.randn(3, TINY_VAE.z_channels, 4, 4, generator=torch.Generator().manual_seed(1))
    z = vae.post_quant_conv(f_hat)
    assert torch.equal(vae.decoder(z), upstream_decoder(vae.decoder, z))
    upstream = (upstream_decoder(vae.decoder, z).clamp_(-1, 1).add_(1).mul_(0.5) * 255).to(torch.uint8)
    assert torch.equal(vae.fhat_to_images(f_hat).mul(255).to(torch.uint8), upstream)


def test_decode_images_shape_dtype_and_conversion():
    model = random_var()
    tokens, _ = random_tokens()
    images = model.decode_images(tokens)
    assert images.shape == (3, 8, 8, 3) and images.dtype == torch.uint8  # side 4 x 2 (two levels)
    vae = model.tokenizer
    with torch.no_grad():
        decoded = vae.decoder(vae.post_quant_conv(reference_fhat(vae, tokens)[0][-1]))
    expected = ((decoded.clamp(-1, 1) + 1) / 2 * 255).to(torch.uint8).permute(0, 2, 3, 1)
    assert (images.int() - expected.int()).abs().max() <= 1  # a float ulp can cross a truncation step
    assert (images == expected).float().mean() > 0.99


# ----- the transformer -----


@torch.no_grad()
def test_forward_matches_upstreams_formulas():
    model = random_var()
    tokens, labels = random_tokens()
    expected = reference_logits(model, labels.labels, tokens)
    logits = model(labels, tokens)
    assert logits.shape == (3, LENGTH, 64) and logits.dtype == torch.float32
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)


def replay(model: VAR, labels: ClassLabels, tokens: torch.Tensor, weights=None) -> torch.Tensor:
    """Prefill, then feed scale by scale (teacher forcing); the logits of every scale, concatenated."""
    cache = model.new_cache(len(labels))
    out = [model.prefill(labels, cache)]
    for step in range(1, model.num_steps):
        start, end = model.step_span(step - 1)
        visible = model.step_span(step)[1]  # slots of every scale's input up to this step's
        slot_weights = None if weights is None else SlotWeights(weights[:, :visible])
        out.append(model.feed(tokens[:, start:end], step, cache, slot_weights))
    assert cache.length == model.num_slots == LENGTH
    return torch.cat(out, dim=1)


@torch.no_grad()
def test_cached_replay_equals_uncached_forward():
    model = random_var()
    tokens, labels = random_tokens()
    torch.testing.assert_close(replay(model, labels, tokens), model(labels, tokens), rtol=1e-4, atol=1e-4)


@torch.no_grad()
def test_doubled_batch_keeps_the_cond_rows():
    """[cond; uncond] with repeated tokens gives the cond-only logits on the cond rows, also when SoftCFG
    weights act on the uncond rows; the weights do change the uncond rows."""
    model = random_var()
    tokens, labels = random_tokens(batch=2)
    rows = labels.cat(model.unconditional(labels))
    alone = replay(model, labels, tokens)
    doubled = replay(model, rows, tokens.repeat(2, 1))
    torch.testing.assert_close(doubled[:2], alone, rtol=1e-5, atol=1e-4)  # batch-size rounding only
    weights = torch.rand(2, LENGTH, generator=torch.Generator().manual_seed(3))
    weighted = replay(model, rows, tokens.repeat(2, 1), weights)
    torch.testing.assert_close(weighted[:2], doubled[:2], rtol=0, atol=0)
    assert (weighted[2:, 1:] - doubled[2:, 1:]).abs().max() > 1e-3


@torch.no_grad()
def test_greedy_generation_with_the_ramp_matches_an_upstream_style_loop():
    """The sampling loop on the doubled batch, argmax instead of a draw, against upstream's loop written
    out: scale by scale, (1 + t) l_c - t l_u with t = cfg si / (K - 1) from the uncached reference logits
    (block-causal, so the not yet generated scales, zeros here, do not matter)."""
    model = random_var()
    _, labels = random_tokens()
    method = parse_method({"name": "cfg", "preset": "var-d16", "top_k": 0, "top_p": 1.0})
    tokens = guided_loop(model, labels, method, lambda step, guided: guided.argmax(-1))
    expected, cfg = torch.zeros(3, LENGTH, dtype=torch.long), 1.5
    null = torch.full_like(labels.labels, 1000)
    for si in range(len(PATCH_NUMS)):
        start, end = model.step_span(si)
        l_c = reference_logits(model, labels.labels, expected)[:, start:end]
        l_u = reference_logits(model, null, expected)[:, start:end]
        t = cfg * si / (len(PATCH_NUMS) - 1)
        expected[:, start:end] = ((1 + t) * l_c - t * l_u).argmax(-1)
    assert torch.equal(tokens, expected)


@pytest.mark.slow
def test_softcfg_sample_draws_a_var_run_from_official_layout_files(tmp_path):
    """The user's path: a tiny transformer (depth 1) and the released-size VQVAE (ch160, 10 scales), both
    saved as raw state dicts as upstream's files are, sampled by ``softcfg sample`` into a shard."""
    import json
    import subprocess
    import sys

    import numpy as np
    import yaml

    from workflow_kit import env, time_limit

    torch.manual_seed(0)
    torch.save(VARGenerator(VARConfig(64, 1, 1)).state_dict(), tmp_path / "var_d1.pth")
    torch.save(VQVAE(VQVAEConfig()).state_dict(), tmp_path / "vae_ch160v4096z32.pth")
    model = {"family": "var", "checkpoint": str(tmp_path / "var_d1.pth"), "dim": 64, "depth": 1, "heads": 1,
             "tokenizer": str(tmp_path / "vae_ch160v4096z32.pth")}  # fmt: skip
    run = {"model": model, "method": {"name": "softcfg", "preset": "var-d16"},
           "sampling": {"shard_size": 2, "batch_size": 2, "seed": 0}}  # fmt: skip
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(run))
    out = tmp_path / "samples" / "shards_0003-0003.json"
    proc = subprocess.run(
        [sys.executable, "-m", "softcfg", "sample", "--config", str(tmp_path / "run.yaml"), "--shards", "3",
         "--out", str(out), "--no-progress"],
        env=env(), capture_output=True, text=True, timeout=time_limit(600),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(out.parent / "shard_0003.npz") as data:
        assert data["arr_0"].shape == (2, 256, 256, 3) and data["arr_0"].dtype == np.uint8
        assert data["arr_1"].tolist() == [6, 7]  # class (3 * 2 + i) % 1000
    manifest = json.loads((out.parent / "shard_0003.json").read_text())
    assert manifest["token_grid"] == {"offset": 680 - 256, "height": 16, "width": 16}  # the last scale
    assert len(manifest["diagnostics"]["entropy_guided"]) == 10  # one row per scale
