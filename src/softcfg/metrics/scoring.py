"""Scoring orchestration: a run's metric record from its feature files, and ADM's evaluator on images.

Feature files say which extractor wrote them (their ``meta``); each extractor has a reader here that
turns (sample files, reference file) into the two feature sets the suite compares, checking that both
sides were extracted with the same weights before any statistic is computed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any

import numpy as np

from softcfg.config import RunConfig
from softcfg.io.records import read_npz
from softcfg.metrics import EXTRACTORS
from softcfg.metrics.bootstrap import Resampling, intervals
from softcfg.metrics.suite import FeatureSet, PRSettings, compute_metrics
from softcfg.options import UserError

# ADM evaluator's printed lines, in its order
ADM_LINES = {
    "is": "Inception Score",
    "fid": "FID",
    "sfid": "sFID",
    "precision": "Precision",
    "recall": "Recall",
}


@dataclass(frozen=True)
class FeatureSets:
    samples: FeatureSet
    reference: FeatureSet
    extras: dict[str, float]  # numbers only this extractor gives (e.g. the digits' class accuracy)
    extractor: str  # which weights, e.g. "digits-classifier@<sha>"
    reference_name: str  # which reference set, with its size and checksum


DIGITS_FEATURES = ("features", "logits", "labels", "meta")


def _read_features(path: str, images: str) -> tuple[dict[str, np.ndarray], dict]:
    """A digits features file and its record; ``images`` ("samples" or "reference") is the side it must
    be, so swapped --samples and --reference are refused (files from before the record: not checked)."""
    arrays = read_npz(path, "digits features file", DIGITS_FEATURES)
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: digits features file with an unreadable record: {exc}") from exc
    if not isinstance(meta, dict) or "extractor_sha256" not in meta:
        raise UserError(f"{path}: digits features file without its extractor record")
    if meta.get("images", images) != images:
        raise UserError(f"{path}: features of {meta['images']} images, given as the {images}")
    n = len(arrays["labels"])
    if arrays["features"].shape[:1] != (n,) or arrays["logits"].shape[:1] != (n,):
        raise UserError(f"{path}: features, logits and labels have different row counts")
    return arrays, meta


def digits_feature_sets(sample_paths: Sequence[str], reference_path: str) -> FeatureSets:
    """The digits classifier's features: one file per run, class accuracy as an extra."""
    from softcfg.metrics.suite import class_accuracy

    if len(sample_paths) != 1:
        raise UserError(f"--samples: digits features come as one file per run, got {len(sample_paths)}")
    samples, meta = _read_features(sample_paths[0], "samples")
    reference, ref_meta = _read_features(reference_path, "reference")
    if meta["extractor_sha256"] != ref_meta["extractor_sha256"]:
        raise UserError(
            f"{sample_paths[0]} and {reference_path} were extracted with different classifier weights"
        )
    return FeatureSets(
        FeatureSet(samples["features"], samples["logits"]),
        FeatureSet(reference["features"], reference["logits"]),
        {"accuracy": class_accuracy(samples["logits"], samples["labels"])},
        f"{meta['extractor']}@{meta['extractor_sha256'][:12]}",
        f"digits ({len(reference['labels'])} images)",
    )


def inception_feature_sets(sample_paths: Sequence[str], reference_path: str) -> FeatureSets:
    """Inception features: one file per shard, merged exactly; the reference's cached statistics."""
    from softcfg.metrics.inception_features import reference_feature_set, sample_feature_set

    samples, meta = sample_feature_set(list(sample_paths))
    reference, ref_meta = reference_feature_set(reference_path)
    if meta["weights"]["sha256"] != ref_meta["weights"]["sha256"]:
        raise UserError(
            f"{sample_paths[0]} and {reference_path} were extracted with different Inception weights"
        )
    if meta["image_size"] != ref_meta["image_size"]:
        raise UserError(f"samples are {meta['image_size']} images, the reference {ref_meta['image_size']}")
    return FeatureSets(
        samples,
        reference,
        {},
        f"{meta['weights']['source']}@{meta['weights']['sha256'][:12]}",
        f"{ref_meta['reference']} ({ref_meta['num_images']} images, "
        f"sha256 {ref_meta['reference_sha256'][:12]})",
    )


def _reader(tag: str) -> Callable[[Sequence[str], str], FeatureSets] | None:
    """The reader of the extractor whose files carry ``tag`` (``softcfg.metrics.EXTRACTORS``)."""
    for extractor in EXTRACTORS.values():
        if extractor.file_tag == tag:
            module, _, function = extractor.reader.partition(":")
            return getattr(import_module(module), function)
    return None


def feature_sets(sample_paths: Sequence[str], reference_path: str) -> FeatureSets:
    """The two feature sets of a run, read by the extractor named in the first sample file."""
    meta = {}
    arrays = read_npz(sample_paths[0], "features file", (), only=("meta",))
    if "meta" in arrays:
        try:
            meta = json.loads(str(arrays["meta"]))
        except json.JSONDecodeError as exc:
            raise UserError(f"{sample_paths[0]}: features file with an unreadable record: {exc}") from exc
    if not isinstance(meta, dict) or "extractor" not in meta:
        raise UserError(
            f"{sample_paths[0]}: not a features file of this package (no extractor record); "
            "give what `softcfg features` or `softcfg inception-features` wrote"
        )
    reader = _reader(meta.get("extractor"))
    if reader is None:
        known = sorted(e.file_tag for e in EXTRACTORS.values())
        raise UserError(
            f"{sample_paths[0]}: features of unknown extractor {meta.get('extractor')!r} ({known})"
        )
    return reader(sample_paths, reference_path)


def run_metrics(
    run: RunConfig,
    sample_paths: Sequence[str],
    reference_path: str,
    names: tuple[str, ...],
    kid_subset_size: int,
    pr: PRSettings,
    resampling: Resampling | None = None,
) -> dict[str, Any]:
    """A run's metrics record: the numbers, the sample count and what they were measured with, and with
    ``resampling`` an interval for each metric that has one (``intervals``: metric -> ci_* fields)."""
    sets = feature_sets(sample_paths, reference_path)
    n = min(sets.samples.features.shape[0], sets.reference.features.shape[0])
    if "kid" in names and kid_subset_size > n:
        raise UserError(
            f"--kid-subset-size {kid_subset_size} exceeds the number of samples or reference images"
        )
    values = compute_metrics(sets.samples, sets.reference, names, kid_subset_size, pr) | sets.extras
    ranges = {} if resampling is None else intervals(sets.samples, sets.reference, names, resampling, pr)
    return {
        "run": run.to_dict(),
        "metrics": values,
        "intervals": ranges,
        "num_samples": int(sets.samples.features.shape[0]),
        "extractor": sets.extractor,
        "reference": sets.reference_name,
        "modes": {name: pr.mode for name in ("precision", "recall") if name in values},
    }


@dataclass(frozen=True)
class Evaluation:
    values: dict[str, float]
    unavailable: dict[str, str]  # metric -> why it cannot be given
    num_samples: int
    weights: dict[str, Any]

    def record(self) -> dict[str, Any]:
        return {
            "metrics": {"is": None} | self.values,
            "unavailable": self.unavailable,
            "num_samples": self.num_samples,
            "weights": self.weights,
        }


def evaluate_samples(
    reference_path: str | Path,
    samples_path: str | Path,
    weights_path: str | None,
    batch_size: int,
    device: str,
    pr_mode: str,
) -> Evaluation:
    """ADM's evaluator: Inception features of both sets (the reference's cached), then IS (when the
    weights have the head), FID, sFID, precision and recall. Inputs are checked before extraction."""
    from softcfg.metrics.inception import resolve_weights
    from softcfg.metrics.inception_features import (
        feature_set,
        features_arrays,
        load_images,
        read_reference,
        reference_arrays,
    )

    ref_images, _ = read_reference(reference_path)
    images = load_images(samples_path)
    if images.shape[1:] != ref_images.shape[1:]:
        raise UserError(
            f"{samples_path}: images are {images.shape[1:3]}, the reference's are {ref_images.shape[1:3]}"
        )
    if images.shape[0] < 4:
        raise UserError(f"{samples_path}: {images.shape[0]} images; precision and recall need at least 4")
    del ref_images
    weights = resolve_weights(weights_path)
    reference = feature_set(reference_arrays(reference_path, weights, batch_size, device))
    samples = feature_set(features_arrays(images, weights, {}, batch_size, device))
    names = tuple(n for n in ADM_LINES if n != "is" or weights.has_logits)
    values = dict(compute_metrics(samples, reference, names, pr=PRSettings(mode=pr_mode, device=device)))
    unavailable = {} if weights.has_logits else {"is": samples.unavailable}
    return Evaluation(values, unavailable, int(images.shape[0]), weights.as_dict())
