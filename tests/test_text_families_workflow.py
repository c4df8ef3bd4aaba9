"""The real text-to-image families through the Snakemake workflow as a user configures them: Janus-Pro
(a ``save_pretrained`` folder), Lumina-mGPT 2.0 (its folder and MoVQGAN file) and SimpleAR (its folder
and Cosmos decoder.jit), tiny random models,
sampling three GenEval prompts, exported in GenEval's layout and scored by the ``hf`` backend (tiny
random Mask2Former and CLIP folders), joined into metrics.parquet and the t2i table; a rerun is a no-op."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import lumina_tiny
import simplear_tiny
from hf_scorers import build_hf_scorers
from janus_tiny import GRID, save_tiny_janus
from workflow_kit import REPO, snakemake

pytestmark = [pytest.mark.slow, pytest.mark.workflow]
GENEVAL = REPO / "src" / "softcfg" / "data" / "benchmarks" / "geneval" / "evaluation_metadata.jsonl"
LINES = (0, 100, 300)  # three task kinds of the official set
SIZES = {"janus": 8 * GRID, "lumina": lumina_tiny.IMAGE_SIZE, "simplear": simplear_tiny.IMAGE_SIZE}  # px
RUNS = {f"{m}-{method}-g5-k0-s0" for m in SIZES for method in ("cfg", "softcfg_stepnorm")}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, monkeypatch_module) -> Path:
    root = tmp_path_factory.mktemp("t2i_families_wf")
    folder = save_tiny_janus(root / "Janus-Pro-tiny")
    lumina, movq = lumina_tiny.save_tiny_lumina_files(root)
    simplear, cosmos = simplear_tiny.save_tiny_simplear_files(root)
    scorers = build_hf_scorers(root / "scorers")
    lines = GENEVAL.read_text().splitlines()
    (root / "prompts.jsonl").write_text("".join(lines[i] + "\n" for i in LINES))
    config = {
        "models": {"janus": {"family": "janus", "checkpoint": str(folder), "prompts": "prompts.jsonl",
                             "images_per_prompt": 2},
                   "lumina": {"family": "lumina", "checkpoint": str(lumina), "tokenizer": str(movq),
                              "image_size": SIZES["lumina"], "prompts": "prompts.jsonl",
                              "images_per_prompt": 2},
                   "simplear": {"family": "simplear", "checkpoint": str(simplear), "tokenizer": str(cosmos),
                                "image_size": SIZES["simplear"], "prompts": "prompts.jsonl",
                                "images_per_prompt": 2}},
        "methods": {"cfg": {"name": "cfg"}, "softcfg_stepnorm": {"name": "softcfg", "step_norm": True}},
        "grid": {"gamma": [5.0], "k": [0.0]},
        "sampling": {"samples_per_run": 4, "shard_size": 4, "batch_size": 2, "shards_per_job": 1},
        "metrics": {"geneval": {"backend": "hf",
                                "options": {"detector": str(scorers["m2f"]), "clip": str(scorers["clip"])}}},
        "tables": ["t2i"],
        "figures": [],
        "focus": {"gamma": 5.0, "k": 0.0},
    }  # fmt: skip
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake(root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        yield patch


def test_every_run_is_sampled_exported_and_scored_by_the_hf_backend(workdir):
    results = workdir / "results"
    table = pd.read_parquet(results / "metrics.parquet")
    assert set(table["run_id"]) == RUNS and table["metric"].str.startswith("geneval/").all()
    assert set(table["backend"]) == {"hf(m2f, clip)"} and table["value"].notna().all()
    assert (table[table["metric"] == "geneval/overall"]["num_samples"] == 6).all()
    for run in RUNS:
        shards = sorted((results / "samples" / run).glob("shard_*.npz"))
        sizes = [len(np.load(s)["arr_0"]) for s in shards]
        side = SIZES[run.partition("-")[0]]
        assert sizes == [4, 2] and np.load(shards[0])["arr_0"].shape[1:] == (side, side, 3)
        export = results / "exports" / "geneval" / run
        prompts = sorted(p.name for p in export.iterdir() if p.is_dir())
        assert prompts == ["00000", "00001", "00002"]
        for prompt in prompts:
            assert len(list((export / prompt / "samples").glob("*.png"))) == 2
            meta = json.loads((export / prompt / "metadata.jsonl").read_text())
            assert meta == json.loads(GENEVAL.read_text().splitlines()[LINES[int(prompt)]])
    table = (results / "tables" / "t2i.md").read_text()
    assert all(model in table for model in SIZES)


def test_a_rerun_is_a_no_op(workdir):
    proc = snakemake(workdir, "--dry-run")
    assert proc.returncode == 0 and "Nothing to be done" in proc.stdout + proc.stderr, proc.stderr[-2000:]
