"""A guidance method and a model family installed from a package made here, found through the
``softcfg.methods`` and ``softcfg.models`` entry points by the config, ``softcfg sample`` and the
workflow (the shared sweep of ``test_workflow.py`` runs its method), without editing softcfg."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

from conftest import write_run_config
from workflow_kit import env, time_limit


@pytest.fixture
def installed(plugin_site, monkeypatch):
    """The plugin importable in this process; the registries it fills are restored afterwards."""
    from softcfg import methods
    from softcfg.models import registry

    monkeypatch.syspath_prepend(str(plugin_site))
    monkeypatch.setattr(methods, "_REGISTRY", dict(methods._REGISTRY))
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def test_the_registry_finds_the_installed_method(installed):
    from softcfg.config import ConfigError
    from softcfg.methods import method_names, parse_method

    assert "sharpened_cfg" in method_names()
    method = parse_method({"name": "sharpened_cfg", "gamma": 2.0, "k": 1.0, "sharpen": "2"})
    assert (method.gamma, method.sharpen, method.axes()) == (2.0, 2.0, {"gamma": 2.0, "k": 1.0})
    with pytest.raises(ConfigError, match=r"method\.sharpen: Input should be greater than 0"):
        parse_method({"name": "sharpened_cfg", "sharpen": 0})
    from softcfg.models.registry import family_names, get_family

    assert "digits_copy" in family_names() and get_family("digits_copy").extractor == "digits"


def test_softcfg_sample_runs_the_installed_method_and_family(plugin_site, tmp_path, checkpoint):
    """Sharpening the guided logits by 2 draws the same tokens as CFG at half the temperature; the
    installed family (the digits model under another name) gives the same images."""
    sampling = {"shard_size": 6, "batch_size": 3, "seed": 4}
    sharpened = {"name": "sharpened_cfg", "sharpen": 2.0, "gamma": 2.5, "k": 1.0}
    cooled = {"name": "cfg", "temperature": 0.5, "gamma": 2.5, "k": 1.0}
    plugin = write_run_config(tmp_path / "p.yaml", checkpoint, sharpened, sampling)
    data = yaml.safe_load(plugin.read_text())
    plugin.write_text(yaml.safe_dump({**data, "model": {**data["model"], "family": "digits_copy"}}))
    cfg = write_run_config(tmp_path / "c.yaml", checkpoint, cooled, sampling)
    for config, out in ((plugin, "p"), (cfg, "c")):
        subprocess.run(
            [sys.executable, "-m", "softcfg", "sample", "--config", str(config), "--shards", "1",
             "--out", str(tmp_path / out / "shards_0001-0001.json"), "--no-progress"],
            check=True, env=env(plugin_site), timeout=time_limit(300),
        )  # fmt: skip
    with np.load(tmp_path / "p" / "shard_0001.npz") as p, np.load(tmp_path / "c" / "shard_0001.npz") as c:
        assert np.array_equal(p["arr_0"], c["arr_0"]) and np.array_equal(p["arr_1"], c["arr_1"])
        assert len(np.unique(p["arr_0"].reshape(6, -1), axis=0)) > 1


def test_an_installed_family_with_a_trainer_is_trained_by_softcfg_train(plugin_site, tmp_path):
    """A trainer in the family's record is all ``softcfg train`` (and the workflow's train rule, which
    calls it) needs: the copy trains the digits model, the same bytes for the same seed and steps; a
    family without one is refused in one line."""
    import torch

    outs = {}
    for family in ("digits_copy", "digits"):
        outs[family] = tmp_path / family / "generator.pt"
        subprocess.run(
            [sys.executable, "-m", "softcfg", "train", "--generator", str(outs[family]), "--family", family,
             "--steps", "3", "--seed", "2"],
            check=True, env=env(plugin_site), timeout=time_limit(300), capture_output=True,
        )  # fmt: skip
    assert outs["digits_copy"].read_bytes() == outs["digits"].read_bytes()
    assert torch.load(outs["digits"])["seed"] == 2
    refused = subprocess.run(
        [sys.executable, "-m", "softcfg", "train", "--generator", str(tmp_path / "x.pt"), "--family", "rar"],
        env=env(plugin_site), timeout=time_limit(300), capture_output=True, text=True,
    )  # fmt: skip
    assert refused.returncode == 2 and not (tmp_path / "x.pt").exists()
    assert refused.stderr.strip() == (
        "softcfg: error: --family: 'rar' has no trainer (trainable: digits, digits_text, digits_scales, "
        "digits_copy)"
    )


def test_what_is_produced_does_not_depend_on_what_is_installed(installed, monkeypatch):
    """With the plugin installed, and another whose import fails: the committed schema is still current,
    and a metrics table of built-in runs has the built-in columns; a run of the plugin's method adds its
    option (``sharpen``) and nothing else."""
    import json
    from pathlib import Path

    from softcfg import methods
    from softcfg.config import parse_run_config, workflow_schema
    from softcfg.report.aggregate import aggregate

    class Broken:
        name, value = "broken", "nowhere:Broken"

        def load(self):
            raise ImportError("No module named 'nowhere'")

    entry_points = methods._entry_points()
    monkeypatch.setattr(methods, "_entry_points", lambda: {**entry_points, "broken": Broken()})
    committed = (Path(__file__).parents[1] / "workflow" / "schemas" / "config.schema.json").read_text()
    assert json.dumps(workflow_schema(), indent=2) + "\n" == committed

    def entry(name: str, method: dict) -> tuple:
        model = {"family": "digits", "checkpoint": "g.pt"}
        run = parse_run_config(
            {"model": model, "method": method, "run": {"id": name, "model": "digits", "method": name}},
            check_files=False,
        )
        summary = {"num_samples": 1, "batch_seeds": [], "config_hash": name, "git_commit": "x",
                   "versions": {}, "diagnostics": None}  # fmt: skip
        return run, {"metrics": {"fid": 1.0}, "extractor": "digits", "reference": "r"}, summary

    builtin = aggregate([entry("cfg", {"name": "cfg"})])[0]
    assert "sharpen" not in builtin.columns
    both = aggregate(
        [entry("cfg", {"name": "cfg"}), entry("sharp", {"name": "sharpened_cfg", "sharpen": 2.0})]
    )
    assert set(both[0].columns) - set(builtin.columns) == {"sharpen"}


def test_a_plugin_family_passes_the_contract_checks_softcfg_testing_exports(installed, checkpoint):
    """What a family author's own test calls: ``softcfg.testing`` on a small model of the family."""
    import torch

    from softcfg import testing
    from softcfg.conditioning import ClassLabels
    from softcfg.config import parse_model
    from softcfg.models.loading import load_model

    model = load_model(parse_model({"family": "digits_copy", "checkpoint": str(checkpoint)}))
    conditions = ClassLabels(torch.tensor([1, 7]))
    tokens = testing.random_tokens(model, len(conditions))
    testing.check_cached_steps(model, conditions, tokens)
    for target in ("v", "k", "kv"):
        testing.check_softcfg_strength_zero(model, conditions, target)
    assert testing.has_package_cache(model)
    testing.check_softcfg_scaled_cache(model, conditions, tokens, "kv")
    testing.check_methods_sample(model, conditions)


def test_an_installed_metric_is_scored_by_softcfg_metrics_and_named_by_the_sweep(
    installed, plugin_site, tmp_path
):
    """The plugin's metric (one record and an entry point) is a choice of ``softcfg metrics`` and of
    ``metrics.names``, computed from the features files and labelled in the tables."""
    import pandas as pd
    import torch

    from conftest import random_digits_model
    from softcfg.config import ConfigError
    from softcfg.models.digits import save_digits_ar
    from softcfg.models.digits_classifier import DigitsClassifier, save_digits_classifier
    from softcfg.report.tables import metric_labels
    from softcfg.sweep import load_sweep

    save_digits_ar(random_digits_model(), tmp_path / "g.pt")
    torch.manual_seed(0)
    save_digits_classifier(DigitsClassifier().eval(), tmp_path / "c.pt")
    config = write_run_config(
        tmp_path / "RUN.yaml", tmp_path / "g.pt", {"name": "cfg"}, {"shard_size": 12, "batch_size": 12}
    )
    features = {name: tmp_path / f"{name}_features.npz" for name in ("samples", "reference")}
    shard, classifier = tmp_path / "run" / "shard_0000.npz", tmp_path / "c.pt"
    group = shard.parent / "shards_0000-0000.json"
    steps = [
        ["sample", "--config", config, "--shards", "0", "--no-progress", "--out", group],
        ["reference", "--out", tmp_path / "reference.npz"],
        ["features", "--classifier", classifier, shard, "--out", features["samples"]],
        ["features", "--classifier", classifier, tmp_path / "reference.npz", "--out", features["reference"]],
        ["metrics", "--config", config, "--samples", features["samples"], "--reference",
         features["reference"], "--names", "fid", "mean_distance", "--bootstrap-resamples", "0", "--out",
         tmp_path / "metrics.json"],
    ]  # fmt: skip
    for args in steps:
        subprocess.run(
            [sys.executable, "-m", "softcfg", *map(str, args)], check=True, env=env(plugin_site),
            timeout=time_limit(300), capture_output=True,
        )  # fmt: skip
    values = json.loads((tmp_path / "metrics.json").read_text())["metrics"]
    with np.load(features["samples"]) as s, np.load(features["reference"]) as r:
        gap = s["features"].astype(np.float64).mean(0) - r["features"].astype(np.float64).mean(0)
    assert values["mean_distance"] == pytest.approx(float(np.linalg.norm(gap)), rel=1e-12)
    assert metric_labels(pd.DataFrame(columns=["fid", "mean_distance"]))["mean_distance"] == "MeanΔ ↓"
    sweep = {"models": {"digits": {"family": "digits", "train": True}}, "methods": {"none": {"name": "none"}},
             "grid": {"gamma": [2.0], "k": [1.0]}, "tables": [], "figures": [],
             "sampling": {"samples_per_run": 20, "shard_size": 10, "batch_size": 10},
             "metrics": {"names": ["fid", "mean_distance"]}}  # fmt: skip
    assert load_sweep(sweep).metrics == ("fid", "mean_distance")
    sweep["metrics"]["names"] = ["mean_distanc"]
    with pytest.raises(ConfigError, match=r"config\.metrics\.names: unknown metric 'mean_distanc'"):
        load_sweep(sweep)
