"""Time Snakemake's DAG construction for a paper-scale sweep (a benchmark, not a test).

3 models (the digits model under three names) x 8 methods x 7 gamma x 5 k x 50 shards per run: about
42,000 sampling jobs. Runs ``snakemake --dry-run --quiet`` on that config in a scratch folder and prints
the wall time; the last line is ``dag build seconds <x>``.

    python benchmarks/dag_build.py
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def paper_scale_config() -> dict:
    soft = {"name": "softcfg"}
    return {
        "models": {
            name: {"family": "digits", "train": True} for name in ("digits_a", "digits_b", "digits_c")
        },
        "methods": {
            "none": {"name": "none"},
            "cfg": {"name": "cfg"},
            "cfg_linear": {"name": "cfg", "schedule": "linear"},
            "softcfg": {**soft, "step_norm": False},
            "softcfg_stepnorm": soft,
            "softcfg_stepnorm_k": {**soft, "target": "k"},
            "softcfg_stepnorm_kv": {**soft, "target": "kv"},
            "softcfg_stepnorm_sampled": {**soft, "confidence": "cond_sampled"},
        },
        "grid": {"gamma": [1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 13.0], "k": [0.0, 0.5, 1.0, 1.5, 2.75]},
        "sampling": {"samples_per_run": 50000, "shard_size": 1000, "batch_size": 250},
        "focus": {"gamma": 3.0, "k": 1.0},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(yaml.safe_dump(paper_scale_config()))
        cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", tmp,
               "--configfile", str(config), "--dry-run", "--quiet", "rules", "--cores", "1"]  # fmt: skip
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"snakemake failed:\n{proc.stderr[-3000:]}")
    print(proc.stdout.strip()[-2000:])
    print(f"dag build seconds {seconds:.2f}")


if __name__ == "__main__":
    main()
