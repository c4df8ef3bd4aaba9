"""The prompt_samples figure (the SoftCFG paper's Figs. 1, 2): rows of prompts, columns of methods, each
cell the prompt's first image; the default rows are the first prompt of each GenEval tag."""

from __future__ import annotations

import copy

import matplotlib
import numpy as np
import pytest

from softcfg.config import ConfigError
from softcfg.io.export import PromptImages
from softcfg.report.figures import prompt_samples
from softcfg.sweep import load_sweep
from workflow_kit import REPO

matplotlib.use("Agg")

TAGS = ["single_object", "counting", "counting", "colors", "single_object", "position"]


def prompt_images(seed: int) -> PromptImages:
    rng = np.random.default_rng(seed)
    images = [[rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(2)] for _ in TAGS]
    metadata = [{"tag": tag, "prompt": f"a photo number {i} of a {tag}"} for i, tag in enumerate(TAGS)]
    return PromptImages("geneval", [f"{i:05d}" for i in range(len(TAGS))], metadata, images)


def cells(fig) -> list[list[np.ndarray | None]]:
    """The image drawn in each axes of the figure's grid, row by row (None where nothing is drawn)."""
    grid = fig.axes[0].get_gridspec()
    out = [[None] * grid.ncols for _ in range(grid.nrows)]
    for ax in fig.axes:
        spec = ax.get_subplotspec()
        if ax.get_images():
            out[spec.rowspan.start][spec.colspan.start] = np.asarray(ax.get_images()[0].get_array())
    return out


def test_rows_are_the_first_prompt_of_each_tag_and_columns_the_methods():
    runs = {("scenes", "none"): prompt_images(0), ("scenes", "cfg"): prompt_images(1)}
    fig = prompt_samples(runs, seeds={"scenes": 3})
    first_of_tag = [0, 1, 3, 5]  # prompt-set order; the second counting and single_object prompts left out
    drawn = cells(fig)
    assert len(drawn) == len(first_of_tag)
    for row, index in zip(drawn, first_of_tag, strict=True):
        for cell, method in zip(row, ("none", "cfg"), strict=True):
            np.testing.assert_array_equal(cell, runs[("scenes", method)].images[index][0])
    labels = [ax.get_ylabel().replace("\n", " ") for ax in fig.axes if ax.get_ylabel()]
    assert labels == [f"[{TAGS[i]}] a photo number {i} of a {TAGS[i]}" for i in first_of_tag]
    assert [ax.get_title() for ax in fig.axes[:2]] == ["scenes, seed 3\nnone", "cfg"]


def test_chosen_prompts_and_one_block_per_text_model():
    runs = {
        (m, method): prompt_images(seed) for seed, (m, method) in enumerate([("a", "none"), ("b", "none")])
    }
    drawn = cells(prompt_samples(runs, chosen=[4, 2]))
    assert len(drawn) == 4  # two prompts per model
    for r, (model, index) in enumerate([("a", 4), ("a", 2), ("b", 4), ("b", 2)]):
        np.testing.assert_array_equal(drawn[r][0], runs[(model, "none")].images[index][0])


def test_no_text_run_is_said_in_the_figure():
    fig = prompt_samples({})
    assert "no text-conditioned run" in fig.axes[0].texts[0].get_text()


def test_a_prompt_index_past_a_text_models_prompt_set_is_refused():
    from test_sweep import BASE  # a class-conditional sweep

    config = copy.deepcopy(BASE)
    config["figure_options"] = {"prompt_samples": {"prompts": [0, 60]}}
    load_sweep(config)  # no text model: nothing to check
    config["models"]["scenes"] = {
        "family": "digits_text",
        "train": True,
        "prompts": str(REPO / "src" / "softcfg" / "data" / "digits_geneval.jsonl"),
    }
    with pytest.raises(ConfigError, match=r"prompts: index 60 is past the 60 prompts of models\.scenes"):
        load_sweep(config)
