"""The base of every config entry: typed options, validated once, errors that name the key.

Every entry (model, method, sampling, metrics, the workflow's sweep) is a pydantic model derived from
``Options``: defaults live on the fields, unknown keys are refused by name, types are checked strictly
(``true`` is not a number, ``2.5`` is not an integer). Numbers are read as users write them: YAML 1.1
loaders (PyYAML, Snakemake) read ``1e-5`` as a string, so float fields also accept a string that is a
YAML 1.2 / JSON number. This module imports neither torch nor numpy, so the Snakefile's parse stays light.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

import yaml
from annotated_types import Ge, Le
from pydantic import AllowInfNan, BaseModel, BeforeValidator, ConfigDict, Field, Strict, ValidationError


class UserError(ValueError):
    """Bad input from the user (a config, checkpoint, shard or argument): reported as one line."""


class ConfigError(UserError):
    """A configuration problem; the message names the offending key."""


def takes_list(annotation: Any) -> bool:
    """Whether an option's type is itself a list (e.g. CFG's ``interval``): a list given for it is its
    value, not a sweep over values."""
    origin = get_origin(annotation)
    if origin in (list, tuple):
        return True
    return origin in (Union, UnionType, Annotated) and any(takes_list(a) for a in get_args(annotation))


def first_line(exc: Exception) -> str:
    """A library's error as a one-line message quotes it (transformers' run over several lines)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


# A YAML 1.2 float: 1e-5, .5, 1.0E+3, -2 (YAML 1.1 needs a dot and a signed exponent).
_NUMBER = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")


def _yaml12_number(value: Any) -> Any:
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        return float(value)
    return value


Float = Annotated[float, BeforeValidator(_yaml12_number), Strict(), AllowInfNan(False)]
"""A finite float as users write it in YAML (``1e-5`` included); integers are widened, booleans, .inf
and .nan refused."""
NonNegativeFloat = Annotated[float, Ge(0), BeforeValidator(_yaml12_number), Strict(), AllowInfNan(False)]
"""``Float`` >= 0, for list items (a constraint after the validator would not reach the schema)."""
MAX_SCALE = 1e4
Scale = Annotated[float, AllowInfNan(False), Ge(0), Le(MAX_SCALE), BeforeValidator(_yaml12_number), Strict()]
"""A guidance scale, at most ``MAX_SCALE``: logits are float32, so ``s (l_c - l_u)`` overflows to inf (and
the guided distribution to NaN) near 1e38 / gap; beyond 1e4 any logit gap a model gives (1e-2 already
makes 100 nats) turns the guided distribution into an argmax, so a larger scale is a typo."""
MIN_TEMPERATURE = 1e-4
"""Logits divided by less overflow float32 the same way; below it sampling is argmax already."""
Seed = Annotated[int, Ge(0), Le(2**63 - 1), Strict()]
"""A seed every stage can store: torch's generators and the Parquet tables' int64 columns."""


class Options(BaseModel):
    """Frozen, strict, closed: the shared rules of every config entry."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, validate_default=True)


EntryT = TypeVar("EntryT", bound=BaseModel)


def key_text(key: Any) -> str:
    """A config key as a message names it: as written where it is a plain name, else quoted, so that a
    key with a newline or a space cannot break the message's one line."""
    return str(key) if re.fullmatch(r"[A-Za-z0-9_\-]+", str(key)) else repr(key)


def value_text(value: Any, chars: int = 80) -> str:
    """A refused value as a message quotes it: its repr, cut at ``chars`` characters."""
    text = repr(value)
    return text if len(text) <= chars else text[: chars - 3] + "..."


def _location(where: str, loc: tuple) -> str:
    """``where`` plus pydantic's location, list indices as ``[i]``, union branch tags dropped."""
    text = where
    for item in loc:
        if isinstance(item, int):
            text += f"[{item}]"
        elif not str(item).startswith(("function-", "tagged-union")):
            text += f".{key_text(item)}" if text else key_text(item)
    return text


def error_message(exc: ValidationError, where: str) -> str:
    """pydantic's first error as one line: ``method.gama: unknown key`` or ``method.gamma: must be ...``."""
    error = exc.errors(include_url=False)[0]
    key = _location(where, tuple(error["loc"]))
    kind, message = error["type"], error["msg"]
    if kind == "extra_forbidden":
        return f"unknown key {key}"
    if kind == "missing":
        return (
            f"{key}: missing" if error["loc"] and isinstance(error["loc"][-1], int) else f"missing key {key}"
        )
    if kind in ("value_error", "assertion_error"):  # our validators' messages say what they got
        message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
        field, sep, rest = message.partition(": ")  # an entry's check names its key: "size: ..."
        if sep and field.isidentifier():
            return f"{key}.{field}: {rest}"
        return f"{key}: {message}"
    return f"{key}: {message}, got {value_text(error['input'])}" if "input" in error else f"{key}: {message}"


def validate(cls: type[EntryT], data: Any, where: str) -> EntryT:
    """Build ``cls`` from plain data; any problem is a ConfigError naming ``where.key``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {value_text(data)}")
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(error_message(exc, where)) from None


def read_yaml(path: str | Path) -> Any:
    """A YAML file as plain data; a missing or unparsable file is a ConfigError naming it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc


__all__ = [
    "MAX_SCALE",
    "MIN_TEMPERATURE",
    "ConfigError",
    "Field",
    "Float",
    "NonNegativeFloat",
    "Options",
    "Scale",
    "UserError",
    "error_message",
    "read_yaml",
    "validate",
]
