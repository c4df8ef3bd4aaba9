"""digits-FID: our per-run metric path against torch-fidelity's own top-level API and hand formulas."""

from __future__ import annotations

import numpy as np
import pytest

from softcfg.data.digits import split_digits, tokens_to_uint8_images
from softcfg.metrics.digits_extractor import EXTRACTOR, extract_features
from softcfg.metrics.images_dataset import ImagesDataset
from softcfg.metrics.suite import FeatureSet, compute_metrics
from softcfg.models.digits_classifier import save_digits_classifier
from softcfg.training.digits import train_digits_classifier


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    model, _ = train_digits_classifier(split_digits(0), seed=0, epochs=5)
    path = tmp_path_factory.mktemp("cls") / "c.pt"
    save_digits_classifier(model, path)
    return path


@pytest.fixture(scope="module")
def images():
    split = split_digits(0)
    real = tokens_to_uint8_images(split.train_tokens[:300]).numpy()
    rng = np.random.default_rng(0)
    noisy = np.clip(real[:200].astype(int) + rng.integers(-60, 60, real[:200].shape), 0, 255).astype(np.uint8)
    return noisy, real


def feature_set(feats: dict[str, np.ndarray]) -> FeatureSet:
    return FeatureSet(feats["features"], feats["logits"])


def test_digits_metrics_match_torch_fidelity_calculate_metrics(classifier, images):
    """Same features, torch-fidelity's own metric code: FID, KID, precision/recall, and IS in one split
    (ADM's chunks of 5000 are one chunk here)."""
    import torch_fidelity

    samples, reference = images
    ours = compute_metrics(feature_set(extract_features(samples, classifier)),
                           feature_set(extract_features(reference, classifier)),
                           ("fid", "is", "kid", "precision", "recall"), kid_subset_size=100)  # fmt: skip
    theirs = torch_fidelity.calculate_metrics(
        input1=ImagesDataset(samples), input2=ImagesDataset(reference), feature_extractor=EXTRACTOR,
        feature_extractor_weights_path=str(classifier), cuda=False, fid=True, isc=True, kid=True, prc=True,
        kid_subset_size=100, isc_splits=1, samples_shuffle=False, verbose=False, save_cpu_ram=True,
    )  # fmt: skip
    assert ours["fid"] == pytest.approx(theirs["frechet_inception_distance"], rel=1e-6)
    assert ours["is"] == pytest.approx(theirs["inception_score_mean"], rel=1e-6)
    assert ours["kid"] == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-6)
    # the same counts (torch-fidelity averages in float32, 1e-8 apart; one point more is 1/300)
    assert ours["precision"] == pytest.approx(theirs["precision"], abs=1e-6)
    assert ours["recall"] == pytest.approx(theirs["recall"], abs=1e-6)


def test_mode_collapse_has_high_precision_low_recall_and_swapping_swaps(classifier, images):
    _, reference = images
    collapsed = np.repeat(reference[:5], 40, axis=0)  # a few real images, repeated
    f_ref = feature_set(extract_features(reference, classifier))
    f_col = feature_set(extract_features(collapsed, classifier))
    m = compute_metrics(f_col, f_ref, ("precision", "recall"))
    assert m["precision"] == 1.0 and m["recall"] < 0.2
    swapped = compute_metrics(f_ref, f_col, ("precision", "recall"))
    assert (swapped["precision"], swapped["recall"]) == (m["recall"], m["precision"])
