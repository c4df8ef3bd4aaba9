"""Token-confidence heatmaps (the SoftCFG paper's Fig. 5): recorded by the sampler, kept across a resume,
tabled with grid coordinates, drawn from the table; the option's validation."""

from __future__ import annotations

import json
from types import SimpleNamespace

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import random_digits_model, write_run_config
from softcfg.cli import main
from softcfg.conditioning import ClassLabels
from softcfg.config import RunConfig, SamplingEntry, parse_run_config
from softcfg.io.shards import manifest_path, read_shard
from softcfg.methods import parse_method
from softcfg.models.alitok import AliTok
from softcfg.models.base import ARModel, NextScaleModel, TokenGrid
from softcfg.models.digits_scales import DigitsScales, DigitsScalesConfig
from softcfg.models.digits_text import DigitsTextGPT
from softcfg.models.rar import RAR
from softcfg.models.var_vqvae import PATCH_NUMS as VAR_PATCH_NUMS
from softcfg.options import ConfigError
from softcfg.report.aggregate import aggregate, summarize_shards
from softcfg.sampling.diagnostics import ConfidenceMaps
from softcfg.sampling.loop import generate
from softcfg.sampling.replay import replay
from softcfg.sweep import load_sweep

matplotlib.use("Agg")

METHODS = {
    "none": {"name": "none", "temperature": 0.8},
    "cfg": {"name": "cfg", "gamma": 2.0},
    "softcfg_sampled": {"name": "softcfg", "gamma": 2.0, "confidence": "cond_sampled", "temperature": 1.3},
}


def scales_model() -> DigitsScales:
    torch.manual_seed(1)
    model = DigitsScales(DigitsScalesConfig(dim=32, depth=2, heads=2))
    with torch.no_grad():  # sharpen the random head, so confidences spread over (0, 1)
        for p in model.parameters():
            p.mul_(3.0)
    return model.eval()


def reference(cond: np.ndarray, tokens: np.ndarray, temperature: float) -> dict[str, np.ndarray]:
    """From replayed cond logits [B, T, V] in float64: max softmax = 1 / sum exp((l - max l) / T), and the
    softmax at the taken token."""
    z = (cond.astype(np.float64) - cond.max(-1, keepdims=True)) / temperature
    total = np.exp(z).sum(-1)
    taken = np.take_along_axis(z, tokens[..., None], -1)[..., 0]
    return {"cond_max": 1.0 / total, "cond_sampled": np.exp(taken) / total}


@pytest.mark.parametrize("family", ["digits", "digits_scales"])
@pytest.mark.parametrize("method_name", list(METHODS))
def test_recorded_confidences_are_those_of_the_replayed_cond_logits(family, method_name):
    model = random_digits_model() if family == "digits" else scales_model()
    method = parse_method(METHODS[method_name])
    conditions = ClassLabels(torch.tensor([3, 1, 4, 1, 5]))
    maps = ConfidenceMaps(model, method, 3, "cpu")
    tokens = generate(model, conditions, method, torch.Generator().manual_seed(0), [maps])
    recorded = maps.as_arrays()
    expected_definitions = ["cond_max", "cond_sampled"] if method_name == "softcfg_sampled" else ["cond_max"]
    assert list(recorded) == expected_definitions
    logits = replay(model, method, conditions, tokens)
    want = reference(logits["cond"][:3], tokens[:3].numpy(), METHODS[method_name].get("temperature", 1.0))
    for name, values in recorded.items():
        assert values.shape == (3, model.num_tokens) and values.dtype == np.float32
        np.testing.assert_allclose(values, want[name], rtol=0, atol=2e-6)
    assert recorded["cond_max"].min() < 0.9 and recorded["cond_max"].max() > 0.5  # not a degenerate case


def test_token_grids_of_the_families():
    class VARScales(NextScaleModel):
        patch_nums = VAR_PATCH_NUMS

    assert random_digits_model().token_grid() == TokenGrid(0, 8, 8)  # 64 tokens, an 8x8 image
    assert scales_model().token_grid() == TokenGrid(1 + 4 + 16, 8, 8)  # scales 1, 2, 4 before the 8x8
    assert VARScales().token_grid() == TokenGrid(680 - 256, 16, 16)  # VAR-d16: 680 tokens, last 16x16
    assert AliTok.token_grid is ARModel.token_grid and AliTok.num_tokens == 273
    assert ARModel.token_grid(SimpleNamespace(num_tokens=273)) == TokenGrid(17, 16, 16)  # 17 1D tokens first
    assert RAR.token_grid is ARModel.token_grid and RAR.num_tokens == 256
    assert ARModel.token_grid(SimpleNamespace(num_tokens=576)) == TokenGrid(0, 24, 24)  # LlamaGen at 384 px
    assert DigitsTextGPT.token_grid(None) is None  # header tokens interleave the patches


@pytest.mark.parametrize("model", [random_digits_model(), scales_model()], ids=["digits", "digits_scales"])
def test_the_grid_is_where_the_decoder_puts_each_token(model):
    """One bright token at grid cell (r, c) and the decoded image is bright at pixel (r, c) only."""
    grid = model.token_grid()
    for r, c in [(0, 0), (2, 5), (7, 7)]:
        tokens = torch.zeros(1, model.num_tokens, dtype=torch.long)
        tokens[0, grid.offset + r * grid.width + c] = 16
        bright = np.argwhere(model.decode_images(tokens)[0].numpy().sum(-1) > 0)
        assert bright.tolist() == [[r, c]]


def crash_after(monkeypatch, calls: int) -> None:
    """``generate`` that stops (as a killed job does) after ``calls`` batches."""
    import softcfg.sampling.shards as shards

    original, count = shards.generate, [0]

    def stopping(*args, **kwargs):
        count[0] += 1
        if count[0] > calls:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(shards, "generate", stopping)


def test_a_resumed_shard_records_the_same_maps_and_bytes(tmp_path, checkpoint, monkeypatch):
    method = {"name": "softcfg", "gamma": 2.0, "confidence": "cond_sampled"}
    config = write_run_config(tmp_path / "run.yaml", checkpoint, method, {"shard_size": 9, "batch_size": 4})

    def sample(folder: str) -> int:
        record = tmp_path / folder / "shards_0000-0000.json"
        return main(
            ["sample", "--config", str(config), "--shards", "0", "--no-progress", "--out", str(record)]
        )

    assert sample("whole") == 0
    with monkeypatch.context() as patch:
        crash_after(patch, 2)
        with pytest.raises(KeyboardInterrupt):
            sample("resumed")
    kept = tmp_path / "resumed" / ".shard_0000.batches" / "batch_0000.npz"
    with np.load(kept) as data:
        assert data["confidence_cond_max"].shape == (4, 64) and "confidence_cond_sampled" in data.files
        kept_maps = data["confidence_cond_max"]
    assert sample("resumed") == 0
    whole, resumed = (tmp_path / f / "shard_0000.npz" for f in ("whole", "resumed"))
    assert whole.read_bytes() == resumed.read_bytes()
    assert manifest_path(whole).read_text().replace(str(whole.parent), "") == manifest_path(
        resumed
    ).read_text().replace(str(resumed.parent), "")
    manifest = json.loads(manifest_path(resumed).read_text())
    assert manifest["token_grid"] == {"offset": 0, "height": 8, "width": 8}
    assert np.array_equal(np.array(manifest["confidence_maps"]["cond_max"], np.float32), kept_maps)
    with np.load(resumed) as data:  # the npz keeps the ADM layout: the maps live in the manifest
        assert sorted(data.files) == ["arr_0", "arr_1"]
    assert read_shard(resumed)[0].shape == (9, 8, 8, 3)


def test_only_shard_zero_records_maps(tmp_path, checkpoint):
    config = write_run_config(tmp_path / "run.yaml", checkpoint, {"name": "cfg"}, {"shard_size": 6})
    out = tmp_path / "s" / "shards_0000-0001.json"
    assert (
        main(["sample", "--config", str(config), "--shards", "0-1", "--no-progress", "--out", str(out)]) == 0
    )
    first, second = (json.loads((out.parent / f"shard_000{i}.json").read_text()) for i in (0, 1))
    assert len(first["confidence_maps"]["cond_max"]) == 6  # auto: 8, or the first batch if smaller
    assert second["confidence_maps"] is None and second["token_grid"] == first["token_grid"]


def run_config(run_id: str, method: dict, family: str = "digits") -> RunConfig:
    model = {"family": family, "checkpoint": "unused.pt"}
    data = {"model": model, "method": method, "run": {"id": run_id, "model": family, "method": run_id}}
    return parse_run_config(data, check_files=False)


def manifest(maps: dict, grid: dict | None, shard_index: int = 0) -> dict:
    return {"shard_index": shard_index, "config_hash": "h", "num_samples": 4, "batch_seeds": [1],
            "git_commit": None, "versions": {}, "diagnostics": None, "token_grid": grid,
            "confidence_maps": maps if shard_index == 0 else None}  # fmt: skip


RECORD = {"metrics": {"fid": 1.0}, "extractor": "x", "reference": "r"}


def expected_cell(token: int, grid: tuple[int, int, int] | None) -> tuple:
    """Row and column of ``token`` in a row-major map of ``height x width`` tokens after ``offset``."""
    if grid is None or not grid[0] <= token < grid[0] + grid[1] * grid[2]:
        return None, None
    return (token - grid[0]) // grid[2], (token - grid[0]) % grid[2]


def test_confidence_rows_carry_grid_coordinates():
    rng = np.random.default_rng(0)
    scales = rng.uniform(size=(2, 85)).tolist()  # digits_scales: 1 + 4 + 16 tokens, then the 8x8 map
    digits = {
        "cond_max": rng.uniform(size=(1, 64)).tolist(),
        "cond_sampled": rng.uniform(size=(1, 64)).tolist(),
    }
    grids = {"a": (21, 8, 8), "b": (0, 8, 8), "c": None}
    maps = {"a": {"cond_max": scales}, "b": digits, "c": {"cond_max": [[0.5] * 64]}}
    methods = {
        "a": {"name": "cfg"},
        "b": {"name": "softcfg", "confidence": "cond_sampled"},
        "c": {"name": "none"},
    }
    entries = []
    for run_id, grid in grids.items():
        token_grid = dict(zip(("offset", "height", "width"), grid, strict=True)) if grid else None
        shards = [manifest(maps[run_id], token_grid), manifest({}, token_grid, shard_index=1)]
        family = "digits_scales" if run_id == "a" else "digits"
        entries.append((run_config(run_id, methods[run_id], family), RECORD, summarize_shards(shards)))
    table = aggregate(entries)[2]
    assert len(table) == 2 * 85 + 2 * 64 + 64
    assert str(table["grid_row"].dtype) == str(table["grid_col"].dtype) == "Int64"
    for row in table.itertuples():
        assert row.value == maps[row.run_id][row.definition][row.sample][row.token]
        cell = (
            None if pd.isna(row.grid_row) else row.grid_row,
            None if pd.isna(row.grid_col) else row.grid_col,
        )
        assert cell == expected_cell(row.token, grids[row.run_id]), row
    b = table[table["run_id"] == "b"]  # the run column ``confidence`` is SoftCFG's own definition
    assert set(b["confidence"]) == {"cond_sampled"} and set(b["definition"]) == {"cond_max", "cond_sampled"}


def synthetic_table() -> pd.DataFrame:
    """Two samples of 2x3 maps for an unguided run and a CFG run at the focus, one CFG run off focus;
    value = the run's base + token / 10 + sample / 100."""
    rows = []
    runs = {"n": ("none", None, 0.1), "c": ("cfg", 2.0, 0.2), "o": ("cfg", 3.0, 0.9)}
    for run_id, (method, gamma, base) in runs.items():
        for sample in range(2):
            for token in range(7):  # token 0 lies outside the grid
                row, col = expected_cell(token, (1, 2, 3))
                rows.append(
                    {"run_id": run_id, "model": "m", "method": method, "guided": gamma is not None,
                     "gamma": gamma, "k": None if gamma is None else 1.0, "target": None, "sample": sample,
                     "token": token, "grid_row": row, "grid_col": col, "definition": "cond_max",
                     "value": base + token / 10 + sample / 100}
                )  # fmt: skip
    return pd.DataFrame(rows).astype({"grid_row": "Int64", "grid_col": "Int64"})


def test_the_figure_draws_each_methods_maps_on_one_scale(tmp_path):
    from softcfg.report.figures import confidence_maps, save

    images = {"c": np.full((2, 4, 4, 3), 200, np.uint8)}
    fig = confidence_maps(synthetic_table(), 2.0, 1.0, images, per_row=2)
    drawn = [ax.images[0] for ax in fig.axes if ax.images]
    heat = [im for im in drawn if im.get_array().ndim == 2]
    assert len(heat) == 4 and len(drawn) == 6  # 2 methods x 2 samples, and CFG's 2 images
    assert {im.get_clim() for im in heat} == {(0.1 + 0.1, 0.2 + 0.6 + 0.01)}  # grid tokens at the focus
    cfg_sample_1 = 0.2 + np.arange(1, 7).reshape(2, 3) / 10 + 0.01
    assert sum(np.allclose(np.asarray(im.get_array()), cfg_sample_1) for im in heat) == 1
    assert len([ax for ax in fig.axes if ax.get_label() == "<colorbar>"]) == 1
    names = [p.name for p in save(fig, tmp_path / "confidence_maps")]
    assert names == ["confidence_maps.png", "confidence_maps.pdf"]


@pytest.mark.parametrize(
    ("sampling", "recorded"),
    [({}, 8), ({"batch_size": 5}, 5), ({"shard_size": 3}, 3), ({"confidence_maps": 0}, 0),
     ({"confidence_maps": 20, "batch_size": 20}, 20)],
)  # fmt: skip
def test_confidence_maps_default_to_eight_within_the_first_batch(sampling, recorded):
    entry = SamplingEntry(**sampling)
    assert entry.maps_for(entry.batch_size) == recorded


def test_more_maps_than_the_first_batch_is_a_config_error(checkpoint):
    data = {"model": {"family": "digits", "checkpoint": str(checkpoint)}, "method": {"name": "cfg"}}
    with pytest.raises(ConfigError, match=r"sampling\.confidence_maps: 6 samples, more than the 5"):
        parse_run_config({**data, "sampling": {"batch_size": 5, "confidence_maps": 6}})
    with pytest.raises(ConfigError, match=r"sampling\.confidence_maps: 9 samples, more than the 4"):
        parse_run_config({**data, "sampling": {"shard_size": 4, "confidence_maps": 9}})
    rar = {"family": "rar", "size": "B", "checkpoint": "g.bin", "tokenizer": "t.bin"}  # auto batch: 512
    rar = parse_run_config({**data, "model": rar}, check_files=False).model
    cfg = parse_method({"name": "cfg"})
    assert RunConfig(rar, cfg, SamplingEntry(batch_size="auto")).sampling.maps_for(512) == 8
    with pytest.raises(ConfigError, match=r"sampling\.confidence_maps: 600 samples, more than the 500"):
        RunConfig(rar, cfg, SamplingEntry(batch_size="auto", confidence_maps=600))
    sampling = {"samples_per_run": 10, "shard_size": 10, "batch_size": 10, "confidence_maps": 0}
    sweep = {"models": {"tiny": {"family": "digits", "checkpoint": str(checkpoint)}},
             "methods": {"cfg": {"name": "cfg"}}, "grid": {"gamma": [2.0]}, "sampling": sampling}  # fmt: skip
    with pytest.raises(ConfigError, match=r"figures: confidence_maps draws"):
        load_sweep(sweep)
    runs = load_sweep({**sweep, "figures": ["samples"]}).runs
    assert {r.config.sampling.confidence_maps for r in runs.values()} == {0}


def test_aggregate_and_figures_commands_carry_the_maps(tmp_path, checkpoint, monkeypatch):
    """Sampled shard -> summary -> confidence.parquet (the manifest's values, grid coordinates) -> figure
    with the sample images beside the heatmaps."""
    from softcfg import layout

    results, run_id = tmp_path / "results", "tiny-cfg-s0"
    config = {"model": {"family": "digits", "checkpoint": str(checkpoint)},
              "method": {"name": "cfg", "gamma": 2.0, "k": 1.0},
              "sampling": {"shard_size": 6, "batch_size": 6, "confidence_maps": 4},
              "run": {"id": run_id, "model": "tiny", "method": "cfg"}}  # fmt: skip
    layout.run_config(results, run_id).parent.mkdir(parents=True)
    layout.run_config(results, run_id).write_text(yaml.safe_dump(config))
    shard, summary = layout.shard(results, run_id, 0), layout.run_summary(results, run_id)
    record = shard.parent / "shards_0000-0000.json"
    args = ["--config", str(layout.run_config(results, run_id)), "--shards", "0", "--no-progress"]
    assert main(["sample", *args, "--out", str(record)]) == 0
    assert main(["summarize", "--out", str(summary), str(record)]) == 0
    metrics = {"run": config, "metrics": {"fid": 1.0}, "extractor": "x", "reference": "r"}
    layout.metrics(results, run_id).parent.mkdir(parents=True)
    layout.metrics(results, run_id).write_text(json.dumps(metrics))
    tables = {name: tmp_path / f"{name}.parquet" for name in ("metrics", "steps", "confidence")}
    outs = [f"--{name}-out={path}" for name, path in tables.items()]
    assert main(["aggregate", "--results", str(results), *outs, run_id]) == 0
    table = pd.read_parquet(tables["confidence"])
    recorded = json.loads(manifest_path(shard).read_text())["confidence_maps"]["cond_max"]
    assert len(table) == 4 * 64 and table["value"].tolist() == [q for row in recorded for q in row]
    assert (table["grid_row"] * 8 + table["grid_col"]).tolist() == table["token"].tolist()
    import softcfg.report.figures as drawing

    figures, saved, save = tmp_path / "figures", [], drawing.save
    monkeypatch.setattr(drawing, "save", lambda fig, stem: saved.append(fig) or save(fig, stem))
    flags = [f"--{name}={path}" for name, path in tables.items()]
    drawn = ["figures", *flags, "--gamma", "2", "--k", "1", "--out-dir", str(figures)]
    assert main([*drawn, "--sample-shards", f"tiny/cfg={shard}", "--", "confidence_maps"]) == 0
    assert (figures / "confidence_maps.png").is_file() and (figures / "confidence_maps.pdf").is_file()
    shapes = sorted(ax.images[0].get_array().shape for ax in saved[0].axes if ax.images)
    assert shapes == [(8, 8)] * 4 + [(8, 8, 3)] * 4  # each heatmap beside its sample
