"""The digits classifier as a torch-fidelity feature extractor ("digits-FID"), and the digits data sets.

Registered under ``EXTRACTOR`` so torch-fidelity's own feature and metric code runs on this data: the
penultimate features (128) play pool_3's part (FID, KID, precision/recall) and the logits play the
Inception logits' part (IS).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch_fidelity import FeatureExtractorBase, register_feature_extractor
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from softcfg.metrics.images_dataset import ImagesDataset
from softcfg.models.digits_classifier import load_digits_classifier

EXTRACTOR = "digits-classifier"
FEATURES = "features"
LOGITS = "logits"


class DigitsClassifierExtractor(FeatureExtractorBase):
    """Takes uint8 NCHW batches (torch-fidelity's convention); weights from the classifier checkpoint."""

    def __init__(
        self, name: str, features_list: Sequence[str], feature_extractor_weights_path=None, **kwargs
    ):
        super().__init__(name, features_list)
        if feature_extractor_weights_path is None:
            raise ValueError(
                f"{EXTRACTOR}: feature_extractor_weights_path (the classifier checkpoint) is required"
            )
        self.classifier = load_digits_classifier(feature_extractor_weights_path)

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return (FEATURES, LOGITS)

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return LOGITS if metric == "isc" else FEATURES  # torch-fidelity's metric names

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> Tensor:
        return torch.zeros(1, 3, 8, 8, dtype=torch.uint8)

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        features, logits = self.classifier.features_and_logits(images.permute(0, 2, 3, 1))
        out = {FEATURES: features, LOGITS: logits}
        return tuple(out[name] for name in self.features_list)


if EXTRACTOR not in FEATURE_EXTRACTORS_REGISTRY:
    register_feature_extractor(EXTRACTOR, DigitsClassifierExtractor)


def extract_features(
    images: np.ndarray, classifier: str | Path, batch_size: int = 500
) -> dict[str, np.ndarray]:
    """Features and logits of uint8 NHWC images through torch-fidelity's extraction loop (CPU)."""
    from torch_fidelity.utils import create_feature_extractor, get_featuresdict_from_dataset

    extractor = create_feature_extractor(
        EXTRACTOR,
        [FEATURES, LOGITS],
        cuda=False,
        feature_extractor_weights_path=str(classifier),
        verbose=False,
    )
    feats = get_featuresdict_from_dataset(
        ImagesDataset(images), extractor, batch_size, cuda=False, save_cpu_ram=True, verbose=False
    )
    return {name: value.numpy().astype(np.float32) for name, value in feats.items()}
