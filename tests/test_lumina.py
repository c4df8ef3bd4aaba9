"""Lumina-mGPT 2.0 on a tiny random model in the official layouts (``tests/lumina_tiny.py``): the folder
and the MoVQGAN file load strictly and bad ones are refused naming the key or file; prompts and
unconditional rows follow the official rule, built here from its text; CFG through the project's loop
equals the official sampler's processors (raw-logit CFG, then the image-token and end-of-line rules) on a
second, from-the-formulas implementation of the decoder written here; only image tokens are sampled,
with end-of-line exactly where rows end; images follow the official decode and pixel conversion."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from lumina_tiny import CONFIG, EOS, GRID, IMAGE_SIZE, SPECIAL, TEXTS, save_tiny_lumina_files
from softcfg.config import ShardSizes, parse_model
from softcfg.methods import parse_method
from softcfg.models.base import TokenGrid
from softcfg.models.loading import load_model
from softcfg.models.lumina import LuminaMGPT2
from softcfg.models.movqgan import load_movq_decoder, movq_images_to_uint8
from softcfg.models.registry import get_family, presets
from softcfg.options import ConfigError, UserError
from softcfg.report.aggregate import grid_cells
from softcfg.sampling.loop import generate
from softcfg.sampling.replay import replay

BOI, EOL_ID, SIZE_1 = SPECIAL["<racm3:break>"], SPECIAL["<reserved08799>"], SPECIAL["<reserved08801>"]
IMAGE_IDS = torch.arange(155000, 155000 + 16384)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tuple[Path, Path]:
    return save_tiny_lumina_files(tmp_path_factory.mktemp("lumina"))


def entry(files: tuple[Path, Path], **extra) -> dict:
    return {"family": "lumina", "checkpoint": str(files[0]), "tokenizer": str(files[1]),
            "image_size": IMAGE_SIZE, **extra}  # fmt: skip


@pytest.fixture(scope="module")
def model(files) -> LuminaMGPT2:
    return load_model(parse_model(entry(files)))


def official_prompt_ids(model: LuminaMGPT2, text: str) -> list[int]:
    """The official rule written out: EOS (no BOS), the template, the separator, then the image prefix."""
    line = f"Generate an image of {IMAGE_SIZE}x{IMAGE_SIZE} according to the following prompt:\n{text}"
    return [EOS, *model.text_tokenizer.encode(line + "<reserved08706>", add_special_tokens=False),
            BOI, SIZE_1, SIZE_1]  # fmt: skip


def test_folder_loads_with_the_official_token_layout(model):
    assert (model.num_tokens, model.vocab_size) == (GRID * (GRID + 1), 16385)
    assert model.token_grid() == TokenGrid(0, GRID, GRID, GRID + 1)
    prompts = model.prompts(TEXTS)
    for row, text in enumerate(TEXTS):
        expected = official_prompt_ids(model, text)
        assert prompts.ids[row][prompts.mask[row]].tolist() == expected
        assert int(prompts.mask[row].sum()) == len(expected) and bool(prompts.mask[row, -1])
    assert model.text_tokenizer.convert_ids_to_tokens(prompts.ids[0, 1:4].tolist()) == [
        "Generate",
        "an",
        "image",
    ]
    uncond = prompts.cat(model.unconditional(prompts))
    for row in (2, 3):  # the official unconditional sequence: begin-of-image and the size tokens only
        assert uncond.ids[row][uncond.mask[row]].tolist() == [BOI, SIZE_1, SIZE_1]


def test_the_7b_preset_and_size_follow_the_official_sample_script(files):
    assert presets()["lumina-7B-768"] == {
        "gamma": 4.0,
        "k": 0.0,
        "temperature": 1.0,
        "top_k": 4096,
        "top_p": 1.0,
    }
    method = parse_method({"name": "cfg", "preset": "lumina-7B-768"})
    assert (method.gamma, method.top_k) == (4.0, 4096)
    tiny = load_model(parse_model(entry(files)))  # its decoder at the default 768 px
    big = LuminaMGPT2(tiny.decoder, tiny.text_tokenizer, dict(tiny.ids) | {"<reserved08824>": 151695})
    assert big.image_size == 768 and big.num_tokens == 96 * 97  # 96 rows of 96 codes and end-of-line
    assert "768x768" in big.text_tokenizer.decode(big.prompts(["a"]).ids[0])
    family = get_family("lumina")
    assert family.batch_size("7B", None) == family.batch_size("7B", 768) == 2
    with pytest.raises(ConfigError, match="multiples of 32"):
        parse_model(entry(files, image_size=100))
    with pytest.raises(ConfigError, match="eval_size"):
        parse_model(entry(files, eval_size=16))
    with pytest.raises(ConfigError, match=r"model\.size"):
        load_model(parse_model(entry(files, size="7B")))
    assert ShardSizes(batch_size="auto").batch_for(parse_model(entry(files, size="7B", image_size=None))) == 2


def reference_logits(state: dict, ids: list[int]) -> torch.Tensor:
    """The official decoder from its formulas, one unpadded sequence at positions 0.. : full-vocabulary
    float logits [L, V]. q/k norms: LayerNorm over head_dim, then the one shard's gamma and beta."""
    length, d, heads = len(ids), CONFIG["hidden_size"], CONFIG["num_attention_heads"]
    hd = d // heads

    def rms(x, w):
        return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5))

    def rotate(x):
        return torch.cat([-x[..., hd // 2 :], x[..., : hd // 2]], dim=-1)

    angle = torch.arange(length).float()[:, None] / 10000 ** (torch.arange(0, hd, 2).float() / hd)
    cos, sin = torch.cat([angle, angle], -1).cos()[:, None], torch.cat([angle, angle], -1).sin()[:, None]
    hidden = state["model.embed_tokens.weight"][torch.tensor(ids)]
    future = torch.ones(length, length, dtype=torch.bool).triu(1)
    for i in range(CONFIG["num_hidden_layers"]):
        w = {
            k[len(f"model.layers.{i}.") :]: v for k, v in state.items() if k.startswith(f"model.layers.{i}.")
        }
        a = rms(hidden, w["input_layernorm.weight"])

        def project(name, norm=None, a=a, w=w):
            y = (a @ w[f"self_attn.{name}.weight"].T).view(length, heads, hd)
            if norm is None:
                return y
            y = (
                F.layer_norm(y, (hd,), eps=1e-5) * w[f"self_attn.{norm}.weight"][0]
                + w[f"self_attn.{norm}.bias"][0]
            )
            return y * cos + rotate(y) * sin

        q, k, v = project("q_proj", "q_norm"), project("k_proj", "k_norm"), project("v_proj")
        scores = torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(hd)
        attention = torch.softmax(scores.masked_fill(future, -math.inf), dim=-1)
        hidden = (
            hidden
            + torch.einsum("hqk,khd->qhd", attention, v).reshape(length, d) @ w["self_attn.o_proj.weight"].T
        )
        a = rms(hidden, w["post_attention_layernorm.weight"])
        hidden = (
            hidden
            + (F.silu(a @ w["mlp.gate_proj.weight"].T) * (a @ w["mlp.up_proj.weight"].T))
            @ w["mlp.down_proj.weight"].T
        )
    return rms(hidden, state["model.norm.weight"]) @ state["lm_head.weight"].T


def official_guided_probabilities(cond: torch.Tensor, uncond: torch.Tensor, cfg: float) -> torch.Tensor:
    """inference_solver.py's processors on full-vocabulary logits [T, V] of one sequence: CFG on the raw
    logits, then end-of-line forced where a row ends and every non-image id suppressed elsewhere;
    returns the sampled distribution over [image codes, end-of-line] [T, 16385]."""
    guided = cfg * (cond - uncond) + uncond
    out = torch.full_like(guided, -math.inf)
    for p in range(guided.shape[0]):
        if (p + 1) % (GRID + 1) == 0:
            out[p, EOL_ID] = 0.0
        else:
            out[p, IMAGE_IDS] = guided[p, IMAGE_IDS]
    return torch.softmax(out, -1)[:, torch.cat([IMAGE_IDS, torch.tensor([EOL_ID])])]


def test_cfg_equals_the_official_processors_on_a_second_implementation(model, files):
    state = {}
    for shard in sorted(files[0].glob("*.safetensors")):
        state |= load_file(shard)
    prompts = model.prompts(TEXTS)
    with torch.inference_mode():
        tokens = generate(model, prompts, parse_method({"name": "cfg", "gamma": 4.0, "k": 0.0}),
                          torch.Generator().manual_seed(0))  # fmt: skip
    out = replay(model, parse_method({"name": "cfg", "gamma": 4.0, "k": 0.0}), prompts, tokens)
    for row, text in enumerate(TEXTS):
        fed = model.vocabulary_ids[tokens[row, :-1]].tolist()
        prompt = official_prompt_ids(model, text)
        cond = reference_logits(state, prompt + fed)[len(prompt) - 1 :]
        uncond = reference_logits(state, [BOI, SIZE_1, SIZE_1, *fed])[2:]
        expected = official_guided_probabilities(cond, uncond, 4.0)
        ours = torch.softmax(torch.from_numpy(out["guided"][row]), -1)
        np.testing.assert_allclose(ours.numpy(), expected.numpy(), atol=2e-5)
        unconstrained = ~((torch.arange(len(cond)) + 1) % (GRID + 1) == 0)
        np.testing.assert_allclose(
            out["cond"][row][unconstrained, :16384],
            cond[unconstrained][:, IMAGE_IDS].numpy(),
            rtol=1e-4,
            atol=1e-4,
        )


def test_only_image_tokens_are_sampled_and_rows_end_with_end_of_line(model):
    prompts = model.prompts(TEXTS)
    row_end = (torch.arange(model.num_tokens) + 1) % (GRID + 1) == 0
    for method in ({"name": "none"}, {"name": "cfg", "gamma": 4.0, "k": 0.0, "top_k": 4096},
                   {"name": "softcfg", "gamma": 4.0, "k": 0.0, "temperature": 1.5}):  # fmt: skip
        for seed in range(3):
            with torch.inference_mode():
                tokens = generate(model, prompts, parse_method(method), torch.Generator().manual_seed(seed))
            assert (tokens[:, row_end] == 16384).all() and (tokens[:, ~row_end] < 16384).all()


def test_images_are_the_codes_decoded_and_converted_as_upstream(model, files):
    tokens = torch.randint(0, 16384, (2, model.num_tokens), generator=torch.Generator().manual_seed(0))
    tokens.view(2, GRID, GRID + 1)[:, :, -1] = 16384
    images = model.decode_images(tokens)
    assert images.shape == (2, IMAGE_SIZE, IMAGE_SIZE, 3) and images.dtype == torch.uint8
    codes = torch.stack([row[(torch.arange(len(row)) + 1) % (GRID + 1) != 0] for row in tokens]).view(
        2, GRID, GRID
    )
    decoder = load_movq_decoder(files[1])
    with torch.no_grad():
        pixels = upstream_movq_decode(decoder, codes)
    assert pixels.shape == (2, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert torch.equal(images, movq_images_to_uint8(pixels))
    x = torch.tensor([-1.2, -1.0, -0.996, 0.0, 0.5, 0.99, 1.0, 1.3]).view(1, 1, 1, -1).expand(1, 3, 1, -1)
    expected = [0, 0, 1, 128, 191, 254, 255, 255]  # round((x + 1) * 127.5) half to even, clamped
    assert movq_images_to_uint8(x)[0, 0, :, 0].tolist() == expected


def test_confidence_map_cells_leave_the_end_of_line_column_out(model):
    cells = grid_cells(np.arange(model.num_tokens), model.token_grid()._asdict())
    rows, cols = cells["grid_row"], cells["grid_col"]
    assert pd.isna(rows[GRID]) and (rows[GRID + 1], cols[GRID + 1]) == (1, 0)
    assert int(rows.isna().sum()) == GRID and int(cols.max()) == GRID - 1


def _rewrite_shard(folder: Path, key: str, edit) -> None:
    """Apply ``edit`` to the shard holding ``key``, as a user's damaged download would have it."""
    index = json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"]
    shard = folder / index[key]
    state = load_file(shard)
    edit(state)
    save_file(state, shard, metadata={"format": "pt"})


def test_bad_folders_and_files_are_refused_naming_what_is_wrong(tmp_path, files):
    def broken(edit_config=None, key: str = "", edit_state=None) -> dict:
        folder = tmp_path / f"case{len(list(tmp_path.iterdir()))}"
        shutil.copytree(files[0], folder)
        if edit_config:
            config = json.loads((folder / "config.json").read_text())
            (folder / "config.json").write_text(json.dumps(edit_config(config)))
        if edit_state:
            _rewrite_shard(folder, key, edit_state)
        return parse_model({**entry(files), "checkpoint": str(folder)})

    key = "model.layers.1.mlp.up_proj.weight"

    def rename(state):
        state["model.layers.1.mlp.upper.weight"] = state.pop(key)

    with pytest.raises(
        UserError, match=rf"missing keys \['{key}'\]; unexpected keys \['model.layers.1.mlp.upper"
    ):
        load_model(broken(key=key, edit_state=rename))
    norm = "model.layers.0.self_attn.k_norm.weight"

    def per_head(state):  # transformers' layout: one gamma per head
        state[norm] = state[norm].repeat(2, 1)

    with pytest.raises(UserError, match=rf"shape mismatch \['{norm}: checkpoint \(2, 8\) vs model \(1, 8\)"):
        load_model(broken(key=norm, edit_state=per_head))
    with pytest.raises(UserError, match="swin_norm is True; only False"):
        load_model(broken(lambda c: {**c, "swin_norm": True}))
    with pytest.raises(UserError, match="model_type is 'llama', not 'chameleon'"):
        load_model(broken(lambda c: {**c, "model_type": "llama"}))
    with pytest.raises(UserError, match="vocab_size 1000 leaves out image codes"):
        load_model(broken(lambda c: {**c, "vocab_size": 1000}))
    with pytest.raises(UserError, match=r"its tokenizer lacks \['<reserved08834>'\]"):
        load_model(parse_model(entry(files, image_size=34 * 32)))
    gone = tmp_path / "gone"
    with pytest.raises(UserError, match=f"folder not found: {gone}"):
        load_model(parse_model({**entry(files), "checkpoint": str(gone)}))
    with pytest.raises(ConfigError, match=r"model\.tokenizer: lumina needs its MoVQGAN"):
        load_model(parse_model({**entry(files), "tokenizer": None}))
    state = torch.load(files[1])
    state.pop("decoder.conv_out.bias")
    torch.save(state, tmp_path / "movq.ckpt")
    with pytest.raises(
        UserError, match=r"movq.ckpt does not match the model: missing keys \['decoder.conv_out.bias'\]"
    ):
        load_movq_decoder(tmp_path / "movq.ckpt")
    torch.save({"encoder.conv_in.weight": torch.zeros(1)}, tmp_path / "encoder.ckpt")
    with pytest.raises(UserError, match=r"holds no state dict with 'quantize\.embedding\.weight'"):
        load_movq_decoder(tmp_path / "encoder.ckpt")


def upstream_movq_decode(decoder, codes: torch.Tensor) -> torch.Tensor:
    """movqgan's ``VQ.decode_code`` op for op, one image at a time as Lumina's ``inference_solver`` calls
    it: codebook rows viewed (1, h, w, 4), made channel-first and contiguous, ``post_quant_conv``, then the
    decoder with ``nonlinearity`` = x sigmoid(x), SpatialNorm (zq resized nearest, GroupNorm(f) * conv_y +
    conv_b), ``x + h`` residuals, bmm attention scaled after q k^T, nearest upsampling then a conv."""

    def swish(x):
        return x * torch.sigmoid(x)

    def norm(layer, f, zq):
        zq = F.interpolate(zq, size=f.shape[-2:], mode="nearest")
        return layer.norm_layer(f) * layer.conv_y(zq) + layer.conv_b(zq)

    def res(block, x, zq):
        h = block.conv2(swish(norm(block.norm2, block.conv1(swish(norm(block.norm1, x, zq))), zq)))
        return (x if block.nin_shortcut is None else block.nin_shortcut(x)) + h

    def attn(block, x, zq):
        y = norm(block.norm, x, zq)
        q, k, v = block.q(y), block.k(y), block.v(y)
        b, c, h, w = q.shape
        w_ = torch.bmm(q.reshape(b, c, h * w).permute(0, 2, 1), k.reshape(b, c, h * w))
        w_ = F.softmax(w_ * (int(c) ** (-0.5)), dim=2)
        return x + block.proj_out(torch.bmm(v.reshape(b, c, h * w), w_.permute(0, 2, 1)).reshape(b, c, h, w))

    images = []
    d = decoder.decoder
    for code in codes:
        h, w = code.shape
        quant = decoder.quantize.embedding(code.flatten()).view(1, h, w, -1).permute(0, 3, 1, 2).contiguous()
        x = d.conv_in(decoder.post_quant_conv(quant))
        x = res(d.mid.block_2, attn(d.mid.attn_1, res(d.mid.block_1, x, quant), quant), quant)
        for level in reversed(d.up):
            for j, block in enumerate(level.block):
                x = res(block, x, quant)
                if len(level.attn):
                    x = attn(level.attn[j], x, quant)
            if level.upsample is not None:
                x = level.upsample.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        images.append(d.conv_out(swish(norm(d.norm_out, x, quant))))
    return torch.cat(images)


@torch.no_grad()
def test_movq_decoder_equals_upstreams_operation_order_bit_for_bit(files):
    """Image by image, as upstream decodes (and ``decode_images`` does): a batch of three rounds
    differently in its convolutions."""
    decoder = load_movq_decoder(files[1])
    codes = torch.randint(0, 16384, (3, GRID, GRID), generator=torch.Generator().manual_seed(4))
    upstream = upstream_movq_decode(decoder, codes)
    assert torch.equal(torch.cat([decoder(code[None]) for code in codes]), upstream)
