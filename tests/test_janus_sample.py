"""A Janus-Pro folder checkpoint (a tiny random model saved with ``save_pretrained``) as ``softcfg sample``
and ``softcfg replay`` read it: the folder's content digest, one-line errors for a missing or unreadable
folder, replay's prompt rows and its refusals. Sampling, kill and resume of every real text family are in
``test_text_families_sample.py``."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from janus_tiny import GRID, save_tiny_janus
from softcfg.cli import main
from softcfg.io import digest
from softcfg.io.digest import content_sha256
from softcfg.options import UserError
from test_cli import sample_args

PROMPTS = ["a red cat on the mat", "dog", "a blue sky"]
SAMPLING = {"seed": 1, "shard_size": 4, "batch_size": 2}  # 3 prompts x 2 images: shards of 4 and 2


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return save_tiny_janus(tmp_path_factory.mktemp("janus") / "Janus-Pro-tiny")


def run_config(path: Path, folder: Path) -> Path:
    (path.parent / "prompts.txt").write_text("".join(p + "\n" for p in PROMPTS))
    model = {"family": "janus", "checkpoint": str(folder), "prompts": str(path.parent / "prompts.txt"),
             "images_per_prompt": 2}  # fmt: skip
    data = {"model": model, "method": {"name": "softcfg", "gamma": 5.0, "k": 0.0}, "sampling": SAMPLING}
    path.write_text(yaml.safe_dump(data))
    return path


def folder_digest(folder: Path) -> str:
    """The documented digest, written out: sorted relative paths and each file's sha256."""
    lines = []
    for path in sorted(folder.rglob("*"), key=lambda p: p.relative_to(folder).as_posix()):
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts):
            lines.append(
                f"{path.relative_to(folder).as_posix()}\0{hashlib.sha256(path.read_bytes()).hexdigest()}\n"
            )
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def test_the_folder_digest_follows_contents_not_times_or_places(tmp_path, folder):
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    first = content_sha256(copy)
    assert first == content_sha256(folder) == folder_digest(folder)
    os.utime(copy / "config.json", (1, 1))
    (copy / ".cache").mkdir()
    (copy / ".cache" / "download.metadata").write_text("fetched at some time")
    assert content_sha256(copy) == first  # times and hidden hub metadata do not count
    weights = next(copy.glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert content_sha256(copy) != first
    weights.write_bytes(bytes(data[:-1]) + bytes([data[-1] ^ 1]))
    assert content_sha256(copy) == first
    (copy / "extra.txt").write_text("")
    assert content_sha256(copy) != first
    (copy / "extra.txt").rename(copy / "sub.txt")
    assert content_sha256(copy) not in (first, content_sha256(folder))
    file = copy / "sub.txt"
    assert content_sha256(file) == hashlib.sha256(b"").hexdigest()  # a file: its bytes


def test_missing_or_unreadable_checkpoints_are_named_in_one_line(tmp_path, folder, monkeypatch, capsys):
    with pytest.raises(UserError, match=f"model.checkpoint not found: {tmp_path / 'gone'}"):
        content_sha256(tmp_path / "gone", "model.checkpoint")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"folder .*empty holds no files"):
        content_sha256(tmp_path / "empty")

    def unreadable(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(digest, "sha256_file", unreadable)
    first = r"checkpoint .*: cannot read .*chat_template\.jinja: Permission denied"  # sorted order
    with pytest.raises(UserError, match=first):
        content_sha256(folder)
    config = run_config(tmp_path / "run.yaml", folder)
    assert main(sample_args(config, "0", tmp_path / "out" / "shards_0000-0000.json")) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.checkpoint" in err[0] and "Permission denied" in err[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_softcfg_replay_takes_prompt_rows_and_equals_the_teacher_forced_passes(tmp_path, folder, capsys):
    """CFG replayed on the run's prompt rows: cond and uncond are the model's uncached passes on those
    prompts and on DeepSeek's unconditional rows, guided is ``l_u + 5 (l_c - l_u)``."""
    import torch

    from softcfg.config import parse_model
    from softcfg.models.loading import load_model

    config = run_config(tmp_path / "run.yaml", folder)
    data = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**data, "method": {"name": "cfg", "gamma": 5.0, "k": 0.0}}))
    index = np.array([2, 0], dtype=np.int64)
    tokens = np.random.default_rng(0).integers(0, 64, (2, GRID**2)).astype(np.int64)
    np.save(tmp_path / "index.npy", index)
    np.save(tmp_path / "tokens.npy", tokens)
    args = ["replay", "--config", str(config), "--tokens", str(tmp_path / "tokens.npy")]
    assert main([*args, "--prompt-index", str(tmp_path / "index.npy"), "--out", str(tmp_path / "r.npz")]) == 0
    model = load_model(parse_model({"family": "janus", "checkpoint": str(folder)}))
    prompts = model.prompts([PROMPTS[2], PROMPTS[0]])
    with torch.inference_mode():
        cond = model(prompts, torch.from_numpy(tokens)).numpy()
        uncond = model(model.unconditional(prompts), torch.from_numpy(tokens)).numpy()
    with np.load(tmp_path / "r.npz") as out:
        np.testing.assert_allclose(out["cond"], cond, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(out["uncond"], uncond, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(out["guided"], uncond + 5.0 * (cond - uncond), rtol=1e-4, atol=5e-4)

    (tmp_path / "other.txt").write_text("dog\n")
    other = [*args, "--prompts", str(tmp_path / "other.txt"), "--out", str(tmp_path / "o.npz")]
    assert main([*other, "--prompt-index", str(tmp_path / "index.npy")]) != 0
    assert "--prompt-index must lie in [0, 1)" in capsys.readouterr().err
    np.save(tmp_path / "labels.npy", np.array([1, 2], dtype=np.int64))
    assert main([*args, "--labels", str(tmp_path / "labels.npy"), "--out", str(tmp_path / "l.npz")]) != 0
    assert "janus is text-conditioned" in capsys.readouterr().err and not (tmp_path / "l.npz").exists()
