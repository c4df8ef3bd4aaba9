"""The command line: determinism of shards, replay outputs, one-line errors before any work."""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import write_run_config
from softcfg.cli import main
from softcfg.io.shards import manifest_path

SAMPLING = {"seed": 3, "shard_size": 12, "batch_size": 5}


def test_sample_twice_gives_identical_bytes(tmp_path, checkpoint):
    config = write_run_config(tmp_path / "run.yaml", checkpoint, {"name": "softcfg", "gamma": 2.0}, SAMPLING)
    for name in ("a", "b"):
        assert (
            main(
                [
                    "sample",
                    "--config",
                    str(config),
                    "--shard",
                    "1",
                    "--out",
                    str(tmp_path / f"{name}.npz"),
                    "--no-progress",
                ]
            )
            == 0
        )
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    with np.load(tmp_path / "a.npz") as data:
        assert data["arr_0"].shape == (12, 8, 8, 3) and data["arr_0"].dtype == np.uint8
        assert data["arr_1"].tolist() == [(12 + i) % 10 for i in range(12)]
    manifest = json.loads(manifest_path(tmp_path / "a.npz").read_text())
    assert manifest["run"]["method"]["name"] == "softcfg" and len(manifest["batch_seeds"]) == 3
    assert len(manifest["diagnostics"]["entropy_guided"]) == 64
    assert {"torch", "numpy", "softcfg"} <= set(manifest["versions"])


def test_interrupted_sampling_resumes_from_its_last_completed_batch(tmp_path, checkpoint, monkeypatch):
    """A job killed after two of three batches keeps those two; the rerun samples only the third and
    writes the same bytes as an uninterrupted job. Batches kept under another run config are ignored."""
    import softcfg.sampling.shards as shards

    method = {"name": "softcfg", "gamma": 2.0}
    config = write_run_config(tmp_path / "run.yaml", checkpoint, method, SAMPLING)
    sample = ["sample", "--config", str(config), "--shard", "1", "--no-progress", "--out"]
    assert main([*sample, str(tmp_path / "whole" / "s.npz")]) == 0

    calls = []
    original = shards.generate

    def counted(*args, **kwargs):
        calls.append(1)
        if crash_after is not None and len(calls) > crash_after:
            raise KeyboardInterrupt  # the job is killed in the third batch
        return original(*args, **kwargs)

    monkeypatch.setattr(shards, "generate", counted)
    out = tmp_path / "resumed" / "s.npz"
    crash_after = 2
    with pytest.raises(KeyboardInterrupt):
        main([*sample, str(out)])
    kept = tmp_path / "resumed" / ".s.batches"
    assert not out.exists() and sorted(p.name for p in kept.iterdir()) == ["batch_0000.npz", "batch_0001.npz"]
    calls.clear()
    crash_after = None
    assert main([*sample, str(out)]) == 0
    assert len(calls) == 1 and not kept.exists()
    assert out.read_bytes() == (tmp_path / "whole" / "s.npz").read_bytes()
    whole, resumed = (json.loads(manifest_path(p).read_text()) for p in (tmp_path / "whole" / "s.npz", out))
    assert whole["diagnostics"] == resumed["diagnostics"] and whole["npz_sha256"] == resumed["npz_sha256"]

    crash_after = 2
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        main([*sample, str(tmp_path / "other" / "s.npz")])
    write_run_config(tmp_path / "run.yaml", checkpoint, {**method, "gamma": 3.0}, SAMPLING)
    (tmp_path / "other" / ".s.batches").rename(tmp_path / "resumed" / ".s.batches")
    calls.clear()
    crash_after = None
    assert main([*sample, str(out)]) == 0
    assert len(calls) == 3  # kept batches of gamma 2 are not reused for gamma 3


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
    ("args", "message"),
    [
        (["--shard", "-1"], "--shard must be >= 0"),
        (["--shard", "0", "--out-suffix", ".png"], "--out must end in .npz"),
    ],
)
def test_bad_sample_arguments(tmp_path, checkpoint, capsys, args, message):
    config = write_run_config(tmp_path / "run.yaml", checkpoint, {"name": "cfg"})
    out = tmp_path / ("s" + (args[-1] if "--out-suffix" in args else ".npz"))
    args = [a for a in args if a not in ("--out-suffix", ".png")]
    assert main(["sample", "--config", str(config), *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists()


def test_mismatched_checkpoint_names_keys(tmp_path, checkpoint, capsys):
    import torch

    ckpt = torch.load(checkpoint, weights_only=True)
    ckpt["state_dict"]["head.weights"] = ckpt["state_dict"].pop("head.weight")
    torch.save(ckpt, checkpoint)
    config = write_run_config(tmp_path / "run.yaml", checkpoint, {"name": "cfg"})
    assert main(["sample", "--config", str(config), "--shard", "0", "--out", str(tmp_path / "s.npz")]) == 2
    err = capsys.readouterr().err
    assert "missing keys ['head.weight']" in err and "unexpected keys ['head.weights']" in err


def test_console_script_reports_config_errors():
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "softcfg.cli",
            "sample",
            "--config",
            "nope.yaml",
            "--shard",
            "0",
            "--out",
            "x.npz",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and proc.stderr.strip() == "softcfg: error: config file not found: nope.yaml"
