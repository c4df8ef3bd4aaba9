"""The workflow on LlamaGen: a tiny random generator and VQ-16 decoder in the official file formats (a DDP
training checkpoint, the tokenizer's ``{"model": ...}`` file), sampled at 384 px and resized to 256 as
LlamaGen's evaluation does, scored with the ADM Inception suite against a reference batch, through
Snakemake."""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import generated_images
from softcfg.models.llamagen import LlamaGenConfig, LlamaGenGenerator
from softcfg.models.llamagen_vq import VQ16Decoder
from workflow_kit import snakemake

pytestmark = [
    pytest.mark.slow,
    pytest.mark.workflow,
    pytest.mark.filterwarnings("ignore:Matrix is singular"),
]

SIZES = {"dim": 64, "depth": 2, "heads": 4}


def write_checkpoints(root) -> dict:
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


def test_llamagen_sweep_through_snakemake(tmp_path, inception_weights):
    np.savez(tmp_path / "ref.npz", arr_0=generated_images(16, 256, seed=0))
    config = {
        "models": {"llamagen": write_checkpoints(tmp_path)},
        "methods": {"cfg": {"name": "cfg", "preset": "llamagen-L-384"},
                    "softcfg": {"name": "softcfg", "preset": "llamagen-L-384"}},
        "grid": {"gamma": [2.0], "k": [0.0]},
        "sampling": {"samples_per_run": 8, "shard_size": 4, "batch_size": 4},
        "metrics": {
            "reference": str(tmp_path / "ref.npz"),
            "kid_subset_size": 4,
            "bootstrap": {"resamples": 3, "blocks": 2},  # 2048 x 2048 eigendecompositions: a few
        },
        "focus": {"gamma": 2.0, "k": 0.0},
        "tables": ["ablation"],
        "figures": ["samples"],
    }  # fmt: skip
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake(tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]

    results = tmp_path / "results"
    table = pd.read_parquet(results / "metrics.parquet")
    assert set(table["run_id"]) == {"llamagen-cfg-g2-k0-s0", "llamagen-softcfg-g2-k0-s0"}
    assert table["num_samples"].eq(8).all() and table["value"].notna().all()
    assert {"fid", "sfid", "precision", "recall"} <= set(table["metric"])
    for run in ("llamagen-cfg-g2-k0-s0", "llamagen-softcfg-g2-k0-s0"):
        recorded = yaml.safe_load((results / "runs" / run / "run.yaml").read_text())
        assert (recorded["model"]["image_size"], recorded["model"]["eval_size"]) == (384, 256)
        assert recorded["method"]["top_k"] == 0 and recorded["method"]["top_p"] == 1.0
        shards = sorted((results / "samples" / run).glob("shard_*.npz"))
        assert len(shards) == 2
        for shard in shards:
            images = np.load(shard)["arr_0"]
            assert images.shape == (4, 256, 256, 3) and images.dtype == np.uint8
    assert (results / "tables" / "ablation.md").is_file() and (results / "figures" / "samples.png").is_file()
