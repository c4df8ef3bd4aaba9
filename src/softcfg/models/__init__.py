"""Model families, each an adapter to ``ARModel``, looked up by the config's ``family``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from softcfg.models import alitok, rar
from softcfg.models.base import ARModel
from softcfg.models.digits import load_digits_ar

if TYPE_CHECKING:
    from softcfg.config import ModelEntry


def _load_alitok(entry: ModelEntry) -> ARModel:
    base = alitok.SIZES[entry.size] if entry.size else alitok.AliTokConfig(entry.dim, entry.depth)
    overrides = {k: getattr(entry, k) for k in ("dim", "depth", "heads") if getattr(entry, k) is not None}
    return alitok.load_alitok(entry.checkpoint, dataclasses.replace(base, **overrides), entry.tokenizer)


def _load_rar(entry: ModelEntry) -> ARModel:
    if entry.size is None and entry.heads is None:
        raise ValueError("rar: give size (B, L, XL, XXL) or dim, depth and heads")
    base = rar.SIZES[entry.size] if entry.size else rar.RARConfig(entry.dim, entry.depth, 4 * entry.dim)
    overrides = {k: getattr(entry, k) for k in ("dim", "depth", "heads") if getattr(entry, k) is not None}
    return rar.load_rar(entry.checkpoint, dataclasses.replace(base, **overrides), entry.tokenizer)


FAMILIES: dict[str, Callable[[ModelEntry], ARModel]] = {
    "digits": lambda entry: load_digits_ar(entry.checkpoint),
    "alitok": _load_alitok,
    "rar": _load_rar,
}
FAMILY_SIZES: dict[str, dict] = {"alitok": alitok.SIZES, "rar": rar.SIZES}

# Upstream sampling defaults per family and size, usable as ``preset:`` in a method entry.
PRESETS: dict[str, dict[str, float]] = {
    f"{family}-{size}": {k: v for k, v in preset.items() if k in ("gamma", "k", "temperature")}
    for family, module in (("alitok", alitok), ("rar", rar))
    for size, preset in module.PRESETS.items()
}

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def load_model(entry: ModelEntry) -> ARModel:
    """Build the family's model from its checkpoint, in eval mode, on the entry's device and dtype, with
    its decode step compiled when the entry asks for it."""
    model = FAMILIES[entry.family](entry).to(device=entry.device, dtype=DTYPES[entry.dtype]).eval()
    return compile_decode(model) if entry.compile else model


def compile_decode(model: ARModel) -> ARModel:
    """torch.compile the one-token decode step. Positions and visible slots change every step, so the
    graph is dynamic: one compilation serves the whole loop."""
    model.decode = torch.compile(model.decode, dynamic=True)
    return model
