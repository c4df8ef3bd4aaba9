"""Building a model entry's generator: the family's loader, then device, dtype, eval mode and compile."""

from __future__ import annotations

import dataclasses
from importlib import import_module
from types import ModuleType
from typing import TYPE_CHECKING

import torch

from softcfg.models import alitok, llamagen, rar, var
from softcfg.models.base import ARModel
from softcfg.models.digits import load_digits_ar
from softcfg.models.digits_scales import load_digits_scales as load_digits_scales_model
from softcfg.models.digits_text import load_digits_text as load_digits_text_model
from softcfg.models.precision import UncondFloat32
from softcfg.models.registry import get_family
from softcfg.models.static_decode import enable_static_decode
from softcfg.options import ConfigError

if TYPE_CHECKING:
    from softcfg.config import ModelEntry
    from softcfg.data.prompts import PromptReader

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _overrides(entry: ModelEntry) -> dict[str, int]:
    return {k: getattr(entry, k) for k in ("dim", "depth", "heads") if getattr(entry, k) is not None}


def load_digits(entry: ModelEntry) -> ARModel:
    return load_digits_ar(entry.checkpoint)


def load_digits_scales(entry: ModelEntry) -> ARModel:
    return load_digits_scales_model(entry.checkpoint)


def load_digits_text(entry: ModelEntry) -> ARModel:
    return load_digits_text_model(entry.checkpoint)


def load_alitok(entry: ModelEntry) -> ARModel:
    base = alitok.SIZES[entry.size] if entry.size else alitok.AliTokConfig(entry.dim, entry.depth)
    config = dataclasses.replace(base, **_overrides(entry))
    return alitok.load_alitok(entry.checkpoint, config, entry.tokenizer)


def load_rar(entry: ModelEntry) -> ARModel:
    if entry.size is None and entry.heads is None:
        raise ConfigError("model.heads: rar needs size (B, L, XL, XXL) or dim, depth and heads")
    base = rar.SIZES[entry.size] if entry.size else rar.RARConfig(entry.dim, entry.depth, 4 * entry.dim)
    return rar.load_rar(entry.checkpoint, dataclasses.replace(base, **_overrides(entry)), entry.tokenizer)


def load_llamagen(entry: ModelEntry) -> ARModel:
    if entry.size is None and entry.heads is None:
        raise ConfigError("model.heads: llamagen needs size (B, L, XL, XXL, 3B) or dim, depth and heads")
    base = (
        llamagen.SIZES[entry.size]
        if entry.size
        else llamagen.LlamaGenConfig(entry.dim, entry.depth, entry.heads)
    )
    config = dataclasses.replace(base, **_overrides(entry), image_size=entry.image_size)
    return llamagen.load_llamagen(entry.checkpoint, config, entry.tokenizer, entry.eval_size)


def load_var(entry: ModelEntry) -> ARModel:
    if entry.tokenizer is None:
        raise ConfigError("model.tokenizer: var needs its VQVAE (vae_ch160v4096z32.pth) to sample at all")
    base = var.SIZES[entry.size] if entry.size else var.VARConfig(64 * entry.depth, entry.depth, entry.depth)
    return var.load_var(entry.checkpoint, dataclasses.replace(base, **_overrides(entry)), entry.tokenizer)


def _text_family(name: str) -> ModuleType:
    """A transformers-backed family's module: transformers is the optional t2i extra."""
    try:
        return import_module(f"softcfg.models.{name}")
    except ImportError as exc:
        raise ConfigError(
            f"model.family: {name} needs transformers (pip install 'softcfg[t2i]'): {exc}"
        ) from exc


def load_janus(entry: ModelEntry) -> ARModel:
    return _text_family("janus").load_janus(entry, DTYPES[entry.dtype])


def load_lumina(entry: ModelEntry) -> ARModel:
    return _text_family("lumina").load_lumina(entry)


def load_simplear(entry: ModelEntry) -> ARModel:
    return _text_family("simplear").load_simplear(entry, DTYPES[entry.dtype])


def janus_prompt_reader(entry: ModelEntry, trained: bool) -> PromptReader:
    return _text_family("janus").prompt_reader(entry)


def lumina_prompt_reader(entry: ModelEntry, trained: bool) -> PromptReader:
    return _text_family("lumina").prompt_reader(entry)


def simplear_prompt_reader(entry: ModelEntry, trained: bool) -> PromptReader:
    return _text_family("simplear").prompt_reader(entry)


def load_model(entry: ModelEntry) -> ARModel:
    """The family's model from its checkpoint, in eval mode, on the entry's device and dtype, with its
    decode step compiled when the entry asks for it.

    ``entry.uncond_fp32``: for a bf16/fp16 entry, run the unconditional rows in float32
    (``precision.UncondFloat32``); without it SoftCFG's perturbation of those rows is mostly bf16 rounding
    noise past the first few dozen steps (``benchmarks/bf16_perturbation.py``). It cost 1.3-1.9x the
    bf16 decode step where measured, so a low-precision SoftCFG run must choose (``softcfg.config``).
    The image decoder (``tokenizer``) stays float32 whatever the dtype, as in LlamaGen's sampling script:
    the dtype is the generator's.
    """
    model = get_family(entry.family).load(entry)
    decoder = getattr(model, "tokenizer", None)
    if decoder is not None:  # not cast: bf16 weights would not round-trip
        model.tokenizer = None
    model = model.to(device=entry.device, dtype=DTYPES[entry.dtype]).eval()
    if decoder is not None:
        model.tokenizer = decoder.to(device=entry.device)
    if entry.uncond_fp32 and DTYPES[entry.dtype] != torch.float32:
        model = UncondFloat32(model)
        if entry.compile:  # each row group's decode step, not the split around them
            compile_decode(model.model, entry.compile)
            compile_decode(model.uncond_model, entry.compile)
        return model
    return compile_decode(model, entry.compile) if entry.compile else model


def compile_decode(model: ARModel, mode: bool | str = True) -> ARModel:
    """The decode step as a model entry's ``compile`` asks. ``True``: torch.compile it as it is;
    positions and visible slots change every step, so the graph is dynamic (one compilation serves the
    loop) and cannot be captured. ``static``, ``captured``, ``compiled``: the static-shape step
    (``softcfg.models.static_decode``)."""
    if mode is True:
        model.decode = torch.compile(model.decode, dynamic=True)
        return model
    return enable_static_decode(model, mode)
