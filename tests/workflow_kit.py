"""Running the workflow from tests: Snakemake in a subprocess on a work folder, the small digits sweep the
workflow tests share, and the test plugin package installed into a folder of its own."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PLUGIN = Path(__file__).parent / "plugin"


def time_limit(seconds: float) -> float:
    """A subprocess's or a wait's limit: ``seconds`` on a quiet machine, times ``SOFTCFG_TEST_TIME_SCALE``
    (default 4), so that a loaded machine makes a test slower, never red; a hang still ends it."""
    return seconds * float(os.environ.get("SOFTCFG_TEST_TIME_SCALE", "4"))


def env(*paths: Path) -> dict[str, str]:
    """This interpreter's scripts first on PATH (``softcfg`` in the rules), ``paths`` on PYTHONPATH."""
    python_path = os.pathsep.join([*map(str, paths), os.environ.get("PYTHONPATH", "")])
    bin_dir = Path(sys.executable).parent
    return {**os.environ, "PYTHONPATH": python_path, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def snakemake(
    workdir: Path, *args: str, site: Path | None = None, **popen
) -> subprocess.Popen | subprocess.CompletedProcess:
    """``snakemake`` on ``workdir`` with 2 cores; ``site``: the plugin's install folder, importable."""
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
           str(workdir), "--cores", "2", "--rerun-incomplete", *args]  # fmt: skip
    environment = env(site) if site is not None else env()
    if popen:
        return subprocess.Popen(cmd, env=environment, **popen)
    return subprocess.run(cmd, env=environment, capture_output=True, text=True, timeout=time_limit(900))


def install_plugin(root: Path) -> Path:
    """The test plugin (a guidance method and a model family) installed by pip into ``root / "site"``."""
    source = root / "src"
    shutil.copytree(PLUGIN, source)
    target = root / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(source)],
        check=True, timeout=time_limit(300),
    )  # fmt: skip
    assert any(target.glob("softcfg_sharpen-*.dist-info/entry_points.txt"))
    return target


def small_config(checkpoint: Path) -> dict:
    """The shared sweep: the built-in methods on a random-weight digits model, two shards per run."""
    return {
        "results": "results",
        "models": {"tiny": {"family": "digits", "checkpoint": str(checkpoint)}},
        "methods": {
            "none": {"name": "none"},
            "cfg": {"name": "cfg"},
            "softcfg": {"name": "softcfg", "step_norm": False},
            "softcfg_stepnorm": {"name": "softcfg"},
            "softcfg_stepnorm_kv": {"name": "softcfg", "target": "kv", "gamma": [2.0], "k": [1.0]},
        },
        "grid": {"gamma": [2.0], "k": [1.0]},
        "sampling": {"samples_per_run": 40, "shard_size": 20, "batch_size": 10, "shards_per_job": 1},
        "metrics": {"kid_subset_size": 20},
        "focus": {"gamma": 2.0, "k": 1.0},
    }


def shared_config(checkpoint: Path) -> dict:
    """``small_config`` plus the installed plugin's method, with an option of its own."""
    config = small_config(checkpoint)
    config["methods"]["sharp"] = {"name": "sharpened_cfg", "sharpen": 2.0}
    return config
