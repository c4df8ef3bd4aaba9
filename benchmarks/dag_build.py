"""Time Snakemake's DAG construction for a paper-scale sweep (a benchmark, not a test).

3 models (the digits model under three names) x 8 methods x 7 gamma x 5 k x 50 shards of 1000 per run,
planned with ``snakemake --dry-run --quiet rules`` in a scratch folder: with the default grouping
(``sampling.shards_per_job``), for reference fully split (one job per shard) and with five seeds. Prints
each figure with its job count; the last line is ``dag build seconds <x>`` for the default grouping.
``--profile`` first plans the default grouping once under cProfile and prints the five functions with
the most internal time, and the share of the plan spent in this project's own code (Snakefile, rules,
the softcfg package).

    python benchmarks/dag_build.py [--skip-split] [--profile]
"""

from __future__ import annotations

import argparse
import os
import pstats
import re
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


OWN_CODE = ("Snakefile", "/rules/", "/softcfg/")  # our share of the profile: the workflow and the package


def plan(config: dict, profile: Path | None = None) -> tuple[float, int]:
    """Seconds of one dry run of ``config`` and the number of jobs it plans (profiled to ``profile``)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        python = [sys.executable] + (["-m", "cProfile", "-o", str(profile)] if profile else [])
        cmd = [*python, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", tmp,
               "--configfile", str(path), "--dry-run", "--quiet", "rules", "--cores", "1"]  # fmt: skip
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"snakemake failed:\n{proc.stderr[-3000:]}")
    total = re.search(r"^total\s+(\d+)$", proc.stdout, re.MULTILINE)
    if total is None:
        sys.exit(f"no job count in snakemake's output:\n{proc.stdout[-2000:]}")
    return seconds, int(total.group(1))


def print_profile(profile: Path) -> None:
    """The five functions with the most internal time, and the share of the plan in our own code."""
    stats = pstats.Stats(str(profile))
    total = stats.total_tt  # type: ignore[attr-defined]
    rows = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)  # type: ignore[attr-defined]
    print(f"profile of the default grouping: {total:.2f} s under cProfile; most internal time:")
    for (file, line, name), (_, calls, internal, cumulative, _) in rows[:5]:
        where = f"{Path(file).name}:{line}" if line else file
        print(f"  {internal:6.2f} s  cumulative {cumulative:6.2f} s  {calls:>8} calls  {where}({name})")
    own = sum(row[2] for (file, _, _), row in rows if any(part in file for part in OWN_CODE))
    print(f"  internal time in this project's code: {own:.2f} s ({100 * own / total:.1f} %)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-split", action="store_true", help="skip the fully split reference figure")
    parser.add_argument("--profile", action="store_true", help="print the top five of a cProfile of the plan")
    args = parser.parse_args()
    default = paper_scale_config()
    split = {**default, "sampling": {**default["sampling"], "shards_per_job": 1}}
    seeds = {**default, "seeds": [0, 1, 2, 3, 4]}
    if args.profile:
        with tempfile.TemporaryDirectory() as tmp:
            plan(default, Path(tmp) / "plan.prof")
            print_profile(Path(tmp) / "plan.prof")
    cases = [("five seeds, default grouping", seeds), ("default grouping", default)]
    if not args.skip_split:
        cases.insert(0, ("one job per shard", split))
    for name, config in cases:
        seconds, jobs = plan(config)
        print(f"{name}: {jobs} jobs, {seconds:.2f} s")
    print(f"dag build seconds {seconds:.2f}")


if __name__ == "__main__":
    main()
