"""Fan-out cost on the local SLURM: N trivial shard jobs through each cluster profile.

For `--profile slurm` (submitit job arrays) and `--profile slurm-sbatch` (the official plugin, one sbatch
per job) it reports the number of sbatch submissions (distinct SLURM job ids since the start, an array
counting once, read from sacct; run it on an otherwise idle cluster) and the wall time from start until
every job has finished. Each job is a Snakemake job whose rule writes one small file, so the time is the
executors' and SLURM's overhead (and each job's Snakemake start-up). Needs the cluster:
`scripts/slurm-local.sh install` and `start` (as root).

    python benchmarks/slurm_fanout.py [--jobs 400] [--poll 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = """
rule all:
    input: expand("out/shard_{{i}}.txt", i=range({jobs}))

rule shard:
    output: "out/shard_{{i}}.txt"
    resources: gpu=0, mem_mb=100, runtime=10
    shell: "echo {{wildcards.i}} > {{output}}"
"""


def submissions(since: str) -> int:
    out = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-S", since, "-o", "JobID,JobName"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return len({line.split("|")[0].split("_")[0] for line in out.splitlines() if line})  # nothing else runs


def run(profile: str, jobs: int, poll: int) -> tuple[int, float]:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "Snakefile").write_text(SNAKEFILE.format(jobs=jobs))
        cmd = [sys.executable, "-m", "snakemake", "--snakefile", f"{tmp}/Snakefile", "--directory", tmp,
               "--profile", str(REPO / profile), "--seconds-between-status-checks", str(poll)]  # fmt: skip
        if profile == "slurm-sbatch":
            cmd += ["--slurm-init-seconds-before-status-checks", str(poll)]
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        since = datetime.now().strftime("%Y-%m-%dT%H:%M:%S")
        start = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"{profile} failed:\n{proc.stderr[-3000:]}")
        assert len(list((Path(tmp) / "out").glob("shard_*.txt"))) == jobs
        time.sleep(2)  # let accounting catch up
        return submissions(since), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--poll", type=int, default=2, help="seconds between status checks")
    args = parser.parse_args()
    results = {}
    for profile in ("slurm", "slurm-sbatch"):
        calls, seconds = run(profile, args.jobs, args.poll)
        results[profile] = seconds
        print(
            f"{profile}: {args.jobs} jobs, {calls} sbatch calls, {seconds:.0f} s from start to all finished"
        )
    print(f"ratio wall time slurm/slurm-sbatch {results['slurm'] / results['slurm-sbatch']:.3f}")


if __name__ == "__main__":
    main()
