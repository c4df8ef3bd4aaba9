"""Every config entry, typed, with its defaults in one place: a run's model, method and sampling entries
(RUN.yaml) and the workflow's sweep (config.yaml). The JSON schema under workflow/schemas/ is generated
from these models (``softcfg schema``).

Validation happens here, before any model is loaded or any job is planned; problems are ConfigErrors
naming the key. Guidance methods and model families come from their registries
(``softcfg.methods``, ``softcfg.models.registry``), which sit below this module.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import NonNegativeInt, PositiveInt, field_validator, model_validator
from pydantic_core.core_schema import ValidationInfo

from softcfg.methods import GuidanceMethod, parse_method
from softcfg.metrics import METRICS, PR_MODES, metric_names
from softcfg.models.registry import get_family
from softcfg.options import (
    ConfigError,
    Field,
    Float,
    NonNegativeFloat,
    Options,
    Scale,
    Seed,
    UserError,
    key_text,
    read_yaml,
    takes_list,
    validate,
)
from softcfg.report import FIGURES, TABLES

if TYPE_CHECKING:
    from softcfg.data.prompts import PromptSet


DEVICE_PATTERN = r"^(cpu|cuda(:[0-9]+)?|mps)$"  # torch device strings a model runs on


class ModelEntry(Options):
    """Which generator to load: ``family`` names an adapter, ``checkpoint`` its weights."""

    family: str = Field(description="the model family (adapter), e.g. digits, alitok, rar")
    checkpoint: str = Field(description="the generator's weights file")
    size: str | None = Field(None, description="the family's upstream size, e.g. alitok B / L / XL")
    tokenizer: str | None = Field(None, description="the image decoder's checkpoint")
    device: str = Field(
        "cpu", pattern=DEVICE_PATTERN, description="cpu, cuda (the GPU SLURM assigned), cuda:N"
    )
    dtype: Literal["fp32", "bf16", "fp16"] = "fp32"
    dim: PositiveInt | None = Field(None, description="width, overriding the size's")
    depth: PositiveInt | None = Field(None, description="depth, overriding the size's")
    heads: PositiveInt | None = Field(None, description="attention heads, overriding the size's")
    image_size: PositiveInt | None = Field(
        None, description="generated image side in pixels, for families with several (llamagen: 256 or 384)"
    )
    eval_size: PositiveInt | None = Field(
        None,
        description="resize the decoded images to this side (bicubic, no antialias; LlamaGen evaluates its "
        "384 px models at 256); default: the generated size",
    )
    compile: bool | Literal["off", "dynamic", "static", "captured", "compiled"] = Field(
        False,
        description="the decode step: false/off eager; true/dynamic torch.compile with dynamic shapes; "
        "static (eager), captured (a CUDA graph per batch shape) or compiled (torch.compile, then a CUDA "
        "graph) run its static-shape form (softcfg.models.static_decode; gpt, digits, alitok, llamagen, rar)",
    )
    uncond_fp32: bool | None = Field(
        None,
        description="bf16/fp16 only: run the unconditional rows in float32 (exact SoftCFG, ~1.3-1.9x the "
        "decode step); a low-precision SoftCFG run must choose",
    )
    prompts: str | None = Field(
        None,
        description="text-conditioned families: the prompt set to sample, replacing class labels (GenEval "
        "metadata .jsonl, a DPG-Bench prompt folder, or a .txt file with one prompt per line)",
    )
    images_per_prompt: PositiveInt | None = Field(None, description="images sampled per prompt (default 1)")

    @field_validator("family")
    @classmethod
    def _known_family(cls, family: str) -> str:
        try:
            get_family(family)
        except ConfigError as exc:
            raise ValueError(str(exc).partition(": ")[2]) from None
        return family

    @field_validator("compile", mode="before")
    @classmethod
    def _compile_aliases(cls, value: Any) -> Any:
        """off and dynamic are the old false and true, stored so: config hashes do not change."""
        if isinstance(value, bool) or value in ("static", "captured", "compiled"):
            return value
        if value in ("off", "dynamic"):
            return value == "dynamic"
        modes = "false | true | off | dynamic | static | captured | compiled"
        raise ValueError(f"expected {modes}, got {value!r}")

    @field_validator("size")
    @classmethod
    def _known_size(cls, size: str | None, info: ValidationInfo) -> str | None:
        family = info.data.get("family")
        if family is None:
            return size
        sizes = get_family(family).sizes
        if size is not None and size not in sizes:
            raise ValueError(
                f"expected one of {list(sizes)} for family {family!r}, got {size!r}"
                if sizes
                else f"family {family!r} has no sizes"
            )
        return size

    @model_validator(mode="after")
    def _image_sizes(self) -> ModelEntry:
        family = get_family(self.family)
        sizes, step = family.image_sizes, family.image_size_step
        if step:
            if self.image_size is not None and self.image_size % step:
                raise ValueError(
                    f"image_size: family {self.family!r} generates multiples of {step} px, "
                    f"got {self.image_size}"
                )
            if self.eval_size is not None:
                raise ValueError(f"eval_size: family {self.family!r} writes images at the generated size")
            return self
        if not sizes:
            for key in ("image_size", "eval_size"):
                if getattr(self, key) is not None:
                    raise ValueError(f"{key}: family {self.family!r} generates one image size only")
            return self
        if self.image_size is None:
            raise ValueError(
                f"image_size: family {self.family!r} needs one of {list(sizes)} (the checkpoint's)"
            )
        if self.image_size not in sizes:
            raise ValueError(
                f"image_size: expected one of {list(sizes)} for family {self.family!r}, got {self.image_size}"
            )
        if self.eval_size is not None and self.eval_size > self.image_size:
            raise ValueError(
                f"eval_size: {self.eval_size} is larger than image_size {self.image_size} (only downsizing)"
            )
        return self

    @model_validator(mode="after")
    def _prompt_set(self) -> ModelEntry:
        """Prompts for text families only; a sweep (and sampling) requires them there."""
        if get_family(self.family).conditioning != "text":
            for key in ("prompts", "images_per_prompt"):
                if getattr(self, key) is not None:
                    raise ValueError(f"{key}: family {self.family!r} is not text-conditioned")
        return self

    @property
    def per_prompt(self) -> int:
        return self.images_per_prompt or 1

    def prompt_set(self, where: str = "model") -> PromptSet:
        """The entry's prompt set, read and checked (a ConfigError naming the file and line)."""
        from softcfg.data.prompts import read_prompts

        try:
            return read_prompts(self.prompts)
        except UserError as exc:
            raise ConfigError(f"{where}.prompts: {exc}") from None

    def check_prompts(self, where: str = "model", trained: bool = False) -> PromptSet:
        """The prompt set, each prompt checked against the family's tokenizer and length limit (read from
        its tokenizer files, not its weights); ``trained``: the workflow trains the checkpoint."""
        from softcfg.data.prompts import check_prompts

        prompts = self.prompt_set(where)
        try:
            reader = get_family(self.family).read_prompts_for(self, trained)
        except UserError as exc:  # the loaders' messages name "model.<key>"
            message = str(exc)
            raise ConfigError(f"{where}{message[5:]}" if message.startswith("model.") else message) from None
        if reader is not None:
            try:
                check_prompts(prompts, reader)
            except UserError as exc:
                raise ConfigError(f"{where}.prompts: {exc}") from None
        return prompts

    @model_validator(mode="after")
    def _precision_choice(self) -> ModelEntry:
        if self.dtype == "fp32" and self.uncond_fp32 is not None:
            raise ValueError("uncond_fp32: only for dtype bf16 or fp16 (fp32 rows are float32 already)")
        if self.uncond_fp32 and get_family(self.family).next_scale:  # its split runs decode(), not feed()
            raise ValueError("uncond_fp32: not available for next-scale families; use dtype fp32")
        return self

    @model_validator(mode="after")
    def _size_or_dims(self) -> ModelEntry:
        family = get_family(self.family)
        sized = family.sizes and not family.checkpoint_folder
        if sized and self.size is None and None in (self.dim, self.depth):
            sizes = list(family.sizes)
            raise ValueError(f"size: give one of {sizes} (or dim and depth)")
        return self

    def check_files(self, where: str = "model") -> None:
        """The checkpoint (and tokenizer) exist; called where they must already be on disk."""
        for key in ("checkpoint", "tokenizer"):
            path = getattr(self, key)
            folder = key == "checkpoint" and get_family(self.family).checkpoint_folder
            if path is not None and not (Path(path).is_dir() if folder else Path(path).is_file()):
                raise ConfigError(f"{where}.{key}: {'folder' if folder else 'file'} not found: {path}")
        if self.prompts is not None:
            self.prompt_set(where)


CONFIDENCE_MAPS = 8  # samples per run whose token confidences are recorded unless the config says otherwise


class ShardSizes(Options):
    """How a run's samples are cut: shards (one file each) of batches (one generation each)."""

    shard_size: PositiveInt = Field(500, description="samples per shard file")
    batch_size: PositiveInt | Literal["auto"] = Field(
        100,
        description="samples generated at once; auto: the model family's default for its size "
        "(models.registry Family.batch_sizes, sized for one 80 GB GPU; fixed per size, so sampling stays "
        "deterministic)",
    )
    diagnostics: bool = Field(True, description="per-step entropies and weight statistics in manifests")
    confidence_maps: NonNegativeInt | Literal["auto"] = Field(
        "auto",
        description="samples of shard 0 whose per-token confidences its manifest records (the "
        f"confidence heatmaps), all from its first batch; auto: {CONFIDENCE_MAPS}, or that batch's size "
        "if smaller; 0: none",
    )

    @model_validator(mode="after")
    def _maps_in_first_batch(self) -> ShardSizes:
        if self.batch_size != "auto":
            self.maps_for(self.batch_size, "")
        return self

    def maps_for(self, batch_size: int, where: str = "sampling") -> int:
        """How many confidence maps shard 0 records; a number beyond its first batch is a ConfigError
        (``where`` empty inside validation, which names the section itself)."""
        first = min(batch_size, self.shard_size)
        key = f"{where}.confidence_maps" if where else "confidence_maps"
        if self.confidence_maps == "auto":
            return min(CONFIDENCE_MAPS, first)
        if self.confidence_maps > first:
            raise ConfigError(
                f"{key}: {self.confidence_maps} samples, more than the {first} of shard 0's first batch"
                f" (batch_size {batch_size}, shard_size {self.shard_size})"
            )
        return self.confidence_maps

    def batch_for(self, model: ModelEntry, where: str = "sampling") -> int:
        """The batch size, ``auto`` read from the model family's table for the entry's size."""
        if self.batch_size != "auto":
            return self.batch_size
        family = get_family(model.family)
        size = family.batch_size(model.size, model.image_size)
        if size is None:
            known = ", ".join(f"{k}: {v}" for k, v in family.batch_sizes.items()) or "none"
            at = f" at {model.image_size} px" if family.image_sizes else ""
            raise ConfigError(
                f"{where}.batch_size: auto has no default for family {model.family!r} size {model.size!r}"
                f"{at} (defaults: {known}); give a number"
            )
        self.maps_for(size, where)
        return size


class SamplingEntry(ShardSizes):
    """Sampling is deterministic from (seed, shard index, shard size, batch size)."""

    seed: Seed = 0


class RunInfo(Options):
    """Where a run sits in a sweep: its id, the sweep's names of its model and method, and the method
    options the sweep varies beyond the method's own axes (run-id order; tables group by them)."""

    id: str
    model: str
    method: str
    axes: list[str] = Field(default_factory=list)


@dataclass(frozen=True)
class RunConfig:
    """One run: a model, a method (any registered one) and sampling, as RUN.yaml holds them."""

    model: ModelEntry
    method: GuidanceMethod
    sampling: SamplingEntry = field(default_factory=SamplingEntry)
    run: RunInfo | None = None

    def __post_init__(self) -> None:
        check_precision(self.model, self.method)
        self.sampling.batch_for(self.model)  # auto must have a default for the model
        if self.method.top_p_rule is None:  # the family's upstream rule, written into RUN.yaml
            rule = get_family(self.model.family).top_p_rule
            object.__setattr__(self, "method", self.method.model_copy(update={"top_p_rule": rule}))

    def to_dict(self) -> dict[str, Any]:
        """As RUN.yaml holds it; a run without option axes records none (its RUN.yaml as before)."""
        parts = {"model": self.model, "method": self.method, "sampling": self.sampling}
        out = {k: v.model_dump(mode="json") for k, v in parts.items()}
        out["run"] = None if self.run is None else self.run.model_dump(mode="json", exclude_defaults=True)
        return out

    def config_hash(self) -> str:
        """sha256 (12 hex digits) of what determines the samples: model, method and sampling entries."""
        data = {k: v for k, v in self.to_dict().items() if k != "run"}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


def check_precision(model: ModelEntry, method: GuidanceMethod, where: str = "model") -> None:
    """A bf16/fp16 run of a cache-perturbing method must say whether its unconditional rows run in
    float32: in bf16 the perturbation falls below the rounding of the activations after a few dozen
    steps (README, "bf16 and fp16"), so neither choice is safe to make silently."""
    if method.perturbs_cache and model.dtype != "fp32" and model.uncond_fp32 is None:
        raise ConfigError(
            f"{where}.uncond_fp32: a {model.dtype} {method.name} run must choose: true runs the "
            "unconditional rows in float32 (exact perturbation, about 1.3-1.9x the decode step), false "
            f"keeps them {model.dtype} (its late-step perturbation is mostly rounding noise)"
        )


def parse_model(data: Any, where: str = "model", check_files: bool = True) -> ModelEntry:
    """A model entry, with its files checked unless they are another job's output."""
    model = validate(ModelEntry, data, where)
    if check_files:
        model.check_files(where)
    return model


def parse_run_config(data: Any, where: str = "config", check_files: bool = True) -> RunConfig:
    allowed = ("model", "method", "sampling", "run")
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping with keys {', '.join(allowed)}")
    unknown = [key for key in data if key not in allowed]
    if unknown:
        raise ConfigError(f"unknown key {where}.{key_text(unknown[0])} (allowed: {', '.join(allowed)})")
    for key in ("model", "method"):
        if key not in data:
            raise ConfigError(f"missing key {where}.{key}")
    return RunConfig(
        model=parse_model(data["model"], check_files=check_files),
        method=parse_method(data["method"]),
        sampling=validate(SamplingEntry, data.get("sampling") or {}, "sampling"),
        run=validate(RunInfo, data["run"], "run") if data.get("run") is not None else None,
    )


def load_run_config(path: str | Path, check_files: bool = True) -> RunConfig:
    """Read and validate a RUN.yaml; every problem is a ConfigError naming the file and the key.

    ``check_files=False`` where the run's record is needed but not its checkpoint (metrics, tables)."""
    data = read_yaml(path)
    try:
        return parse_run_config(data, check_files=check_files)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


# ---- the workflow's config.yaml ---------------------------------------------------------------------


class SweepModelEntry(ModelEntry):
    """A model of the sweep: a checkpoint on disk, or (``train: true``) one the workflow trains."""

    checkpoint: str | None = Field(None, description="weights file (not for trained models)")
    train: bool = Field(False, description="train this model in the workflow (trainable families)")
    train_seed: Seed = Field(0, description="seed of that training")

    @model_validator(mode="after")
    def _trained_or_given(self) -> SweepModelEntry:
        if self.train and not get_family(self.family).trainable:
            raise ValueError(f"train: the workflow cannot train family {self.family!r}")
        if self.train and self.checkpoint is not None:
            raise ValueError("checkpoint: a trained model's checkpoint is the workflow's output")
        if not self.train and self.checkpoint is None:
            raise ValueError("checkpoint: give the weights file (or train: true)")
        return self

    def entry(self, checkpoint: str | None = None) -> ModelEntry:
        """The run-level model entry, with the trained checkpoint's path where the workflow trains it."""
        data = self.model_dump(exclude={"train", "train_seed"})
        return ModelEntry(**{**data, "checkpoint": checkpoint or self.checkpoint})


SHARDS_PER_JOB = 25  # 25,000 samples a job at the paper's shard size: minutes of GPU work


class SweepSampling(ShardSizes):
    """Sizes shared by every run of the sweep; seeds are the top-level list ``seeds``."""

    samples_per_run: PositiveInt = Field(1000, description="a multiple of shard_size")
    shards_per_job: PositiveInt | Literal["all"] = Field(
        SHARDS_PER_JOB,
        description="shards one sample (and Inception features) job writes; 'all': one job per run",
    )

    @field_validator("shards_per_job", mode="before")
    @classmethod
    def _per_job(cls, value: Any) -> Any:
        if value == "all" or (type(value) is int and value > 0):
            return value
        raise ValueError(f"expected a positive integer or 'all', got {value!r}")

    @model_validator(mode="after")
    def _whole_shards(self) -> SweepSampling:
        if self.samples_per_run % self.shard_size:
            raise ValueError(
                f"samples_per_run: {self.samples_per_run} is not a multiple of shard_size ({self.shard_size})"
            )
        return self


class BootstrapEntry(Options):
    """Confidence intervals on FID, sFID, IS, precision and recall (softcfg.metrics.bootstrap): block
    bootstrap over the sample set (recall: delete-one-block jackknife), the reference fixed."""

    resamples: NonNegativeInt = Field(200, description="bootstrap draws per run; 0: no intervals")
    level: Float = Field(0.95, gt=0, lt=1, description="confidence level of the intervals")
    seed: Seed = Field(0, description="seed of the draws (the same draws for every run)")
    blocks: int = Field(
        50,
        ge=2,
        le=1000,
        description="units resampled: consecutive blocks of samples (at most one sample each); "
        "FID and sFID keep blocks x D^2 float64 in memory (1.7 GB at 50 and D = 2048)",
    )


class T2IScorer(Options):
    """The GenEval detector of text-to-image runs (``softcfg geneval --backend/--option``). The embedded
    text-to-scene model always uses the ``scenes`` backend with the workflow's digits classifier."""

    backend: str | None = Field(None, min_length=1, description="hf | mmdet | module:factory (real models)")
    options: dict[str, str] = Field(default_factory=dict, description="backend options, e.g. local weights")


class DPGScorer(T2IScorer):
    """The DPG-Bench VQA of text-to-image runs (``softcfg dpg``); the embedded model's question table is
    generated from its prompt set (``softcfg dpg-questions``)."""

    questions: str | None = Field(None, description="the official dpg_bench.csv (real models)")
    mode: Literal["compatible", "corrected"] = Field("compatible", description="softcfg.metrics.dpg")


class MetricsEntry(Options):
    """Which numbers, and how Inception-scored families are scored."""

    names: list[str] | None = Field(
        None,
        min_length=1,
        description=f"{', '.join(METRICS)} or an installed metric; default: every built-in one the sweep's "
        "extractors can give",
    )
    kid_subset_size: PositiveInt | None = Field(None, description="default: min(1000, samples_per_run)")

    @field_validator("names")
    @classmethod
    def _known_metrics(cls, names: list[str] | None) -> list[str] | None:
        known = metric_names()
        for name in names or ():
            if name not in known:
                raise ValueError(f"unknown metric {name!r} (expected one of {known})")
        return names

    reference: str | None = Field(None, description="ADM reference batch (npz) for Inception-scored models")
    inception_weights: str | None = Field(None, description="torch-fidelity's full Inception weights (IS)")
    pr_mode: Literal[PR_MODES] = Field(  # type: ignore[valid-type]
        "float32", description="precision/recall distance blocks: ADM's float32 or float16, or float64"
    )
    device: Literal["cpu", "cuda"] = "cpu"
    batch_size: PositiveInt = Field(64, description="images per Inception forward pass")
    bootstrap: BootstrapEntry = BootstrapEntry()
    geneval: T2IScorer = T2IScorer()
    dpg: DPGScorer = DPGScorer()


class StageResources(Options):
    """What one stage's jobs ask of a cluster; locally only ``cpus`` counts (threads)."""

    gpu: NonNegativeInt = 0
    cpus: PositiveInt = 1
    mem_mb: NonNegativeInt = 4000
    runtime: NonNegativeInt = Field(60, description="minutes per job")
    runtime_per_shard: NonNegativeFloat = Field(
        0, description="minutes added per shard of the job (sample, features): jobs carry groups of shards"
    )
    partition: str | None = Field(None, min_length=1)
    constraint: str | None = Field(None, min_length=1)
    extra: str | None = Field(None, min_length=1, description="further sbatch options, e.g. --qos=high")


_STAGE_DEFAULTS = {
    "train": StageResources(cpus=2),
    "sample": StageResources(gpu=1),
    "features": StageResources(gpu=1, mem_mb=8000),
    "metrics": StageResources(mem_mb=16000),
}


class Resources(Options):
    """Per stage; a stage given in config.yaml overrides only the keys it names."""

    train: StageResources = _STAGE_DEFAULTS["train"]
    sample: StageResources = _STAGE_DEFAULTS["sample"]
    features: StageResources = _STAGE_DEFAULTS["features"]
    metrics: StageResources = _STAGE_DEFAULTS["metrics"]

    @model_validator(mode="before")
    @classmethod
    def _over_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        return {
            stage: {**_STAGE_DEFAULTS[stage].model_dump(exclude_none=True), **given}
            if stage in _STAGE_DEFAULTS and isinstance(given, dict)
            else given
            for stage, given in data.items()
        }


class Grid(Options):
    """Default values of the swept options (a method entry's own lists replace them)."""

    gamma: list[Scale] = Field(min_length=1, description="guidance scales s")
    k: list[NonNegativeFloat] = Field([0.0], min_length=1, description="cosine powers; 0 = constant")


class Focus(Options):
    """The setting of the ablation/target tables, entropy curves and sample grids."""

    gamma: Float
    k: Float


class PromptSamples(Options):
    """The ``prompt_samples`` figure's rows: prompts of each text model's prompt set, by index."""

    prompts: list[NonNegativeInt] | None = Field(
        None, min_length=1, description="prompt indices; default: the first prompt of each GenEval tag"
    )


class FigureOptions(Options):
    prompt_samples: PromptSamples = PromptSamples()


NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]*"  # model and method names: run ids, folder names, shell words


class WorkflowConfig(Options):
    """config.yaml: models x methods x grid x seeds, how runs are sampled, scored and reported."""

    results: str = Field("results", description="folder for every output")
    models: dict[str, SweepModelEntry] = Field(min_length=1, description="name -> model entry")
    methods: dict[str, dict[str, Any]] = Field(
        min_length=1, description="name -> method entry; lists of swept options replace the grid"
    )
    grid: Grid
    seeds: list[Seed] = Field([0], min_length=1)
    sampling: SweepSampling = SweepSampling()
    metrics: MetricsEntry = MetricsEntry()
    tables: list[Literal[TABLES]] = Field(default_factory=lambda: list(TABLES))  # type: ignore[valid-type]
    figures: list[Literal[FIGURES]] = Field(default_factory=lambda: list(FIGURES))  # type: ignore[valid-type]
    figure_options: FigureOptions = FigureOptions()
    focus: Focus | None = Field(None, description="default: the middle gamma and the last k of the grid")
    resources: Resources = Resources()

    @field_validator("models", "methods")
    @classmethod
    def _names(cls, entries: dict[str, Any]) -> dict[str, Any]:
        """A name becomes part of paths under ``results`` and of the rules' command lines."""
        for name in entries:
            if not re.fullmatch(NAME_PATTERN, name):
                raise ValueError(
                    f"name {name!r}: use letters, digits, '_', '.' and '-', starting with a letter or digit "
                    "(it becomes a folder name under results and a word of the rules' command lines)"
                )
        return entries

    @field_validator("sampling", mode="before")
    @classmethod
    def _no_seed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "seed" in data:
            raise ValueError("seed: give seeds as the top-level list config.seeds")
        return data

    @model_validator(mode="after")
    def _maps_for_the_figure(self) -> WorkflowConfig:
        if "confidence_maps" in self.figures and self.sampling.confidence_maps == 0:
            raise ValueError(
                "figures: confidence_maps draws the maps sampling.confidence_maps records, and that is 0 "
                "(record some, or leave the figure out of figures)"
            )
        return self


def workflow_schema() -> dict[str, Any]:
    """The JSON schema of config.yaml, generated from ``WorkflowConfig`` and the method registry.

    Method entries are one of the package's own methods' options (an installed plugin's are not part of
    the committed schema), where each scalar option may also be a list (a sweep axis; gamma and k then
    replace the grid for that method; in the ``ssg`` sub-entry: beta and prior), plus an optional
    upstream ``preset`` and the ``models`` the method runs on.
    """
    from softcfg.methods import BUILTIN_METHODS, method_class
    from softcfg.methods.ssg import SWEPT
    from softcfg.models.registry import presets

    def listable(properties: dict[str, Any], keys: Any) -> None:
        for key in keys:
            if key in properties:
                one = properties[key]
                properties[key] = {"anyOf": [one, {"type": "array", "items": one, "minItems": 1}]}

    schema = WorkflowConfig.model_json_schema()
    definitions = schema.setdefault("$defs", {})
    variants = []
    for name in BUILTIN_METHODS:
        cls = method_class(name)
        options = cls.model_json_schema()
        definitions.update(options.pop("$defs", {}))  # refs resolve against the document's root
        properties = options["properties"]
        scalar = [key for key, field in cls.model_fields.items() if not takes_list(field.annotation)]
        listable(properties, [key for key in scalar if key not in ("name", "ssg")])
        properties["preset"] = {"enum": sorted(presets()), "description": "upstream sampler's defaults"}
        properties["models"] = {
            "type": "array",
            "items": {"type": "string"},
            "minItems": 1,
            "description": "the models (config.models names) this method runs on; default: all",
        }
        options["required"] = ["name", *options.get("required", [])]
        variants.append(options)
    if "SSG" in definitions:
        listable(definitions["SSG"]["properties"], SWEPT)
    schema["properties"]["methods"]["additionalProperties"] = {"oneOf": variants}
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
