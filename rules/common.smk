# Validation of the config and the input functions every rule uses. The package's validation runs first
# (its messages name the offending key); the JSON schema it mirrors runs second.
import json
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from softcfg import layout
from softcfg.config import ConfigError
from softcfg.sweep import load_sweep

try:
    SWEEP = load_sweep(config)
except ConfigError as exc:
    raise WorkflowError(f"invalid config: {exc}") from None
validate(config, "../workflow/schemas/config.schema.yaml")

RESULTS = SWEEP.results
RUNS = SWEEP.runs
LOGS = RESULTS / "logs"
FOCUS_GAMMA, FOCUS_K = SWEEP.focus


wildcard_constraints:
    run=r"[A-Za-z0-9_.+\-]+",
    model=r"[A-Za-z0-9_.+\-]+",
    shard=r"\d{4}",


def shard_files(run, suffix=".npz"):
    return [
        layout.shard(RESULTS, run, i).with_suffix(suffix) for i in range(RUNS[run].num_shards)
    ]


def stage_resources(stage):
    """A stage's cluster resources (config.yaml `resources`), named as both SLURM executors read them."""
    r = SWEEP.resources[stage]
    out = {"gpu": r["gpu"], "mem_mb": r["mem_mb"], "runtime": r["runtime"]}
    for key, name in (("partition", "slurm_partition"), ("constraint", "constraint"), ("extra", "slurm_extra")):
        if key in r:
            out[name] = r[key]
    return out


EXTRACTION = f"--batch-size {SWEEP.feature_batch_size} --device {SWEEP.feature_device}"
REFERENCE_SIZE = " ".join(map(str, SWEEP.reference_size)) if SWEEP.reference_size else ""


def metric_inputs(run):
    """(sample features, reference features) of a run: one digits file, or Inception files per shard."""
    if RUNS[run].suite == "digits":
        return [layout.features(RESULTS, run)], layout.reference_features(RESULTS)
    shards = [layout.inception_features(RESULTS, run, i) for i in range(RUNS[run].num_shards)]
    return shards, layout.inception_reference(RESULTS)


def focus_runs():
    """One run per (model, method) at the focus setting (or the unguided run), for sample grids."""
    chosen = {}
    for run in RUNS.values():
        m = run.config.method
        at_focus = not m.uses_uncond or (m.gamma == FOCUS_GAMMA and m.k == FOCUS_K)
        if at_focus and m.target == "v":
            chosen.setdefault((run.model, run.method), run.id)
    return chosen


def all_targets():
    targets = [layout.metrics_table(RESULTS), layout.steps_table(RESULTS)]
    targets += [RESULTS / "tables" / f"{t}.{ext}" for t in SWEEP.tables for ext in ("md", "tex")]
    targets += [RESULTS / "figures" / f"{f}.{ext}" for f in SWEEP.figures for ext in ("png", "pdf")]
    return targets
