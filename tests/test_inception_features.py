"""Inception features files (one per sample shard): float32 features per image, statistics computed when
the metrics step merges the shards, old layouts refused. Extraction is replaced by synthetic pool_3-like
features so the files and the merge are checked at full width (2048, 2023, 1008) in seconds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import write_run_config
from softcfg.cli import main
from softcfg.io.shards import write_group_record, write_npz, write_shard
from softcfg.metrics import adm, inception_features
from softcfg.metrics.inception import LOGITS, NUM_LOGITS, POOL, SPATIAL, SPATIAL_DIM, describe_weights
from softcfg.metrics.inception_features import (
    FEATURES_LAYOUT,
    POOL_DIM,
    CentredMoments,
    reference_feature_set,
    sample_feature_set,
)
from softcfg.models.base import read_checkpoint

SHARD_SIZES = (137, 250, 113)


def synthetic(n: int, d: int, seed: int, offset: float = 0.3) -> np.ndarray:
    """Non-negative, correlated features with a mean of the size of their spread, like pool_3's."""
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    return np.abs(rng.normal(size=(n, d)) @ mix + offset).astype(np.float32)


def synthetic_extraction(n: int, seed: int) -> dict[str, np.ndarray]:
    return {
        POOL: synthetic(n, POOL_DIM, seed),
        SPATIAL: synthetic(n, SPATIAL_DIM, seed + 100, offset=0.1),
        LOGITS: np.random.default_rng(seed + 200).normal(size=(n, NUM_LOGITS)).astype(np.float32),
    }


@pytest.fixture(scope="module")
def head_weights(inception_weights, tmp_path_factory):
    """The converted weights with a random IS head, so the files carry logits too."""
    state = read_checkpoint(inception_weights.path)
    state["fc.weight"], state["fc.bias"] = torch.randn(NUM_LOGITS, 2048), torch.zeros(NUM_LOGITS)
    path = tmp_path_factory.mktemp("head") / "full.pth"
    torch.save(state, path)
    return describe_weights(path, "test head")


@pytest.fixture(scope="module")
def shard_files(head_weights, tmp_path_factory):
    """Three sample shards and their features files written by `softcfg inception-features`, with the
    features the (replaced) extractor returned for each. Read-only for the tests."""
    extracted = [synthetic_extraction(n, seed=i) for i, n in enumerate(SHARD_SIZES)]
    pending = list(extracted)
    root = tmp_path_factory.mktemp("run")
    paths = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(inception_features, "extract", lambda images, *a, **k: pending.pop(0))
        for i, n in enumerate(SHARD_SIZES):
            shard = root / "samples" / f"shard_{i:04d}.npz"
            write_shard(shard, np.zeros((n, 8, 8, 3), np.uint8), {"arr_1": np.arange(n, dtype=np.int64)}, {})
            out = root / "features" / f"shard_{i:04d}.npz"
            assert main(["inception-features", "--weights", str(head_weights.path), "--shards", str(shard),
                         "--out", str(out)]) == 0  # fmt: skip
            paths.append(out)
    return paths, extracted


def test_a_shard_file_holds_each_float32_feature_once(shard_files):
    paths, extracted = shard_files
    n = SHARD_SIZES[0]
    with np.load(paths[0]) as data:
        assert sorted(data.files) == ["labels", "logits", "meta", "pool", "spatial"]  # no moment sums
        for name, layer, dim in (("pool", POOL, 2048), ("spatial", SPATIAL, 2023), ("logits", LOGITS, 1008)):
            assert data[name].dtype == np.float32 and data[name].shape == (n, dim)
            assert np.array_equal(data[name], extracted[0][layer])
        meta = json.loads(str(data["meta"]))
    assert meta["layout"] == FEATURES_LAYOUT and meta["num_images"] == n
    assert paths[0].stat().st_size < n * (2048 + 2023 + 1008) * 4 + 16_384


def test_one_file_for_a_group_of_shards_holds_the_rows_of_the_files_per_shard(
    shard_files, head_weights, tmp_path, monkeypatch
):
    """A features job of a group (given the sample job's record) writes the shards' rows in order: the
    merged features, and so every metric, do not depend on how shards are grouped into jobs."""
    paths, extracted = shard_files
    samples = paths[0].parent.parent / "samples"
    record = samples / "shards_0000-0002.json"
    write_group_record(record, sorted(samples.glob("shard_*.npz")))
    pending = list(extracted)
    monkeypatch.setattr(inception_features, "extract", lambda images, *a, **k: pending.pop(0))
    out = tmp_path / "group.npz"
    assert main(["inception-features", "--weights", str(head_weights.path), "--shards", str(record),
                 "--out", str(out)]) == 0  # fmt: skip
    grouped, meta = sample_feature_set([out])
    single, _ = sample_feature_set(paths)
    assert np.array_equal(grouped.features, single.features) and np.array_equal(grouped.logits, single.logits)
    assert np.array_equal(grouped.fid.sigma, single.fid.sigma) and np.array_equal(
        grouped.sfid.mu, single.sfid.mu
    )
    assert meta["num_images"] == sum(SHARD_SIZES)
    assert meta["shards"] == [f"shard_{i:04d}.npz" for i in range(3)] and len(meta["shard_sha256"]) == 3
    record.unlink()


def test_merged_statistics_equal_numpy_over_all_shards_and_the_old_sums(shard_files):
    paths, extracted = shard_files
    merged, meta = sample_feature_set(paths)
    assert meta["num_images"] == sum(SHARD_SIZES)
    pool = np.concatenate([e[POOL] for e in extracted])
    assert np.array_equal(merged.features, pool)  # precision/recall read the features in shard order
    assert np.array_equal(merged.logits, np.concatenate([e[LOGITS] for e in extracted]))
    for got, layer in ((merged.fid, POOL), (merged.sfid, SPATIAL)):
        x = np.concatenate([e[layer] for e in extracted]).astype(np.float64)
        mean, cov = x.mean(axis=0), np.cov(x, rowvar=False)
        assert got.mu.dtype == np.float64 and got.sigma.shape == cov.shape
        assert np.abs(got.mu - mean).max() <= 1e-12 * np.abs(mean).max()
        assert np.abs(got.sigma - cov).max() <= 1e-12 * np.abs(cov).max()
        # the previous layout's path: float64 sums and outer-product sums per shard, added
        old = adm.merge([adm.MomentSums.of(e[layer]) for e in extracted])
        assert np.abs(got.mu - old.mean).max() <= 1e-10 * np.abs(old.mean).max()
        assert np.abs(got.sigma - old.covariance).max() <= 1e-10 * np.abs(old.covariance).max()


def test_moments_merged_in_chunks_stay_exact_when_the_mean_dwarfs_the_spread(monkeypatch):
    """Centring per chunk: a raw-moment form would lose about 10 digits of the covariance here."""
    monkeypatch.setattr(inception_features, "MOMENT_CHUNK", 7)
    x = synthetic(100, 12, seed=5, offset=1e5)
    moments = CentredMoments()
    for start, stop in ((0, 3), (3, 50), (50, 100)):
        moments.add(x[start:stop])
    got, x64 = moments.gaussian(), x.astype(np.float64)
    cov = np.cov(x64, rowvar=False)
    assert np.abs(got.mu - x64.mean(axis=0)).max() <= 1e-12 * np.abs(x64.mean(axis=0)).max()
    assert np.abs(got.sigma - cov).max() <= 1e-9 * np.abs(cov).max()
    assert np.array_equal(got.sigma, got.sigma.T)
    assert np.abs(adm.MomentSums.of(x).covariance - cov).max() > 1e-7 * np.abs(cov).max()  # the old form
    whole = CentredMoments()
    whole.add(x)
    assert np.array_equal(whole.gaussian().sigma, got.sigma)  # the same bits, however the rows came


def old_layout_file(path: Path, n: int, reference: bool = False) -> None:
    """A features file as the previous version wrote it: float64 sums and outer-product sums."""
    pool, spatial = synthetic(n, POOL_DIM, 0), synthetic(n, SPATIAL_DIM, 1)
    arrays = {"pool": pool}
    for prefix, x in (("pool", pool), ("spatial", spatial)):
        sums = adm.MomentSums.of(x)
        arrays |= {f"{prefix}_n": np.array(n), f"{prefix}_sum": sums.sum, f"{prefix}_outer": sums.outer}
    weights = {"sha256": "x", "has_logits": False, "source": "x"}
    meta = {"extractor": "inception-v3-adm", "weights": weights, "num_images": n, "image_size": [8, 8]}
    meta |= {"reference_sha256": "y"} if reference else {}
    write_npz(path, {**arrays, "meta": np.array(json.dumps(meta))})


def test_old_layout_is_refused_naming_the_file_before_any_statistics(
    shard_files, head_weights, checkpoint, tmp_path, monkeypatch, capsys
):
    paths, _ = shard_files
    old = tmp_path / "shard_0003.npz"
    old_layout_file(old, 20)
    monkeypatch.setattr(CentredMoments, "add", lambda *a: pytest.fail("statistics computed first"))
    with pytest.raises(ValueError, match=f"{old}: Inception features in layout 1 .*inception-features"):
        sample_feature_set([*paths, old])

    reference = tmp_path / "reference.npz"
    old_layout_file(reference, 30, reference=True)
    with pytest.raises(ValueError, match=f"{reference}: .* layout 1 .*`softcfg inception-reference`"):
        reference_feature_set(reference)
    config = write_run_config(tmp_path / "run.yaml", checkpoint, {"name": "none"})
    out = tmp_path / "m.json"
    argv = ["metrics", "--config", str(config), "--reference", str(reference), "--out", str(out),
            "--names", "fid", "sfid", "--samples", *map(str, paths), str(old)]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"softcfg: error: {old}: Inception features in layout 1"), err
    assert not out.exists()


def test_metrics_step_on_new_files_matches_numpy_statistics(
    shard_files, head_weights, checkpoint, tmp_path, monkeypatch
):
    """`softcfg metrics` hands the Frechet distance numpy's statistics of the features of every shard
    (recorded here instead of spending a minute in sqrtm at d = 2048) and IS the logits in order."""
    paths, extracted = shard_files
    ref = synthetic_extraction(300, seed=9)
    monkeypatch.setattr(inception_features, "extract", lambda *a, **k: ref)
    np.savez(tmp_path / "ref.npz", arr_0=np.zeros((300, 8, 8, 3), np.uint8))
    reference = tmp_path / "reference.npz"
    monkeypatch.setenv("SOFTCFG_CACHE", str(tmp_path / "cache"))
    assert main(["inception-reference", "--weights", str(head_weights.path), "--reference",
                 str(tmp_path / "ref.npz"), "--out", str(reference)]) == 0  # fmt: skip
    cached = list((tmp_path / "cache" / "inception-reference").iterdir())
    assert [p.name.split("-")[0] for p in cached] == [f"v{FEATURES_LAYOUT}"]  # the layout is in the key
    config = write_run_config(tmp_path / "run.yaml", checkpoint, {"name": "none"})
    out = tmp_path / "m.json"
    argv = ["metrics", "--config", str(config), "--reference", str(reference), "--out", str(out),
            "--names", "fid", "sfid", "is", "--bootstrap-resamples", "0",
            "--samples", *map(str, paths)]  # fmt: skip
    calls = []
    monkeypatch.setattr(adm, "frechet_distance", lambda *stats: calls.append(stats) or float(len(calls)))
    assert main(argv) == 0
    values = json.loads(out.read_text())["metrics"]
    assert (values["fid"], values["sfid"]) == (1.0, 2.0)
    for stats, layer in zip(calls, (POOL, SPATIAL), strict=True):
        x = np.concatenate([e[layer] for e in extracted]).astype(np.float64)
        y = ref[layer].astype(np.float64)
        wanted = (x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
        for got, want in zip(stats, wanted, strict=True):
            assert np.abs(got - want).max() <= 1e-12 * np.abs(want).max(), layer
    logits = np.concatenate([e[LOGITS] for e in extracted])
    assert values["is"] == pytest.approx(adm.inception_score(logits), rel=1e-12)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"spatial": np.zeros((137, 2023))}, r"spatial must be float32 \[137, 2023\], got float64"),
        ({"pool": np.zeros((136, 2048), np.float32)}, r"pool must be float32 \[137, 2048\], got float32"),
        ({"logits": None}, "no 'logits' array"),
    ],
)
def test_features_files_with_wrong_arrays_are_refused_naming_the_file(shard_files, tmp_path, change, message):
    paths, _ = shard_files
    with np.load(paths[0]) as data:
        arrays = {k: data[k] for k in data.files}
    arrays = {k: v for k, v in (arrays | change).items() if v is not None}
    bad = tmp_path / "bad.npz"
    write_npz(bad, arrays)
    with pytest.raises(ValueError, match=f"{bad}: {message}"):
        sample_feature_set([paths[1], bad])
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=f"{bad}: not a readable npz"):
        sample_feature_set([bad])
