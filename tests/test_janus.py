"""Janus-Pro text-to-image on a tiny random model saved with ``save_pretrained`` (model, processor and a
tokenizer built here, offline): the folder loads through a model entry, bad folders fail naming the folder,
CFG through the project's loop equals transformers' own Janus ``generate`` (greedy) and an explicit
seeded sampling loop written here, SoftCFG at strength 0 equals CFG bit for bit, a weighted decode step
equals transformers' SDPA attention on an explicitly scaled cache, and images follow DeepSeek's
post-processing."""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor

os.environ["HF_HUB_OFFLINE"] = "1"
transformers = pytest.importorskip("transformers")
from janus_tiny import BOI, BOS, CODEBOOK, GRID, PAD, TEXTS, save_tiny_janus  # noqa: E402
from softcfg.conditioning import Prompts  # noqa: E402
from softcfg.config import parse_model  # noqa: E402
from softcfg.methods import parse_method  # noqa: E402
from softcfg.models.attention import SlotWeights  # noqa: E402
from softcfg.models.janus import JanusPro  # noqa: E402
from softcfg.models.loading import load_model  # noqa: E402
from softcfg.models.registry import get_family, presets  # noqa: E402
from softcfg.options import ConfigError, UserError  # noqa: E402
from softcfg.sampling.loop import generate, guided_loop  # noqa: E402


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_janus(tmp_path_factory.mktemp("janus") / "tiny-janus-pro")


@pytest.fixture(scope="module")
def model(folder: Path) -> JanusPro:
    return load_model(parse_model({"family": "janus", "checkpoint": str(folder)}))


def reference_model(folder: Path) -> transformers.JanusForConditionalGeneration:
    """The same weights on transformers' own SDPA attention, no hook."""
    return transformers.JanusForConditionalGeneration.from_pretrained(
        folder, attn_implementation="sdpa"
    ).eval()


def test_folder_loads_through_the_model_entry(model: JanusPro) -> None:
    assert isinstance(model, JanusPro) and model.conditioning == "text"
    assert (model.num_tokens, model.vocab_size) == (GRID**2, CODEBOOK)
    assert model.hf.model.language_model.config._attn_implementation == "softcfg"
    prompts = model.prompts(TEXTS)
    # left-padded: "<bos> <|User|>: a red cat on the mat <|Assistant|>: <begin_of_image>", 10 tokens
    assert prompts.ids.shape == (2, 10) and prompts.mask.sum(1).tolist() == [10, 5]
    assert prompts.ids[:, -1].tolist() == [BOI, BOI] and prompts.ids[1, :5].tolist() == [PAD] * 5
    assert prompts.ids[1, 5:].tolist() == [BOS, 6, 11, 7, BOI]  # <bos> <|User|>: dog <|Assistant|>: <boi>


def test_unconditional_rows_follow_deepseeks_rule(model: JanusPro) -> None:
    """generation_inference.py: the unconditional row is the prompt with tokens[1:-1] set to the pad id."""
    prompt = model.prompts(TEXTS[:1])
    expected = prompt.ids.clone()
    expected[:, 1:-1] = PAD
    uncond = model.unconditional(prompt)
    assert torch.equal(uncond.ids, expected) and torch.equal(uncond.mask, prompt.mask)


def test_unconditional_rows_pad_by_position_not_by_token(model: JanusPro) -> None:
    """A prompt whose text holds <begin_of_image>: DeepSeek's rule pads it in the unconditional row (only
    the first and the last position are kept); a rule by token id would keep it. Rows are left-padded:
    a row's first position is its first real token."""
    prompts = model.prompts(("a <begin_of_image> cat", "dog"))
    assert (prompts.ids == BOI).sum(1).tolist() == [2, 1]  # the text's tag and the image start
    uncond = model.unconditional(prompts)
    for row, ids, mask in zip(uncond.ids, prompts.ids, prompts.mask, strict=True):
        real = ids[mask].tolist()
        expected = [real[0]] + [PAD] * (len(real) - 2) + [real[-1]]  # tokens[1:-1] = pad, per prompt
        assert row[mask].tolist() == expected and row[~mask].eq(PAD).all()
    assert (uncond.ids == BOI).sum(1).tolist() == [1, 1]


def test_a_folder_that_pads_on_the_right_is_refused(folder: Path, tmp_path: Path) -> None:
    right = tmp_path / "right"
    shutil.copytree(folder, right)
    config = json.loads((right / "tokenizer_config.json").read_text())
    (right / "tokenizer_config.json").write_text(json.dumps({**config, "padding_side": "right"}))
    model = load_model(parse_model({"family": "janus", "checkpoint": str(right)}))
    with pytest.raises(UserError, match=r"'dog' does not end in <begin_of_image> .*padding_side"):
        model.prompts(TEXTS)
    assert model.prompts(TEXTS[:1]).ids[0, -1] == BOI  # one prompt needs no padding


def test_bad_folders_name_the_folder(folder: Path, tmp_path: Path) -> None:
    def load(path: Path, **extra) -> None:
        load_model(parse_model({"family": "janus", "checkpoint": str(path), **extra}, check_files=False))

    with pytest.raises(UserError, match=r"not found.*missing"):
        load(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match=f"{empty}.*no config.json"):
        load(empty)
    llama = tmp_path / "llama"
    transformers.LlamaConfig(hidden_size=8, num_attention_heads=2).save_pretrained(llama)
    with pytest.raises(UserError, match=f"{llama}.*'llama', not 'janus'"):
        load(llama)
    no_processor = tmp_path / "no_processor"
    shutil.copytree(folder, no_processor)
    for name in ("tokenizer.json", "tokenizer_config.json", "processor_config.json"):
        (no_processor / name).unlink()
    with pytest.raises(UserError, match=f"{no_processor}.*processor"):
        load(no_processor)
    no_ids = tmp_path / "no_ids"
    shutil.copytree(folder, no_ids)
    (no_ids / "generation_config.json").write_text(json.dumps({"bos_token_id": BOS}))
    with pytest.raises(UserError, match=f"{no_ids}.*lacks \\['pad_token_id', 'boi_token_id'\\]"):
        load(no_ids)
    with pytest.raises(ConfigError, match=f"model.size: Janus-Pro-1B has .*{folder}"):
        load(folder, size="1B")
    with pytest.raises(ConfigError, match=r"model\.dim"):
        load(folder, dim=64)
    with pytest.raises(ConfigError, match=r"model\.uncond_fp32"):
        load(folder, dtype="bf16", uncond_fp32=True)
    with pytest.raises(ConfigError, match="checkpoint: folder not found"):
        parse_model({"family": "janus", "checkpoint": str(tmp_path / "missing")})


def test_preset_is_the_reference_generation() -> None:
    family = get_family("janus")
    assert family.sizes == ("1B", "7B")
    for size in family.sizes:
        assert presets()[f"janus-{size}"] == {
            "gamma": 5.0,
            "k": 0.0,
            "temperature": 1.0,
            "top_k": 0,
            "top_p": 1.0,
        }


def argmax(step: int, guided: Tensor) -> Tensor:
    return guided.argmax(-1)


def test_greedy_cfg_equals_transformers_janus_generate(model: JanusPro, folder: Path) -> None:
    """transformers' loop (its uncond rows, static cache, ClassifierFreeGuidanceLogitsProcessor) on the same
    weights without the hook; two prompts of different lengths, so left padding is exercised."""
    prompts = model.prompts(TEXTS)
    with torch.inference_mode():
        ours = guided_loop(model, prompts, parse_method({"name": "cfg", "gamma": 5.0}), argmax)
        theirs = reference_model(folder).generate(
            input_ids=prompts.ids,
            attention_mask=prompts.mask.long(),
            generation_mode="image",
            do_sample=False,
            guidance_scale=5.0,
        )
    assert torch.equal(ours, theirs)


def explicit_cfg_sampling(
    hf: transformers.JanusForConditionalGeneration, prompts: Prompts, scale: float, generator: torch.Generator
) -> Tensor:
    """CFG sampling written out: DeepSeek's unconditional rows, a dynamic cache, l_u + s (l_c - l_u), one
    uniform per row inverted through the CDF of softmax (the project's sampler's draw)."""
    keep = (prompts.ids == BOS) | (prompts.ids == BOI)
    ids = torch.cat([prompts.ids, prompts.ids.masked_fill(~keep, PAD)])
    mask = torch.cat([prompts.mask, prompts.mask]).long()
    lm = hf.model.language_model
    out = lm(inputs_embeds=hf.get_input_embeddings()(ids), attention_mask=mask, use_cache=True)
    tokens = []
    for _ in range(GRID**2):
        cond, uncond = hf.model.generation_head(out.last_hidden_state[:, -1]).chunk(2)
        cdf = torch.softmax(uncond + scale * (cond - uncond), dim=-1).cumsum(-1)
        u = torch.rand((cdf.shape[0], 1), generator=generator) * cdf[:, -1:]
        token = torch.searchsorted(cdf, u, right=True).squeeze(-1).clamp_max(CODEBOOK - 1)
        tokens.append(token)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        embeds = hf.prepare_embeddings_for_image_generation(torch.cat([token, token])[:, None])
        out = lm(inputs_embeds=embeds, attention_mask=mask, cache=out.cache, use_cache=True)
    return torch.stack(tokens, dim=1)


def test_seeded_cfg_sampling_equals_an_explicit_loop(model: JanusPro, folder: Path) -> None:
    prompts = model.prompts(TEXTS)
    method = parse_method({"name": "cfg", "preset": "janus-1B"})
    with torch.inference_mode():
        ours = generate(model, prompts, method, torch.Generator().manual_seed(11))
        theirs = explicit_cfg_sampling(
            reference_model(folder), prompts, 5.0, torch.Generator().manual_seed(11)
        )
    assert torch.equal(ours, theirs)


def guided_logits(model: JanusPro, method: dict) -> tuple[Tensor, list[Tensor]]:
    seen: list[Tensor] = []
    tokens = generate(
        model,
        model.prompts(TEXTS),
        parse_method(method),
        torch.Generator().manual_seed(5),
        observers=[lambda step, logits, weights: seen.append(logits.guided.clone())],
    )
    return tokens, seen


def scaled_static_cache(cache, weights: Tensor, target: str):
    """A copy of the static cache with the unconditional rows' keys / values times ``weights`` [B_u, S]."""
    scaled = copy.deepcopy(cache)
    rows, slots = weights.shape
    for layer in scaled.layers:
        for name, on in (("keys", "k" in target), ("values", "v" in target)):
            if on:
                getattr(layer, name)[-rows:, :, :slots] *= weights[:, None, :, None]
    return scaled


@pytest.mark.parametrize("target", ["v", "k", "kv"])
def test_weighted_decode_equals_sdpa_on_a_scaled_cache(folder: Path, target: str) -> None:
    model = load_model(
        parse_model({"family": "janus", "checkpoint": str(folder)})
    )  # its attention is switched
    prompts = model.prompts(TEXTS)
    rows = prompts.cat(model.unconditional(prompts))
    cache = model.new_cache(len(rows))
    fed = torch.randint(0, CODEBOOK, (len(rows), 4), generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        model.prefill(rows, cache)
        for index in range(3):
            model.decode(fed[:, index], index, cache)
        visible = model.prefix_len + 4  # prompt, tokens 0..2, and the slot written by this step
        weights = torch.ones(len(prompts), visible)
        weights[:, model.prefix_len : visible - 1] = torch.rand(len(prompts), 3) * 0.9 + 0.05
        scaled, plain = copy.deepcopy(cache), copy.deepcopy(cache)
        scaled.static = scaled_static_cache(cache.static, weights[:, :-1], target)
        hooked = model.decode(fed[:, 3], 3, cache, SlotWeights(weights, target))
        model.language_model.set_attn_implementation("sdpa")
        explicit = model.decode(fed[:, 3], 3, scaled)
        unweighted = model.decode(fed[:, 3], 3, plain)
    torch.testing.assert_close(hooked, explicit, rtol=1e-5, atol=1e-5)
    cond = slice(0, len(prompts))
    torch.testing.assert_close(hooked[cond], unweighted[cond], rtol=1e-5, atol=1e-5)
    assert (hooked - unweighted).abs().max() > 100 * (hooked - explicit).abs().max()  # weights matter


def test_images_follow_deepseeks_post_processing(model: JanusPro, folder: Path) -> None:
    tokens = torch.randint(0, CODEBOOK, (2, GRID**2), generator=torch.Generator().manual_seed(6))
    with torch.inference_mode():
        images = model.decode_images(tokens)
        decoded = reference_model(folder).decode_image_tokens(tokens).float().numpy()  # NHWC
    expected = np.zeros(decoded.shape, dtype=np.uint8)
    expected[:] = np.clip((decoded + 1) / 2 * 255, 0, 255)  # generation_inference.py's conversion
    assert images.dtype == torch.uint8 and images.shape == (2, 32, 32, 3)
    assert np.array_equal(images.numpy(), expected)
