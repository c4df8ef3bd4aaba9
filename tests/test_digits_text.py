"""The embedded text-conditioned model: word tokenizer, prompt prefix, cached decoding, guidance,
training and checkpoints."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest
import torch

from softcfg.cli import main
from softcfg.conditioning import Prompts
from softcfg.config import ModelEntry
from softcfg.data.captions import BOS, PAD, WordTokenizer
from softcfg.data.scenes import NUM_TOKENS, VOCAB_SIZE
from softcfg.methods import parse_method
from softcfg.models.digits_text import DigitsTextConfig, DigitsTextGPT, load_digits_text, save_digits_text
from softcfg.models.loading import load_model
from softcfg.options import UserError
from softcfg.sampling.loop import generate
from softcfg.training.digits_text import TextTraining, train_digits_text


def random_text_model(seed: int = 0) -> DigitsTextGPT:
    torch.manual_seed(seed)
    model = DigitsTextGPT(DigitsTextConfig(dim=32, depth=2, heads=4))
    with torch.no_grad():
        model.head.weight.mul_(20.0)  # far from uniform, so guidance changes the draws
    return model.eval()


def test_tokenizer_round_trip_and_left_padding():
    tok = WordTokenizer()
    texts = ["a photo of a red seven and an eight", "A photo of two SIXES", ""]
    prompts = tok.encode(texts)
    assert prompts.texts == tuple(texts)
    assert prompts.ids.shape == (3, 1 + 9)  # BOS and the longest prompt's nine words
    for row, text in zip(prompts.ids.tolist(), texts, strict=True):
        words = [tok.vocab[i] for i in row]
        real = text.lower().split()
        assert words == [PAD] * (9 - len(real)) + [BOS] + real  # left-padded, BOS first
        assert tok.decode(row) == text.lower()
    assert torch.equal(prompts.mask, prompts.ids != 0)
    assert tok.vocab[:2] == (PAD, BOS) and len(set(tok.vocab)) == tok.vocab_size


def test_unknown_word_is_named():
    with pytest.raises(UserError, match="'cat'"):
        WordTokenizer().encode(["a photo of a seven", "a photo of a cat"])
    with pytest.raises(UserError, match="'<bos>'"):
        WordTokenizer().encode(["<bos> seven"])
    with pytest.raises(UserError, match="at most"):
        WordTokenizer().encode(["a photo of " + "a seven and " * 3 + "a two"])


def test_prompt_prefix_has_a_fixed_length_whatever_the_batch():
    model = random_text_model()
    alone = model.prompts(["a photo of a four"])
    padded = model.prompts(["a photo of a four", "a photo of a yellow zero and a red nine"])[:1]
    assert alone.ids.shape[1] < padded.ids.shape[1]
    tokens = torch.randint(0, VOCAB_SIZE, (1, NUM_TOKENS))
    with torch.no_grad():
        torch.testing.assert_close(model(alone, tokens), model(padded, tokens))
    assert model.prefix_ids(alone).shape == (1, model.prefix_len) == (1, 11)


def test_unconditional_rows_are_bos_alone():
    model = random_text_model()
    prompts = model.prompts(["a photo of a four", "a photo of three ones"])
    uncond = model.unconditional(prompts)
    assert isinstance(uncond, Prompts) and uncond.texts == ("", "")
    assert model.prefix_ids(uncond).tolist() == [[0] * 10 + [1]] * 2
    rows = prompts.cat(uncond)
    assert len(rows) == 4 and model.prefix_ids(rows)[2:].tolist() == [[0] * 10 + [1]] * 2


def test_guidance_runs_and_scale_one_is_the_conditional_model():
    model = random_text_model()
    prompts = model.prompts(["a photo of a red seven", "a photo of two nines"])
    draws = {}
    for name, method in {
        "none": {"name": "none"},
        "cfg1": {"name": "cfg", "gamma": 1.0, "k": 0.0},
        "softcfg": {"name": "softcfg", "gamma": 3.0, "k": 1.0, "step_norm": True},
    }.items():
        draws[name] = generate(model, prompts, parse_method(method), torch.Generator().manual_seed(0))
    assert draws["none"].shape == (2, NUM_TOKENS)
    assert int(draws["softcfg"].max()) < VOCAB_SIZE
    assert torch.equal(draws["cfg1"], draws["none"])  # l_u + 1 (l_c - l_u) = l_c
    assert not torch.equal(draws["softcfg"], draws["none"])
    images = model.decode_images(draws["softcfg"])
    assert images.shape == (2, 16, 16, 3) and images.dtype == torch.uint8


def test_prefill_refuses_class_labels_and_overlong_prompts():
    from softcfg.conditioning import ClassLabels

    model = random_text_model()
    with pytest.raises(UserError, match="text-conditioned"):
        model.prefix_ids(ClassLabels(torch.zeros(2, dtype=torch.long)))
    ids = torch.full((1, model.prefix_len + 1), 5)
    with pytest.raises(UserError, match="longer"):
        model.prefix_ids(Prompts(ids, ids != 0, ("",)))


TINY = DigitsTextConfig(dim=16, depth=1, heads=2)
TINY_TRAINING = TextTraining(
    steps=30, batch_size=16, lr=1e-2, train_scenes=300, heldout_scenes=60, eval_every=10
)


@pytest.fixture(scope="module")
def trained():
    return train_digits_text(TINY, TINY_TRAINING, seed=0)


def test_training_a_tiny_model_lowers_the_heldout_loss(trained):
    model, report = trained
    uniform = torch.log(torch.tensor(float(VOCAB_SIZE))).item()  # an untrained head predicts ~uniformly
    assert [c["step"] for c in report["heldout_curve"]] == [10, 20, 30]
    assert report["heldout_loss"] == min(c["heldout_loss"] for c in report["heldout_curve"])
    assert report["heldout_loss"] < 0.6 * uniform
    assert report["parameters"] == sum(p.numel() for p in model.parameters())
    assert model.codebook[0].abs().sum() == 0 and model.codebook.max() <= 16 and model.codebook.sum() > 0


def test_checkpoint_round_trip_and_loading_by_family(trained, tmp_path: Path):
    model, _ = trained
    path = tmp_path / "digits_text.pt"
    save_digits_text(model, path, {"seed": 0})
    loaded = load_digits_text(path)
    assert torch.equal(loaded.codebook, model.codebook) and loaded.words.vocab == model.words.vocab
    via_entry = load_model(ModelEntry(family="digits_text", checkpoint=str(path)))
    prompts = model.prompts(["a photo of an eight above a one"])
    tokens = torch.randint(0, VOCAB_SIZE, (1, NUM_TOKENS))
    with torch.no_grad():
        torch.testing.assert_close(via_entry(prompts, tokens), model(prompts, tokens))
    torch.save({"config": {"dim": 16}}, tmp_path / "bad.pt")
    with pytest.raises(UserError, match="not a digits_text checkpoint"):
        load_digits_text(tmp_path / "bad.pt")


def test_cli_trains_the_family(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    import softcfg.training.digits_text as training

    # the family's trainer's defaults, made tiny (it reads them when it runs)
    monkeypatch.setattr(
        training, "TextTraining", partial(TextTraining, **{**vars(TINY_TRAINING), "steps": 30})
    )
    monkeypatch.setattr(training, "DigitsTextConfig", partial(DigitsTextConfig, **vars(TINY)))
    out = tmp_path / "gen.pt"
    main(["train", "--generator", str(out), "--family", "digits_text", "--steps", "3", "--seed", "1"])
    model = load_digits_text(out)
    assert model.config == TINY
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["best_step"] == 3 and report["training"]["steps"] == 3
    assert "generator (digits_text)" in capsys.readouterr().out
