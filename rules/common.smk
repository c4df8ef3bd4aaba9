# Validation of the config and the input functions every rule uses. The package validates config.yaml
# (softcfg.config.WorkflowConfig, the source of workflow/schemas/config.schema.json) and names the
# offending key before any job is planned. Nothing here imports torch.
import json
import math
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from softcfg import layout
from softcfg.config import NAME_PATTERN, ConfigError
from softcfg.data.prompts import prompt_format
from softcfg.metrics.t2i_scoring import SCENE_BACKEND, scorings
from softcfg.sweep import RUN_ID_PATTERN, alternatives_pattern, load_sweep

try:
    SWEEP = load_sweep(config)
except ConfigError as exc:
    raise WorkflowError(f"invalid config: {exc}") from None

if SWEEP.size_note():
    print(f"softcfg: note: {SWEEP.size_note()}", file=sys.stderr)
RESULTS = SWEEP.results
RUNS = SWEEP.runs
SCORED = [run for run in RUNS if RUNS[run].scored]  # text-conditioned runs are sampled and exported
TEXT = [run for run in RUNS if RUNS[run].exported]  # runs of text models (their prompt_samples figure)
BENCHMARKS = RESULTS / "benchmarks"
FOCUS_GAMMA, FOCUS_K = SWEEP.focus
METRICS_CONFIG = SWEEP.config.metrics
try:  # per text model, the GenEval / DPG-Bench scorings of its runs (softcfg.metrics.t2i_scoring)
    _T2I_MODELS = {
        name: {
            s.benchmark: s
            for s in scorings(entry, METRICS_CONFIG, layout.classifier_checkpoint(RESULTS), f"models.{name}")
        }
        for name, entry in {r.model: r.config.model for r in RUNS.values()}.items()
    }
except ConfigError as exc:
    raise WorkflowError(f"invalid config: {exc}") from None
T2I = {run: _T2I_MODELS[RUNS[run].model] for run in RUNS if _T2I_MODELS[RUNS[run].model]}  # scored runs


wildcard_constraints:
    run=RUN_ID_PATTERN,  # a fixed pattern: a list of the sweep's ids would be copied into every job's paths
    model=NAME_PATTERN,
    first=r"\d\d\d\d+",
    last=r"\d\d\d\d+",
    layout="geneval|dpg",


def group_records(run):
    """The records of a run's sample jobs, one per group of shards."""
    return [layout.shard_group(RESULTS, run, first, last) for first, last in RUNS[run].groups]


def run_files(run):
    """The files a run's RUN.yaml depends on: checkpoint, tokenizer and prompt set, when given."""
    model = RUNS[run].config.model
    return [path for path in (model.checkpoint, model.tokenizer, model.prompts) if path is not None]


def export_folder(run, layout_name):
    """A text-conditioned run's images in a scorer's folder layout (``softcfg export``)."""
    return RESULTS / "exports" / layout_name / run


def export_targets():
    """GenEval's layout for runs of GenEval prompt sets, DPG-Bench's (a 2 x 2 grid per prompt) for runs
    with at least four images per prompt."""
    targets = []
    for run in RUNS.values():
        if run.exported:
            model = run.config.model
            if prompt_format(Path(model.prompts)) == "geneval":
                targets.append(export_folder(run.id, "geneval"))
            if model.per_prompt >= 4:
                targets.append(export_folder(run.id, "dpg"))
    return targets


def scored_on(benchmark):
    """The text-to-image runs scored on `benchmark` (geneval or dpg)."""
    return [run for run, found in T2I.items() if benchmark in found]


def scorer_inputs(run, benchmark):
    """The export, and the digits classifier where the scene backend reads it."""
    scoring = T2I[run][benchmark]
    files = [export_folder(run, benchmark)]
    if scoring.backend == SCENE_BACKEND:
        files.append(layout.classifier_checkpoint(RESULTS))
    return files


def question_table(run):
    """The official table named in the config, or the one generated for the run's model."""
    scoring = T2I[run]["dpg"]
    return scoring.questions or layout.dpg_questions(RESULTS, RUNS[run].model)


def stage_resources(stage, per_group=False):
    """A stage's cluster resources (config.yaml `resources`), named as both SLURM executors read them.
    A job of a group of shards (``per_group``) asks for ``runtime + runtime_per_shard`` x its shards."""
    r = getattr(SWEEP.resources, stage)
    out = {"gpu": r.gpu, "mem_mb": r.mem_mb, "runtime": r.runtime}
    if per_group and r.runtime_per_shard:
        out["runtime"] = lambda wc: r.runtime + math.ceil(r.runtime_per_shard * group_size(wc))
    for key, name in (("partition", "slurm_partition"), ("constraint", "constraint"), ("extra", "slurm_extra")):
        if getattr(r, key) is not None:
            out[name] = getattr(r, key)
    return out


def group_size(wildcards):
    return int(wildcards.last) - int(wildcards.first) + 1


def stage_threads(stage):
    return getattr(SWEEP.resources, stage).cpus


EXTRACTION = f"--batch-size {METRICS_CONFIG.batch_size} --device {METRICS_CONFIG.device}"
REFERENCE_SIZE = " ".join(map(str, SWEEP.reference_size)) if SWEEP.reference_size else ""


def metric_inputs(run):
    """(sample features, reference features) of a run: one file per run, or one per group of shards."""
    if RUNS[run].extractor == "digits":
        return [layout.features(RESULTS, run)], layout.reference_features(RESULTS)
    groups = [layout.inception_features(RESULTS, run, first, last) for first, last in RUNS[run].groups]
    return groups, layout.inception_reference(RESULTS)


def focus_runs(ids):
    """One run of ``ids`` per (model, method) at the focus setting (or without guidance), of the first
    seed, for sample grids."""
    chosen = {}
    for run in (RUNS[r] for r in ids):
        method, axes = run.config.method, run.config.method.axes()
        at_focus = not method.uses_uncond or (axes.get("gamma"), axes.get("k")) == (FOCUS_GAMMA, FOCUS_K)
        if at_focus and getattr(method, "target", "v") == "v":
            chosen.setdefault((run.model, run.method), run.id)
    return chosen


def prompt_shards():
    """Every shard of the text runs at the focus, ``model/method=shard``, methods in config order (the
    prompt_samples figure's columns)."""
    order = list(SWEEP.config.methods)
    chosen = sorted(focus_runs(TEXT).items(), key=lambda item: (item[0][0], order.index(item[0][1])))
    return [
        f"{model}/{method}={layout.shard(RESULTS, run, i)}"
        for (model, method), run in chosen
        for i in range(RUNS[run].num_shards)
    ]


def all_targets():
    targets = export_targets()
    if not SCORED and not T2I:
        return targets
    targets += [layout.metrics_table(RESULTS), layout.steps_table(RESULTS)]
    targets += [layout.table(RESULTS, t, ext) for t in SWEEP.config.tables for ext in ("md", "tex")]
    targets += [layout.figure(RESULTS, f, ext) for f in SWEEP.config.figures for ext in ("png", "pdf")]
    return targets
