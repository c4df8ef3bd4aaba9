"""Prompt sets: the three readers, their errors, and prompts as a run's conditioning (configs, shards)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from softcfg.config import ModelEntry, parse_run_config
from softcfg.data.prompts import read_prompts
from softcfg.io.shards import manifest_path
from softcfg.models.digits_text import DigitsTextConfig, DigitsTextGPT, save_digits_text
from softcfg.options import ConfigError, UserError
from softcfg.sampling.shards import shard_conditions, shard_prompt_index, write_shard_group
from softcfg.sweep import load_sweep

GENEVAL_LINES = [  # GenEval's evaluation_metadata.jsonl format (tag, include, exclude, prompt)
    {"tag": "single_object", "include": [{"class": "seven", "count": 1}], "prompt": "a photo of a seven"},
    {
        "tag": "counting",
        "include": [{"class": "two", "count": 3}],
        "exclude": [{"class": "two", "count": 4}],
        "prompt": "a photo of three twos",
    },
    {
        "tag": "position",
        "include": [{"class": "one", "count": 1}, {"class": "four", "count": 1, "position": ["left of", 0]}],
        "prompt": "a photo of a four left of a one",
    },
]


def write_geneval(path: Path, lines: list = GENEVAL_LINES) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_geneval_metadata(tmp_path: Path):
    prompts = read_prompts(write_geneval(tmp_path / "meta.jsonl"))
    assert prompts.format == "geneval" and len(prompts) == 3
    assert [e.name for e in prompts.entries] == ["prompt00000", "prompt00001", "prompt00002"]
    assert prompts.texts == tuple(line["prompt"] for line in GENEVAL_LINES)
    assert [e.metadata for e in prompts.entries] == GENEVAL_LINES


def test_dpg_folder_in_id_order(tmp_path: Path):
    for stem, text in {"10": "ten", "2": "two\nlines ", "1": "one", "partiprompts7": "named"}.items():
        (tmp_path / f"{stem}.txt").write_text(text)
    (tmp_path / ".hidden").write_text("ignored")
    prompts = read_prompts(tmp_path)
    assert prompts.format == "dpg"
    assert [(e.name, e.text) for e in prompts.entries] == [
        ("1", "one"),
        ("2", "two lines"),
        ("10", "ten"),
        ("partiprompts7", "named"),
    ]


def test_plain_text_lines(tmp_path: Path):
    path = tmp_path / "prompts.txt"
    path.write_text("a photo of a seven\n  a photo of a red two  \n")
    prompts = read_prompts(path)
    assert prompts.format == "text" and prompts.texts == ("a photo of a seven", "a photo of a red two")
    assert [e.name for e in prompts.entries] == ["prompt00000", "prompt00001"]
    assert prompts.sha256 != read_prompts(write_geneval(tmp_path / "m.jsonl")).sha256


@pytest.mark.parametrize(
    ("name", "content", "where", "what"),
    [
        ("m.jsonl", '{"prompt": "a"}\n{"prompt": "b"}\n{"prompt": \n', ":3:", "not a JSON line"),
        ("m.jsonl", '{"prompt": "a"}\n{"tag": "colors"}\n', ":2:", "'prompt' must be"),
        ("m.jsonl", '["a photo"]\n', ":1:", "JSON object"),
        ("m.jsonl", '{"prompt": "a", "include": "seven"}\n', ":1:", "'include' must be a list"),
        (
            "m.jsonl",
            '{"prompt": "a", "tag": "colors"}\n{"prompt": "b", "tag": "color"}\n',
            ":2:",
            "tag 'color'",
        ),
        ("m.jsonl", '{"prompt": "a"}\n\n{"prompt": "b"}\n', ":2:", "not a JSON line"),
        ("p.txt", "a photo of a seven\n\na photo of a two\n", ":2:", "empty prompt"),
        ("p.txt", b"fine\n\xff\xfe bad\n", ":2:", "not UTF-8"),
    ],
)
def test_bad_lines_are_named(tmp_path: Path, name, content, where, what):
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    with pytest.raises(UserError) as info:
        read_prompts(path)
    assert f"{path}{where}" in str(info.value) and what in str(info.value)


def test_bad_files_and_folders_are_named(tmp_path: Path):
    with pytest.raises(UserError, match="not found"):
        read_prompts(tmp_path / "missing.jsonl")
    (tmp_path / "p.csv").write_text("a\n")
    with pytest.raises(UserError, match=r"p\.csv: expected GenEval metadata"):
        read_prompts(tmp_path / "p.csv")
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(UserError, match="no prompts"):
        read_prompts(tmp_path / "empty.txt")
    folder = tmp_path / "dpg"
    folder.mkdir()
    (folder / "1.txt").write_text("one")
    (folder / "2.txt").write_text("  \n")
    with pytest.raises(UserError, match=r"2\.txt:1: empty prompt"):
        read_prompts(folder)
    (folder / "2.txt").write_text("two")
    (folder / "notes.md").write_text("x")
    with pytest.raises(UserError, match=r"notes\.md: a DPG-Bench prompt folder holds only"):
        read_prompts(folder)


def test_shard_prompt_index_by_hand():
    # 3 prompts x 4 images = 12 samples in shards of 5: sample n has prompt n // 4
    assert shard_prompt_index(0, 5, 3, 4).tolist() == [0, 0, 0, 0, 1]
    assert shard_prompt_index(1, 5, 3, 4).tolist() == [1, 1, 1, 2, 2]
    assert shard_prompt_index(2, 5, 3, 4).tolist() == [2, 2]  # the short last shard
    with pytest.raises(UserError, match="past the run's 12 samples"):
        shard_prompt_index(3, 5, 3, 4)


def tiny_text_model(seed: int = 0) -> DigitsTextGPT:
    torch.manual_seed(seed)
    return DigitsTextGPT(DigitsTextConfig(dim=16, depth=1, heads=2)).eval()


def test_shard_conditions_of_a_text_model(tmp_path: Path):
    model = tiny_text_model()
    prompts = read_prompts(write_geneval(tmp_path / "m.jsonl"))
    conditions = shard_conditions(model, 1, 4, prompts, per_prompt=2)  # samples 4, 5: prompt 2
    assert conditions.texts == (GENEVAL_LINES[2]["prompt"],) * 2
    assert conditions.index.tolist() == [2, 2]
    assert torch.equal(conditions.ids, model.prompts([GENEVAL_LINES[2]["prompt"]] * 2).ids)
    arrays, facts = conditions.record()
    assert arrays["prompt_index"].tolist() == [2, 2] and facts["prompts"] == [GENEVAL_LINES[2]["prompt"]] * 2
    with pytest.raises(UserError, match="needs a prompt set"):
        shard_conditions(model, 0, 4)


def test_text_run_shards_record_prompts(tmp_path: Path):
    checkpoint = tmp_path / "text.pt"
    save_digits_text(tiny_text_model(), checkpoint)
    prompt_file = write_geneval(tmp_path / "m.jsonl")
    run = parse_run_config(
        {
            "model": {
                "family": "digits_text",
                "checkpoint": str(checkpoint),
                "prompts": str(prompt_file),
                "images_per_prompt": 2,
            },
            "method": {"name": "softcfg", "gamma": 3.0, "k": 1.0},
            "sampling": {"shard_size": 4, "batch_size": 3},
        }
    )
    record = tmp_path / "run" / "shards_0000-0001.json"
    record.parent.mkdir()
    assert [i for i, _ in write_shard_group(run, 0, 1, record, progress=False)] == [0, 1]
    expected = {0: [0, 0, 1, 1], 1: [2, 2]}  # 3 prompts x 2 images in shards of 4
    for index, prompt_index in expected.items():
        shard = record.parent / f"shard_{index:04d}.npz"
        with np.load(shard) as data:
            assert data["arr_0"].shape == (len(prompt_index), 16, 16, 3)
            assert data["prompt_index"].tolist() == prompt_index
            assert data["prompt_ids"].shape[0] == len(prompt_index)
        manifest = json.loads(manifest_path(shard).read_text())
        assert manifest["prompts"] == [GENEVAL_LINES[i]["prompt"] for i in prompt_index]
        prompt_set = manifest["prompt_set"]
        assert prompt_set["num_prompts"] == 3 and prompt_set["images_per_prompt"] == 2
        assert prompt_set["sha256"] == read_prompts(prompt_file).sha256
        entries = {str(i): {"name": f"prompt{i:05d}", "metadata": GENEVAL_LINES[i]} for i in prompt_index}
        assert prompt_set["entries"] == entries


def _sweep_config(tmp_path: Path, model: dict) -> dict:
    return {
        "results": str(tmp_path / "results"),
        "models": {"digits": {"family": "digits", "train": True}, "scenes": model},
        "methods": {
            "none": {"name": "none"},
            "cfg": {"name": "cfg", "models": ["digits"]},
        },
        "grid": {"gamma": [3.0], "k": [1.0]},
        "sampling": {"samples_per_run": 20, "shard_size": 10, "batch_size": 10},
        "metrics": {"names": ["fid"]},
        "tables": [],
        "figures": [],
    }


def test_sweep_sizes_text_runs_by_their_prompt_set(tmp_path: Path):
    prompts = write_geneval(tmp_path / "m.jsonl")
    model = {"family": "digits_text", "train": True, "prompts": str(prompts), "images_per_prompt": 4}
    sweep = load_sweep(_sweep_config(tmp_path, model))
    text_run, digits_run = sweep.runs["scenes-none-s0"], sweep.runs["digits-none-s0"]
    assert text_run.num_shards == 2 and text_run.exported and not text_run.scored  # 12 samples, shards of 10
    assert digits_run.num_shards == 2 and digits_run.scored and not digits_run.exported
    assert text_run.config.model.prompts == str(prompts)


def test_sweep_names_a_bad_prompt_line(tmp_path: Path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a photo of a seven"}\n{"prompt": 3}\n')
    with pytest.raises(ConfigError, match=rf"models\.scenes\.prompts: {bad}:2: 'prompt' must be"):
        load_sweep(_sweep_config(tmp_path, {"family": "digits_text", "train": True, "prompts": str(bad)}))
    with pytest.raises(
        ConfigError, match=r"models\.scenes\.prompts: family 'digits_text' is text-conditioned"
    ):
        load_sweep(_sweep_config(tmp_path, {"family": "digits_text", "train": True}))


def test_class_models_take_no_prompts(tmp_path: Path):
    with pytest.raises(ValueError, match="prompts: family 'digits' is not text-conditioned"):
        ModelEntry(family="digits", checkpoint="x.pt", prompts="p.txt")
    data = {
        "model": {"family": "digits", "checkpoint": "x.pt", "images_per_prompt": 2},
        "method": {"name": "none"},
    }
    with pytest.raises(ConfigError, match="images_per_prompt"):
        parse_run_config(yaml.safe_load(yaml.safe_dump(data)), check_files=False)
