"""The workflow's text-to-image part end to end: a random-weight scene model on one prompt of each GenEval
task (and a two-of-a-kind counting prompt), sampled, exported, scored by the scene backends with the
classifier the workflow trains, joined into metrics.parquet and rendered as the t2i tables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from conftest import seed_classifier
from softcfg.models.digits_text import DigitsTextConfig, DigitsTextGPT, save_digits_text
from workflow_kit import time_limit

REPO = Path(__file__).resolve().parents[1]
PROMPTS = REPO / "src" / "softcfg" / "data" / "digits_geneval.jsonl"
LINES = (0, 10, 20, 22, 30, 40, 50)  # single_object, two_object, counting x 2, colors, position, color_attr
IMAGES = 4
RUNS = {"scenes-none-s0": "none", "scenes-cfg-g2-k1-s0": "cfg"}
RUNS["scenes-softcfg_stepnorm-g2-k1-s0"] = "softcfg_stepnorm"
pytestmark = [pytest.mark.slow, pytest.mark.workflow]


def subset(folder: Path) -> list[dict]:
    lines = PROMPTS.read_text().splitlines()
    (folder / "prompts.jsonl").write_text("".join(lines[i] + "\n" for i in LINES))
    return [json.loads(lines[i]) for i in LINES]


@pytest.fixture(scope="module")
def finished(tmp_path_factory, digits_classifier) -> Path:
    workdir = tmp_path_factory.mktemp("t2i")
    torch.manual_seed(0)
    save_digits_text(DigitsTextGPT(DigitsTextConfig(dim=16, depth=1, heads=2)).eval(), workdir / "tiny.pt")
    subset(workdir)
    config = {
        "results": "results",
        "models": {
            "scenes": {"family": "digits_text", "checkpoint": str(workdir / "tiny.pt"),
                       "prompts": "prompts.jsonl", "images_per_prompt": IMAGES},
        },
        "methods": {"none": {"name": "none"}, "cfg": {"name": "cfg"},
                    "softcfg_stepnorm": {"name": "softcfg", "step_norm": True}},
        "grid": {"gamma": [2.0], "k": [1.0]},
        "sampling": {"samples_per_run": 28, "shard_size": 14, "batch_size": 14, "shards_per_job": 1},
        "metrics": {"dpg": {"mode": "corrected"}},
        "tables": ["t2i", "paper_t2i"],
        "figures": ["prompt_samples", "confidence_maps"],
        "focus": {"gamma": 2.0, "k": 1.0},
    }  # fmt: skip
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    seed_classifier(workdir / "results", digits_classifier)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
           str(workdir), "--cores", "2"]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=time_limit(900))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return workdir / "results"


def test_metrics_parquet_holds_each_runs_geneval_and_dpg_rows(finished):
    table = pd.read_parquet(finished / "metrics.parquet")
    assert set(table["run_id"]) == set(RUNS) and (table["num_samples"] == len(LINES) * IMAGES).all()
    tags = {"single_object", "two_object", "counting", "colors", "position", "color_attr"}
    geneval = {f"geneval/{t}" for t in tags | {"overall", "correct_images", "correct_prompts"}}
    # the categories of the generated questions: entity, count, colour, relation (broad and detailed)
    dpg = {"dpg/overall", "dpg/entity", "dpg/entity/whole", "dpg/other", "dpg/other/count", "dpg/attribute"}
    dpg |= {"dpg/attribute/color", "dpg/relation", "dpg/relation/spatial"}
    for _, rows in table.groupby("run_id"):
        assert set(rows["metric"]) == geneval | dpg and len(rows) == len(geneval | dpg)
    is_geneval = table["metric"].str.startswith("geneval/")
    assert (
        table[is_geneval]["value"].between(0, 1).all() and table[~is_geneval]["value"].between(0, 100).all()
    )
    assert set(table["backend"]) == {"scenes"}
    assert set(table[is_geneval]["mode"]) == {"compatible"} and set(table[~is_geneval]["mode"]) == {
        "corrected"
    }
    assert table["gamma"].isna().eq(table["method"].eq("none")).all()


def test_scorer_rows_count_the_whole_prompt_set(finished):
    rows = json.loads((finished / "t2i" / "geneval" / "scenes-cfg-g2-k1-s0.json").read_text())
    counts = {r["metric"]: r["count"] for r in rows}
    assert counts["geneval/overall"] == len(LINES) * IMAGES and counts["geneval/correct_prompts"] == len(
        LINES
    )
    assert counts["geneval/counting"] == 2 * IMAGES
    dpg = {
        r["metric"]: r["count"]
        for r in json.loads((finished / "t2i" / "dpg" / "scenes-cfg-g2-k1-s0.json").read_text())
    }
    assert dpg["dpg/overall"] == len(LINES)  # one 2 x 2 grid per prompt


def test_question_table_has_one_row_per_proposition(finished, tmp_path):
    table = pd.read_csv(finished / "t2i" / "questions" / "scenes.csv")  # as DPG-Bench's script reads it
    expected = 0
    for prompt in subset(tmp_path):  # objects, counts above one, colours, relations
        include = prompt["include"]
        expected += sum(1 + (c["count"] > 1) + ("color" in c) + ("position" in c) for c in include)
    ids = [f"prompt{i:05d}" for i in range(len(LINES))]  # the DPG grids' names, read back unchanged
    assert len(table) == expected and sorted(set(table["item_id"])) == ids


def test_prompt_samples_shows_a_row_per_task_kind_and_a_column_per_method(finished):
    from PIL import Image

    kinds = len({prompt["tag"] for prompt in subset(finished.parent)})  # six; counting twice
    figure = Image.open(finished / "figures" / "prompt_samples.png")
    placeholder = (750, 150)  # "no text-conditioned run": a 5 x 1 inch panel at 150 dpi
    assert figure.height > kinds * 150 and figure.size != placeholder and kinds == 6
    assert (finished / "figures" / "prompt_samples.pdf").stat().st_size > 0


def test_the_report_opens_in_a_browser_with_every_figure_and_table(finished):
    from browser import check_report

    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
         str(finished.parent), "--report", "report.html"],
        capture_output=True, text=True, timeout=time_limit(300),
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = yaml.safe_load((finished.parent / "config.yaml").read_text())
    check_report(finished.parent / "report.html", config["figures"], config["tables"])


def test_t2i_tables_show_the_parquet_numbers(finished):
    table = pd.read_parquet(finished / "metrics.parquet")
    value = table.set_index(["run_id", "metric"])["value"]
    lines = (finished / "tables" / "t2i.md").read_text().splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    body = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    assert [r[1] for r in body] == ["none", "cfg", "softcfg_stepnorm"]
    for run, method in RUNS.items():
        row = dict(zip(header, next(r for r in body if r[1] == method), strict=True))
        assert row["Overall ↑"] == f"{value[run, 'geneval/overall']:.3f}"
        assert row["Images % ↑"] == f"{100 * value[run, 'geneval/correct_images']:.2f}"
        assert row["Counting %"] == f"{100 * value[run, 'geneval/counting']:.2f}"
        assert (
            row["DPG ↑"] == f"{value[run, 'dpg/overall']:.2f}"
            and row["scorers"] == "scenes / scenes (corrected)"
        )
    assert (finished / "tables" / "t2i.tex").read_text().startswith(r"\begin{tabular}")
    paper = (finished / "tables" / "paper_t2i.md").read_text().splitlines()[2:]
    assert len(paper) == 2 and all(
        line.startswith("| SimpleAR |") and "no run of ours" in line for line in paper
    )
