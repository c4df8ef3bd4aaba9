"""Sampling time per image of each run, from Snakemake's benchmark files of its sample jobs (the SoftCFG
paper's Fig. 8: CFG against SoftCFG + step norm).

A job's wall time includes loading the model once per group of shards. A job restarted after an
interruption keeps the shards it had finished, and only its last attempt is timed, so a run that was
interrupted reads faster than it was; ``jobs`` and ``images`` say what was timed.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from softcfg import layout


def sampling_times(results: Path, metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per run of the metrics table (its sweep columns): seconds of its sample jobs in total and
    per image; NaN where no benchmark file exists (e.g. shards written outside the workflow)."""
    per_run = [c for c in metrics.columns if c not in ("metric", "value") and not c.startswith("ci_")]
    runs = metrics[per_run].drop_duplicates("run_id").sort_values("run_id", ignore_index=True)
    jobs, seconds = [], []
    for run in runs["run_id"]:
        pattern = layout.benchmark(results, "sample", run, layout.group_name("*", "*"))
        files = sorted(pattern.parent.glob(pattern.name))
        jobs.append(len(files))
        seconds.append(
            sum(float(pd.read_csv(f, sep="\t")["s"].iloc[-1]) for f in files) if files else float("nan")
        )
    return runs.assign(
        jobs=jobs, seconds=seconds, seconds_per_image=lambda f: f["seconds"] / f["num_samples"]
    )
