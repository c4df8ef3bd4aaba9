"""Exports of a text-conditioned run's shards in the GenEval and DPG-Bench folder layouts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from softcfg.cli import main
from softcfg.config import parse_run_config
from softcfg.io.export import export_images
from softcfg.io.shards import write_shard
from softcfg.models.digits_text import DigitsTextConfig, DigitsTextGPT, save_digits_text
from softcfg.options import UserError
from softcfg.sampling.shards import write_shard_group

METADATA = [
    {
        "tag": "colors",
        "include": [{"class": "two", "count": 1, "color": "red"}],
        "prompt": "a photo of a red two",
    },
    {"tag": "single_object", "include": [{"class": "nine", "count": 1}], "prompt": "a photo of a nine"},
]


def _images(n: int, offset: int) -> np.ndarray:
    """Distinct 4 x 4 images: image i is filled with the value offset + 10 i in channel i % 3."""
    images = np.zeros((n, 4, 4, 3), dtype=np.uint8)
    for i in range(n):
        images[i, :, :, i % 3] = offset + 10 * i
    return images


def write_prompt_shards(
    folder: Path, per_prompt: int, fmt: str = "geneval", config_hash: str = "abc"
) -> list[Path]:
    """Two shards of 2 prompts x ``per_prompt`` images, written as the sampler lays them out (sample n has
    prompt n // per_prompt), with hand-written manifests."""
    folder.mkdir(parents=True, exist_ok=True)
    index = np.arange(2 * per_prompt) // per_prompt
    names = ["00000", "00001"] if fmt != "dpg" else ["17", "4"]
    cut = per_prompt + 1  # the first shard ends inside the second prompt
    paths = []
    for s, rows in enumerate((slice(0, cut), slice(cut, None))):
        part = index[rows]
        entries = {
            str(i): {"name": names[i], "metadata": METADATA[i] if fmt == "geneval" else {"prompt": "p"}}
            for i in sorted(set(part.tolist()))
        }
        manifest = {
            "config_hash": config_hash,
            "prompt_set": {
                "path": "prompts",
                "format": fmt,
                "sha256": "0" * 64,
                "num_prompts": 2,
                "images_per_prompt": per_prompt,
                "entries": entries,
            },
        }
        path = folder / f"shard_{s:04d}.npz"
        write_shard(path, _images(len(part), 100 * s), {"prompt_index": part.astype(np.int64)}, manifest)
        paths.append(path)
    return paths


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.mode == "RGB"
        return np.asarray(image)


def test_geneval_layout(tmp_path: Path):
    shards = write_prompt_shards(tmp_path / "run", per_prompt=3)
    export_images(shards, tmp_path / "out", "geneval")
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["00000", "00001"]
    all_images = np.concatenate([_images(4, 0), _images(2, 100)])  # shard 0 holds 4 images, shard 1 two
    for i in range(2):
        folder = out / f"{i:05d}"
        assert json.loads((folder / "metadata.jsonl").read_text()) == METADATA[i]
        assert sorted(p.name for p in (folder / "samples").iterdir()) == ["0000.png", "0001.png", "0002.png"]
        for j in range(3):
            assert np.array_equal(_png(folder / "samples" / f"{j:04d}.png"), all_images[3 * i + j])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # no staging left behind


def test_dpg_layout_is_a_grid_named_by_stem(tmp_path: Path):
    shards = write_prompt_shards(tmp_path / "run", per_prompt=5, fmt="dpg")
    export_images(shards, tmp_path / "out", "dpg")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["17.png", "4.png"]
    all_images = np.concatenate([_images(6, 0), _images(4, 100)])
    for name, first in (("17", 0), ("4", 5)):
        grid = _png(tmp_path / "out" / f"{name}.png")
        assert grid.shape == (8, 8, 3)
        a, b, c, d = (all_images[first + k] for k in range(4))  # the first four images, row-major
        assert np.array_equal(grid[:4, :4], a) and np.array_equal(grid[:4, 4:], b)
        assert np.array_equal(grid[4:, :4], c) and np.array_equal(grid[4:, 4:], d)


def test_export_refusals(tmp_path: Path):
    shards = write_prompt_shards(tmp_path / "run", per_prompt=3)
    with pytest.raises(UserError, match="prompt 1 of prompts has 1 of 3 images"):
        export_images(shards[:1], tmp_path / "a", "geneval")
    with pytest.raises(UserError, match=r"2 x 2 grid .* at least 4 images per prompt"):
        export_images(shards, tmp_path / "b", "dpg")
    text = write_prompt_shards(tmp_path / "text", per_prompt=3, fmt="text")
    with pytest.raises(UserError, match="GenEval layout needs GenEval metadata"):
        export_images(text, tmp_path / "c", "geneval")
    other = write_prompt_shards(tmp_path / "other", per_prompt=3, config_hash="def")
    with pytest.raises(UserError, match="sampled by another run"):
        export_images([shards[0], other[1]], tmp_path / "d", "geneval")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(UserError, match="exists and is not an empty folder"):
        export_images(shards, tmp_path / "full", "geneval")
    class_shard = tmp_path / "class.npz"
    write_shard(class_shard, _images(2, 0), {"arr_1": np.zeros(2, dtype=np.int64)}, {})
    with pytest.raises(UserError, match="no prompt set"):
        export_images([class_shard], tmp_path / "e", "geneval")
    assert not any((tmp_path / name).exists() for name in "abcde")


def test_sampled_run_exported_by_the_command(tmp_path: Path, capsys):
    torch.manual_seed(0)
    checkpoint = tmp_path / "text.pt"
    save_digits_text(DigitsTextGPT(DigitsTextConfig(dim=16, depth=1, heads=2)).eval(), checkpoint)
    prompt_file = tmp_path / "m.jsonl"
    prompt_file.write_text("".join(json.dumps(m) + "\n" for m in METADATA))
    run = parse_run_config(
        {
            "model": {
                "family": "digits_text",
                "checkpoint": str(checkpoint),
                "prompts": str(prompt_file),
                "images_per_prompt": 4,
            },
            "method": {"name": "cfg", "gamma": 2.0, "k": 0.0},
            "sampling": {"shard_size": 4, "batch_size": 4},
        }
    )
    record = tmp_path / "run" / "shards_0000-0001.json"
    record.parent.mkdir()
    list(write_shard_group(run, 0, 1, record, progress=False))
    main(["export", "--layout", "geneval", "--out", str(tmp_path / "geneval"), str(record)])
    main(["export", "--layout", "dpg", "--out", str(tmp_path / "dpg"), str(record)])
    assert "2 prompts, 8 images: dpg layout" in capsys.readouterr().out
    samples = sorted((tmp_path / "geneval").glob("*/samples/*.png"))
    assert [str(p.relative_to(tmp_path / "geneval")) for p in samples] == [
        f"{i:05d}/samples/{j:04d}.png" for i in range(2) for j in range(4)
    ]
    assert _png(samples[0]).shape == (16, 16, 3)
    assert [_png(p).shape for p in sorted((tmp_path / "dpg").iterdir())] == [(32, 32, 3)] * 2
    with np.load(record.parent / "shard_0000.npz") as data:  # prompt 0's images, in order
        assert all(np.array_equal(_png(samples[j]), data["arr_0"][j]) for j in range(4))
