"""Model families by name: what the config needs to know about each without importing torch.

A family is an adapter to ``ARModel`` (``softcfg.models.base``); its record names the function that
builds it from a model entry (imported only when a model is loaded), its upstream sizes and image sizes,
the upstream samplers' defaults (``preset: <family>-<size>``, or ``<family>-<size>-<image size>`` where
the defaults depend on it, in a method entry), the SoftCFG paper's Table 1 rows those presets reproduce,
and which feature extractor scores its samples. Families installed under the entry-point group
``softcfg.models`` (``name = "package.module:FAMILY"``, a ``Family``) are found the same way as the
built-in ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import import_module
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from softcfg.options import ConfigError, Options

if TYPE_CHECKING:
    from softcfg.data.prompts import PromptReader
    from softcfg.models.base import ARModel
    from softcfg.training import TrainedGenerator

ENTRY_POINT_GROUP = "softcfg.models"


@dataclass(frozen=True)
class Family:
    """One model family as the config and the workflow see it."""

    name: str
    loader: str  # "package.module:function", function(entry: config.ModelEntry) -> ARModel
    sizes: tuple[str, ...] = ()  # named upstream sizes; empty: the entry gives dims (or none are needed)
    image_sizes: tuple[int, ...] = ()  # resolutions a model entry must choose from; empty: one, fixed
    image_size_step: int = 0
    """Non-zero: the family generates any multiple of this many pixels (its token count follows the
    size); ``image_sizes[0]`` is the default where an entry names none."""
    presets: Mapping[str, Mapping[str, float | str]] = field(default_factory=dict)  # size[-px] -> options
    paper_name: str = ""  # how the papers' tables name the family (AliTok-XL is "AliTok" size XL)
    top_p_rule: str = "ascending"  # its upstream sampler's nucleus cut (softcfg.guidance.cfg.TOP_P_RULES)
    paper_rows: Mapping[str, str] = field(default_factory=dict)  # preset key -> Table 1 "generator" column
    extractor: str = "inception"  # the feature extractor that scores its samples (softcfg.metrics)
    trainer: str = ""
    """``package.module:function``, function(steps, seed) -> ``softcfg.training.TrainedGenerator``: the
    workflow trains the family itself (rule train_generator, ``softcfg train --family``)."""
    conditioning: str = "class"  # its ARModel.conditioning: "text" families sample a prompt set
    next_scale: bool = False
    """Its model is a ``NextScaleModel`` (one step per scale): SSG applies to these only."""
    checkpoint_folder: bool = False
    """``checkpoint`` is a folder (transformers' ``save_pretrained``) that fixes the architecture too: a
    size is optional and only checked against it."""
    batch_sizes: Mapping[str, int] = field(default_factory=dict)
    """``sampling.batch_size: auto`` per size (``size-px`` for families with several image sizes): the
    largest power-of-two batch, at most 512, whose doubled-batch KV cache, bf16 conditional and
    float32 unconditional rows (6 bytes per slot and width per layer for k and v), stays within about
    half of an 80 GB GPU, the rest left to weights, activations and the logits; README, "GPU
    throughput"."""

    prompt_reader: str = ""
    """Text families: ``package.module:function``, function(entry: config.ModelEntry, trained: bool) ->
    ``softcfg.data.prompts.PromptReader``, read from the tokenizer files alone (no weights), so that a
    sweep names a prompt the model cannot read before the DAG is built; ``trained``: the workflow trains
    the checkpoint (it may not exist yet)."""

    def read_prompts_for(self, entry: Options, trained: bool = False) -> PromptReader | None:
        """How the entry's model reads prompts, or None where the family gives no reader."""
        if not self.prompt_reader:
            return None
        module, _, function = self.prompt_reader.partition(":")
        return getattr(import_module(module), function)(entry, trained)

    @property
    def trainable(self) -> bool:
        return bool(self.trainer)

    def train(self, steps: int | None, seed: int) -> TrainedGenerator:
        module, _, function = self.trainer.partition(":")
        return getattr(import_module(module), function)(steps, seed)

    def batch_size(self, size: str | None, image_size: int | None) -> int | None:
        """The ``auto`` batch size of a model entry's size, or None where the table has none."""
        key = f"{size}-{image_size or self.image_sizes[0]}" if self.image_sizes else size
        return self.batch_sizes.get(key) if key is not None else None

    def load(self, entry: Options) -> ARModel:
        module, _, function = self.loader.partition(":")
        return getattr(import_module(module), function)(entry)


def _llamagen_preset(cfg_scale: float) -> dict[str, float]:
    """sample_c2i_ddp.py's defaults (top-k 0, top-p 1.0, temperature 1.0, cfg-interval -1: none) with a
    constant scale (k = 0)."""
    return {"gamma": cfg_scale, "k": 0.0, "temperature": 1.0, "top_k": 0, "top_p": 1.0}


_JANUS_PRESET = {"gamma": 5.0, "k": 0.0, "temperature": 1.0, "top_k": 0, "top_p": 1.0}
# scripts/sample.sh (Alpha-VLLM/Lumina-mGPT-2.0 at f44a4d7): --cfg 4.0 --top_k 4096 --temperature 1.0
# --width 768 --height 768; inference_solver.py's CFG scale stays at 4.0 (its decay is floored there)
_LUMINA_PRESET = {"gamma": 4.0, "k": 0.0, "temperature": 1.0, "top_k": 4096, "top_p": 1.0}
# SimpleAR's scripts/eval/bench_geneval*.sh and bench_dpg*.sh (wdrink/SimpleAR at d56b6e5): --cfg-scale 6.0
# --top_k 64000 (every image code) --top_p 1.0 --temperature 1.0 --image-size 1024
_SIMPLEAR_PRESET = {"gamma": 6.0, "k": 0.0, "temperature": 1.0, "top_k": 64000, "top_p": 1.0}
_VAR_PRESET = {"gamma": 2.5, "schedule": "ramp", "top_k": 900, "top_p": 0.96, "temperature": 1.0}

_BUILTIN = (
    Family(
        "digits",
        "softcfg.models.loading:load_digits",
        extractor="digits",
        trainer="softcfg.training.digits:train_generator",
    ),
    Family(
        "digits_text",
        "softcfg.models.loading:load_digits_text",
        extractor="none",  # digit scenes: GenEval-style scoring, not the digits metric suite
        trainer="softcfg.training.digits_text:train_generator",
        conditioning="text",
        prompt_reader="softcfg.data.captions:prompt_reader",
    ),
    Family(
        "digits_scales",
        "softcfg.models.loading:load_digits_scales",
        extractor="digits",
        trainer="softcfg.training.digits_scales:train_generator",
        next_scale=True,
    ),
    Family(
        "alitok",
        "softcfg.models.loading:load_alitok",
        paper_name="AliTok",
        sizes=("B", "L", "XL"),
        # The released AliTok configs' (guidance_scale, guidance_scale_pow, temperature) per size.
        presets={
            "B": {"gamma": 16.0, "k": 1.8, "temperature": 1.0},
            "L": {"gamma": 6.0, "k": 0.7, "temperature": 1.0},
            "XL": {"gamma": 13.0, "k": 1.4, "temperature": 1.0},
        },
        batch_sizes={"B": 512, "L": 512, "XL": 256},  # KV cache 60 / 80 / 134 MB per image
    ),
    Family(
        "rar",
        "softcfg.models.loading:load_rar",
        paper_name="RAR",
        sizes=("B", "L", "XL", "XXL"),
        # RAR's README sampling settings per size: guidance_scale, guidance_scale_pow, temperature.
        presets={
            "B": {"gamma": 16.0, "k": 2.75, "temperature": 1.0},
            "L": {"gamma": 15.5, "k": 2.5, "temperature": 1.02},
            "XL": {"gamma": 6.9, "k": 1.5, "temperature": 1.02},
            "XXL": {"gamma": 8.0, "k": 1.2, "temperature": 1.02},
        },
        batch_sizes={"B": 512, "L": 512, "XL": 256, "XXL": 256},  # 57 / 76 / 126 / 174 MB per image
    ),
    Family(
        "llamagen",
        "softcfg.models.loading:load_llamagen",
        paper_name="LlamaGen",
        top_p_rule="descending",  # autoregressive/models/generate.py's top_k_top_p_filtering
        sizes=("B", "L", "XL", "XXL", "3B"),
        image_sizes=(256, 384),
        presets={
            # 384 px, evaluated at 256 (eval_size: 256): GETTING_STARTED.md's "Sampling" commands
            # (--image-size 384 --image-size-eval 256 --cfg-scale ...) at ce98ec4
            "B-384": _llamagen_preset(2.0),
            "L-384": _llamagen_preset(2.0),
            "XL-384": _llamagen_preset(1.75),
            "XXL-384": _llamagen_preset(1.75),
            "3B-384": _llamagen_preset(1.65),
            # 256 px (released for B and L only): upstream recommends no scale, so sample_c2i_ddp.py's
            # --cfg-scale default
            "B-256": _llamagen_preset(1.5),
            "L-256": _llamagen_preset(1.5),
        },
        paper_rows={"L-384": "LlamaGen-L", "3B-384": "LlamaGen-3B"},
        # KV cache per image: 256 px B 28, L 76 MB; 384 px B 64, L 170, XL 318, XXL 510, 3B 531 MB (3B:
        # 18.6 GB of bf16 + float32 weights besides)
        batch_sizes={
            "B-256": 512,
            "L-256": 512,
            "B-384": 512,
            "L-384": 256,
            "XL-384": 128,
            "XXL-384": 64,
            "3B-384": 64,
        },
    ),
    Family(
        "var",
        "softcfg.models.loading:load_var",
        paper_name="VAR",
        sizes=("d16", "d20", "d24", "d30"),
        # VAR's README FID settings at 78b9539 (cfg=1.5, top_k=900, top_p=0.96, more_smooth=False; no
        # temperature): guidance (1 + t) l_c - t l_u with t = cfg * si / 9, i.e. the ramp up to 1 + cfg.
        presets={size: _VAR_PRESET for size in ("d16", "d20", "d24", "d30")},
        next_scale=True,
    ),
    Family(
        "janus",
        "softcfg.models.loading:load_janus",
        prompt_reader="softcfg.models.loading:janus_prompt_reader",
        paper_name="Janus-Pro",
        sizes=("1B", "7B"),
        # DeepSeek's generation_inference.py and the Janus-Pro model card (deepseek-ai/Janus, Jan 2025):
        # cfg_weight=5 (l_u + 5 (l_c - l_u)), temperature=1, plain multinomial sampling (no top-k/top-p),
        # 576 image tokens at 384 px (the model's own, from its folder).
        presets={size: _JANUS_PRESET for size in ("1B", "7B")},
        checkpoint_folder=True,
        extractor="none",  # text-to-image: exported for the GenEval / DPG-Bench scorers, not Inception
        conditioning="text",
    ),
    Family(
        "lumina",
        "softcfg.models.loading:load_lumina",
        prompt_reader="softcfg.models.loading:lumina_prompt_reader",
        paper_name="Lumina-mGPT 2.0",
        sizes=("7B",),
        image_sizes=(768,),
        image_size_step=32,  # the size tokens count 32 px grids
        presets={"7B-768": _LUMINA_PRESET},
        checkpoint_folder=True,
        extractor="none",
        conditioning="text",
        # KV cache per image at 768 px: 32 layers x ~9.4k slots x 4096 x 12 bytes, about 14.8 GB
        batch_sizes={"7B-768": 2},
    ),
    Family(
        "simplear",
        "softcfg.models.loading:load_simplear",
        prompt_reader="softcfg.models.loading:simplear_prompt_reader",
        paper_name="SimpleAR",  # Table 4 names it without a size
        sizes=("0.5B", "1.5B"),
        image_sizes=(1024,),
        image_size_step=16,  # one token per 16 x 16 px
        presets={"0.5B-1024": _SIMPLEAR_PRESET, "1.5B-1024": _SIMPLEAR_PRESET},
        checkpoint_folder=True,
        extractor="none",
        conditioning="text",
        # KV cache per image at 1024 px (two key/value heads): 0.5B 24 layers x ~4.1k slots x 128 x 12
        # bytes, 152 MB; 1.5B 28 x 4.1k x 256 x 12, 356 MB
        batch_sizes={"0.5B-1024": 256, "1.5B-1024": 64},
    ),
)
_REGISTRY: dict[str, Family] = {f.name: f for f in _BUILTIN}


def register_family(family: Family) -> Family:
    if not isinstance(family, Family):
        raise TypeError(f"{family!r} is not a Family")
    if _REGISTRY.get(family.name, family) != family:
        raise ValueError(f"model family {family.name!r} is registered twice")
    _REGISTRY[family.name] = family
    return family


def _entry_points() -> dict:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def family_names() -> list[str]:
    return list(_REGISTRY) + sorted(set(_entry_points()) - set(_REGISTRY))


def get_family(name: str, where: str = "model") -> Family:
    """The family called ``name``, importing its entry point on first use."""
    if name not in _REGISTRY:
        ep = _entry_points().get(name)
        if ep is None:
            raise ConfigError(f"{where}.family: unknown {name!r} (expected one of {family_names()})")
        family = ep.load()
        if not isinstance(family, Family) or family.name != name:
            raise ConfigError(f"{where}.family: entry point {ep.value} is not a Family named {name!r}")
        register_family(family)
    return _REGISTRY[name]


def presets() -> dict[str, dict[str, float | str]]:
    """Every ``<family>-<size>`` preset of the registered families."""
    return {
        f"{family.name}-{size}": dict(options)
        for family in _REGISTRY.values()
        for size, options in family.presets.items()
    }
