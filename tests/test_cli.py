"""The command line: determinism of shards, replay outputs, one-line errors before any work."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import write_run_config
from softcfg.cli import main
from softcfg.io.shards import manifest_path

SAMPLING = {"seed": 3, "shard_size": 12, "batch_size": 5}


def sample_args(config: Path, shards: str, out: Path) -> list[str]:
    return ["sample", "--config", str(config), "--shards", shards, "--no-progress", "--out", str(out)]


def test_sample_twice_gives_identical_bytes(tmp_path, checkpoint):
    config = write_run_config(tmp_path / "run.yaml", checkpoint, {"name": "softcfg", "gamma": 2.0}, SAMPLING)
    for name in ("a", "b"):
        assert main(sample_args(config, "1", tmp_path / name / "shards_0001-0001.json")) == 0
    assert (tmp_path / "a" / "shard_0001.npz").read_bytes() == (
        tmp_path / "b" / "shard_0001.npz"
    ).read_bytes()
    with np.load(tmp_path / "a" / "shard_0001.npz") as data:
        assert data["arr_0"].shape == (12, 8, 8, 3) and data["arr_0"].dtype == np.uint8
        assert data["arr_1"].tolist() == [(12 + i) % 10 for i in range(12)]
    manifest = json.loads((tmp_path / "a" / "shard_0001.json").read_text())
    assert manifest["run"]["method"]["name"] == "softcfg" and len(manifest["batch_seeds"]) == 3
    assert len(manifest["diagnostics"]["entropy_guided"]) == 64
    assert {"torch", "numpy", "softcfg"} <= set(manifest["versions"])
    record = json.loads((tmp_path / "a" / "shards_0001-0001.json").read_text())
    assert record == {"shards": [{"file": "shard_0001.npz", "npz_sha256": manifest["npz_sha256"]}]}


class Crash:
    """``generate`` that raises (as a killed job stops) after ``after`` calls; counts every call."""

    def __init__(self, original) -> None:
        self.original, self.calls, self.after = original, 0, None

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.after is not None and self.calls > self.after:
            raise KeyboardInterrupt
        return self.original(*args, **kwargs)

    def reset(self, after: int | None) -> None:
        self.calls, self.after = 0, after


def test_interrupted_sampling_resumes_from_its_last_completed_batch(tmp_path, checkpoint, monkeypatch):
    """A job killed after two of three batches keeps those two; the rerun samples only the third and
    writes the same bytes as an uninterrupted job. Batches kept under another run config are ignored."""
    import softcfg.sampling.shards as shards

    method = {"name": "softcfg", "gamma": 2.0}
    config = write_run_config(tmp_path / "run.yaml", checkpoint, method, SAMPLING)
    assert main(sample_args(config, "1", tmp_path / "whole" / "shards_0001-0001.json")) == 0

    crash = Crash(shards.generate)
    monkeypatch.setattr(shards, "generate", crash)
    out = tmp_path / "resumed" / "shard_0001.npz"
    record = out.parent / "shards_0001-0001.json"
    crash.reset(after=2)
    with pytest.raises(KeyboardInterrupt):
        main(sample_args(config, "1", record))
    kept = out.parent / ".shard_0001.batches"
    assert not out.exists() and sorted(p.name for p in kept.iterdir()) == ["batch_0000.npz", "batch_0001.npz"]
    crash.reset(after=None)
    assert main(sample_args(config, "1", record)) == 0
    assert crash.calls == 1 and not kept.exists()
    assert out.read_bytes() == (tmp_path / "whole" / "shard_0001.npz").read_bytes()
    whole, resumed = (json.loads(manifest_path(p).read_text()) for p in (tmp_path / "whole" / out.name, out))
    assert whole["diagnostics"] == resumed["diagnostics"] and whole["npz_sha256"] == resumed["npz_sha256"]

    crash.reset(after=2)
    with pytest.raises(KeyboardInterrupt):
        main(sample_args(config, "1", tmp_path / "other" / record.name))
    write_run_config(tmp_path / "run.yaml", checkpoint, {**method, "gamma": 3.0}, SAMPLING)
    out.unlink()
    (tmp_path / "other" / kept.name).rename(kept)
    crash.reset(after=None)
    assert main(sample_args(config, "1", record)) == 0
    assert crash.calls == 3  # kept batches of gamma 2 are not reused for gamma 3


def test_a_group_job_killed_in_its_second_shard_keeps_the_first_and_resumes(
    tmp_path, checkpoint, monkeypatch, capsys
):
    """Shards 0-2 in one job, killed in shard 1's second batch: the rerun keeps shard 0 (verified on
    disk), resumes shard 1 from its kept batch, samples shard 2, and every shard has the bytes of a job
    of its own. A changed run config samples every shard again."""
    import softcfg.sampling.shards as shards

    method = {"name": "cfg", "gamma": 2.0}
    config = write_run_config(tmp_path / "run.yaml", checkpoint, method, SAMPLING)
    for i in range(3):
        assert main(sample_args(config, str(i), tmp_path / "single" / f"shards_{i:04d}-{i:04d}.json")) == 0
    crash = Crash(shards.generate)
    monkeypatch.setattr(shards, "generate", crash)
    record = tmp_path / "group" / "shards_0000-0002.json"
    crash.reset(after=4)  # 3 batches of shard 0, 1 of shard 1
    with pytest.raises(KeyboardInterrupt):
        main(sample_args(config, "0-2", record))
    assert not record.exists() and (tmp_path / "group" / "shard_0000.npz").exists()
    capsys.readouterr()
    crash.reset(after=None)
    assert main(sample_args(config, "0-2", record)) == 0
    assert crash.calls == 2 + 3  # the rest of shard 1, all of shard 2
    assert capsys.readouterr().out.splitlines() == [
        "shard 0: kept (written by an earlier attempt, verified against its manifest)",
        "shard 1: resumed: 1 of 3 batches were kept from an earlier attempt",
        "shard 2: sampled",
    ]
    for i in range(3):
        name = f"shard_{i:04d}.npz"
        assert (tmp_path / "group" / name).read_bytes() == (tmp_path / "single" / name).read_bytes()
    assert [e["file"] for e in json.loads(record.read_text())["shards"]] == [
        f"shard_{i:04d}.npz" for i in range(3)
    ]

    write_run_config(tmp_path / "run.yaml", checkpoint, {**method, "gamma": 3.0}, SAMPLING)
    crash.reset(after=None)
    assert main(sample_args(config, "0-2", record)) == 0
    assert crash.calls == 9  # nothing sampled under gamma 2 is kept for gamma 3


def test_replay_writes_the_stable_interface(tmp_path, checkpoint, model):
    config = write_run_config(tmp_path / "run.yaml", checkpoint, {"name": "softcfg", "gamma": 2.0})
    labels = np.array([1, 7], dtype=np.int64)
    tokens = np.random.default_rng(0).integers(0, 17, (2, 64)).astype(np.int64)
    np.save(tmp_path / "l.npy", labels)
    np.save(tmp_path / "t.npy", tokens)
    out = tmp_path / "replay.npz"
    assert (
        main(
            [
                "replay",
                "--config",
                str(config),
                "--labels",
                str(tmp_path / "l.npy"),
                "--tokens",
                str(tmp_path / "t.npy"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    with np.load(out) as data:
        assert {k: data[k].shape for k in data.files} == {
            "cond": (2, 64, 17),
            "uncond": (2, 64, 17),
            "guided": (2, 64, 17),
            "weights": (2, 64, 64),
        }
        assert all(data[k].dtype == np.float32 for k in data.files)


@pytest.mark.parametrize(
    ("shards", "out", "message"),
    [
        ("-1", "g.json", "--shards must be FIRST-LAST"),
        ("3-1", "g.json", "--shards must be FIRST-LAST"),
        ("0-x", "g.json", "--shards must be FIRST-LAST"),
        ("0", "s.npz", "--out must end in .json"),
    ],
)
def test_bad_sample_arguments(tmp_path, checkpoint, capsys, shards, out, message):
    config = write_run_config(tmp_path / "run.yaml", checkpoint, {"name": "cfg"})
    assert main(sample_args(config, shards, tmp_path / out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / out).exists() and not list(tmp_path.glob("shard_*"))


def test_mismatched_checkpoint_names_keys(tmp_path, checkpoint, capsys):
    import torch

    ckpt = torch.load(checkpoint, weights_only=True)
    ckpt["state_dict"]["head.weights"] = ckpt["state_dict"].pop("head.weight")
    torch.save(ckpt, checkpoint)
    config = write_run_config(tmp_path / "run.yaml", checkpoint, {"name": "cfg"})
    assert main(sample_args(config, "0", tmp_path / "shards_0000-0000.json")) == 2
    err = capsys.readouterr().err
    assert "missing keys ['head.weight']" in err and "unexpected keys ['head.weights']" in err


class Pickled:
    """An object a tensors-only load refuses (unpickling it would call this module's code)."""

    def __reduce__(self):
        return (print, ("unpickled",))


@pytest.mark.parametrize(
    ("checkpoint_value", "message"),
    [
        ("bare", "is not a digits AR checkpoint (needs 'config' and 'state_dict')"),
        (
            "pickle",
            "holds pickled Python objects beyond tensors (code that loading would run); it was not loaded",
        ),
        ({"state_dict": {}}, "is not a digits AR checkpoint"),
        ({"config": {"dim": -4, "depth": 1, "heads": 1}, "state_dict": {}}, "bad 'config' entry: dim=-4"),
        (
            {"config": {"dim": 6, "depth": 1, "heads": 4}, "state_dict": {}},
            "dim 6 is not a multiple of heads 4",
        ),
        ({"config": {"width": 3}, "state_dict": {}}, "bad 'config' entry: "),
    ],
)
def test_bad_digits_checkpoints_are_one_line_errors(tmp_path, capsys, checkpoint_value, message):
    import torch

    path = tmp_path / "bad.pt"
    special = {"bare": torch.zeros(3), "pickle": {"config": {}, "state_dict": {}, "code": Pickled()}}
    torch.save(
        special.get(checkpoint_value, checkpoint_value)
        if isinstance(checkpoint_value, str)
        else checkpoint_value,
        path,
    )
    config = write_run_config(tmp_path / "run.yaml", path, {"name": "cfg"})
    assert main(sample_args(config, "0", tmp_path / "shards_0000-0000.json")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "bad.pt" in err[0]


def test_an_output_that_is_a_folder_and_a_question_table_that_is_not_utf8_are_named(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    run = '{"model": {"family": "digits", "checkpoint": "x.pt"}, "method": {"name": "none"}}'
    assert main(["run-config", "--json", run, "--out", str(tmp_path / "out")]) == 2
    assert (
        capsys.readouterr().err.strip()
        == f"softcfg: error: {tmp_path / 'out'} is a folder; give the output file's path"
    )
    table = tmp_path / "q.csv"
    table.write_bytes(b"item_id,proposition_id\n\xff\xfe\n")
    (tmp_path / "grids").mkdir()
    args = [
        "dpg",
        str(tmp_path / "grids"),
        "--questions",
        str(table),
        "--custom-questions",
        "--backend",
        "scenes",
    ]
    assert main(args) == 2
    assert capsys.readouterr().err.strip() == f"softcfg: error: {table}:2: not UTF-8 text"


def test_an_unguided_runs_manifest_is_strict_json(tmp_path, checkpoint):
    """Its unconditional entropies are undefined: null in the manifest, never the bare NaN token."""

    def no_constants(token):
        raise AssertionError(f"{token} in a manifest")

    config = write_run_config(tmp_path / "run.yaml", checkpoint, {"name": "none"})
    assert main(sample_args(config, "0", tmp_path / "shards_0000-0000.json")) == 0
    manifest = json.loads((tmp_path / "shard_0000.json").read_text(), parse_constant=no_constants)
    entropies = manifest["diagnostics"]["entropy_uncond"]
    assert entropies and all(v is None for v in entropies)


def test_console_script_reports_config_errors():
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "softcfg.cli",
            "sample",
            "--config",
            "nope.yaml",
            "--shards",
            "0",
            "--out",
            "x.json",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and proc.stderr.strip() == "softcfg: error: config file not found: nope.yaml"
