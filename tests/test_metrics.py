"""digits-FID: our per-run metric path against torch-fidelity's own top-level API and hand formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from softcfg.data.digits import split_digits, tokens_to_uint8_images
from softcfg.metrics.digits_extractor import EXTRACTOR, ImagesDataset, extract_features
from softcfg.metrics.features_to_metrics import compute_metrics
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


def test_matches_torch_fidelity_calculate_metrics(classifier, images):
    import torch_fidelity

    samples, reference = images
    ours = compute_metrics(extract_features(samples, classifier), extract_features(reference, classifier),
                           ("fid", "isc", "kid", "prc"), kid_subset_size=100)  # fmt: skip
    theirs = torch_fidelity.calculate_metrics(
        input1=ImagesDataset(samples), input2=ImagesDataset(reference), feature_extractor=EXTRACTOR,
        feature_extractor_weights_path=str(classifier), cuda=False, fid=True, isc=True, kid=True, prc=True,
        kid_subset_size=100, verbose=False, save_cpu_ram=True,
    )  # fmt: skip
    assert ours["fid"] == pytest.approx(theirs["frechet_inception_distance"], rel=1e-6)
    assert ours["isc"] == pytest.approx(theirs["inception_score_mean"], rel=1e-6)
    assert ours["kid"] == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-6)
    assert (ours["precision"], ours["recall"]) == (theirs["precision"], theirs["recall"])


def test_inception_score_from_softmax_by_hand(classifier, images):
    """IS = exp(E_x KL(p(y|x) || p(y))) over torch-fidelity's 10 shuffled splits (seed 2020)."""
    samples, _ = images
    logits = extract_features(samples, classifier)["logits"].astype(np.float64)
    order = np.random.RandomState(2020).permutation(len(logits))
    p = torch.softmax(torch.from_numpy(logits[order]), -1).numpy()
    scores = []
    for chunk in np.array_split(p, 10):
        marginal = chunk.mean(0, keepdims=True)
        scores.append(np.exp((chunk * (np.log(chunk) - np.log(marginal))).sum(1).mean()))
    samples_feats = {"features": np.zeros((len(p), 2), np.float32), "logits": logits.astype(np.float32)}
    got = compute_metrics(samples_feats, {"features": np.zeros((3, 2), np.float32)}, ("isc",))
    assert got["isc"] == pytest.approx(np.mean(scores), rel=1e-5)


def test_mode_collapse_has_high_precision_low_recall_and_swapping_swaps(classifier, images):
    _, reference = images
    collapsed = np.repeat(reference[:5], 40, axis=0)  # a few real images, repeated
    f_ref, f_col = extract_features(reference, classifier), extract_features(collapsed, classifier)
    m = compute_metrics(f_col, f_ref, ("prc",))
    assert m["precision"] == 1.0 and m["recall"] < 0.2
    swapped = compute_metrics(f_ref, f_col, ("prc",))
    assert (swapped["precision"], swapped["recall"]) == (m["recall"], m["precision"])
