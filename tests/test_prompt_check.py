"""Prompt sets checked against the model when the sweep is loaded: a word outside the vocabulary or a prompt
longer than the model reads is named by file and line before the DAG, read from the tokenizer files alone
(the weights are not loaded), and a 1 MB line gives a short message."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import yaml

import lumina_tiny
import simplear_tiny
from janus_tiny import GRID, save_tiny_janus
from softcfg.data.captions import WordTokenizer
from softcfg.models.digits_text import DigitsTextConfig, DigitsTextGPT, save_digits_text
from softcfg.options import ConfigError
from softcfg.sweep import load_sweep
from workflow_kit import REPO, snakemake


def _sweep(tmp_path: Path, model: dict) -> dict:
    return {
        "results": str(tmp_path / "results"),
        "models": {"m": model},
        "methods": {"cfg": {"name": "cfg"}},
        "grid": {"gamma": [3.0], "k": [0.0]},
        "sampling": {"samples_per_run": 4, "shard_size": 4, "batch_size": 4},
        "metrics": {"names": ["fid"]},
        "tables": [],
        "figures": [],
    }


def _prompts(path: Path, *lines: str) -> str:
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


def _refused(tmp_path: Path, model: dict, message: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_sweep(_sweep(tmp_path, model))
    text = str(caught.value)
    assert re.search(message, text), text
    assert len(text) < 400 and "\n" not in text
    return text


def test_a_trained_digits_text_model_reads_the_grammars_words_up_to_its_caption_length(tmp_path):
    words = WordTokenizer()  # what softcfg train gives the model
    longest = " ".join(["one"] * words.max_words)
    good = _prompts(tmp_path / "good.txt", "a photo of a seven", longest)
    assert (
        len(load_sweep(_sweep(tmp_path, {"family": "digits_text", "train": True, "prompts": good})).runs) == 1
    )
    model = {"family": "digits_text", "train": True}
    bad = _prompts(tmp_path / "oov.txt", "a photo of a seven", "a photo of a zebra")
    _refused(tmp_path, model | {"prompts": bad}, rf"^models\.m\.prompts: {bad}:2: .*word 'zebra' is not in")
    long = _prompts(tmp_path / "long.txt", longest + " one")
    _refused(tmp_path, model | {"prompts": long}, rf"{long}:1: .*{words.max_words + 1} words, .* at most 10")
    huge = _prompts(tmp_path / "huge.txt", "one " * 250_000)  # a 1 MB line
    _refused(tmp_path, model | {"prompts": huge}, rf"{huge}:1: prompt 'one one .*\.\.\.': 250000 words")


def test_a_digits_text_checkpoint_reads_its_own_vocabulary(tmp_path):
    model = DigitsTextGPT(DigitsTextConfig(dim=8, depth=1, heads=2), WordTokenizer(("one", "two"), 3))
    checkpoint = tmp_path / "scenes.pt"
    save_digits_text(model, checkpoint)
    entry = {"family": "digits_text", "checkpoint": str(checkpoint)}
    good = _prompts(tmp_path / "good.txt", "one two one", "TWO")
    assert len(load_sweep(_sweep(tmp_path, entry | {"prompts": good})).runs) == 1
    bad = _prompts(tmp_path / "bad.txt", "one", "one three")  # a grammar word the checkpoint lacks
    _refused(tmp_path, entry | {"prompts": bad}, rf"{bad}:2: prompt 'one three': word 'three' is not in")
    folder = tmp_path / "dpg"
    folder.mkdir()
    (folder / "7.txt").write_text("one one one one\n")
    _refused(tmp_path, entry | {"prompts": str(folder)}, rf"{folder / '7.txt'}: .*4 words, .* at most 3")


def _text_models(root: Path) -> dict[str, tuple[dict, int]]:
    """Each family's tiny folder entry and the most prompt tokens it reads: its position limit less the
    image tokens but the last (Janus 4 x 4 codes; Lumina 4 rows of 4 codes and an end-of-line; SimpleAR
    4 x 4 codes)."""
    lumina, movq = lumina_tiny.save_tiny_lumina_files(root)
    simplear, cosmos = simplear_tiny.save_tiny_simplear_files(root)
    return {
        "janus": (
            {"family": "janus", "checkpoint": str(save_tiny_janus(root / "janus"))},
            2048 - GRID**2 + 1,
        ),
        "lumina": (
            {"family": "lumina", "checkpoint": str(lumina), "tokenizer": str(movq), "image_size": 32},
            10240 - 4 * 5 + 1,
        ),
        "simplear": (
            {"family": "simplear", "checkpoint": str(simplear), "tokenizer": str(cosmos), "image_size": 64},
            256 - 4 * 4 + 1,
        ),
    }


def test_text_families_refuse_prompts_longer_than_their_context_without_loading_weights(
    tmp_path, monkeypatch
):
    models = _text_models(tmp_path)
    for entry, _ in models.values():
        for weights in Path(entry["checkpoint"]).glob("*.safetensors"):
            weights.write_bytes(b"not safetensors")  # the check reads the tokenizer files only
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("weights were read"))
    for family, (entry, limit) in models.items():
        good = _prompts(tmp_path / f"{family}.txt", *lumina_tiny.TEXTS)
        assert len(load_sweep(_sweep(tmp_path, entry | {"prompts": good})).runs) == 1, family
        words = limit if family == "simplear" else limit + 1  # BPE: "dog " takes at least one token
        long = _prompts(tmp_path / f"{family}_long.txt", "dog", " ".join(["dog"] * words))
        text = _refused(
            tmp_path,
            entry | {"prompts": long},
            rf"{long}:2: prompt 'dog dog .*' is \d+ tokens, .* at most {limit} ",
        )
        assert int(re.search(r"is (\d+) tokens", text).group(1)) > limit


def test_a_folder_without_tokenizer_files_is_named_as_the_models_checkpoint(tmp_path):
    folder = save_tiny_janus(tmp_path / "janus")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).unlink(missing_ok=True)
    prompts = _prompts(tmp_path / "p.txt", "dog")
    text = _refused(
        tmp_path,
        {"family": "janus", "checkpoint": str(folder), "prompts": prompts},
        rf"^models\.m\.checkpoint: {folder} is not a Janus-Pro folder \(no usable processor",
    )
    assert "model.checkpoint" not in text  # the sweep's key, not the loader's generic one


@pytest.mark.workflow
def test_snakemake_names_a_word_the_default_text_model_cannot_read_before_any_job(tmp_path):
    """The default sweep with one GenEval line of the embedded prompt set edited: the DAG is not built."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    lines = (REPO / config["models"]["digits_text"]["prompts"]).read_text().splitlines()
    lines[3] = lines[3].replace('"prompt": "a photo of', '"prompt": "a picture of')
    (tmp_path / "prompts.jsonl").write_text("\n".join(lines) + "\n")
    config["models"]["digits_text"]["prompts"] = "prompts.jsonl"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake(tmp_path, "--dry-run")
    message = "invalid config: models.digits_text.prompts: prompts.jsonl:4: prompt 'a picture of"
    assert proc.returncode != 0 and message in proc.stdout + proc.stderr, proc.stderr[-2000:]
    assert "word 'picture' is not in the model's vocabulary" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()
