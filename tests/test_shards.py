import json
import signal
import subprocess
import sys

import numpy as np
import pytest

from softcfg.io.atomic import atomic_write
from softcfg.io.shards import manifest_path, read_shard, write_npz, write_shard
from softcfg.sampling.shards import batch_seed, shard_labels


def _arrays(n=5):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8), np.arange(n, dtype=np.int64)


def test_npz_is_readable_and_byte_deterministic(tmp_path):
    images, labels = _arrays()
    write_npz(tmp_path / "a.npz", {"arr_0": images, "arr_1": labels})
    write_npz(tmp_path / "b.npz", {"arr_0": images, "arr_1": labels})
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    with np.load(tmp_path / "a.npz") as data:
        assert np.array_equal(data["arr_0"], images) and np.array_equal(data["arr_1"], labels)


def test_shard_manifest_checksum_is_verified(tmp_path):
    images, labels = _arrays()
    path = tmp_path / "shard_000.npz"
    write_shard(path, images, {"arr_1": labels}, {"run": "x"})
    manifest = json.loads(manifest_path(path).read_text())
    assert manifest["num_samples"] == 5 and len(manifest["npz_sha256"]) == 64
    got_images, got_labels = read_shard(path)
    assert np.array_equal(got_images, images) and np.array_equal(got_labels, labels)
    write_npz(path, {"arr_0": images[::-1], "arr_1": labels})  # replaced behind the manifest's back
    with pytest.raises(ValueError, match="checksum differs"):
        read_shard(path)
    manifest_path(path).unlink()
    with pytest.raises(ValueError, match=r"manifest shard_000\.json missing"):
        read_shard(path)


def test_bad_arrays_are_refused_before_writing(tmp_path):
    images, labels = _arrays()
    with pytest.raises(ValueError, match="arr_0 must be uint8"):
        write_shard(tmp_path / "s.npz", images.astype(np.float32), {"arr_1": labels}, {})
    with pytest.raises(ValueError, match="arr_1 must be int64"):
        write_shard(tmp_path / "s.npz", images, {"arr_1": labels[:3]}, {})
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_nothing(tmp_path):
    def explode(f):
        f.write(b"partial")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "out.npz", explode)
    assert list(tmp_path.iterdir()) == []


def test_a_rewrite_removes_the_temporaries_a_killed_write_left(tmp_path):
    from softcfg.io.atomic import atomic_write_text

    out = tmp_path / "m.json"
    stale = [tmp_path / ".m.json.k3_x9q2a.tmp", tmp_path / ".m.json.0a1b2c3d.tmp"]  # mkstemp's shape
    others = [tmp_path / ".m.json.x.abc123de.tmp", tmp_path / ".n.json.abc123de.tmp"]  # m.json.x's, n.json's
    for path in stale + others:
        path.write_text("partial")
    atomic_write_text(out, "{}\n")
    assert out.read_text() == "{}\n"
    assert not any(p.exists() for p in stale) and all(p.exists() for p in others)


def test_label_scheme_is_round_robin_across_shards():
    labels = np.concatenate([shard_labels(i, 7, 10) for i in range(10)])
    assert np.array_equal(labels, np.arange(70) % 10)
    assert np.array_equal(
        np.bincount(np.concatenate([shard_labels(i, 500, 1000) for i in range(100)])), [50] * 1000
    )


def test_batch_seeds_differ_per_shard_and_batch():
    seeds = {batch_seed(0, s, b) for s in range(5) for b in range(5)}
    assert len(seeds) == 25 and batch_seed(0, 1, 2) == batch_seed(0, 1, 2)


def test_a_job_killed_while_writing_leaves_no_shard_for_later_jobs(tmp_path):
    """SIGKILL in the middle of writing the npz (as a cancelled SLURM job gets): neither the shard nor
    its manifest exists under its final name, so no later job can read it."""
    path = tmp_path / "shard_0000.npz"
    child = f"""
import time
import numpy as np
import softcfg.io.shards as shards

def slow(f, arrays):
    f.write(b"PK" * 4096)
    f.flush()
    print("writing", flush=True)
    time.sleep(60)

shards._write_npz = slow
shards.write_shard({str(path)!r}, np.zeros((4, 8, 8, 3), np.uint8), {{"arr_1": np.zeros(4, np.int64)}}, {{}})
"""
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not path.exists() and not manifest_path(path).exists()
    assert [p.name.endswith(".tmp") for p in tmp_path.iterdir()] == [True]  # only the temporary file
    with pytest.raises(ValueError, match="shard not found"):
        read_shard(path)
