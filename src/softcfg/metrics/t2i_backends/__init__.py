"""Detector and VQA backends of the text-to-image benchmarks, behind two small interfaces.

GenEval needs a ``Detector`` (``softcfg.metrics.geneval``: detections per image, and a colour name per
object); DPG-Bench a
``VQAModel`` (an answer per image-question pair). A backend is named (``DETECTORS``, ``VQA_MODELS``) or
given as an import path ``package.module:factory``; the factory takes the backend's options (strings,
``--option KEY=VALUE`` on the command line) and refuses unknown ones by name. Heavy libraries are
imported only by the backend that needs them, when it is built.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from softcfg.metrics.geneval import Detector
from softcfg.options import UserError


@runtime_checkable
class VQAModel(Protocol):
    """Visual question answering for DPG-Bench."""

    name: str

    def answer(self, images: Sequence[np.ndarray], questions: Sequence[str]) -> list[str]:
        """The answer to each (image, question) pair, as the model writes it (DPG counts exactly "yes")."""
        ...


DETECTORS = {
    "hf": "softcfg.metrics.t2i_backends.hf:Mask2FormerClip",
    "mmdet": "softcfg.metrics.t2i_backends.official:MMDetClip",
    "scenes": "softcfg.metrics.t2i_backends.scenes:SceneDetector",
}
VQA_MODELS = {
    "hf": "softcfg.metrics.t2i_backends.hf:BlipVQA",
    "mplug": "softcfg.metrics.t2i_backends.official:MPlugVQA",
    "scenes": "softcfg.metrics.t2i_backends.scenes:SceneVQA",
}


def parse_options(pairs: Sequence[str]) -> dict[str, str]:
    """``KEY=VALUE`` strings as a dict; a malformed or repeated key is named."""
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--option must be KEY=VALUE, got {pair!r}")
        if key in options:
            raise UserError(f"--option {key} given twice")
        options[key] = value
    return options


def take_options(
    options: Mapping[str, str], backend: str, required: Sequence[str], optional: Mapping[str, str]
) -> dict[str, str]:
    """The backend's options with defaults filled in; unknown or missing keys are named."""
    unknown = sorted(set(options) - set(required) - set(optional))
    if unknown:
        known = ", ".join([*required, *optional]) or "none"
        raise UserError(f"backend {backend}: unknown option(s) {', '.join(unknown)} (known: {known})")
    missing = [k for k in required if k not in options]
    if missing:
        raise UserError(f"backend {backend}: needs --option {missing[0]}=...")
    return {**optional, **options}


def _build(spec: str, registry: Mapping[str, str], options: Mapping[str, str]) -> Any:
    target = registry.get(spec, spec)
    module_name, sep, attr = target.partition(":")
    if not sep:
        raise UserError(f"backend {spec!r} is neither one of {', '.join(registry)} nor module:factory")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UserError(f"backend {spec!r} could not be imported: {exc}") from exc
    return factory(dict(options))


def load_detector(spec: str, options: Mapping[str, str]) -> Detector:
    detector = _build(spec, DETECTORS, options)
    if not isinstance(detector, Detector):
        raise UserError(
            f"backend {spec!r} did not build a Detector (name, classes, colour_names, detect, colours)"
        )
    return detector


def load_vqa(spec: str, options: Mapping[str, str]) -> VQAModel:
    model = _build(spec, VQA_MODELS, options)
    if not isinstance(model, VQAModel):
        raise UserError(f"backend {spec!r} did not build a VQAModel (name, answer)")
    return model
