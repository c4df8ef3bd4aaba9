"""Run configuration: one model entry, one method entry and the sampling entry, validated up front.

The dataclass defaults are the single source of defaults. Unknown keys, wrong types and out-of-range
values raise ``ConfigError`` naming the offending key, before any model is loaded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from softcfg.guidance import CONFIDENCES, SCHEDULES, TARGETS, schedule_scales

METHODS = ("none", "cfg", "softcfg")
SOFTCFG_KEYS = ("confidence", "target", "step_norm", "strength", "floor", "eps")
GUIDANCE_KEYS = ("gamma", "k", "schedule", "interval")
DTYPES = ("fp32", "bf16", "fp16")


class ConfigError(ValueError):
    """A user-facing configuration problem; the message names the key."""


@dataclass(frozen=True)
class ModelEntry:
    """Which generator to load: ``family`` names an adapter, ``checkpoint`` its weights.

    ``size`` names the family's preset dimensions (e.g. AliTok B/L/XL); ``dim``/``depth``/``heads``
    override them (small random-weight models of the same architecture); ``tokenizer`` is the image
    decoder's checkpoint.
    """

    family: str
    checkpoint: str
    size: str | None = None
    tokenizer: str | None = None
    device: str = "cpu"
    dtype: str = "fp32"
    dim: int | None = None
    depth: int | None = None
    heads: int | None = None
    compile: bool = False  # torch.compile the one-token decode step (dynamic shapes: one graph)


@dataclass(frozen=True)
class MethodEntry:
    """A guidance method and its options, in the papers' vocabulary.

    ``gamma`` is the scale s of ``l_u + s (l_c - l_u)`` (the samplers' convention; the paper's g is s - 1).
    """

    name: str
    gamma: float = 1.0
    k: float = 0.0
    schedule: str = "cosine"
    interval: tuple[float, float] | None = None
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    confidence: str = "cond_max"
    target: str = "v"
    step_norm: bool = True
    strength: float = 1.0
    floor: float = 0.05
    eps: float = 1e-5

    @property
    def uses_uncond(self) -> bool:
        """Whether the unconditional branch runs (the doubled [cond; uncond] batch)."""
        return self.name != "none"

    @property
    def perturbs_cache(self) -> bool:
        """Whether SoftCFG weights enter the uncond branch's attention."""
        return self.name == "softcfg"

    def to_dict(self) -> dict[str, Any]:
        """The keys that mean something for this method (what ``parse_method`` accepts back)."""
        data = dataclasses.asdict(self)
        dropped = (GUIDANCE_KEYS if not self.uses_uncond else ()) + (
            SOFTCFG_KEYS if not self.perturbs_cache else ()
        )
        return {k: v for k, v in data.items() if k not in dropped}

    def scales(self, num_steps: int) -> list[float]:
        return schedule_scales(self.schedule, self.gamma, num_steps, self.k, self.interval)


@dataclass(frozen=True)
class SamplingEntry:
    """Seeds and sizes; sampling is deterministic from (seed, shard index, shard size, batch size)."""

    seed: int = 0
    shard_size: int = 100
    batch_size: int = 100
    diagnostics: bool = True


@dataclass(frozen=True)
class RunInfo:
    """Where a run sits in a sweep: its id and the sweep's names of its model and method."""

    id: str
    model: str
    method: str


@dataclass(frozen=True)
class RunConfig:
    model: ModelEntry
    method: MethodEntry
    sampling: SamplingEntry = field(default_factory=SamplingEntry)
    run: RunInfo | None = None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["method"] = self.method.to_dict()
        return data

    def config_hash(self) -> str:
        """sha256 (12 hex digits) of what determines the samples: model, method and sampling entries."""
        data = {k: v for k, v in self.to_dict().items() if k != "run"}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


def _check_type(value: Any, annotation: Any, where: str) -> Any:
    """Coerce ints to floats where a float is expected; reject anything else of the wrong type."""
    origin = typing.get_origin(annotation)
    if origin in (types.UnionType, typing.Union):
        if value is None:
            return None
        (inner,) = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _check_type(value, inner, where)
    if origin is tuple:
        args = typing.get_args(annotation)
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise ConfigError(f"{where} must be a list of {len(args)} numbers, got {value!r}")
        return tuple(
            _check_type(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))
        )
    if annotation is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if annotation is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if annotation in (str, bool) and isinstance(value, annotation):
        return value
    raise ConfigError(f"{where} must be of type {annotation.__name__}, got {value!r}")


def _reject_unknown(data: dict, allowed: Iterable[str], where: str) -> None:
    allowed = list(allowed)
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ConfigError(f"unknown key {where}.{unknown[0]} (allowed: {', '.join(allowed)})")


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    _reject_unknown(data, fields, where)
    values = {}
    for name, f in fields.items():
        if name in data:
            values[name] = _check_type(data[name], hints[name], f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing key {where}.{name}")
    return cls(**values)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def parse_method(data: Any, where: str = "method") -> MethodEntry:
    if isinstance(data, dict) and "preset" in data:
        data = apply_preset(data, where)
    m = _build(MethodEntry, data, where)
    _require(m.name in METHODS, f"{where}.name: unknown method {m.name!r} (expected one of {METHODS})")
    given = set(data)
    if m.name == "none":
        extra = sorted(given & set(GUIDANCE_KEYS + SOFTCFG_KEYS))
        _require(not extra, f"{where}.{extra[0] if extra else ''}: method 'none' runs no guidance")
    if m.name == "cfg":
        extra = sorted(given & set(SOFTCFG_KEYS))
        _require(not extra, f"{where}.{extra[0] if extra else ''}: only method 'softcfg' takes this key")
    _require(m.gamma >= 0, f"{where}.gamma must be >= 0, got {m.gamma}")
    _require(m.k >= 0, f"{where}.k must be >= 0, got {m.k}")
    _require(
        m.schedule in SCHEDULES, f"{where}.schedule: unknown {m.schedule!r} (expected {sorted(SCHEDULES)})"
    )
    if m.interval is not None:
        lo, hi = m.interval
        _require(
            0 <= lo < hi <= 1, f"{where}.interval must satisfy 0 <= lo < hi <= 1, got {list(m.interval)}"
        )
    _require(m.temperature > 0, f"{where}.temperature must be > 0, got {m.temperature}")
    _require(m.top_k >= 0, f"{where}.top_k must be >= 0, got {m.top_k}")
    _require(0 < m.top_p <= 1, f"{where}.top_p must be in (0, 1], got {m.top_p}")
    _require(
        m.confidence in CONFIDENCES,
        f"{where}.confidence: unknown {m.confidence!r} (expected {sorted(CONFIDENCES)})",
    )
    _require(m.target in TARGETS, f"{where}.target: unknown {m.target!r} (expected {TARGETS})")
    _require(m.strength >= 0, f"{where}.strength must be >= 0, got {m.strength}")
    _require(0 <= m.floor <= 1, f"{where}.floor must be in [0, 1], got {m.floor}")
    _require(m.eps > 0, f"{where}.eps must be > 0, got {m.eps}")
    return m


def apply_preset(data: dict, where: str) -> dict:
    """``preset: alitok-XL`` fills gamma, k and temperature with the upstream defaults; given keys win."""
    from softcfg.models import PRESETS

    data = dict(data)
    name = data.pop("preset")
    _require(name in PRESETS, f"{where}.preset: unknown {name!r} (expected one of {sorted(PRESETS)})")
    _require(data.get("name") != "none", f"{where}.preset: method 'none' runs no guidance")
    return {**PRESETS[name], **data}


def parse_model(data: Any, where: str = "model", check_files: bool = True) -> ModelEntry:
    from softcfg.models import FAMILIES, FAMILY_SIZES

    m = _build(ModelEntry, data, where)
    _require(m.family in FAMILIES, f"{where}.family: unknown {m.family!r} (expected {sorted(FAMILIES)})")
    _require(m.dtype in DTYPES, f"{where}.dtype: unknown {m.dtype!r} (expected {DTYPES})")
    if check_files:
        _require(Path(m.checkpoint).is_file(), f"{where}.checkpoint: file not found: {m.checkpoint}")
        if m.tokenizer is not None:
            _require(Path(m.tokenizer).is_file(), f"{where}.tokenizer: file not found: {m.tokenizer}")
    for key in ("dim", "depth", "heads"):
        value = getattr(m, key)
        _require(value is None or value >= 1, f"{where}.{key} must be >= 1, got {value}")
    sizes = FAMILY_SIZES.get(m.family)
    if sizes is None:
        _require(m.size is None, f"{where}.size: family {m.family!r} has no sizes")
    else:
        _require(
            m.size in sizes or (m.size is None and None not in (m.dim, m.depth)),
            f"{where}.size: expected one of {sorted(sizes)} (or dim and depth), got {m.size!r}",
        )
    return m


def parse_sampling(data: Any, where: str = "sampling") -> SamplingEntry:
    s = _build(SamplingEntry, data, where)
    _require(s.seed >= 0, f"{where}.seed must be >= 0, got {s.seed}")
    _require(s.shard_size >= 1, f"{where}.shard_size must be >= 1, got {s.shard_size}")
    _require(s.batch_size >= 1, f"{where}.batch_size must be >= 1, got {s.batch_size}")
    return s


def parse_run_config(data: Any, where: str = "config", check_files: bool = True) -> RunConfig:
    allowed = ("model", "method", "sampling", "run")
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping with keys {', '.join(allowed)}")
    _reject_unknown(data, allowed, where)
    _require("model" in data, f"missing key {where}.model")
    _require("method" in data, f"missing key {where}.method")
    return RunConfig(
        model=parse_model(data["model"], check_files=check_files),
        method=parse_method(data["method"]),
        sampling=parse_sampling(data.get("sampling", {})),
        run=_build(RunInfo, data["run"], "run") if data.get("run") is not None else None,
    )


def load_run_config(path: str | Path) -> RunConfig:
    """Read and validate a RUN.yaml; every problem is a ConfigError naming the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    try:
        return parse_run_config(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
