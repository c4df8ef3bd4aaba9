"""A guidance method and a model family installed from a package made here, found through the
``softcfg.methods`` and ``softcfg.models`` entry points by the config, ``softcfg sample`` and the
workflow, without editing softcfg."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import write_run_config

PLUGIN = Path(__file__).parent / "plugin"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The plugin installed by pip into a folder of its own (the venv stays untouched)."""
    root = tmp_path_factory.mktemp("plugin")
    source = root / "src"
    shutil.copytree(PLUGIN, source)
    target = root / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(source)],
        check=True,
    )  # fmt: skip
    assert any(target.glob("softcfg_sharpen-*.dist-info/entry_points.txt"))
    return target


def _env(site: Path) -> dict[str, str]:
    path = os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])
    bin_dir = Path(sys.executable).parent
    return {**os.environ, "PYTHONPATH": path, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


@pytest.fixture
def installed(site, monkeypatch):
    """The plugin importable in this process; the registries it fills are restored afterwards."""
    from softcfg import methods
    from softcfg.models import registry

    monkeypatch.syspath_prepend(str(site))
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


def test_softcfg_sample_runs_the_installed_method_and_family(site, tmp_path, checkpoint):
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
            check=True, env=_env(site),
        )  # fmt: skip
    with np.load(tmp_path / "p" / "shard_0001.npz") as p, np.load(tmp_path / "c" / "shard_0001.npz") as c:
        assert np.array_equal(p["arr_0"], c["arr_0"]) and np.array_equal(p["arr_1"], c["arr_1"])
        assert len(np.unique(p["arr_0"].reshape(6, -1), axis=0)) > 1


@pytest.mark.slow
@pytest.mark.workflow
def test_the_workflow_sweeps_the_installed_method(site, tmp_path, checkpoint):
    from test_workflow import REPO

    config = {
        "models": {"tiny": {"family": "digits", "checkpoint": str(checkpoint)}},
        "methods": {"sharp": {"name": "sharpened_cfg", "sharpen": 2.0}},
        "grid": {"gamma": [1.5, 2.5], "k": [1.0]},
        "sampling": {"samples_per_run": 20, "shard_size": 10, "batch_size": 10},
        "metrics": {"kid_subset_size": 10},
        "tables": ["ablation"],
        "figures": ["fid_vs_gamma"],
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
         str(tmp_path), "--cores", "2"],
        env=_env(site), capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    import pandas as pd

    metrics = pd.read_parquet(tmp_path / "results" / "metrics.parquet")
    fid = metrics[metrics["metric"] == "fid"].sort_values("gamma")
    assert fid["run_id"].tolist() == ["tiny-sharp-g1.5-k1-s0", "tiny-sharp-g2.5-k1-s0"]
    assert fid["sharpen"].tolist() == [2.0, 2.0] and fid["method_name"].eq("sharpened_cfg").all()
    assert "sharp" in (tmp_path / "results" / "tables" / "ablation.md").read_text()
