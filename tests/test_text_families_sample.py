"""Lumina-mGPT 2.0 and SimpleAR (tiny random models in the official layouts) through ``softcfg sample`` and
``softcfg replay`` as a user runs them: prompt shards keyed by the folder's and the image decoder file's
contents, the confidence maps on the code grid, a killed job that resumes to the bytes of an
uninterrupted one, and replay on prompt rows equal to the model's teacher-forced passes; Janus-Pro (a
``save_pretrained`` folder, no separate image decoder) too. Janus's folder digest and one-line errors
are in ``test_janus_sample.py``."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml

import janus_tiny
import lumina_tiny
import simplear_tiny
from softcfg.cli import main
from test_cli import Crash, sample_args
from test_janus_sample import folder_digest
from workflow_kit import env, time_limit

PROMPTS = ["a red cat on the mat", "dog", "a blue sky"]
SAMPLING = {"seed": 1, "shard_size": 4, "batch_size": 2}  # 3 prompts x 2 images: shards of 4 and 2


@dataclass(frozen=True)
class Kit:
    """A family's tiny files and what its runs look like."""

    family: str
    save: Callable[[Path], tuple[Path, Path | None]]  # -> (checkpoint folder, image decoder file)
    image_size: int  # px (the model entry names it where the family takes several)
    preset: str
    cfg: float
    grid: dict[str, int]  # the manifest's token grid
    row_end: int  # every row_end-th token is a forced end-of-line (0: none)

    @property
    def tokens(self) -> int:
        return self.grid["height"] * self.grid.get("stride", self.grid["width"])

    codes: int  # image codes (end-of-line, where there is one, is the next id)

    def random_tokens(self, rows: int, seed: int = 0) -> np.ndarray:
        codes = self.codes
        tokens = np.random.default_rng(seed).integers(0, codes, (rows, self.tokens)).astype(np.int64)
        if self.row_end:
            tokens.reshape(rows, -1, self.row_end)[:, :, -1] = 16384
        return tokens


def janus_files(root: Path) -> tuple[Path, None]:
    return janus_tiny.save_tiny_janus(root / "Janus-Pro-tiny"), None


LUMINA_GRID = lumina_tiny.GRID
KITS = {
    "janus": Kit("janus", janus_files, 8 * janus_tiny.GRID, "janus-1B", 5.0,
                 {"offset": 0, "height": janus_tiny.GRID, "width": janus_tiny.GRID}, 0, janus_tiny.CODEBOOK),
    "lumina": Kit("lumina", lumina_tiny.save_tiny_lumina_files, lumina_tiny.IMAGE_SIZE, "lumina-7B-768", 4.0,
                  {"offset": 0, "height": LUMINA_GRID, "width": LUMINA_GRID, "stride": LUMINA_GRID + 1},
                  LUMINA_GRID + 1, 16384),
    "simplear": Kit("simplear", simplear_tiny.save_tiny_simplear_files, simplear_tiny.IMAGE_SIZE,
                    "simplear-0.5B-1024", 6.0,
                    {"offset": 0, "height": simplear_tiny.SIDE, "width": simplear_tiny.SIDE}, 0, 64000),
}  # fmt: skip


@pytest.fixture(scope="module", params=sorted(KITS))
def kit(request) -> Kit:
    return KITS[request.param]


@pytest.fixture(scope="module")
def files(kit, tmp_path_factory) -> tuple[Path, Path]:
    return kit.save(tmp_path_factory.mktemp(kit.family))


def run_config(path: Path, kit: Kit, files: tuple[Path, Path], method: dict | None = None) -> Path:
    (path.parent / "prompts.txt").write_text("".join(p + "\n" for p in PROMPTS))
    model = {"family": kit.family, "checkpoint": str(files[0]), "prompts": str(path.parent / "prompts.txt"),
             "images_per_prompt": 2}  # fmt: skip
    if files[1] is not None:
        model |= {"tokenizer": str(files[1]), "image_size": kit.image_size}
    method = method or {"name": "softcfg", "preset": kit.preset}
    path.write_text(yaml.safe_dump({"model": model, "method": method, "sampling": SAMPLING}))
    return path


def test_softcfg_sample_writes_prompt_shards_with_confidence_maps_on_the_code_grid(tmp_path, kit, files):
    config = run_config(tmp_path / "run.yaml", kit, files)
    out = tmp_path / "samples" / "shards_0000-0001.json"
    proc = subprocess.run(
        [sys.executable, "-m", "softcfg", "sample", "--config", str(config), "--shards", "0-1", "--out",
         str(out), "--no-progress"],
        env=env(), capture_output=True, text=True, timeout=time_limit(300),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    for index, rows in ((0, [0, 0, 1, 1]), (1, [2, 2])):
        with np.load(out.parent / f"shard_000{index}.npz") as data:
            images, prompt_index = data["arr_0"], data["prompt_index"]
        assert images.dtype == np.uint8 and images.shape == (len(rows), kit.image_size, kit.image_size, 3)
        assert prompt_index.tolist() == rows
        manifest = json.loads((out.parent / f"shard_000{index}.json").read_text())
        key = json.loads(manifest["sampling_key"])
        assert key[1] == folder_digest(files[0]) and key[2] == (
            None if files[1] is None else hashlib.sha256(files[1].read_bytes()).hexdigest()
        )
        assert manifest["run"]["method"]["gamma"] == kit.cfg
        assert manifest["token_grid"] == kit.grid
    first = json.loads((out.parent / "shard_0000.json").read_text())["confidence_maps"]
    q = np.asarray(first["cond_max"])
    assert q.shape == (2, kit.tokens)  # the first batch's two samples
    row_end = (np.arange(kit.tokens) + 1) % kit.row_end == 0 if kit.row_end else np.zeros(kit.tokens, bool)
    assert np.all(q[:, row_end] == 1.0) and np.all(q[:, ~row_end] < 1.0)  # forced end-of-line: certain


def test_a_killed_job_resumes_to_the_bytes_of_an_uninterrupted_one(tmp_path, kit, files, monkeypatch):
    import softcfg.sampling.shards as shards

    config = run_config(tmp_path / "run.yaml", kit, files)
    assert main(sample_args(config, "0", tmp_path / "whole" / "shards_0000-0000.json")) == 0
    crash = Crash(shards.generate)
    monkeypatch.setattr(shards, "generate", crash)
    record = tmp_path / "resumed" / "shards_0000-0000.json"
    crash.reset(after=1)
    with pytest.raises(KeyboardInterrupt):
        main(sample_args(config, "0", record))
    assert [p.name for p in (record.parent / ".shard_0000.batches").iterdir()] == ["batch_0000.npz"]
    crash.reset(after=None)
    assert main(sample_args(config, "0", record)) == 0 and crash.calls == 1  # only the second batch
    for name in ("shard_0000.npz", "shards_0000-0000.json"):
        assert (record.parent / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name


def test_softcfg_replay_takes_prompt_rows_and_equals_the_teacher_forced_passes(tmp_path, kit, files):
    """CFG replayed on the run's prompt rows: cond and uncond are the model's uncached passes on those
    prompts and on the official unconditional rows, guided is ``l_u + g (l_c - l_u)``."""
    import torch

    from softcfg.config import parse_model
    from softcfg.models.loading import load_model

    config = run_config(tmp_path / "run.yaml", kit, files, {"name": "cfg", "gamma": kit.cfg, "k": 0.0})
    index = np.array([2, 0], dtype=np.int64)
    tokens = kit.random_tokens(2)
    np.save(tmp_path / "index.npy", index)
    np.save(tmp_path / "tokens.npy", tokens)
    args = ["replay", "--config", str(config), "--tokens", str(tmp_path / "tokens.npy"),
            "--prompt-index", str(tmp_path / "index.npy"), "--out", str(tmp_path / "r.npz")]  # fmt: skip
    assert main(args) == 0
    entry = yaml.safe_load(config.read_text())["model"]
    model = load_model(
        parse_model({k: v for k, v in entry.items() if k not in ("prompts", "images_per_prompt")})
    )
    prompts = model.prompts([PROMPTS[2], PROMPTS[0]])
    with torch.inference_mode():
        cond = model(prompts, torch.from_numpy(tokens)).numpy()
        uncond = model(model.unconditional(prompts), torch.from_numpy(tokens)).numpy()
    with np.load(tmp_path / "r.npz") as out:
        np.testing.assert_allclose(out["cond"], cond, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(out["uncond"], uncond, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(out["guided"], uncond + kit.cfg * (cond - uncond), rtol=1e-4, atol=1e-3)
